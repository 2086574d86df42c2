"""``marginkit pack`` and ``marginkit train --dataset rec``: a folder of identity sub-folders
packed into RecordIO files and trained on, end to end; refusals in one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data_writers import write_image, write_image_folder


def write_digit_folders(directory: Path, per_class: int = 12) -> None:
    """scikit-learn's 8x8 digits as PNG files, one sub-folder per digit."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in range(10):
        for number, index in enumerate(np.flatnonzero(digits.target == label)[:per_class]):
            grey = np.rint(digits.images[index] * 255 / 16).astype(np.uint8)  # (8, 8)
            write_image(directory / f"digit{label}" / f"{number:02d}.png", np.dstack([grey] * 3))


def test_a_packed_folder_trains_as_the_folder_does(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    write_digit_folders(tmp_path / "digits")
    status, output, _ = in_process("pack", str(tmp_path / "digits"), "--out", str(tmp_path / "rec"))
    assert status == 0
    assert output.startswith("packed 120 images of 10 identities (8x8) into ")
    common = ["--backbone", "mlp", "--embedding-dim", "8", "--loss", "arcface", "--epochs", "1"]
    common += ["--threads", "1", "--image-size", "8", "8", "--validation-fraction", "0.2"]
    finals = {}
    for name, data, workers in (("rec", "rec", "2"), ("folder", "digits", "0")):
        out = tmp_path / f"run-{name}"
        status, _, errors = in_process(
            "train", "--dataset", name, "--data-dir", str(tmp_path / data), "--workers", workers,
            "--out", str(out), *common,
        )  # fmt: skip
        assert status == 0, errors
        finals[name] = json.loads((out / "metrics.json").read_text())["final"]
    for key in ("train_loss", "train_accuracy", "validation_accuracy"):
        assert finals["rec"][key] == finals["folder"][key]  # the same images, the same run
    assert finals["rec"]["validation_accuracy"] is not None


def test_train_reports_the_identities_and_images_at_start(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    write_image_folder(tmp_path / "faces", classes=3, per_class=2, size=(8, 8))
    assert in_process("pack", str(tmp_path / "faces"), "--out", str(tmp_path / "rec"))[0] == 0
    status, _, errors = in_process(
        "train", "--dataset", "rec", "--data-dir", str(tmp_path / "rec"), "--epochs", "1",
        "--threads", "1", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert status == 0, errors
    assert (
        f"{tmp_path / 'rec' / 'train.rec'}: 6 images of 3 identities (insightface layout, 8x8)"
        in errors.splitlines()
    )


def test_pack_refuses_to_replace_without_force(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    write_image_folder(tmp_path / "faces", classes=2, per_class=2, size=(8, 8))
    assert in_process("pack", str(tmp_path / "faces"), "--out", str(tmp_path / "rec"))[0] == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / "rec").iterdir()}
    write_image(tmp_path / "faces" / "c2" / "0.png", np.zeros((8, 8, 3), np.uint8))
    status, _, errors = in_process("pack", str(tmp_path / "faces"), "--out", str(tmp_path / "rec"))
    assert status == 2
    existing = tmp_path / "rec" / "train.rec"
    assert errors == f"marginkit: error: --out: {existing} exists; pass --force to replace it\n"
    assert {path.name: path.read_bytes() for path in (tmp_path / "rec").iterdir()} == before
    status, output, _ = in_process(
        "pack", str(tmp_path / "faces"), "--out", str(tmp_path / "rec"), "--force", "--quiet"
    )
    assert status == 0 and "5 images of 3 identities" in output
    assert sorted(path.name for path in (tmp_path / "rec").iterdir()) == [
        "property",
        "train.idx",
        "train.rec",
    ]  # no temporary file left beside them
    assert (tmp_path / "rec" / "property").read_text() == "3,8,8\n"


@pytest.mark.parametrize("damage", ["another size", "not an image"])
def test_pack_refuses_bad_images_in_one_line_and_leaves_nothing(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]], damage: str
) -> None:
    write_image_folder(tmp_path / "faces", classes=2, per_class=2, size=(8, 8))
    bad = tmp_path / "faces" / "c1" / "5.png"
    if damage == "another size":
        write_image(bad, np.zeros((9, 8, 3), np.uint8))
        expected = f"{bad}: expected 8x8 pixels like {tmp_path / 'faces' / 'c0' / '0.png'}"
    else:
        bad.write_bytes(b"no PNG at all")
        expected = f"{bad}: expected a readable image file"
    status, _, errors = in_process(
        "pack", str(tmp_path / "faces"), "--out", str(tmp_path / "rec"), "--quiet"
    )
    assert status == 2 and errors.count("\n") == 1
    assert errors.startswith(f"marginkit: error: {expected}")
    assert not (tmp_path / "rec").exists()


def test_pack_needs_a_folder_of_identity_folders(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    (tmp_path / "empty").mkdir()
    status, _, errors = in_process("pack", str(tmp_path / "empty"), "--out", str(tmp_path / "rec"))
    assert status == 2
    assert errors.startswith(f"marginkit: error: {tmp_path / 'empty'}: expected one sub-folder")
    status, _, errors = in_process("pack", str(tmp_path / "none"), "--out", str(tmp_path / "rec"))
    assert (status, errors) == (
        2,
        f"marginkit: error: FOLDER: {tmp_path / 'none'} is not a folder\n",
    )
    assert not (tmp_path / "rec").exists()
