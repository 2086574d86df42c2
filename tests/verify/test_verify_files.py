"""marginkit.verify.files: .bin written from LFW pairs files and read back (same images,
same flags), pairs files read as training reads their tree, bad files named with lines."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import write_image

from marginkit.data import DataError
from marginkit.data.binfile import encode_bin, read_bin
from marginkit.data.images import decode_images
from marginkit.data.lfw import LFW_CROP_FRACTION
from marginkit.data.pairs import read_pairs
from marginkit.verify import load_pair_set, pairs_report, write_bin
from marginkit.verify.files import find_pairs_file

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
SIZE = (16, 16)
PEOPLE = {"Ann_A": 3, "Ben_B": 2, "Cid_C": 2, "Dee_D": 1}
#: View 2: 2 folds of 2 matched and 2 mismatched pairs; Ann_A_0001 is in three pairs.
PAIRS = (
    "2\t2\n"
    "Ann_A\t1\t2\nBen_B\t1\t2\nAnn_A\t1\tBen_B\t1\nCid_C\t1\tDee_D\t1\n"
    "Ann_A\t1\t3\nCid_C\t2\t1\nAnn_A\t2\tDee_D\t1\nBen_B\t2\tCid_C\t2\n"
)


def write_tree(directory: Path, seed: int = 0) -> Path:
    """A miniature LFW tree of textured 40x32 JPEG images (a mirror or crop changes them)
    and its pairs.txt; returns the image folder."""
    rng = np.random.default_rng(seed)
    root = directory / "lfw-deepfunneled"
    for person, count in PEOPLE.items():
        for number in range(1, count + 1):
            pixels = rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)
            write_image(root / person / f"{person}_{number:04d}.jpg", pixels)
    (directory / "pairs.txt").write_text(PAIRS)
    return root


def pair_images(images: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(P, 2, C, H, W): each pair's two images."""
    return torch.stack([images[first], images[second]], dim=1)


def test_bin_round_trip_same_images_and_flags(tmp_path: Path) -> None:
    root = write_tree(tmp_path)
    out = write_bin(tmp_path / "pairs.txt", root, tmp_path / "lfw.bin")
    listed = read_pairs(tmp_path / "pairs.txt")
    contents = read_bin(out)
    assert contents.same == listed.same.tolist() == [True, True, False, False] * 2
    order = [
        image
        for pair in zip(listed.first.tolist(), listed.second.tolist(), strict=True)
        for image in pair
    ]
    files = [(root / listed.names[image]).read_bytes() for image in order]
    assert contents.images == files  # the files' bytes, untouched: a lossless round trip
    from_bin = load_pair_set(out, SIZE, MEAN, STD)
    from_text = load_pair_set(tmp_path / "pairs.txt", SIZE, MEAN, STD, crop=1.0)
    assert torch.equal(
        pair_images(from_bin.images, from_bin.first, from_bin.second),
        pair_images(from_text.images, from_text.first, from_text.second),
    )  # the same decoded pixels, pair by pair
    assert torch.equal(from_bin.same, from_text.same)
    assert from_bin.num_images == from_text.num_images == 8  # each distinct image once
    assert from_text.fold.tolist() == [0] * 4 + [1] * 4  # View 2 folds kept
    assert from_bin.fold is None  # a .bin stores none: the report assigns them


