"""Writing a verification ``.bin`` from an LFW-style pairs file (:func:`write_bin`).

The ``.bin`` is grouped by fold: read back (:func:`marginkit.pairs.load_pair_set`), or cut
into ten blocks by InsightFace's evaluation, it has the folds of the pairs file, and the same
10-fold accuracy. Reading pair sets is :mod:`marginkit.pairs.files`, below training (which
reads them for ``--verify``); writing one lives here, with ``marginkit verify``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from marginkit.data.binfile import encode_bin
from marginkit.data.images import decode_images
from marginkit.data.lfw import pair_image_paths
from marginkit.metrics.verification import pair_folds

__all__ = ["write_bin"]


def _png(codes: torch.Tensor) -> bytes:
    """A ``(3, H, W)`` uint8 image as the bytes of a PNG file."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(codes.permute(1, 2, 0).contiguous().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def write_bin(
    pairs_file: str | os.PathLike,
    image_root: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    image_size: tuple[int, int] | None = None,
    height_fraction: float = 1.0,
    progress: bool = False,
) -> Path:
    """Pack the pairs of an LFW-style pairs file into a verification ``.bin``.

    The ``.bin`` holds the two images of every pair and its flag
    (:mod:`marginkit.data.binfile`), grouped by fold: the pairs of fold 0, then of fold 1,
    ..., each kind in the file's order. The folds are the file's own (View 2) or those
    :func:`~marginkit.metrics.assign_folds` gives it (View 1). Read back, the ``.bin`` gets
    :func:`~marginkit.metrics.assign_folds`'s folds, which are these (for View 2: when its
    ten folds hold equal numbers of each kind, as ``pairs.txt``'s do), so both files give
    the same 10-fold accuracy; and with equal folds (``pairs.txt``, ``pairsDevTest.txt``)
    InsightFace's ten blocks of consecutive pairs are these folds too. An image in several
    pairs is stored once and referred to again (pickle's memo), which InsightFace's readers
    load as usual.

    Args:
        pairs_file: LFW ``pairs.txt`` (View 2) or ``pairsDevTest.txt`` (View 1) format.
        image_root: the folder of ``Person/Person_NNNN.jpg`` (e.g. ``lfw-deepfunneled/``).
        out_path: the ``.bin`` to write (atomically: a reader never sees a part of it).
        image_size: None (default): each image file's bytes as they are, so reading the
            ``.bin`` gives exactly the pixels of the files (a lossless round trip). Else
            ``(height, width)``: each image centre-cropped (``height_fraction`` of its
            height, the aspect ratio of ``image_size``), resized, and stored as PNG,
            lossless, like InsightFace's aligned crops (``(112, 112)`` and
            :data:`~marginkit.data.lfw.LFW_CROP_FRACTION` for funneled LFW).
        height_fraction: the crop with ``image_size``.
        progress: show the decoding's progress on stderr.

    Returns:
        ``out_path``.

    Raises:
        DataError: the pairs file is malformed or names a missing image (with its line).
        OutputError: ``out_path`` cannot be written.
    """
    from marginkit.runfolder import atomic_write_bytes

    pairs_file, out = Path(pairs_file), Path(out_path)
    pair_list, paths = pair_image_paths(Path(image_root), pairs_file)
    if image_size is None:
        encoded = [path.read_bytes() for path in paths]
    else:
        codes = decode_images(paths, image_size, height_fraction, progress=progress)
        encoded = [_png(image) for image in codes]
    fold, _ = pair_folds(pair_list.same, pair_list.fold)
    order = torch.argsort(fold, stable=True).tolist()  # by fold, each kind in file order
    first, second, same = (pair_list.first.tolist(), pair_list.second.tolist(), pair_list.same)
    images = [encoded[image] for pair in order for image in (first[pair], second[pair])]
    atomic_write_bytes(out, encode_bin(images, same[order].tolist()))
    return out
