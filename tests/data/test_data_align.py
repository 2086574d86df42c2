"""marginkit.data.align: the ArcFace template, Umeyama's similarity, the warp (integer =
pixel centre, black outside), align_face, and the landmarks file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from synthetic_faces import BLOB_COLOURS, blob_centres, face_photo, similarity

from marginkit.data.align import (
    ARCFACE_TEMPLATE,
    align_face,
    estimate_similarity,
    mirrored,
    read_landmarks,
    template,
    warp_affine,
)
from marginkit.errors import MarginkitError

#: InsightFace's arcface_dst, as published (insightface/utils/face_align.py).
PUBLISHED = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
]


def naive_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The similarity ``[[a, -b, tx], [b, a, ty]]`` by ordinary linear least squares in
    ``(a, b, tx, ty)``: two equations per point. Every such matrix is a rotation with a scale
    ``sqrt(a^2 + b^2) >= 0``, so its minimiser is Umeyama's."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        values += [u, v]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def test_the_template_is_insightfaces() -> None:
    assert ARCFACE_TEMPLATE.dtype == np.float64 and ARCFACE_TEMPLATE.shape == (5, 2)
    assert ARCFACE_TEMPLATE.tolist() == PUBLISHED
    assert not ARCFACE_TEMPLATE.flags.writeable
    np.testing.assert_array_equal(template(), ARCFACE_TEMPLATE)
    np.testing.assert_allclose(template(224), 2 * ARCFACE_TEMPLATE)
    # InsightFace's estimate_norm: a multiple of 128 is the 112 face shifted 8 px right
    np.testing.assert_allclose(template(128), ARCFACE_TEMPLATE + np.array([8, 0]))
    np.testing.assert_allclose(template(256), 2 * (ARCFACE_TEMPLATE + np.array([8, 0])))
    np.testing.assert_allclose(template(96), ARCFACE_TEMPLATE * 96 / 112)
    template(112)[0, 0] = 0  # a new array each call
    assert ARCFACE_TEMPLATE[0, 0] == PUBLISHED[0][0]


@pytest.mark.parametrize("size", [112, 128, 224])
def test_the_template_points_map_onto_themselves(size: int) -> None:
    points = template(size)
    np.testing.assert_allclose(
        estimate_similarity(points, points), [[1, 0, 0], [0, 1, 0]], atol=1e-12
    )
    crop = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align_face(crop, points, size), crop)


@pytest.mark.parametrize("seed", range(5))
def test_a_known_similarity_is_recovered_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = similarity(rng.uniform(0.2, 5), rng.uniform(-math.pi, math.pi), rng.normal(0, 50, 2))
    source = rng.uniform(-100, 300, (int(rng.integers(2, 9)), 2))
    target = source @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(estimate_similarity(source, target), matrix, rtol=0, atol=1e-9)


@pytest.mark.parametrize("mirrored", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_noisy_points_give_the_naive_least_squares_solution(seed: int, mirrored: bool) -> None:
    """Noisy landmarks (and, mirrored, points that a reflection would fit better: the
    answer stays a rotation, the best one)."""
    rng = np.random.default_rng(seed)
    source = rng.uniform(0, 250, (5, 2))
    matrix = similarity(rng.uniform(0.3, 3), rng.uniform(-3, 3), rng.normal(0, 30, 2))
    target = source @ matrix[:, :2].T + matrix[:, 2] + rng.normal(0, 4, (5, 2))
    if mirrored:
        target[:, 0] = -target[:, 0]
    found = estimate_similarity(source, target)
    np.testing.assert_allclose(found, naive_similarity(source, target), rtol=0, atol=1e-9)
    assert np.linalg.det(found[:, :2]) > 0
    assert found[0, 0] == pytest.approx(found[1, 1]) and found[0, 1] == pytest.approx(-found[1, 0])


SQUARE = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ([[3.0, 4.0]] * 5, PUBLISHED, "source: expected at least 2 distinct points"),
        (PUBLISHED, [[3.0, 4.0]] * 5, "target: expected at least 2 distinct points"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "source: expected (N, 2), N >= 2"),
        ([[1.0, 2.0, 3.0]] * 5, PUBLISHED, "source: expected (N, 2), N >= 2"),
        (PUBLISHED, PUBLISHED[:4], "target: expected (5, 2)"),
        ([[math.nan, 1.0], *PUBLISHED[1:]], PUBLISHED, "source: expected finite"),
        (PUBLISHED, [[1.0, math.inf], *PUBLISHED[1:]], "target: expected finite"),
        ("abc", PUBLISHED, "source: expected an (N, 2) array"),
        # a mirror image of a symmetric set: no rotation with a scale above 0 fits
        (SQUARE, [[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 1.0]], "target: no rotation"),
    ],
)
def test_degenerate_points_are_refused_in_one_line(
    source: object, target: object, message: str
) -> None:
    with pytest.raises(MarginkitError, match=r"^[^\n]*$") as raised:
        estimate_similarity(source, target)  # type: ignore[arg-type]
    assert isinstance(raised.value, ValueError)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("scale", "angle", "shift", "shape"),
    [
        (1.7, math.radians(25), (131.3, 97.7), (380, 420)),
        (0.8, math.radians(-40), (-20.4, 35.1), (150, 130)),
        (2.3, math.radians(170), (150.2, 110.9), (400, 360)),
    ],
)
def test_a_turned_scaled_moved_face_aligns_onto_the_template_within_half_a_pixel(
    scale: float, angle: float, shift: tuple[float, float], shape: tuple[int, int]
) -> None:
    photo, landmarks = face_photo(scale, angle, shift, shape)
    for size in (112, 128):
        face = align_face(photo, landmarks, size)
        assert face.shape == (size, size, 3) and face.dtype == np.uint8
        centres, colours = blob_centres(face, template(size))
        assert np.linalg.norm(centres - template(size), axis=1).max() < 0.5
        np.testing.assert_allclose(colours, BLOB_COLOURS / BLOB_COLOURS.sum(1)[:, None], atol=0.02)


def test_integer_coordinates_are_pixel_centres() -> None:
    """A face twice the template's size: output pixel (x, y) shows the photo's pixel (2x,
    2y) exactly (with pixel corners at integers it would show the point (2x + 0.5, 2y +
    0.5), between pixels); a whole-pixel shift moves every pixel intact."""
    columns = np.broadcast_to(np.arange(224, dtype=np.uint8), (224, 224))
    ramps = np.stack([columns, columns.T, np.zeros_like(columns)], axis=2)
    face = align_face(ramps, 2 * ARCFACE_TEMPLATE)
    np.testing.assert_array_equal(face[:, :, 0], np.broadcast_to(2 * np.arange(112), (112, 112)))
    np.testing.assert_array_equal(face[:, :, 1], face[:, :, 0].T)
    photo = np.random.default_rng(0).integers(0, 256, (130, 140, 3), dtype=np.uint8)
    shifted = align_face(photo, ARCFACE_TEMPLATE + np.array([5, 3]))
    np.testing.assert_array_equal(shifted, photo[3:115, 5:117])


def test_outside_the_photo_is_black_fading_over_one_pixel() -> None:
    white = np.full((112, 112, 3), 255, dtype=np.uint8)
    face = align_face(white, ARCFACE_TEMPLATE + np.array([60, 0]))  # output x shows photo x + 60
    assert (face[:, :52] == 255).all() and (face[:, 52:] == 0).all()
    part = align_face(white, ARCFACE_TEMPLATE + np.array([60.25, 0]))
    assert (part[:, :51] == 255).all() and (part[:, 52:] == 0).all()
    assert (part[:, 51] == 191).all()  # 3/4 of a white pixel, 1/4 black: 191.25
    far = warp_affine(white, [[1e-3, 0, 1e6], [0, 1e-3, -1e6]], 112)
    assert (far == 0).all()


@pytest.mark.parametrize(
    ("image", "landmarks", "message"),
    [
        (np.zeros((112, 112, 3)), PUBLISHED, "image: expected an (H, W, 3) uint8"),
        (np.zeros((112, 112), np.uint8), PUBLISHED, "image: expected an (H, W, 3) uint8"),
        (np.zeros((0, 112, 3), np.uint8), PUBLISHED, "image: expected an (H, W, 3) uint8"),
        (np.zeros((112, 112, 3), np.uint8), PUBLISHED[:4], "landmarks: expected (5, 2)"),
        (np.zeros((9, 9, 3), np.uint8), [[math.nan, 0.0]] * 5, "landmarks: expected finite"),
    ],
)
def test_align_face_refuses_bad_input(image: np.ndarray, landmarks: object, message: str) -> None:
    with pytest.raises(MarginkitError) as raised:
        align_face(image, landmarks)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)


def test_warp_refuses_a_matrix_it_cannot_invert() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    for matrix in ([[1, 2, 0], [2, 4, 0]], [[1, 0, 0]], [[math.nan, 0, 0], [0, 1, 0]]):
        with pytest.raises(MarginkitError, match=r"^matrix: expected"):
            warp_affine(image, matrix, 8)  # type: ignore[arg-type]


LANDMARKS = """\
# name x1 y1 ... x5 y5 [score]

