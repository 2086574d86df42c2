"""Synthetic faces for the alignment tests: five coloured blobs at the ArcFace template's
points, seen through a known similarity transform, with the landmarks moved by it.

The photo is drawn analytically (each pixel the blobs' value at the point it shows), so it
is exactly the template face rotated, scaled and translated, with no resampling of its own.
"""

from __future__ import annotations

import math

import numpy as np

from marginkit.data.align import ARCFACE_TEMPLATE

#: Each landmark's blob colour (left eye red, right eye green, nose blue, left mouth corner
#: yellow, right mouth corner cyan): a swap of two points shows.
BLOB_COLOURS = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=np.float64)
#: The blobs' standard deviation in the template's pixels.
BLOB_SIGMA = 2.5
#: The template face's centre: the transforms turn and scale about it.
CENTRE = np.array([56.0, 56.0])


def similarity(scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    """(2, 3): template coordinates -> photo coordinates, a rotation by ``angle`` radians and
    a scale about :data:`CENTRE`, then :data:`CENTRE` moved by ``shift``."""
    rotation = scale * np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    translation = CENTRE + np.asarray(shift) - rotation @ CENTRE
    return np.hstack([rotation, translation[:, None]])


def face_photo(
    scale: float = 1.0,
    angle: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    shape: tuple[int, int] = (112, 112),
) -> tuple[np.ndarray, np.ndarray]:
    """The blob face through :func:`similarity` in a photo of ``shape`` (height, width).

    Returns:
        ``(H, W, 3)`` uint8 photo and its ``(5, 2)`` landmarks ``(x, y)``.
    """
    matrix = similarity(scale, angle, shift)
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    x = inverse[0, 0] * columns + inverse[0, 1] * rows + inverse[0, 2]
    y = inverse[1, 0] * columns + inverse[1, 1] * rows + inverse[1, 2]
    photo = np.zeros((*shape, 3))
    for (centre_x, centre_y), colour in zip(ARCFACE_TEMPLATE, BLOB_COLOURS, strict=True):
        blob = np.exp(-((x - centre_x) ** 2 + (y - centre_y) ** 2) / (2 * BLOB_SIGMA**2))
        photo += 250 * blob[..., None] * colour
    landmarks = ARCFACE_TEMPLATE @ matrix[:, :2].T + matrix[:, 2]
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8), landmarks


def blob_centres(face: np.ndarray, points: np.ndarray, radius: int = 8) -> np.ndarray:
    """The intensity centroid of each blob of ``face`` (H, W, 3) in a square window of
    ``radius`` around each expected point: (5, 2) ``(x, y)``; and each window's colour
    (its channels' sums over their total): (5, 3), returned beside as a second array."""
    centres, colours = [], []
    for x, y in points:
        left, top = round(x) - radius, round(y) - radius
        window = face[top : top + 2 * radius + 1, left : left + 2 * radius + 1].astype(float)
        weight = window.sum(axis=2)
        rows, columns = np.mgrid[0 : window.shape[0], 0 : window.shape[1]]
        total = weight.sum()
        centres.append(
            [left + (weight * columns).sum() / total, top + (weight * rows).sum() / total]
        )
        colours.append(window.sum(axis=(0, 1)) / window.sum())
    return np.array(centres), np.array(colours)
