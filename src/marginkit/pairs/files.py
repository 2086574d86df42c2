"""Pair sets from files: InsightFace ``.bin`` files and LFW-style pairs files.

Reading (:func:`load_pair_set`) decodes every image once, centre-crops it to the aspect
ratio of the network's input and resizes it (bilinear), as training read its images
(:func:`marginkit.data.images.decode_images`):

- a ``.bin`` holds face crops (InsightFace's are aligned 112x112 crops): the crop is the
  whole height (``crop=1.0``); it stores no folds, so the report assigns ten stratified ones
  (:func:`~marginkit.metrics.assign_folds`: fold k holds the k-th run of consecutive matched
  pairs and of mismatched pairs), which for ``lfw.bin``, ``cfp_fp.bin`` and ``agedb_30.bin``
  are the official folds (InsightFace's ten blocks of consecutive pairs);
- a pairs file (LFW's ``pairs.txt``, ``pairsDevTest.txt``: :mod:`marginkit.data.pairs`)
  names ``Person/Person_NNNN.jpg`` images, read as the data set that reads such a tree reads
  them: under an LFW image folder (``lfw-deepfunneled/`` ...) with LFW's centre crop
  (:data:`~marginkit.data.lfw.LFW_CROP_FRACTION`), else from the folder itself uncropped.
  View 2 files keep their ten folds; View 1 files get ten assigned ones, as a ``.bin``.

Writing a ``.bin`` from a pairs file is :func:`marginkit.verify.write_bin` (a tool of
``marginkit verify``'s layer: it writes a file atomically, which training never needs).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from marginkit.data.binfile import read_bin
from marginkit.data.errors import DataError
from marginkit.data.images import decode_images
from marginkit.data.lfw import (
    LFW_CROP_FRACTION,
    LFW_IMAGE_FOLDERS,
    read_pair_images,
    resolve_image,
)
from marginkit.data.pairs import read_pairs
from marginkit.pairs.pairset import PairSet

__all__ = [
    "check_crop",
    "find_pairs_file",
    "image_folder",
    "is_bin",
    "load_pair_set",
]


def check_crop(crop: float | None) -> float | None:
    """``crop`` if None or a share of the image height in (0, 1]; else :class:`DataError`."""
    if crop is not None and (
        isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0.0 < crop <= 1.0
    ):
        raise DataError(f"crop: expected a share of the image height in (0, 1], got {crop!r}")
    return crop


def is_bin(path: Path) -> bool:
    """Whether ``path`` is read as a ``.bin`` (by its extension) rather than a pairs file."""
    return path.suffix.lower() == ".bin"


def image_folder(folder: Path) -> tuple[Path, float]:
    """Where a pairs file's images are under ``folder``, and the crop they are read with:
    the LFW image folder in it with LFW's crop, else ``folder`` itself, uncropped."""
    for name in LFW_IMAGE_FOLDERS:
        if (folder / name).is_dir():
            return folder / name, LFW_CROP_FRACTION
    return folder, 1.0


def find_pairs_file(file: str | os.PathLike[str], folders: Sequence[Path] = ()) -> Path:
    """``file`` itself, or for a relative name missing here, the first of ``folders`` that
    holds it.

    Raises:
        DataError: found nowhere; names the file and the folders looked in.
    """
    path = Path(file).expanduser()
    if path.is_file():
        return path
    if not path.is_absolute():
        for folder in folders:
            if (folder / path).is_file():
                return folder / path
    looked = "" if path.is_absolute() or not folders else f" (also looked in {_listed(folders)})"
    raise DataError(f"{file}: no such pairs file{looked}")


def _listed(folders: Sequence[Path]) -> str:
    return ", ".join(str(folder) for folder in folders)


def _image_root(
    pairs_path: Path, names: Sequence[str], folders: Sequence[Path]
) -> tuple[Path, float]:
    """The first of the pairs file's folder and ``folders`` that holds the first image the
    file names (the file's own folder when none does: the error then lists what is
    missing, with lines)."""
    for folder in (pairs_path.parent, *folders):
        root, crop = image_folder(folder)
        if names and resolve_image(root, names[0]) is not None:
            return root, crop
    return image_folder(pairs_path.parent)


def _check_both_kinds(path: Path, same: torch.Tensor) -> None:
    positives = int(same.sum())
    if positives == 0 or positives == same.numel():
        kind = "matched" if positives else "mismatched"
        raise DataError(f"{path}: holds only {kind} pairs; verification needs both kinds")


def _bin_pair_set(
    path: Path,
    size: tuple[int, int],
    crop: float,
    normalisation: tuple[tuple[float, ...], tuple[float, ...]],
    progress: bool,
) -> PairSet:
    """The pairs of a ``.bin``, each distinct image decoded once."""
    contents = read_bin(path)
    same = torch.tensor(contents.same, dtype=torch.bool)
    _check_both_kinds(path, same)  # before the slow part
    index: dict[bytes, int] = {}
    positions = [index.setdefault(image, len(index)) for image in contents.images]
    distinct = list(index)
    first_use = {position: number for number, position in reversed(list(enumerate(positions)))}
    codes = decode_images(
        distinct,
        size,
        crop,
        progress=progress,
        names=[f"{path}: image {first_use[k]}" for k in range(len(distinct))],
    )
    order = torch.tensor(positions, dtype=torch.long)
    return PairSet(
        images=codes,
        first=order[0::2],
        second=order[1::2],
        same=same,
        fold=None,  # none stored: the report assigns them (stratified, in order)
        mean=normalisation[0],
        std=normalisation[1],
        source=str(path),
        crop=crop,
    )


def load_pair_set(
    path: str | Path,
    image_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    crop: float | None = None,
    image_folders: Sequence[Path] = (),
    progress: bool = False,
) -> PairSet:
    """Read a ``.bin`` or a pairs file into a :class:`PairSet` for a network's input.

    Args:
        path: a ``.bin`` file, or a pairs file (any other extension).
        image_size: the network's input ``(height, width)``.
        mean: per-channel mean of the network's inputs scaled to [0, 1] (the run's).
        std: per-channel standard deviation (the run's).
        crop: height of the centre crop as a share of each image's height; None: 1.0 for
            a ``.bin``, for a pairs file that of its image folder (see the module).
        image_folders: pairs files: other folders that may hold the images (an LFW image
            folder inside each is used), tried after the file's own folder.
        progress: show the decoding's progress on stderr.

    Raises:
        DataError: the file is missing, damaged or hostile (a ``.bin``), malformed or names
            missing images (a pairs file: the line), or holds one kind of pair only.
    """
    path = Path(path)
    normalisation = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
    check_crop(crop)
    if is_bin(path):
        crop = 1.0 if crop is None else crop
        return _bin_pair_set(path, image_size, crop, normalisation, progress)
    listed = read_pairs(path)
    _check_both_kinds(path, listed.same)  # before the slow part
    root, default_crop = _image_root(path, listed.names, image_folders)
    crop = default_crop if crop is None else crop
    raw = read_pair_images(root, path, image_size, crop, progress=progress)
    return PairSet(
        images=raw.data,
        first=raw.first,
        second=raw.second,
        same=raw.same,
        fold=raw.fold,
        mean=normalisation[0],
        std=normalisation[1],
        source=str(path),
        crop=crop,
    )
