"""Face alignment: five landmarks onto the ArcFace 112x112 template by a similarity transform.

>>> crop = align_face(photo, landmarks)  # doctest: +SKIP

A face is aligned by the rotation, uniform scale and translation (a similarity transform:
no shear, no reflection) that best maps its five landmarks onto the template in the least
squares sense (Umeyama, "Least-squares estimation of transformation parameters between two
point patterns", IEEE TPAMI 13(4), 1991), and by resampling the photo through it. This is
InsightFace's ``norm_crop`` (``python-package/insightface/utils/face_align.py``), which
produced the aligned crops of MS1M, Glint360K, WebFace and IJB that the published ArcFace
models were trained and measured on.

Conventions, everywhere in this module:

- Points are ``(x, y)`` in pixels, ``x`` to the right and ``y`` down; **integer coordinates
  are pixel centres**: ``(0, 0)`` is the centre of the top-left pixel, the image spans
  ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` (OpenCV's convention, in which the template and
  InsightFace's landmarks are written).
- The five landmarks, in this order: the eye on the image's left (the person's right
  eye), the eye on the image's right, the nose tip, the mouth corner on the image's left,
  the mouth corner on the image's right.
- Images are ``(H, W, 3)`` uint8 RGB arrays.

The landmarks file (:func:`read_landmarks`) holds one face per line::

    # comment lines and blank lines are skipped
    person_a/photo_1.jpg 38.29 51.70 73.53 51.50 56.03 71.74 41.55 92.37 70.73 92.20
    person_b/photo_7.png 102.4 88.1 160.9 90.3 131.0 125.6 108.8 158.2 153.1 160.0 0.998

the image's path relative to the images folder (``/``-separated, no whitespace in it), then
the ten coordinates ``x1 y1 ... x5 y5`` in the order above, then optionally a detector score:
InsightFace's IJB-B/C ``*_name_5pts_score.txt`` files are in this format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from marginkit._validation import check_count
from marginkit.data.errors import DataError

__all__ = [
    "ARCFACE_TEMPLATE",
    "FaceLandmarks",
    "align_face",
    "estimate_similarity",
    "mirrored",
    "read_landmarks",
    "template",
    "warp_affine",
]

#: The ArcFace template: where the five landmarks (left eye, right eye, nose tip, left and
#: right mouth corners; ``(x, y)`` pixels, integer = pixel centre) of a 112x112 aligned
#: face lie. InsightFace's ``arcface_dst`` (``insightface/utils/face_align.py``), the
#: alignment of MS1M-ArcFace, Glint360K, WebFace and the IJB evaluation.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_TEMPLATE.setflags(write=False)

#: The fields of a landmarks file's line: a path, ten coordinates, optionally a score.
_LINE_FORMAT = "path x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 [score]"


def template(size: int = 112) -> np.ndarray:
    """The template's five points for a ``size`` x ``size`` aligned face.

    InsightFace's rule (``estimate_norm``), followed here: a size that is a multiple of 112
    scales the 112 template by ``size / 112``; otherwise a multiple of 128 takes the 112
    template shifted right by 8 pixels (the face of a 112 crop centred in a 128 one: the
    template of the 128x128 crops of some older models), scaled by ``size / 128``.
    InsightFace refuses other sizes; marginkit scales the 112 template by ``size / 112``.

    Args:
        size: the aligned face's width and height in pixels, >= 1.

    Returns:
        ``(5, 2)`` float64, ``(x, y)`` per landmark (a new array).

    >>> template(128)[0]
    array([46.2946, 51.6963])
    """
    check_count("size", size, 1)
    if size % 112 != 0 and size % 128 == 0:
        ratio = size / 128
        return (ARCFACE_TEMPLATE + np.array([8.0, 0.0])) * ratio
    return ARCFACE_TEMPLATE * (size / 112)


def _points(name: str, value: np.ndarray, count: int | None = None) -> np.ndarray:
    """``value`` as an (N, 2) float64 array of finite points, N >= 2 (or ``count``).

    Raises:
        DataError: another shape, or a NaN or infinite coordinate; naming ``name``.
    """
    try:
        points = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected an (N, 2) array of (x, y) points") from None
    expected = "(N, 2), N >= 2" if count is None else f"({count}, 2)"
    rows = points.shape[0] if points.ndim == 2 and points.shape[1] == 2 else -1
    if (rows < 2) if count is None else (rows != count):
        raise DataError(f"{name}: expected {expected} (x, y) points, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise DataError(f"{name}: expected finite coordinates, got {points.tolist()}")
    return points


def estimate_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform from ``source`` points to ``target`` points.

    Umeyama's closed form (IEEE TPAMI 13(4), 1991): with the means ``mu_s, mu_t``, the
    variance ``sigma2_s = mean ||s - mu_s||^2`` and the covariance ``Sigma = mean (t - mu_t)
    (s - mu_s)^T = U D V^T`` (its singular value decomposition), ``R = U S V^T``, ``c =
    trace(D S) / sigma2_s``, ``t = mu_t - c R mu_s``, where ``S = diag(1, det(U) det(V))``
    keeps ``R`` a rotation (no reflection). It minimises ``sum_i ||target_i - (c R
    source_i + t)||^2`` over rotations ``R``, scales ``c >= 0`` and translations ``t``.

    Args:
        source: ``(N, 2)`` points ``(x, y)``, N >= 2, at least two of them distinct.
        target: ``(N, 2)`` points they should map onto, at least two distinct.

    Returns:
        ``(2, 3)`` float64 ``[c R | t]``: ``target ~ matrix[:, :2] @ source + matrix[:, 2]``.

    Raises:
        DataError: a shape other than ``(N, 2)`` (or ``target``'s N not ``source``'s), a NaN
            or infinite coordinate, fewer than two distinct points on either side, or
            points that no similarity maps onto the target with a scale above 0 (a mirrored
            set); one line naming the argument.
    """
    source = _points("source", source)
    target = _points("target", target, count=len(source))
    for name, points in (("source", source), ("target", target)):
        if len(np.unique(points, axis=0)) < 2:
            raise DataError(
                f"{name}: expected at least 2 distinct points, got {len(points)} equal ones "
                f"({points[0].tolist()})"
            )
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    source_variance = float((source_centred**2).sum()) / len(source)
    covariance = target_centred.T @ source_centred / len(source)
    left, singular, right = np.linalg.svd(covariance)  # covariance = left @ diag @ right
    # S: a reflection in the last axis when U V^T is one (Umeyama's rule, rank-safe)
    signs = np.array([1.0, 1.0 if np.linalg.det(left) * np.linalg.det(right) > 0 else -1.0])
    rotation = left @ np.diag(signs) @ right
    scale = float(singular @ signs) / source_variance
    spread = math.sqrt(float((target_centred**2).sum()) / len(target) / source_variance)
    if not scale > 1e-12 * spread:
        raise DataError(
            "target: no rotation and positive scale maps source onto it (the best scale is "
            f"{scale:.3g}): the points are mirrored or unrelated"
        )
    translation = target_mean - scale * rotation @ source_mean
    matrix = np.hstack([scale * rotation, translation[:, None]])
    if not np.isfinite(matrix).all():
        raise DataError("source, target: the transform overflows (coordinates too large)")
    return matrix


