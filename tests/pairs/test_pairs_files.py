"""marginkit.pairs.files: pair sets read from .bin and pairs files; a pairs file and its
images found in the given folders; damaged, hostile or one-sided files refused in one line."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from data_writers import PAIRS_TXT, write_pairs_tree

from marginkit.data import DataError
from marginkit.data.binfile import encode_bin
from marginkit.pairs.files import find_pairs_file, load_pair_set

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
SIZE = (16, 16)


def test_pairs_file_images_are_found_in_the_given_folders(tmp_path: Path) -> None:
    write_pairs_tree(tmp_path / "lfw")
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "pairs.txt").write_text(PAIRS_TXT)
    found = load_pair_set(
        elsewhere / "pairs.txt", SIZE, MEAN, STD, image_folders=[tmp_path / "lfw"]
    )
    beside = load_pair_set(tmp_path / "lfw" / "pairs.txt", SIZE, MEAN, STD)
    assert torch.equal(found.images, beside.images)
    assert find_pairs_file("pairs.txt", [tmp_path, tmp_path / "lfw"]) == tmp_path / "lfw/pairs.txt"
    with pytest.raises(DataError, match=r"nowhere.txt: no such pairs file \(also looked in "):
        find_pairs_file("nowhere.txt", [tmp_path])


def test_a_bin_with_a_broken_image_or_one_kind_of_pair_is_refused(tmp_path: Path) -> None:
    write_pairs_tree(tmp_path)
    good = (tmp_path / "lfw-deepfunneled/Ann_A/Ann_A_0001.jpg").read_bytes()
    broken = encode_bin([good, good, good, b"not an image"], [True, False])
    (tmp_path / "broken.bin").write_bytes(broken)
    with pytest.raises(DataError, match=r"broken.bin: image 3: expected a readable image"):
        load_pair_set(tmp_path / "broken.bin", SIZE, MEAN, STD)
    (tmp_path / "same.bin").write_bytes(encode_bin([good] * 4, [True, True]))
    with pytest.raises(DataError, match=r"same.bin: holds only matched pairs"):
        load_pair_set(tmp_path / "same.bin", SIZE, MEAN, STD)
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(([good, good], [print])))
    with pytest.raises(DataError, match=r"evil.bin: not a verification .bin file"):
        load_pair_set(tmp_path / "evil.bin", SIZE, MEAN, STD)
    with pytest.raises(DataError, match=r"crop: expected a share of the image height in \(0, 1\]"):
        load_pair_set(tmp_path / "same.bin", SIZE, MEAN, STD, crop=1.5)