a/one.jpg 38.29 51.70 73.53 51.50 56.03 71.74 41.55 92.37 70.73 92.20
1.jpg 46.060 62.026 87.785 60.323 68.851 77.656 52.162 99.875 86.450 98.648 0.999
   b/two.png\t1 2 3 4 5 6 7 8 9 10
"""


def test_the_landmarks_file_and_insightfaces_ijb_layout_are_read(tmp_path: Path) -> None:
    file = tmp_path / "landmarks.txt"
    file.write_text(LANDMARKS)
    faces = read_landmarks(file)
    assert [face.name for face in faces] == ["a/one.jpg", "1.jpg", "b/two.png"]
    assert [face.line for face in faces] == [3, 4, 5]
    assert [face.score for face in faces] == [None, 0.999, None]
    np.testing.assert_array_equal(faces[2].points, np.arange(1, 11).reshape(5, 2))
    assert faces[1].points.dtype == np.float64 and faces[1].points[4].tolist() == [86.45, 98.648]


NUMBERS = " 1 2 3 4 5 6 7 8 9 10"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.jpg 1 2 3", "line 2: expected `path x1 y1"),
        ("a.jpg" + NUMBERS + " 0.9 7", "line 2: expected `path x1 y1"),
        ("a.jpg 1 2 three 4 5 6 7 8 9 10", "line 2: field 4 ('three'): expected a finite number"),
        ("a.jpg 1 2 3 4 5 6 7 8 9 nan", "line 2: field 11 ('nan'): expected a finite number"),
        ("a.jpg" + NUMBERS + " inf", "line 2: field 12 ('inf'): expected a finite number"),
        ("/etc/a.jpg" + NUMBERS, "line 2: expected a path relative to the images folder"),
        ("x/../../a.jpg" + NUMBERS, "line 2: expected a path relative to the images folder"),
        ("ok.jpg" + NUMBERS, "line 2: ok.jpg is already on line 1"),
    ],
)
def test_a_bad_line_is_refused_naming_the_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    file = tmp_path / "landmarks.txt"
    file.write_text(f"ok.jpg{NUMBERS}\n{line}\n")
    with pytest.raises(MarginkitError, match=r"^[^\n]*$") as raised:
        read_landmarks(file)
    assert str(raised.value).startswith(f"{file} {message}")


def test_an_empty_or_unreadable_landmarks_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(MarginkitError, match=f"^landmarks: {empty} holds no face"):
        read_landmarks(empty)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00a")
    with pytest.raises(MarginkitError, match=f"^landmarks: cannot read {binary}"):
        read_landmarks(binary)
    with pytest.raises(MarginkitError, match=r"^landmarks: cannot read"):
        read_landmarks(tmp_path / "missing.txt")


def test_a_mirrored_face_is_told_from_a_turned_one() -> None:
    """Left and right swapped is a mirror image, whatever the face's tilt (even upside
    down); a turned, scaled, moved face is not; eyes in line with the mouth are refused too."""
    face = ARCFACE_TEMPLATE.copy()
    swapped = face[[1, 0, 2, 4, 3]]
    for angle in (0.0, 0.5, math.pi / 2, math.pi, -2.0):
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        assert not mirrored(1.7 * face @ turn.T + 30.0)
        assert mirrored(0.6 * swapped @ turn.T - 12.0)
    flat = face.copy()
    flat[:, 1] = 50.0  # eyes and mouth on one line
    assert mirrored(flat)
