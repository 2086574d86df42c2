"""Streamed image files (``workers > 0``): the in-memory path's tensors, only an index kept."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from data_writers import write_image_folder, write_lfw

from marginkit.data import DataError, load_dataset
from marginkit.data.arrays import channel_statistics
from marginkit.data.stream import ImageFileDataset, ImageFiles, file_statistics, load_batches


def _load(directory: Path, workers: int, **options: object) -> object:
    return load_dataset(
        "folder",
        data_dir=directory,
        image_size=(16, 12),
        progress=False,
        workers=workers,
        **options,
    )


def test_folder_items_and_statistics_equal_the_in_memory_path(tmp_path: Path) -> None:
    write_image_folder(tmp_path, classes=3, per_class=4, size=(20, 24), extension="jpg")
    options = {"validation_fraction": 0.25, "classes": [2, 0], "seed": 3}
    memory, streamed = _load(tmp_path, 0, **options), _load(tmp_path, 2, **options)
    assert isinstance(streamed.train, ImageFileDataset)
    assert isinstance(streamed.validation, ImageFileDataset)
    assert (streamed.mean, streamed.std) == (memory.mean, memory.std)  # exact, not close
    assert streamed.input_shape == memory.input_shape == (3, 16, 12)
    for split in ("train", "validation"):
        inputs, labels = getattr(memory, split).tensors()
        dataset = getattr(streamed, split)
        assert len(dataset) == labels.numel() > 0
        for index in range(len(dataset)):
            image, label = dataset[index]
            assert torch.equal(image, inputs[index]) and label == int(labels[index])
        assert torch.equal(dataset.tensors()[0], inputs)
    assert torch.equal(streamed.train.clean_labels, memory.train.clean_labels)


def test_lfw_items_equal_the_in_memory_path_with_its_crop(tmp_path: Path) -> None:
    write_lfw(tmp_path, {"Ann_A": 3, "Ben_B": 2, "Dee_D": 2})
    (tmp_path / "peopleDevTrain.txt").write_text("2\nAnn_A\t3\nBen_B\t2\n")
    (tmp_path / "pairsDevTest.txt").write_text("1\nDee_D\t1\t2\nAnn_A\t1\tDee_D\t1\n")
    bundles = [
        load_dataset(
            "lfw", data_dir=tmp_path, min_images_per_person=1, progress=False, workers=workers
        )
        for workers in (0, 1)
    ]
    memory, streamed = bundles
    assert isinstance(streamed.train, ImageFileDataset)
    assert streamed.train.files.height_fraction == pytest.approx(0.6)
    assert (streamed.mean, streamed.std) == (memory.mean, memory.std)
    inputs, labels = memory.train.tensors()
    assert torch.equal(streamed.train.tensors()[0], inputs)
    assert torch.equal(streamed.train[4][0], inputs[4]) and streamed.train[4][1] == labels[4]


def test_streaming_statistics_equal_those_of_the_decoded_tensor(tmp_path: Path) -> None:
    names = write_image_folder(tmp_path, classes=2, per_class=3, size=(9, 7), extension="jpg")
    files = ImageFiles([tmp_path / name for name in names], (9, 7), workers=0)
    assert file_statistics(files) == channel_statistics(files.decode_all())


def test_the_data_set_holds_no_decoded_image(tmp_path: Path) -> None:
    sizes = {}
    for side in (16, 128):
        folder = tmp_path / f"{side:03d}"
        write_image_folder(folder, classes=2, per_class=3, size=(side, side), extension="jpg")
        dataset = load_dataset(
            "folder", data_dir=folder, image_size=(side, side), progress=False, workers=1
        ).train
        # the paths differ only in the folder name, of the same length for both sizes
        sizes[side] = len(pickle.dumps(dataset))
    assert sizes[16] == sizes[128]
    assert sizes[16] < 3 * 16 * 16 * 6  # smaller than the six smallest images decoded


def test_negative_workers_are_refused() -> None:
    with pytest.raises(DataError, match=r"^workers: expected an int >= 0, got -1$"):
        load_dataset("digits", workers=-1, progress=False)


def test_a_file_that_is_not_an_image_is_named_in_one_line(tmp_path: Path) -> None:
    write_image_folder(tmp_path, classes=2, per_class=2, size=(8, 8), extension="jpg")
    bad = tmp_path / "c1" / "broken.jpg"
    bad.write_bytes(b"not a JPEG at all")
    with pytest.raises(DataError) as raised:  # the statistics pass, in a worker
        _load(tmp_path, 2)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{bad}: expected a readable image")


def test_a_file_damaged_after_indexing_is_named_when_its_batch_is_read(tmp_path: Path) -> None:
    names = write_image_folder(tmp_path, classes=2, per_class=2, size=(8, 8), extension="jpg")
    dataset = _load(tmp_path, 2).train
    damaged = tmp_path / names[3]
    damaged.write_bytes(b"\x00" * 10)
    batches = load_batches(dataset, [[0, 1], [2, 3]], workers=2)
    assert next(batches)[1].tolist() == [0, 0]  # the first batch is intact
    with pytest.raises(DataError) as raised:
        next(batches)
    assert "\n" not in str(raised.value) and str(raised.value).startswith(f"{damaged}: ")
