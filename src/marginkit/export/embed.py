"""Embedding a folder of images with a run or an exported file.

>>> embed_folder("runs/faces", "photos/", "embeddings.npz")  # doctest: +SKIP
>>> embed_folder("face.onnx", "photos/", "embeddings.npz")  # doctest: +SKIP

Every image under the folder (recursively; hidden files and folders skipped; the extensions
of :data:`~marginkit.data.images.IMAGE_EXTENSIONS`) is decoded exactly as the run's training
images were (:class:`~marginkit.data.preprocessing.Preprocessing`: RGB or grey, centred crop,
bilinear resize, per-channel mean and std) and embedded in batches. The ``.npz`` holds
``embeddings`` (N, D) float32, ``magnitudes`` (N,) float32 their norms ``||x||`` (the face
quality score of a model trained with MagFace: Meng et al., CVPR 2021) and ``paths`` (N,) the
images' paths relative to the folder (``/``-separated, sorted), row for row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from marginkit._validation import check_count
from marginkit.data.preprocessing import Preprocessing
from marginkit.export.formats import Forward, module_forward, read_model
from marginkit.export.sidecar import ExportError, first_line, read_sidecar, sidecar_path

__all__ = [
    "Embedder",
    "embed_batch",
    "embed_folder",
    "embed_images",
    "find_images",
    "load_embedder",
    "source_reads",
]


@dataclass
class Embedder:
    """A model that embeds inputs, whatever it was saved as.

    Attributes:
        source: the run folder or exported file.
        kind: ``"run"``, ``"onnx"``, ``"torchscript"`` or ``"safetensors"``.
        preprocessing: the input it expects and how images become it.
        embedding_dim: D.
        forward: inputs (B, *input_shape) float32 -> embeddings (B, D) float32.
    """

    source: Path
    kind: str
    preprocessing: Preprocessing
    embedding_dim: int
    forward: Forward


def load_embedder(
    source: str | Path,
    *,
    checkpoint: str | None = None,
    data_dir: str | Path | None = None,
    backbone: str | None = None,
) -> Embedder:
    """A run folder's backbone, or an exported file read with its record.

    Args:
        source: a run folder, or a file written by :func:`~marginkit.export.export_run`
            (its ``.json`` record beside it).
        checkpoint: a run's checkpoint by name; None: the newest intact one.
        data_dir: a run's data folder, for a run without ``preprocessing.json``.
        backbone: the ``module:callable`` backbone that the run's ``config.yaml`` or a
            ``safetensors`` file's record names, confirming that it may be imported (None:
            only a registered backbone is built).

    Raises:
        ExportError: ``source`` does not exist, is a run without a checkpoint, or an exported
            file without (or not matching) its record, or that its runtime cannot read.
        BackboneError: an import spec that ``backbone`` does not confirm.
    """
    path = Path(source)
    if path.is_dir():
        from marginkit.export.source import load_run_backbone

        run = load_run_backbone(path, checkpoint=checkpoint, data_dir=data_dir, backbone=backbone)
        forward = module_forward(run.backbone)
        dim = int(run.config.embedding_dim)
        return Embedder(path, "run", run.preprocessing, dim, forward)
    if not path.exists():
        raise ExportError(f"{path}: no such run folder or exported file")
    info = read_sidecar(path)
    preprocessing = Preprocessing.from_dict(info["preprocessing"], f"{path}.json")
    forward = read_model(path, info["format"], info, backbone=backbone)
    return Embedder(path, info["format"], preprocessing, int(info["embedding_dim"]), forward)


def source_reads(source: Path) -> list[Path]:
    """The files :func:`load_embedder` reads besides a run's checkpoint: a run's records,
    or an exported file and its record."""
    from marginkit.evaluation.load import run_records

    return run_records(source) if source.is_dir() else [source, sidecar_path(source)]


def find_images(folder: str | Path) -> list[str]:
    """The image files under ``folder`` (recursively, hidden ones skipped), as sorted
    ``/``-separated paths relative to it (:func:`~marginkit.data.images.find_image_files`).

    Raises:
        ExportError: ``folder`` is not a folder, or holds no image.
    """
    from marginkit.data.errors import DataError
    from marginkit.data.images import find_image_files

    try:
        return find_image_files(folder)
    except DataError as error:
        raise ExportError(str(error)) from None


def embed_images(
    embedder: Embedder,
    root: str | Path,
    paths: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Embed image files in batches.

    Args:
        embedder: the model (:func:`load_embedder`).
        root: the folder ``paths`` are relative to.
        paths: image files relative to ``root``.
        batch_size: images decoded and embedded at a time.
        progress: show a bar (or lines) with the ETA on stderr.

    Returns:
        ``(N, D)`` float32 embeddings, row for row with ``paths``.

    Raises:
        marginkit.data.DataError: a file cannot be read as an image (names it).
        ExportError: an exported model that fails on the inputs its record describes, or
            gives embeddings of another shape than its record's; an embedding that is not
            finite (names the image).
    """
    from marginkit.progress import Progress

    check_count("batch_size", batch_size, 1)
    root = Path(root)
    output = np.empty((len(paths), embedder.embedding_dim), dtype=np.float32)
    with Progress(len(paths), "embedding images", enabled=progress, unit="img") as bar:
        for start in range(0, len(paths), batch_size):
            names = paths[start : start + batch_size]
            inputs = embedder.preprocessing.load_images([root / name for name in names])
            embeddings = embed_batch(embedder, inputs, names)  # (b, D)
            output[start : start + len(names)] = embeddings.to(torch.float32).numpy()
            bar.update(len(names))
    return output


