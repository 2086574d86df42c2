"""``marginkit export`` and ``marginkit embed``: the files they write and their one-line
errors (exit status 2, nothing written)."""

from __future__ import annotations

import io
import json
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import TinyRun

import marginkit.cli as cli
from marginkit.export import load_embedder
from marginkit.export.sidecar import file_digest


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


def test_an_existing_file_is_replaced_only_with_force(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"someone's file")
    export = ("export", tiny_run.run_dir, "--format", "safetensors", "--out", out)
    status, _, error = run_command(capsys, *export)
    assert (
        _one_line_error(status, error)
        == f"marginkit: error: out: {out} exists; pass --force to replace it"
    )
    assert out.read_bytes() == b"someone's file" and not Path(f"{out}.json").exists()
    out.unlink()
    Path(f"{out}.json").write_text("{}")  # the record's name is taken too
    status, _, error = run_command(capsys, *export)
    assert f"out: {out}.json exists; pass --force" in _one_line_error(status, error)
    assert Path(f"{out}.json").read_text() == "{}"
    assert run_command(capsys, *export, "--force")[0] == 0
    assert load_embedder(out).kind == "safetensors"
    embeddings = tmp_path / "embeddings.npz"
    embeddings.write_bytes(b"someone's embeddings")
    embed = ("embed", out, "--images", tiny_run.images, "--out", embeddings, "--quiet")
    status, _, error = run_command(capsys, *embed)
    assert f"out: {embeddings} exists; pass --force" in _one_line_error(status, error)
    assert embeddings.read_bytes() == b"someone's embeddings"
    assert run_command(capsys, *embed, "--force")[0] == 0
    with np.load(embeddings) as written:
        assert written["paths"].tolist() == tiny_run.names