def test_a_bin_of_a_view_one_file_has_its_folds_and_its_accuracy(tmp_path: Path) -> None:
    """pairsDevTest.txt's layout (all matched pairs, then all mismatched ones) written to a
    .bin: grouped by fold, so every block of consecutive pairs holds both kinds (as
    InsightFace's evaluation cuts it), and read back the same 10-fold accuracy as the text
    file, fold by fold (the .bin used to hold one kind per fold: 31.6 % against 56.4 %)."""
    rng = np.random.default_rng(1)
    people = [f"P{k:02d}_X" for k in range(10)]
    for person in people:
        for number in (1, 2, 3):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            write_image(
                tmp_path / "lfw-deepfunneled" / person / f"{person}_{number:04d}.jpg", pixels
            )
    matched = [f"{p}\t{i}\t{i + 1}" for p in people for i in (1, 2)]
    mismatched = [
        f"{p}\t{i}\t{people[(k + i) % 10]}\t{4 - i}" for k, p in enumerate(people) for i in (1, 2)
    ]
    (tmp_path / "pairsDevTest.txt").write_text("\n".join(["20", *matched, *mismatched]) + "\n")
    out = write_bin(
        tmp_path / "pairsDevTest.txt", tmp_path / "lfw-deepfunneled", tmp_path / "d.bin"
    )
    blocks = torch.tensor(read_bin(out).same).view(10, 4)  # InsightFace's ten folds
    assert blocks.sum(dim=1).tolist() == [2] * 10  # 2 matched and 2 mismatched pairs each
    reports = []
    for path in (out, tmp_path / "pairsDevTest.txt"):
        pairs = load_pair_set(path, SIZE, MEAN, STD, crop=1.0)
        pixels = pairs.inputs(0, pairs.num_images).flatten(1)  # the same per image either way
        reports.append(pairs_report(pixels, pairs, flip=False)["ten_fold"])
    from_bin, from_text = reports
    assert from_bin["fold_source"] == from_text["fold_source"]
    assert from_bin["accuracies"] == from_text["accuracies"]
    assert from_bin["mean"] == from_text["mean"]


def test_bin_of_crops_holds_what_training_decodes(tmp_path: Path) -> None:
    root = write_tree(tmp_path)
    out = write_bin(
        tmp_path / "pairs.txt",
        root,
        tmp_path / "crops.bin",
        image_size=SIZE,
        height_fraction=LFW_CROP_FRACTION,
    )
    assert all(image.startswith(b"\x89PNG") for image in read_bin(out).images)
    from_bin = load_pair_set(out, SIZE, MEAN, STD)  # a .bin: no further crop
    from_text = load_pair_set(tmp_path / "pairs.txt", SIZE, MEAN, STD)  # LFW's crop
    assert torch.equal(
        pair_images(from_bin.images, from_bin.first, from_bin.second),
        pair_images(from_text.images, from_text.first, from_text.second),
    )
    listed = read_pairs(tmp_path / "pairs.txt")
    paths = [root / name for name in listed.names]
    assert torch.equal(from_text.images, decode_images(paths, SIZE, LFW_CROP_FRACTION))
    assert not torch.equal(from_text.images, decode_images(paths, SIZE, 1.0))


def test_a_pairs_file_naming_a_missing_image_says_which_line(tmp_path: Path) -> None:
    root = write_tree(tmp_path)
    (tmp_path / "pairs.txt").write_text(PAIRS.replace("Cid_C\t2\t1", "Cid_C\t7\t1"))
    expected = r"pairs.txt: names images that do not exist under .*: line 7: Cid_C/Cid_C_0007"
    with pytest.raises(DataError, match=expected):
        load_pair_set(tmp_path / "pairs.txt", SIZE, MEAN, STD)
    with pytest.raises(DataError, match=expected):
        write_bin(tmp_path / "pairs.txt", root, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_pairs_file_images_are_found_in_the_given_folders(tmp_path: Path) -> None:
    write_tree(tmp_path / "lfw")
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    (elsewhere / "pairs.txt").write_text(PAIRS)
    found = load_pair_set(
        elsewhere / "pairs.txt", SIZE, MEAN, STD, image_folders=[tmp_path / "lfw"]
    )
    beside = load_pair_set(tmp_path / "lfw" / "pairs.txt", SIZE, MEAN, STD)
    assert torch.equal(found.images, beside.images)
    assert find_pairs_file("pairs.txt", [tmp_path, tmp_path / "lfw"]) == tmp_path / "lfw/pairs.txt"
    with pytest.raises(DataError, match=r"nowhere.txt: no such pairs file \(also looked in "):
        find_pairs_file("nowhere.txt", [tmp_path])


def test_a_bin_with_a_broken_image_or_one_kind_of_pair_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path)
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
