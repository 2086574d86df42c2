"""Decoding image files into fixed-size ``uint8`` tensors (PIL, loaded lazily)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from marginkit.data.errors import DataError
from marginkit.progress import Progress

__all__ = ["IMAGE_EXTENSIONS", "crop_box", "decode_image", "decode_images"]

#: File name endings treated as images in a ``folder`` data set.
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)


def crop_box(
    width: int, height: int, size: tuple[int, int], height_fraction: float = 1.0
) -> tuple[int, int, int, int]:
    """A centred crop with the aspect ratio of ``size`` (height, width).

    The crop is ``height_fraction`` of the image height tall (narrowed if the image is not
    wide enough), so resizing it to ``size`` never distorts the image.

    Returns:
        ``(left, top, right, bottom)`` in pixels.
    """
    out_height, out_width = size
    crop_height = height * height_fraction
    crop_width = crop_height * out_width / out_height
    if crop_width > width:
        crop_width = float(width)
        crop_height = crop_width * out_height / out_width
    left = (width - crop_width) / 2
    top = (height - crop_height) / 2
    return (round(left), round(top), round(left + crop_width), round(top + crop_height))


def decode_image(
    source: Path | bytes, size: tuple[int, int], height_fraction: float, name: str
) -> np.ndarray:
    """One image file (or its bytes) as uint8 (H, W, 3) RGB: centre-cropped to the aspect
    ratio of ``size`` over ``height_fraction`` of its height, resized bilinearly to ``size``.

    Raises:
        DataError: the file is no readable image (one line starting with ``name``).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"{name}: expected a readable image file ({error})") from error
    box = crop_box(rgb.width, rgb.height, size, height_fraction)
    resized = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
    return np.array(resized, dtype=np.uint8)  # (H, W, 3), writable


def decode_images(
    paths: Sequence[Path | bytes],
    size: tuple[int, int],
    height_fraction: float = 1.0,
    *,
    progress: bool = False,
    names: Sequence[str] | None = None,
) -> Tensor:
    """Decode, centre-crop (see :func:`crop_box`) and resize images to RGB ``uint8``.

    Decoding runs on a few threads (PIL releases the GIL while decoding).

    Args:
        paths: image files, or encoded images (the bytes of a JPEG, PNG, ... file).
        size: output ``(height, width)``.
        height_fraction: crop height as a share of the image height.
        progress: show the decoding's progress and ETA on stderr.
        names: what to call each image in an error message (default: its path, or
            ``image i`` for encoded images).

    Returns:
        ``(N, 3, height, width)`` uint8 tensor.

    Raises:
        DataError: an image cannot be decoded; names it.
    """
    output = torch.empty((len(paths), 3, *size), dtype=torch.uint8)
    if not paths:
        return output
    labels = (
        [f"image {i}" if isinstance(p, bytes) else str(p) for i, p in enumerate(paths)]
        if names is None
        else list(names)
    )
    if len(labels) != len(paths):
        raise ValueError(f"names: expected {len(paths)} names, one per image, got {len(labels)}")
    workers = max(1, min(4, os.cpu_count() or 1))
    with (
        ThreadPoolExecutor(max_workers=workers) as pool,
        Progress(len(paths), "decoding images", enabled=progress, unit="img") as bar,
    ):
        decoded = pool.map(
            lambda source, name: decode_image(source, size, height_fraction, name), paths, labels
        )
        for index, array in enumerate(decoded):
            output[index] = torch.from_numpy(array).permute(2, 0, 1)
            bar.update()
    return output