def _check_image(image: np.ndarray) -> None:
    """Raises DataError unless ``image`` is an (H, W, 3) uint8 array with H, W >= 1."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or 0 in image.shape
    ):
        shape, dtype = getattr(image, "shape", None), getattr(image, "dtype", type(image))
        raise DataError(
            f"image: expected an (H, W, 3) uint8 RGB array, got shape {shape} of {dtype}"
        )


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Resample ``image`` through an affine map into a ``size`` x ``size`` image.

    Output pixel ``(x, y)`` (its centre, integer coordinates) takes the image's value at
    ``matrix^-1 (x, y)``, bilinearly interpolated between the four pixel centres around it;
    a neighbour outside the image counts as black, so the output is black where the image
    does not reach and fades over one pixel at its border. This is OpenCV's ``warpAffine``
    with ``INTER_LINEAR`` and a black constant border (InsightFace's ``norm_crop``), to
    within rounding (OpenCV rounds coordinates to 1/32 pixel; here they are exact).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        matrix: ``(2, 3)`` float, image coordinates -> output coordinates (as from
            :func:`estimate_similarity`); invertible.
        size: the output's width and height in pixels.

    Returns:
        ``(size, size, 3)`` uint8, each value rounded to the nearest integer.

    Raises:
        DataError: an image or matrix of another shape or type, a NaN or infinite or
            non-invertible matrix.
    """
    _check_image(image)
    check_count("size", size, 1)
    forward = np.asarray(matrix, dtype=np.float64)
    if forward.shape != (2, 3) or not np.isfinite(forward).all():
        raise DataError(f"matrix: expected a finite (2, 3) affine matrix, got {forward.tolist()}")
    determinant = float(np.linalg.det(forward[:, :2]))
    if not abs(determinant) > 1e-12:
        raise DataError(f"matrix: expected an invertible map, its determinant is {determinant}")
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))
    height, width = image.shape[:2]
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float64)
    # where each output pixel's centre falls in the image; far outside clipped to just
    # outside, where all four neighbours are black (and the int cast cannot overflow)
    x = np.clip(inverse[0, 0] * columns + inverse[0, 1] * rows + inverse[0, 2], -2, width + 1)
    y = np.clip(inverse[1, 0] * columns + inverse[1, 1] * rows + inverse[1, 2], -2, height + 1)
    left, top = np.floor(x), np.floor(y)
    right_weight, bottom_weight = (x - left)[..., None], (y - top)[..., None]
    left_index, top_index = left.astype(np.int64), top.astype(np.int64)

    def pixel(row: np.ndarray, column: np.ndarray) -> np.ndarray:
        inside = (row >= 0) & (row < height) & (column >= 0) & (column < width)
        values = image[np.clip(row, 0, height - 1), np.clip(column, 0, width - 1)]
        return values.astype(np.float64) * inside[..., None]

    upper = (1 - right_weight) * pixel(top_index, left_index) + right_weight * pixel(
        top_index, left_index + 1
    )
    lower = (1 - right_weight) * pixel(top_index + 1, left_index) + right_weight * pixel(
        top_index + 1, left_index + 1
    )
    blended = (1 - bottom_weight) * upper + bottom_weight * lower
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def mirrored(landmarks: np.ndarray) -> bool:
    """Whether five face landmarks are a mirror image of the template's: left and right
    swapped (a detector's or a hand's slip), or the eyes in line with the mouth.

    The triangle of the two eyes and the mouth's centre turns the template's way (clockwise
    on the screen, y down) on every upright, tilted or upside-down face; swapping left and
    right turns it the other way. :func:`estimate_similarity` cannot see this: it fits a
    mirrored face with a small positive scale (the whole photo shrunk into the crop).

    Args:
        landmarks: ``(5, 2)`` ``(x, y)``: left eye, right eye, nose tip, left and right
            mouth corners.
    """
    points = _points("landmarks", landmarks, count=len(ARCFACE_TEMPLATE))

    def turn(face: np.ndarray) -> float:  # the eyes-mouth triangle's signed area (x2)
        left_eye, right_eye, mouth = face[0], face[1], (face[3] + face[4]) / 2
        (ax, ay), (bx, by) = right_eye - left_eye, mouth - left_eye
        return float(ax * by - ay * bx)

    return not turn(points) * turn(ARCFACE_TEMPLATE) > 0


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """A face aligned onto the ArcFace template: :func:`estimate_similarity` from its
    landmarks to :func:`template` ``(size)``, then :func:`warp_affine`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        landmarks: ``(5, 2)`` float ``(x, y)`` pixels (integer = pixel centre): left eye,
            right eye, nose tip, left and right mouth corners (left: the image's left).
        size: the aligned face's width and height (112: the ArcFace crop).

    Returns:
        ``(size, size, 3)`` uint8 RGB, the landmarks moved onto the template (as near as a
        similarity allows), black where the photo does not reach.

    Raises:
        DataError: an image or landmarks of another shape or type, a NaN or infinite
            landmark, landmarks with fewer than two distinct points; one line.
    """
    _check_image(image)
    points = _points("landmarks", landmarks, count=len(ARCFACE_TEMPLATE))
    return warp_affine(image, estimate_similarity(points, template(size)), size)


