"""An image folder with one sub-folder per class (e.g. a face data set of identities).

Classes are the non-hidden sub-folders holding at least one image (extensions in
:data:`marginkit.data.images.IMAGE_EXTENSIONS`), sorted by name; images are converted to RGB,
centre-cropped to the output's aspect ratio and resized. A pairs file in the folder (LFW
format, see :mod:`marginkit.data.pairs`) adds verification pairs. With ``workers > 0`` the
training images are only indexed (:class:`marginkit.data.stream.ImageFiles`), to be decoded
lazily.
"""

from __future__ import annotations

from pathlib import Path

import torch

from marginkit.data.errors import DataError
from marginkit.data.images import IMAGE_EXTENSIONS, decode_images
from marginkit.data.lfw import read_pair_images
from marginkit.data.raw import RawSplits
from marginkit.data.stream import ImageFiles

__all__ = ["image_classes", "read_folder"]


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def image_classes(directory: Path) -> tuple[list[str], list[Path], list[int]]:
    """The classes of a folder of class sub-folders, and their images (the rules of the
    module), sorted by class then file name.

    Returns:
        ``(class names, image paths, labels)``: a label per path, ``0..len(names)-1``.

    Raises:
        DataError: no class sub-folder holds an image.
    """
    classes: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            continue
        images = _images_in(folder)
        if not images:
            continue
        labels += [len(classes)] * len(images)
        classes.append(folder.name)
        paths += images
    if not classes:
        raise DataError(
            f"{directory}: expected one sub-folder per class holding image files "
            f"({', '.join(IMAGE_EXTENSIONS)}), found none"
        )
    return classes, paths, labels


def read_folder(
    directory: Path,
    size: tuple[int, int],
    pairs_file: str,
    *,
    progress: bool = False,
    workers: int = 0,
) -> RawSplits:
    """Decode (``workers == 0``) or index (``workers > 0``) every image under
    ``directory/<class>/``.

    Raises:
        DataError: no class sub-folder holds an image, or an image cannot be decoded.
    """
    classes, paths, labels = image_classes(directory)
    pairs_path = directory / pairs_file
    pairs = (
        read_pair_images(directory, pairs_path, size, 1.0, progress=progress)
        if pairs_path.is_file()
        else None
    )
    return RawSplits(
        train_data=(
            ImageFiles(paths, size, 1.0, workers)
            if workers > 0
            else decode_images(paths, size, progress=progress)
        ),
        train_labels=torch.tensor(labels, dtype=torch.long),
        test_data=None,
        test_labels=None,
        class_names=classes,
        pairs=pairs,
    )
