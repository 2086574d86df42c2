"""``marginkit align``: what it prints, its rerun, and its one-line errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_faces import face_photo

import marginkit.cli as cli


def align(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``marginkit align ARGV`` in this process: ``(status, stdout, stderr)``."""
    try:
        status = cli.main(["align", *argv])
    except SystemExit as exited:
        status = int(exited.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_align_writes_the_crops_and_reruns_without_rewriting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, out = tmp_path / "photos", tmp_path / "aligned"
    lines = []
    for index, name in enumerate(["ann/1.jpg", "ann/2.png", "ben/1.png"]):
        photo, points = face_photo(1 + index / 2, index / 3, (100.0, 90.0), (200, 210))
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo).save(images / name)
        lines.append(f"{name} " + " ".join(f"{value:.3f}" for value in points.ravel()))
    (tmp_path / "landmarks.txt").write_text("\n".join(lines) + "\n")
    arguments = ("--images", str(images), "--landmarks", str(tmp_path / "landmarks.txt"))
    status, output, _ = align(*arguments, "--out", str(out), "--quiet", capsys=capsys)
    assert status == 0
    assert output == f"{out}: 3 faces aligned to 112x112, 0 already there\n"
    crops = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.*"))
    assert crops == ["ann/1.jpg", "ann/2.png", "ben/1.png"]
    before = {crop: (out / crop).read_bytes() for crop in crops}
    (out / "ben" / "1.png").unlink()
    status, output, _ = align(*arguments, "--out", str(out), "--quiet", capsys=capsys)
    assert output == f"{out}: 1 face aligned to 112x112, 2 already there\n"
    assert {crop: (out / crop).read_bytes() for crop in crops} == before
    status, output, _ = align(*arguments, "--out", str(tmp_path / "big"), "--size", "224",
                              "--quiet", capsys=capsys)  # fmt: skip
    assert output.endswith("3 faces aligned to 224x224, 0 already there\n")
    assert np.asarray(Image.open(tmp_path / "big" / "ann" / "2.png")).shape == (224, 224, 3)


def test_align_refuses_a_photo_without_landmarks_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (20, 20)).save(images / name)
    (tmp_path / "landmarks.txt").write_text("a.png 1 2 3 4 5 6 7 8 9 10\n")
    status, output, error = align(
        "--images", str(images), "--landmarks", str(tmp_path / "landmarks.txt"),
        "--out", str(tmp_path / "aligned"), capsys=capsys,
    )  # fmt: skip
    assert status == 2 and output == ""
    assert error == (
        f"marginkit: error: landmarks: {tmp_path / 'landmarks.txt'} has no line for 1 of the "
        f"2 images under {images} (b.png): add their landmarks, or move them out\n"
    )
    assert not (tmp_path / "aligned").exists()


def test_align_is_listed_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "align" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["align", "--help"])
    usage = capsys.readouterr().out
    assert all(flag in usage for flag in ("--images", "--landmarks", "--out", "--size"))
    status, _, error = align("--images", "x", "--landmarks", "y", "--out", "z", "--size", "0",
                             capsys=capsys)  # fmt: skip
    assert status == 2 and "--size: expected an int >= 1" in error
