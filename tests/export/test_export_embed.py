"""marginkit.export.embed_folder: a folder's images embedded as the run saw its training
images, by the run and by every exported file alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import write_image
from tiny_runs import TinyRun

from marginkit.data import DataError
from marginkit.export import ExportError, embed_folder, export_run, find_images

TOLERANCE = 1e-4


def _read(path: Path) -> tuple[np.ndarray, list[str]]:
    with np.load(path) as stored:  # no pickle: plain arrays
        assert set(stored.files) == {"embeddings", "magnitudes", "paths"}
        norms = np.linalg.norm(stored["embeddings"].astype(np.float64), axis=1)
        np.testing.assert_allclose(stored["magnitudes"], norms, rtol=1e-6)
        return stored["embeddings"], stored["paths"].tolist()


def test_a_run_embeds_its_images_as_it_saw_them_in_training(
    tiny_run: TinyRun, tmp_path: Path
) -> None:
    """Same size, crop, channels and normalisation: the embeddings of the image files are
    those of the training inputs the loader made from them."""
    out = embed_folder(tiny_run.run_dir, tiny_run.images, tmp_path / "run.npz", batch_size=5)
    embeddings, paths = _read(out)
    assert paths == tiny_run.names  # relative, sorted: the loader's order
    assert embeddings.dtype == np.float32 and embeddings.shape == (12, 8)
    inputs, _ = tiny_run.bundle.train.tensors()  # (12, 3, 16, 16)
    tiny_run.backbone.eval()
    with torch.no_grad():
        expected = tiny_run.backbone(inputs).numpy()
    np.testing.assert_allclose(embeddings, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("format", ["onnx", "torchscript", "safetensors"])
def test_an_exported_file_embeds_like_its_run(
    tiny_run: TinyRun, tmp_path: Path, format: str, request: pytest.FixtureRequest
) -> None:
    if format == "onnx":
        exported = request.getfixturevalue("onnx_file")
    else:
        exported = export_run(tiny_run.run_dir, format, tmp_path / f"model.{format}")
    by_run, run_paths = _read(embed_folder(tiny_run.run_dir, tiny_run.images, tmp_path / "r.npz"))
    out = embed_folder(exported, tiny_run.images, tmp_path / "file.npz", batch_size=7)
    by_file, file_paths = _read(out)
    assert file_paths == run_paths
    np.testing.assert_allclose(by_file, by_run, rtol=0, atol=TOLERANCE)


def test_images_are_found_recursively_skipping_hidden_and_other_files(tmp_path: Path) -> None:
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    for name in ("b.png", "a/z.JPG", "a/b/c.bmp", ".hidden/x.png", "a/.y.png"):
        write_image(tmp_path / name, pixels)
    (tmp_path / "notes.txt").write_text("not an image")
    assert find_images(tmp_path) == ["a/b/c.bmp", "a/z.JPG", "b.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=r"empty holds no image file"):
        find_images(tmp_path / "empty")
    with pytest.raises(ExportError, match=r"missing is not a folder"):
        find_images(tmp_path / "missing")


def test_an_unreadable_image_is_named(tiny_run: TinyRun, tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_image(images / "good.png", np.zeros((16, 16, 3), dtype=np.uint8))
    (images / "sub").mkdir()
    (images / "sub" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"sub/broken.jpg: expected a readable image file"):
        embed_folder(tiny_run.run_dir, images, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_a_missing_source_is_named(tiny_run: TinyRun, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"nowhere.onnx: no such run folder or exported file"):
        embed_folder(tmp_path / "nowhere.onnx", tiny_run.images, tmp_path / "out.npz")
