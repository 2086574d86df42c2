"""``marginkit export`` and ``marginkit embed``: the files they write and their one-line
errors (exit status 2, nothing written)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import TinyRun

import marginkit.cli as cli


def run_command(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``marginkit ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        status = cli.main([str(arg) for arg in args])
    except SystemExit as exit:
        status = int(exit.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_export_then_embed_with_the_exported_file(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.pt"
    status, printed, _ = run_command(
        capsys, "export", tiny_run.run_dir, "--format", "torchscript", "--out", out
    )
    assert status == 0 and printed.strip() == f"{out} (and model.pt.json)"
    assert json.loads(Path(f"{out}.json").read_text())["format"] == "torchscript"
    embeddings = tmp_path / "embeddings.npz"
    command = ("embed", out, "--images", tiny_run.images, "--out", embeddings, "--batch-size", "5")
    status, printed, _ = run_command(capsys, *command, "--quiet")
    assert status == 0 and printed.strip() == str(embeddings)
    by_run = tmp_path / "by_run.npz"
    assert run_command(capsys, "embed", tiny_run.run_dir, "--images", tiny_run.images,
                       "--out", by_run, "--quiet")[0] == 0  # fmt: skip
    with np.load(embeddings) as from_file, np.load(by_run) as from_run:
        assert from_file["paths"].tolist() == from_run["paths"].tolist() == tiny_run.names
        np.testing.assert_allclose(from_file["embeddings"], from_run["embeddings"], atol=1e-4)
        # the magnitudes (MagFace's quality score) are the rows' norms, row for row
        norms = np.linalg.norm(from_run["embeddings"].astype(np.float64), axis=1)
        assert from_run["magnitudes"].dtype == np.float32
        np.testing.assert_allclose(from_run["magnitudes"], norms, rtol=1e-6)


def _one_line_error(status: int, error: str) -> str:
    assert status == 2 and "Traceback" not in error
    (line,) = error.strip().splitlines()[-1:]
    assert line.startswith("marginkit: error: ")
    return line


def test_a_run_without_a_checkpoint_is_one_line(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "unfinished"
    run_dir.mkdir()
    shutil.copyfile(tiny_run.run_dir / "config.yaml", run_dir / "config.yaml")
    out = tmp_path / "model.safetensors"
    status, _, error = run_command(
        capsys, "export", run_dir, "--format", "safetensors", "--out", out
    )
    line = _one_line_error(status, error)
    assert line == f"marginkit: error: run {run_dir} has no complete checkpoint yet"
    assert not out.exists()


def test_an_unknown_format_lists_the_formats(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, error = run_command(
        capsys, "export", tiny_run.run_dir, "--format", "tflite", "--out", tmp_path / "m"
    )
    assert status == 2 and "invalid choice: 'tflite'" in error
    assert "onnx" in error and "torchscript" in error and "safetensors" in error
    assert list(tmp_path.iterdir()) == []


def test_onnx_without_the_export_extra_names_it(
    tiny_run: TinyRun,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    status, _, error = run_command(
        capsys, "export", tiny_run.run_dir, "--format", "onnx", "--out", tmp_path / "m.onnx"
    )
    assert 'pip install "marginkit[export]"' in _one_line_error(status, error)
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_image_is_one_line_naming_it(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny_run.images, images)
    (images / "c1" / "broken.png").write_bytes(b"\x89PNG but cut short")
    out = tmp_path / "out.npz"
    status, _, error = run_command(
        capsys, "embed", tiny_run.run_dir, "--images", images, "--out", out, "--quiet"
    )
    line = _one_line_error(status, error)
    assert f"{images / 'c1' / 'broken.png'}: expected a readable image file" in line
    assert not out.exists()
