"""A folder of photos aligned by their landmarks file (``marginkit align``).

>>> align_folder("photos/", "landmarks.txt", "aligned/")  # doctest: +SKIP
AlignedFolder(out=PosixPath('aligned'), written=120, skipped=0, size=112)

Every image under the folder (recursively, hidden files skipped) must have one line in the
landmarks file (:func:`marginkit.data.align.read_landmarks`) and every line an image:
otherwise nothing is written and one line names what is missing. Each image is read as
displayed (its EXIF orientation applied, as OpenCV's ``imread`` does, so that landmarks
found by a detector on an ``imread`` image fit), aligned (:func:`~marginkit.data.align.
align_face`) and written under the same relative path in the output folder:

- a JPEG (``.jpg``, ``.jpeg``) as JPEG, quality 95, no chroma subsampling (4:4:4);
- any other image losslessly as PNG, its suffix replaced by ``.png`` (``a/b.bmp`` ->
  ``a/b.png``).

Each file is written atomically (a temporary file renamed into place), so a file in the
output folder is a finished crop: a rerun skips it and never rewrites or deletes it, and an
interrupted run goes on where it stopped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from marginkit.data.align import (
    FaceLandmarks,
    estimate_similarity,
    mirrored,
    read_landmarks,
    template,
    warp_affine,
)
from marginkit.data.errors import DataError
from marginkit.data.images import find_image_files, read_rgb
from marginkit.progress import Progress
from marginkit.runfolder import atomic_write_bytes

__all__ = ["AlignedFolder", "align_folder", "aligned_name"]

#: Suffixes written as JPEG; every other image becomes a PNG.
_JPEG_SUFFIXES = (".jpg", ".jpeg")
#: The JPEG quality of the crops of JPEG photos (and no chroma subsampling).
JPEG_QUALITY = 95


@dataclass(frozen=True)
class AlignedFolder:
    """What :func:`align_folder` did.

    Attributes:
        out: the output folder.
        written: crops written by this call.
        skipped: crops already in ``out`` (left as they were).
        size: the crops' width and height in pixels.
    """

    out: Path
    written: int
    skipped: int
    size: int


def aligned_name(name: str) -> str:
    """The crop's path for an image's relative path: the same for a JPEG, the suffix
    replaced by ``.png`` for any other image."""
    path = PurePosixPath(name)
    return name if path.suffix.lower() in _JPEG_SUFFIXES else path.with_suffix(".png").as_posix()


def align_folder(
    images: str | Path,
    landmarks: str | Path,
    out: str | Path,
    *,
    size: int = 112,
    progress: bool = False,
) -> AlignedFolder:
    """Align every image under ``images`` by its line of ``landmarks`` into ``out`` (the
    rules of the module).

    Args:
        images: the folder of photos.
        landmarks: the landmarks file, one line per photo.
        out: the folder of crops (created; outside ``images``).
        size: the crops' width and height (112: the ArcFace crop).
        progress: show the progress and ETA on stderr.

    Returns:
        The counts of crops written and already there.

    Raises:
        DataError: a bad landmarks file or line, an image without a line or a line without
            an image, two images whose crops would share a name, ``out`` inside ``images``,
            landmarks no similarity maps onto the template: all before any file is written;
            then an image that cannot be decoded (the crops before it stay).
        OutputError: a crop cannot be written.
    """
    root, out_folder = Path(images), Path(out)
    faces = read_landmarks(landmarks)
    found = find_image_files(root)
    if out_folder.resolve().is_relative_to(root.resolve()):
        raise DataError(f"out: expected a folder outside --images {root}, got {out_folder}")
    _check_matched(faces, found, root, Path(landmarks))
    target = template(size)
    matrices = []
    for face in faces:  # every line checked before anything is written
        try:
            matrix = estimate_similarity(face.points, target)
            if mirrored(face.points):
                raise DataError(
                    "the landmarks are a mirror image of the template's (left and right "
                    "swapped?): expected left eye, right eye, nose tip, left and right mouth "
                    "corners, left as the photo shows it"
                )
            matrices.append(matrix)
        except DataError as error:
            raise DataError(f"{landmarks} line {face.line} ({face.name}): {error}") from None
    pending = [
        (face, matrix)
        for face, matrix in zip(faces, matrices, strict=True)
        if not (out_folder / aligned_name(face.name)).exists()
    ]
    with Progress(len(pending), "aligning faces", enabled=progress, unit="img") as bar:
        for face, matrix in pending:
            pixels = read_rgb(root / face.name, str(root / face.name), upright=True)
            crop = warp_affine(pixels, matrix, size)
            name = aligned_name(face.name)
            atomic_write_bytes(out_folder / name, _encode(crop, name))
            bar.update()
    return AlignedFolder(out_folder, len(pending), len(faces) - len(pending), size)


def _check_matched(
    faces: list[FaceLandmarks], found: list[str], root: Path, landmarks: Path
) -> None:
    """Raises DataError unless the landmarks' images are exactly those under ``root``, each
    with its own crop name."""
    present = set(found)
    for face in faces:
        if face.name not in present:
            raise DataError(f"{landmarks} line {face.line}: no image {face.name} under {root}")
    named = {face.name for face in faces}
    missing = [name for name in found if name not in named]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DataError(
            f"landmarks: {landmarks} has no line for {len(missing)} of the {len(found)} "
            f"images under {root} ({shown}): add their landmarks, or move them out"
        )
    crops: dict[str, str] = {}
    for face in faces:
        name = aligned_name(face.name)
        if name in crops:
            raise DataError(
                f"{landmarks} line {face.line}: {face.name} and {crops[name]} would both be "
                f"written as {name}"
            )
        crops[name] = face.name


def _encode(crop: np.ndarray, name: str) -> bytes:
    """An (H, W, 3) uint8 crop as the bytes of a JPEG or PNG file (by ``name``'s suffix)."""
    from PIL import Image

    buffer = io.BytesIO()
    picture = Image.fromarray(crop)
    if PurePosixPath(name).suffix.lower() in _JPEG_SUFFIXES:
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        picture.save(buffer, format="PNG")
    return buffer.getvalue()
