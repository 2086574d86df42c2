"""marginkit.export.export_run: each format holds the backbone alone, reloads with its own
runtime and gives PyTorch's embeddings; the JSON record; bad input; the ONNX check."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_runs import TinyRun

import marginkit
from marginkit.data import load_dataset
from marginkit.export import ExportError, export_run, load_embedder, load_run_backbone
from marginkit.export import formats as export_formats
from marginkit.models import build_backbone
from marginkit.train import load_config

TOLERANCE = 1e-4


def _inputs(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(batch))


def _reference(tiny_run: TinyRun, inputs: torch.Tensor) -> np.ndarray:
    tiny_run.backbone.eval()
    with torch.no_grad():
        return tiny_run.backbone(inputs).numpy()  # (B, 8)


def test_the_run_backbone_is_the_trained_one(tiny_run: TinyRun) -> None:
    """What every export starts from: the checkpoint's backbone, batch-norm statistics
    included, without the training data."""
    loaded = load_run_backbone(tiny_run.run_dir)
    inputs = _inputs(4)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.backbone(inputs).numpy(), _reference(tiny_run, inputs))
    assert loaded.checkpoint.name == "epoch-0001"


def test_onnx_reloads_in_onnxruntime_with_a_dynamic_batch(
    tiny_run: TinyRun, onnx_file: Path
) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "images"
    assert isinstance(graph_input.shape[0], str) and graph_input.shape[1:] == [3, 16, 16]
    for batch in (1, 4, 7):  # the exporter saw a batch of 2
        inputs = _inputs(batch)
        (embeddings,) = session.run(None, {"images": inputs.numpy()})
        assert embeddings.shape == (batch, 8)  # the embedding, not the head's 3 scores
        np.testing.assert_allclose(embeddings, _reference(tiny_run, inputs), rtol=0, atol=TOLERANCE)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_reloads_with_torch_jit_load(tiny_run: TinyRun, tmp_path: Path) -> None:
    out = export_run(tiny_run.run_dir, "torchscript", tmp_path / "model.pt")
    module = torch.jit.load(str(out))
    for batch in (1, 5):
        inputs = _inputs(batch)
        with torch.no_grad():
            embeddings = module(inputs).numpy()
        np.testing.assert_allclose(embeddings, _reference(tiny_run, inputs), rtol=0, atol=TOLERANCE)


def test_safetensors_holds_the_backbone_state_and_loads_into_the_registered_backbone(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    out = export_run(tiny_run.run_dir, "safetensors", tmp_path / "model.safetensors")
    weights = load_file(str(out))
    assert set(weights) == set(tiny_run.backbone.state_dict())  # no head.*, buffers included
    record = json.loads(Path(f"{out}.json").read_text())
    rebuilt = build_backbone(
        record["backbone"], tuple(record["preprocessing"]["input_shape"]), record["embedding_dim"]
    )
    rebuilt.load_state_dict(weights, strict=True)
    rebuilt.eval()
    inputs = _inputs(3)
    with torch.no_grad():
        np.testing.assert_array_equal(rebuilt(inputs).numpy(), _reference(tiny_run, inputs))


def test_the_record_describes_the_file_the_input_and_the_loss(
    tiny_run: TinyRun, onnx_file: Path
) -> None:
    record = json.loads(Path(f"{onnx_file}.json").read_text())
    data = onnx_file.read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["bytes"] == len(data)
    assert record["format"] == "onnx" and record["file"] == "model.onnx"
    assert record["onnx_opset"] == 18
    assert record["marginkit_version"] == marginkit.__version__
    assert record["torch_version"] == torch.__version__
    assert record["backbone"] == "resnet20" and record["embedding_dim"] == 8
    preprocessing = record["preprocessing"]
    assert preprocessing["input_shape"] == [3, 16, 16] and preprocessing["channels"] == "RGB"
    bundle = load_dataset("folder", data_dir=tiny_run.images, image_size=(16, 16), progress=False)
    assert preprocessing["mean"] == pytest.approx(list(bundle.mean), abs=1e-12)
    assert preprocessing["std"] == pytest.approx(list(bundle.std), abs=1e-12)
    config = load_config(tiny_run.run_dir / "config.yaml")
    assert record["loss"]["name"] == "cosface"
    assert record["loss"]["settings"] == config.loss_args  # as the recipe resolved them
    assert record["loss"]["final_values"]["margin"] == pytest.approx(0.35)
    assert record["run"]["checkpoint"] == "epoch-0001" and record["run"]["epoch"] == 1
    check = record["check"]
    assert check["runtime"].startswith("onnxruntime") and check["batch_sizes"] == [1, 3]
    assert 0.0 <= check["max_abs_difference"] <= check["tolerance"] == TOLERANCE


def _copying_writer(source: Path):  # type: ignore[no-untyped-def]
    """An ONNX "writer" that copies an exported file (no second export: it takes seconds)."""

    def write(backbone: torch.nn.Module, example: torch.Tensor, path: Path) -> dict:
        shutil.copyfile(source, path)
        return {"onnx_opset": 18}

    return write


@pytest.mark.parametrize(("offset", "accepted"), [(5e-5, True), (1e-3, False)])
def test_onnx_outputs_beyond_the_tolerance_fail_loudly_and_leave_nothing(
    onnx_file: Path,
    tiny_run: TinyRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offset: float,
    accepted: bool,
) -> None:
    """onnxruntime's embeddings shifted by ``offset``: within 1e-4 the file is written,
    beyond it the error names the file and the difference and nothing is left behind."""
    monkeypatch.setitem(export_formats.WRITERS, "onnx", _copying_writer(onnx_file))
    run_onnx = export_formats._OnnxForward.__call__
    monkeypatch.setattr(
        export_formats._OnnxForward, "__call__", lambda self, x: run_onnx(self, x) + offset
    )
    out = tmp_path / "shifted.onnx"
    if accepted:
        export_run(tiny_run.run_dir, "onnx", out)
        record = json.loads(Path(f"{out}.json").read_text())
        assert record["check"]["max_abs_difference"] == pytest.approx(offset, abs=5e-6)
        return
    with pytest.raises(ExportError) as raised:
        export_run(tiny_run.run_dir, "onnx", out)
    message = str(raised.value)
    assert str(out) in message and "differ from PyTorch's by up to 0.001" in message
    assert "tolerance 0.0001" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no file, no record, no temporary


def test_a_run_without_a_checkpoint_says_so(tiny_run: TinyRun, tmp_path: Path) -> None:
    run_dir = tmp_path / "unfinished"
    run_dir.mkdir()
    shutil.copyfile(tiny_run.run_dir / "config.yaml", run_dir / "config.yaml")
    with pytest.raises(ExportError, match=rf"^run {run_dir} has no complete checkpoint yet$"):
        export_run(run_dir, "safetensors", tmp_path / "model.safetensors")
    with pytest.raises(ExportError, match=r"is not a run folder: no config.yaml"):
        export_run(tmp_path / "elsewhere", "safetensors", tmp_path / "model.safetensors")
    assert not (tmp_path / "model.safetensors").exists()


def test_an_unknown_format_lists_the_formats(tiny_run: TinyRun, tmp_path: Path) -> None:
    listed = r"unknown format 'tflite'; expected one of onnx, torchscript, safetensors$"
    with pytest.raises(ExportError, match=listed):
        export_run(tiny_run.run_dir, "tflite", tmp_path / "model.tflite")
    assert list(tmp_path.iterdir()) == []


def test_an_exported_file_is_checked_against_its_record(tiny_run: TinyRun, tmp_path: Path) -> None:
    out = export_run(tiny_run.run_dir, "safetensors", tmp_path / "model.safetensors")
    assert load_embedder(out).kind == "safetensors"
    data = bytearray(out.read_bytes())
    data[-1] ^= 0xFF  # one weight changed after the export
    out.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"size or SHA-256 differs from model.safetensors.json"):
        load_embedder(out)
    Path(f"{out}.json").unlink()
    with pytest.raises(ExportError, match=r"its record model.safetensors.json is missing"):
        load_embedder(out)


def test_a_run_from_before_preprocessing_json_reads_its_data(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    older = tmp_path / "older"
    shutil.copytree(tiny_run.run_dir, older)
    (older / "preprocessing.json").unlink()
    recorded = load_run_backbone(tiny_run.run_dir).preprocessing
    assert load_run_backbone(older).preprocessing == recorded
    assert load_run_backbone(older, data_dir=tiny_run.images).preprocessing == recorded


def test_the_check_refuses_embeddings_of_another_shape_or_not_finite(tiny_run: TinyRun) -> None:
    backbone, shape = tiny_run.backbone, (3, 16, 16)
    assert export_formats.largest_difference(backbone, backbone, shape) == 0.0
    with pytest.raises(ExportError, match=r"batch of 1 have shape \(1, 3\), \(1, 8\) expected"):
        export_formats.largest_difference(lambda x: backbone(x)[:, :3], backbone, shape)
    with pytest.raises(ExportError, match=r"embeddings of a batch of 1 are not finite"):
        export_formats.largest_difference(lambda x: backbone(x) * float("nan"), backbone, shape)


def test_an_exported_safetensors_file_gets_the_mode_the_umask_gives(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    """safetensors writes its files with mode 0600; the export, as its record and every
    other output, follows the umask."""
    umask = os.umask(0o027)
    try:
        out = export_run(tiny_run.run_dir, "safetensors", tmp_path / "model.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert stat.S_IMODE(Path(f"{out}.json").stat().st_mode) == 0o640
