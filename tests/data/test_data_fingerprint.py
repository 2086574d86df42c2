"""A data set's fingerprint: the same files wherever they are, other files named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from data_writers import write_idx_dataset, write_image_folder

import marginkit.data.fingerprint as fingerprint
from marginkit.data import load_dataset
from marginkit.data.fingerprint import data_fingerprint, fingerprint_difference


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_same_files_elsewhere_are_the_same_data(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    (tmp_path / "moved" / ".partial-download").write_bytes(b"half")  # hidden: not data
    there = data_fingerprint("mnist", tmp_path / "a")
    now = data_fingerprint("mnist", tmp_path / "moved")
    assert there["files"] == 4 and there["source"] == str((tmp_path / "a").resolve())
    assert fingerprint_difference(there, now) is None


def test_other_files_are_named_with_both_folders(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "a")
    write_idx_dataset(tmp_path / "b")
    flip_byte(tmp_path / "b" / "train-images-idx3-ubyte", 5000)  # same size, one byte
    (tmp_path / "b" / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "b" / "extra.txt").write_text("x")
    there = data_fingerprint("mnist", tmp_path / "a")
    assert fingerprint_difference(there, data_fingerprint("mnist", tmp_path / "b")) == (
        f"data_dir: {(tmp_path / 'a').resolve()} there, {(tmp_path / 'b').resolve()} now; "
        "changed: train-images-idx3-ubyte; only there: t10k-labels-idx1-ubyte; "
        "only now: extra.txt"
    )


def test_a_changed_image_names_its_class_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "faces", classes=3, per_class=4)
    there = data_fingerprint("folder", tmp_path / "faces")
    assert sorted(there["entries"]) == ["c0", "c1", "c2"]
    flip_byte(tmp_path / "faces" / "c1" / "2.png", 100)
    now = data_fingerprint("folder", tmp_path / "faces")
    assert fingerprint_difference(there, now) == "changed: c1"


def test_many_files_hash_a_sample_of_their_contents_and_every_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fingerprint, "SAMPLED_FILES", 3)  # files 0, 4 and 8 of 9
    folder = tmp_path / "many"
    for index in range(9):
        (folder / f"c{index}").mkdir(parents=True)
        (folder / f"c{index}" / "x.bin").write_bytes(bytes([index]) * 100)
    there = data_fingerprint("folder", folder)
    flip_byte(folder / "c4" / "x.bin", 50)  # sampled
    (folder / "c5" / "x.bin").write_bytes(b"\0" * 101)  # not sampled, another size
    flip_byte(folder / "c6" / "x.bin", 50)  # not sampled: the price of a cheap fingerprint
    assert fingerprint_difference(there, data_fingerprint("folder", folder)) == "changed: c4, c5"


def test_a_large_file_is_hashed_in_blocks_spread_over_it(tmp_path: Path) -> None:
    path = tmp_path / "data" / "big.bin"
    path.parent.mkdir()
    path.write_bytes(bytes(range(256)) * 8192)  # 2 MiB: more than 16 blocks of 64 KiB
    there = data_fingerprint("folder", path.parent)
    flip_byte(path, path.stat().st_size - 1)  # inside the last block
    assert fingerprint_difference(there, data_fingerprint("folder", path.parent)) == (
        "changed: big.bin"
    )


def test_load_dataset_gives_the_bundle_its_fingerprint(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "mnist")
    bundle = load_dataset("mnist", data_dir=tmp_path / "mnist", progress=False)
    assert bundle.fingerprint == data_fingerprint("mnist", tmp_path / "mnist")
    digits = load_dataset("digits", progress=False)  # the file scikit-learn ships
    assert digits.fingerprint is not None
    assert list(digits.fingerprint["entries"]) == ["digits.csv.gz"]