def test_no_file_read_and_no_checkpoint_is_written_over_even_with_force(
    tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``export RUN --out RUN/checkpoints/epoch-0001/weights.safetensors`` once replaced the
    run's only checkpoint ("no intact checkpoint is left")."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run_dir)
    checkpoint = run_dir / "checkpoints" / "epoch-0001"
    kept = {path.name: path.read_bytes() for path in checkpoint.iterdir()}
    weights = checkpoint / "weights.safetensors"
    inside = f"is inside the checkpoints folder of run {run_dir.resolve()}, which is never written"
    for force in ((), ("--force",)):
        status, _, error = run_command(
            capsys, "export", run_dir, "--format", "safetensors", "--out", weights, *force
        )
        assert (
            _one_line_error(status, error)
            == f"marginkit: error: out: {weights} {inside} over; choose another path"
        )
    exported = tmp_path / "model.pt"
    assert (
        run_command(capsys, "export", run_dir, "--format", "torchscript", "--out", exported)[0] == 0
    )
    image = tiny_run.images / tiny_run.names[0]
    refusals = [
        (("export", run_dir, "--format", "torchscript", "--out", run_dir / "config.yaml"), "reads"),
        (("embed", exported, "--images", tiny_run.images, "--out", exported), "reads"),
        (("embed", exported, "--images", tiny_run.images, "--out", f"{exported}.json"), "reads"),
        (("embed", exported, "--images", tiny_run.images, "--out", image), "reads"),
        (("embed", run_dir, "--images", tiny_run.images, "--out", checkpoint / "e.npz"), "inside"),
    ]
    for command, why in refusals:
        status, _, error = run_command(capsys, *command, "--force")
        line = _one_line_error(status, error)
        assert ("is a file this command reads" if why == "reads" else inside) in line, line
    assert {path.name: path.read_bytes() for path in checkpoint.iterdir()} == kept
    assert load_embedder(run_dir).kind == "run" and load_embedder(exported).kind == "torchscript"


def test_an_import_spec_in_an_export_record_or_a_run_is_imported_only_when_confirmed(
    tiny_run: TinyRun,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    foreign_backbone: tuple[str, Path],
) -> None:
    module, imported = foreign_backbone
    spec = f"{module}:resnet20"
    exported = tmp_path / "model.safetensors"
    assert (
        run_command(
            capsys, "export", tiny_run.run_dir, "--format", "safetensors", "--out", exported
        )[0]
        == 0
    )
    record = json.loads(Path(f"{exported}.json").read_text())
    Path(f"{exported}.json").write_text(json.dumps({**record, "backbone": spec}))
    theirs = tmp_path / "theirs"
    shutil.copytree(tiny_run.run_dir, theirs)
    config = (theirs / "config.yaml").read_text()
    (theirs / "config.yaml").write_text(config.replace("backbone: resnet20", f"backbone: {spec}"))
    out = tmp_path / "embeddings.npz"
    for command, record_file in [
        (("embed", exported, "--images", tiny_run.images, "--out", out), f"{exported}.json"),
        (("embed", theirs, "--images", tiny_run.images, "--out", out), theirs / "config.yaml"),
        (
            ("export", theirs, "--format", "torchscript", "--out", tmp_path / "m.pt"),
            theirs / "config.yaml",
        ),
    ]:
        status, _, error = run_command(capsys, *command)
        assert _one_line_error(status, error) == (
            f"marginkit: error: {record_file}: backbone '{spec}' would import module "
            f"'{module}' and run its code; only if you trust it, confirm with --backbone {spec}"
        )
    assert not imported.exists() and not out.exists() and not (tmp_path / "m.pt").exists()
    command = ("embed", exported, "--images", tiny_run.images, "--out", out, "--quiet")
    assert run_command(capsys, *command, "--backbone", spec)[0] == 0
    assert imported.exists() and out.is_file()


def _replace_and_rehash(path: Path, data: bytes) -> None:
    """Write ``data`` over an exported file and its new size and SHA-256 into its record,
    as someone editing both would."""
    path.write_bytes(data)
    record = json.loads(Path(f"{path}.json").read_text())
    record["sha256"], record["bytes"] = file_digest(path)
    Path(f"{path}.json").write_text(json.dumps(record))


def _torchscript(network: torch.nn.Module, input_shape: tuple[int, ...] = (3, 16, 16)) -> bytes:
    """``network`` traced on inputs ``(2, *input_shape)``, as a TorchScript file's bytes."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's
        torch.jit.save(torch.jit.trace(network.eval(), torch.zeros(2, *input_shape)), buffer)
    return buffer.getvalue()


class _Columns(torch.nn.Module):
    """The first ``count`` input values of each image, times ``factor``."""

    def __init__(self, count: int, factor: float) -> None:
        super().__init__()
        self.count, self.factor = count, factor

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.flatten(1)[:, : self.count] * self.factor


@pytest.mark.parametrize(
    ("format", "data", "message"),
    [
        ("safetensors", lambda: b"edited" * 10, "cannot be read as safetensors (Error while "),
        ("torchscript", lambda: b"edited" * 10, "cannot be read as torchscript (Pytorch"),
        (
            "torchscript",
            lambda: _torchscript(
                torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8)), (1, 8, 8)
            ),
            "the torchscript model fails on inputs of shape (12, 3, 16, 16), as its record "
            "describes them (",
        ),
        (
            "torchscript",
            lambda: _torchscript(_Columns(3, 1.0)),
            "gives embeddings of shape (12, 3) for 12 images, (12, 8) expected",
        ),
        (
            "torchscript",
            lambda: _torchscript(_Columns(8, float("nan"))),
            "the embedding of image c0/0.png is not finite",
        ),
    ],
    ids=["safetensors-bytes", "torchscript-bytes", "other-input", "other-size", "not-finite"],
)
def test_an_exported_file_changed_and_its_record_rehashed_is_one_line(
    tiny_run: TinyRun,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    format: str,
    data: Callable[[], bytes],
    message: str,
) -> None:
    exported = tmp_path / f"model.{format}"
    assert (
        run_command(capsys, "export", tiny_run.run_dir, "--format", format, "--out", exported)[0]
        == 0
    )
    _replace_and_rehash(exported, data())
    out = tmp_path / "embeddings.npz"
    status, _, error = run_command(
        capsys, "embed", exported, "--images", tiny_run.images, "--out", out, "--quiet"
    )
    assert _one_line_error(status, error).startswith(f"marginkit: error: {exported}: {message}")
    assert not out.exists()


def test_an_onnx_file_changed_and_its_record_rehashed_is_one_line(
    onnx_file: Path, tiny_run: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = tmp_path / onnx_file.name
    shutil.copyfile(onnx_file, edited)
    shutil.copyfile(f"{onnx_file}.json", f"{edited}.json")
    _replace_and_rehash(edited, onnx_file.read_bytes()[:1000])
    out = tmp_path / "embeddings.npz"
    status, _, error = run_command(
        capsys, "embed", edited, "--images", tiny_run.images, "--out", out, "--quiet"
    )
    line = _one_line_error(status, error)
    assert line.startswith(f"marginkit: error: {edited}: cannot be read as onnx ("), line
    assert not out.exists()
