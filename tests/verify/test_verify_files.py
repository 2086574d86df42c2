"""marginkit.verify.files: .bin written from LFW pairs files and read back (same images,
same flags, same folds), pairs files read as training reads their tree, a missing image named
with its line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import PAIRS_TXT, write_image, write_pairs_tree

from marginkit.data import DataError
from marginkit.data.binfile import read_bin
from marginkit.data.images import decode_images
from marginkit.data.lfw import LFW_CROP_FRACTION
from marginkit.data.pairs import read_pairs
from marginkit.pairs import load_pair_set, pairs_report
from marginkit.verify import write_bin

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
SIZE = (16, 16)


def pair_images(images: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(P, 2, C, H, W): each pair's two images."""
    return torch.stack([images[first], images[second]], dim=1)


def test_bin_round_trip_same_images_and_flags(tmp_path: Path) -> None:
    root = write_pairs_tree(tmp_path)
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
    root = write_pairs_tree(tmp_path)
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
    root = write_pairs_tree(tmp_path)
    (tmp_path / "pairs.txt").write_text(PAIRS_TXT.replace("Cid_C\t2\t1", "Cid_C\t7\t1"))
    expected = r"pairs.txt: names images that do not exist under .*: line 7: Cid_C/Cid_C_0007"
    with pytest.raises(DataError, match=expected):
        load_pair_set(tmp_path / "pairs.txt", SIZE, MEAN, STD)
    with pytest.raises(DataError, match=expected):
        write_bin(tmp_path / "pairs.txt", root, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_verify_keeps_the_names_of_pairs() -> None:
    """User code importing pair sets from ``marginkit.verify`` keeps working."""
    import marginkit.pairs
    import marginkit.verify

    for name in marginkit.pairs.__all__:
        assert getattr(marginkit.verify, name) is getattr(marginkit.pairs, name)
    assert set(marginkit.pairs.__all__) < set(marginkit.verify.__all__)
