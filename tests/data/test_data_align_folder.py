"""marginkit.data.align_folder: a folder of photos aligned by its landmarks file; crops under
the same relative paths, atomically, finished ones never rewritten; bad input refused
before anything is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_faces import face_photo

from marginkit.data.align import align_face
from marginkit.data.align_folder import align_folder
from marginkit.data.images import read_rgb
from marginkit.errors import MarginkitError

#: Photo name -> (scale, angle, shift, shape) of its face.
PHOTOS = {
    "p1/a.jpg": (1.5, 0.3, (90.0, 80.0), (170, 190)),
    "p1/b.png": (0.9, -0.2, (60.0, 70.0), (140, 120)),
    "p2/c.bmp": (2.0, 2.5, (120.0, 110.0), (240, 230)),
}


def write_photos(root: Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The photos of :data:`PHOTOS` under ``root`` and ``root/../landmarks.txt`` (a line
    per name of ``names``, default all); returns name -> landmarks."""
    landmarks = {}
    for name, (scale, angle, shift, shape) in PHOTOS.items():
        photo, points = face_photo(scale, angle, shift, shape)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(root / name, quality=98)
        landmarks[name] = points
    lines = [
        f"{name} " + " ".join(f"{value:.6f}" for value in landmarks[name].ravel())
        for name in (PHOTOS if names is None else names)
    ]
    (root.parent / "landmarks.txt").write_text("\n".join(lines) + "\n")
    return landmarks


def test_every_photo_is_aligned_under_its_relative_path(tmp_path: Path) -> None:
    images, out = tmp_path / "photos", tmp_path / "aligned"
    landmarks = write_photos(images)
    done = align_folder(images, tmp_path / "landmarks.txt", out)
    assert (done.out, done.written, done.skipped, done.size) == (out, 3, 0, 112)
    written = sorted(path.relative_to(out).as_posix() for path in out.rglob("*"))
    assert written == ["p1", "p1/a.jpg", "p1/b.png", "p2", "p2/c.png"]  # no temporary left
    for name, crop_name, image_format in [
        ("p1/a.jpg", "p1/a.jpg", "JPEG"),
        ("p1/b.png", "p1/b.png", "PNG"),
        ("p2/c.bmp", "p2/c.png", "PNG"),
    ]:
        expected = align_face(read_rgb(images / name, name), landmarks[name])
        with Image.open(out / crop_name) as crop:
            assert crop.format == image_format and crop.size == (112, 112)
            pixels = np.asarray(crop.convert("RGB")).astype(int)
        if image_format == "PNG":  # lossless
            np.testing.assert_array_equal(pixels, expected)
        else:  # quality 95, no chroma subsampling
            assert np.abs(pixels - expected).mean() < 1.5


def test_a_rerun_skips_finished_crops_and_rewrites_none(tmp_path: Path) -> None:
    images, out = tmp_path / "photos", tmp_path / "aligned"
    write_photos(images)
    align_folder(images, tmp_path / "landmarks.txt", out, size=128)
    (out / "p2" / "c.png").write_bytes(b"a finished crop")
    kept = (out / "p1" / "a.jpg").stat()
    first = (out / "p1" / "b.png").read_bytes()
    (out / "p1" / "b.png").unlink()
    done = align_folder(images, tmp_path / "landmarks.txt", out, size=128)
    assert (done.written, done.skipped) == (1, 2)
    assert (out / "p2" / "c.png").read_bytes() == b"a finished crop"
    assert (out / "p1" / "a.jpg").stat().st_mtime_ns == kept.st_mtime_ns
    assert (out / "p1" / "b.png").read_bytes() == first


def test_a_photo_is_read_as_its_exif_orientation_shows_it(tmp_path: Path) -> None:
    """Orientation 6 (turn 90 degrees clockwise to show): the landmarks are those of the
    upright photo, as a detector reading it with OpenCV's imread finds them."""
    upright, landmarks = face_photo(1.2, 0.1, (80.0, 70.0), (150, 170))
    images = tmp_path / "photos"
    images.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(upright, k=1)).save(images / "turned.png", exif=exif)
    values = " ".join(str(value) for value in landmarks.ravel())
    (tmp_path / "landmarks.txt").write_text(f"turned.png {values}\n")
    align_folder(images, tmp_path / "landmarks.txt", tmp_path / "aligned")
    crop = np.asarray(Image.open(tmp_path / "aligned" / "turned.png"))
    np.testing.assert_array_equal(crop, align_face(upright, landmarks))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unlisted", "landmarks: {landmarks} has no line for 1 of the 3 images under {images} "
         "(p2/c.bmp): add their landmarks, or move them out"),
        ("no image", "{landmarks} line 4: no image p3/d.jpg under {images}"),
        ("degenerate", "{landmarks} line 4 (p2/e.png): source: expected at least 2 distinct"),
        ("mirror", "{landmarks} line 4 (p2/e.png): the landmarks are a mirror image of the "
         "template's (left and right swapped?)"),
        ("same crop", "{landmarks} line 4: p2/c.png and p2/c.bmp would both be written as "
         "p2/c.png"),
        ("out inside", "out: expected a folder outside --images {images}"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_before_anything_is_written(
    tmp_path: Path, case: str, message: str
) -> None:
    images, out = tmp_path / "photos", tmp_path / "aligned"
    landmarks = tmp_path / "landmarks.txt"
    write_photos(images, names=["p1/a.jpg", "p1/b.png"] if case == "unlisted" else None)
    if case == "out inside":
        out = images / "aligned"
    extra = {"no image": "p3/d.jpg", "degenerate": "p2/e.png", "mirror": "p2/e.png"}
    extra["same crop"] = "p2/c.png"
    mirror = "73.5 51.5 38.3 51.7 56.0 71.7 70.7 92.2 41.5 92.4"  # the template, left for right
    if case in extra:  # a fourth line
        if case != "no image":
            Image.new("RGB", (8, 8)).save(images / extra[case])
        points = {"degenerate": "5 5 " * 5, "mirror": mirror}.get(case, "1 2 3 4 5 6 7 8 9 11")
        with landmarks.open("a") as file:
            file.write(f"{extra[case]} {points}\n")
    with pytest.raises(MarginkitError, match=r"^[^\n]*$") as raised:
        align_folder(images, landmarks, out)
    assert str(raised.value).startswith(message.format(landmarks=landmarks, images=images))
    assert not out.exists()


def test_an_undecodable_photo_stops_the_run_keeping_the_crops_before_it(tmp_path: Path) -> None:
    images, out = tmp_path / "photos", tmp_path / "aligned"
    write_photos(images)
    (images / "p1" / "b.png").write_bytes(b"not an image")
    with pytest.raises(MarginkitError, match=f"^{images / 'p1' / 'b.png'}: expected a readable"):
        align_folder(images, tmp_path / "landmarks.txt", out)
    assert (out / "p1" / "a.jpg").is_file() and not (out / "p1" / "b.png").exists()


def test_no_photo_and_no_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "landmarks.txt").write_text("a.jpg" + " 1" * 10 + "\n")
    (tmp_path / "empty").mkdir()
    for folder, message in [("empty", "holds no image file"), ("missing", "is not a folder")]:
        with pytest.raises(MarginkitError, match=f"^images: {tmp_path / folder} {message}"):
            align_folder(tmp_path / folder, tmp_path / "landmarks.txt", tmp_path / "out")
