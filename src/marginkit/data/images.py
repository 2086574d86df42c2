"""Decoding image files into fixed-size ``uint8`` tensors (PIL, loaded lazily).

Every image becomes 8-bit RGB from its pixels' real range, whatever its mode:

- 16-bit grey (PIL modes ``I;16``, ``I;16B``, ...: 16-bit PNG, TIFF and PGM files) and 32-bit
  integer grey (``I``) holding 16-bit values: ``0..65535`` to ``0..255``, ``round(v / 257)``.
  An ``I`` image with values outside ``0..65535`` is refused (its range is unknown).
- Float grey (``F``: float TIFF files): ``0.0`` is black and ``1.0`` white, ``round(255 v)``;
  values outside ``[0, 1]``, NaN or infinite, are refused, naming the range found.
- Everything else through PIL's own conversion: grey (``L``, ``1``) repeated on the three
  channels, palettes (``P``, ``PA``) looked up, alpha (``LA``, ``RGBA``, ``PA``) dropped
  (the colours stay as stored), CMYK and YCbCr converted; 16-bit RGB PNGs PIL reads as 8-bit.

(PIL's ``convert("RGB")`` alone clips 16-bit and float values at 255: a 16-bit image came
out nearly white, a float one black.)

Images over PIL's limit (:data:`PIL.Image.MAX_IMAGE_PIXELS`, 89 Mpx by default, which the
caller may change) are refused as possible decompression bombs, before their pixels are
decoded: one line naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from marginkit.data.errors import DataError
from marginkit.progress import Progress

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "IMAGE_EXTENSIONS",
    "crop_box",
    "decode_image",
    "decode_images",
    "find_image_files",
    "read_rgb",
]

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


def find_image_files(folder: str | Path, argument: str = "images") -> list[str]:
    """The image files under ``folder`` (recursively; hidden files and folders skipped; the
    extensions of :data:`IMAGE_EXTENSIONS`, in any case), as sorted ``/``-separated paths
    relative to it.

    Args:
        folder: the folder to search.
        argument: what to call it in an error message.

    Raises:
        DataError: ``folder`` is not a folder, or holds no image; naming ``argument``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{argument}: {root} is not a folder")
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(relative.as_posix())
    if not found:
        raise DataError(
            f"{argument}: {root} holds no image file ({', '.join(IMAGE_EXTENSIONS)}), "
            "sub-folders included"
        )
    return sorted(found)


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
        DataError: the file is no readable image, is over PIL's pixel limit (a possible
            decompression bomb), or holds values outside its mode's range (see the
            module); one line starting with ``name``.
    """
    with _bombs_refused():
        return _decode(source, size, height_fraction, name)


@contextlib.contextmanager
def _bombs_refused() -> Iterator[None]:
    """PIL's warning about an image over its pixel limit raised as an error, which
    :func:`_decode` turns into a refusal. Entered by the thread that starts the decoding,
    never by decoding threads themselves: the warning filters are the process's."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def read_rgb(path: Path, name: str, *, upright: bool = False) -> np.ndarray:
    """An image file's pixels, whole, as uint8 (H, W, 3) RGB (the rules of the module).

    Args:
        path: the image file.
        name: what to call it in an error message.
        upright: turn the pixels as the file's EXIF orientation tag says (a phone's photo
            as viewers, and OpenCV's ``imread``, show it); False: as stored.

    Raises:
        DataError: as :func:`decode_image`; one line starting with ``name``.
    """
    with _bombs_refused():
        return np.array(_open_rgb(path, name, upright=upright), dtype=np.uint8)


def _decode(
    source: Path | bytes, size: tuple[int, int], height_fraction: float, name: str
) -> np.ndarray:
    """:func:`decode_image`, inside :func:`_bombs_refused`."""
    from PIL import Image

    rgb = _open_rgb(source, name)
    box = crop_box(rgb.width, rgb.height, size, height_fraction)
    resized = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
    return np.array(resized, dtype=np.uint8)  # (H, W, 3), writable


def _open_rgb(source: Path | bytes, name: str, *, upright: bool = False) -> PILImage:
    """An image file (or its bytes) as an 8-bit RGB PIL image, inside :func:`_bombs_refused`
    (``upright``: see :func:`read_rgb`)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            turned = ImageOps.exif_transpose(image) if upright else image
            return _as_rgb(turned, name)
    except DataError:  # a ValueError, said in full already
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        size_text = re.search(r"\((\d+) pixels\)", str(error))  # PIL's message names it
        pixels = f"{int(size_text.group(1)):,} pixels" if size_text else str(error)
        raise DataError(
            f"{name}: refusing a possible decompression bomb: {pixels}, over the "
            f"{Image.MAX_IMAGE_PIXELS:,} of PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"{name}: expected a readable image file ({error})") from error


def _as_rgb(image: PILImage, name: str) -> PILImage:
    """A PIL image as 8-bit RGB from its pixels' real range (the rules of the module).

    Raises:
        DataError: an ``I`` image outside ``0..65535``, an ``F`` one outside ``[0, 1]``.
    """
    from PIL import Image

    if image.mode == "I" or image.mode.startswith("I;16"):
        values = np.asarray(image).astype(np.int64)
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise DataError(
                f"{name}: expected 16-bit pixel values 0..65535 in a {image.mode} image, "
                f"found {low}..{high}"
            )
        grey = (values + 128) // 257  # round(v / 257): 65535 -> 255
    elif image.mode == "F":
        values = np.asarray(image).astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size < values.size or (
            finite.size and not 0 <= finite.min() <= finite.max() <= 1
        ):
            found = f"{finite.min():g}..{finite.max():g}" if finite.size else "no finite value"
            if finite.size < values.size:
                found += f" and {values.size - finite.size} NaN or infinite"
            raise DataError(
                f"{name}: expected float pixel values in [0, 1] (0 black, 1 white), found {found}"
            )
        grey = np.rint(values * 255)
    else:
        return image.convert("RGB")
    return Image.fromarray(grey.astype(np.uint8)).convert("RGB")


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
        _bombs_refused(),  # here, not in the decoding threads
        ThreadPoolExecutor(max_workers=workers) as pool,
        Progress(len(paths), "decoding images", enabled=progress, unit="img") as bar,
    ):
        decoded = pool.map(
            lambda source, name: _decode(source, size, height_fraction, name), paths, labels
        )
        for index, array in enumerate(decoded):
            output[index] = torch.from_numpy(array).permute(2, 0, 1)
            bar.update()
    return output
