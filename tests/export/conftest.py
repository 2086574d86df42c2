"""Shared fixtures: a tiny trained run on a miniature image folder, and its ONNX export
(made once: the torch.export-based exporter takes seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_writers import write_image_folder
from tiny_runs import TinyRun

from marginkit.train import TrainConfig, fit


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    root = tmp_path_factory.mktemp("export")
    names = write_image_folder(root / "images")
    config = TrainConfig(
        dataset="folder",
        data_dir=str(root / "images"),
        image_size=[16, 16],
        backbone="resnet20",
        embedding_dim=8,
        loss="cosface",
        epochs=1,
        batch_size=6,
        out=str(root / "run"),
    )
    result = fit(config, progress=False)
    return TinyRun(root / "images", names, root / "run", config, result.backbone, result.bundle)


@pytest.fixture(scope="session")
def onnx_file(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run exported to ONNX (``model.onnx`` and ``model.onnx.json``)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from marginkit.export import export_run

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_run(tiny_run.run_dir, "onnx", out)