@dataclass(frozen=True, eq=False)
class FaceLandmarks:
    """One face of a landmarks file.

    Attributes:
        name: the image's path relative to the images folder, ``/``-separated.
        points: ``(5, 2)`` float64 ``(x, y)``: left eye, right eye, nose tip, left and right
            mouth corners.
        score: the detector's score, if the line gives one.
        line: the line's number in the file (from 1), for messages.
    """

    name: str
    points: np.ndarray
    score: float | None
    line: int


def read_landmarks(path: str | Path) -> list[FaceLandmarks]:
    """Read a landmarks file (the format of the module's docstring), in the file's order.

    Args:
        path: the file.

    Returns:
        One :class:`FaceLandmarks` per face line.

    Raises:
        DataError: the file cannot be read or holds no face; or a line has another number
            of fields, a field that is no finite number, a path that is absolute or leaves
            the images folder (``..``), or an image already named on an earlier line; one
            line naming the file and the line's number.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"landmarks: cannot read {file} as a text file ({error})") from None
    faces: list[FaceLandmarks] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        face = _parse_line(fields, f"{file} line {number}", number)
        if face.name in seen:
            raise DataError(
                f"{file} line {number}: {face.name} is already on line {seen[face.name]}"
            )
        seen[face.name] = number
        faces.append(face)
    if not faces:
        raise DataError(f"landmarks: {file} holds no face (expected lines `{_LINE_FORMAT}`)")
    return faces


def _parse_line(fields: list[str], where: str, number: int) -> FaceLandmarks:
    """One line's fields -> its face; DataError starting with ``where`` when bad."""
    if len(fields) not in (11, 12):
        raise DataError(
            f"{where}: expected `{_LINE_FORMAT}` (11 or 12 fields separated by spaces), "
            f"got {len(fields)} fields"
        )
    name = PurePosixPath(fields[0])
    if name.is_absolute() or ".." in name.parts or fields[0].startswith("\\"):
        raise DataError(f"{where}: expected a path relative to the images folder, got {name}")
    numbers = []
    for index, field in enumerate(fields[1:], start=2):
        try:
            value = float(field)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"{where}: field {index} ({field!r}): expected a finite number")
        numbers.append(value)
    points = np.array(numbers[:10], dtype=np.float64).reshape(5, 2)
    score = numbers[10] if len(numbers) == 11 else None
    return FaceLandmarks(name.as_posix(), points, score, number)