def embed_batch(embedder: Embedder, inputs: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """``embedder``'s embeddings (b, D) of a batch of inputs (b, *input_shape), checked.

    Raises:
        ExportError: an exported model fails on the inputs (a run's backbone failing is a
            bug and keeps its traceback), or the embeddings are not (b, D) or not finite.
    """
    try:
        embeddings = embedder.forward(inputs).detach()
    except Exception as error:  # onnxruntime's errors derive from Exception alone
        if embedder.kind == "run":
            raise
        raise ExportError(
            f"{embedder.source}: the {embedder.kind} model fails on inputs of shape "
            f"{tuple(inputs.shape)}, as its record describes them ({first_line(error)})"
        ) from None
    expected = (len(names), embedder.embedding_dim)
    if tuple(embeddings.shape) != expected:
        raise ExportError(
            f"{embedder.source}: gives embeddings of shape {tuple(embeddings.shape)} for "
            f"{len(names)} images, {expected} expected (embedding size "
            f"{embedder.embedding_dim})"
        )
    finite = torch.isfinite(embeddings).all(dim=1)  # (b,)
    if not bool(finite.all()):
        image = names[int((~finite).nonzero()[0, 0])]
        raise ExportError(f"{embedder.source}: the embedding of image {image} is not finite")
    return embeddings


def embed_folder(
    source: str | Path,
    images: str | Path,
    out_path: str | Path,
    *,
    batch_size: int = 64,
    checkpoint: str | None = None,
    data_dir: str | Path | None = None,
    progress: bool = False,
    force: bool = False,
    backbone: str | None = None,
) -> Path:
    """Embed every image under ``images`` with a run or an exported file into an ``.npz``.

    Args:
        source: a run folder or an exported file (see :func:`load_embedder`).
        images: the folder of images (searched recursively).
        out_path: the ``.npz`` to write, atomically: ``embeddings`` (N, D) float32,
            ``magnitudes`` (N,) float32 (``||x||``, MagFace's quality score) and ``paths``
            (N,) str.
        batch_size: images per batch.
        checkpoint: a run's checkpoint by name (None: the newest).
        data_dir: a run's data folder, for a run without ``preprocessing.json``.
        progress: show the progress with an ETA on stderr.
        force: replace an existing ``out_path`` (never a file read here: the source, its
            record or an image, nor a file inside a run's checkpoints folder).
        backbone: confirms a ``module:callable`` backbone the source records
            (:func:`load_embedder`).

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ExportError: a bad source, or no image in ``images``.
        RunFolderError: ``out_path`` exists (without ``force``), is read here or lies in a
            run's checkpoints folder; checked before any image is read.
        BackboneError: an import spec that ``backbone`` does not confirm.
        marginkit.data.DataError: an image that cannot be read (names it).
        OutputError: ``out_path`` cannot be written.
    """
    from marginkit.runfolder import atomic_write_bytes, check_output_file

    check_count("batch_size", batch_size, 1)
    out = Path(out_path)
    paths = find_images(images)
    reads = [*source_reads(Path(source)), *(Path(images) / name for name in paths)]
    check_output_file(out, force=force, reads=reads)
    embedder = load_embedder(source, checkpoint=checkpoint, data_dir=data_dir, backbone=backbone)
    embeddings = embed_images(embedder, images, paths, batch_size=batch_size, progress=progress)
    buffer = io.BytesIO()
    magnitudes = np.linalg.norm(embeddings.astype(np.float64), axis=1).astype(np.float32)
    np.savez(buffer, embeddings=embeddings, magnitudes=magnitudes, paths=np.array(paths, dtype=str))
    atomic_write_bytes(out, buffer.getvalue())
    return out
