"""The generated glyphs: fixed, balanced, learnable and not trivial."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from marginkit.data import load_dataset
from marginkit.data.glyphs import (
    GLYPHS_CLASSES,
    GLYPHS_SIZE,
    GLYPHS_TEST_SIZE,
    GLYPHS_TRAIN_SIZE,
    read_glyphs,
)


@pytest.fixture(scope="module")
def glyphs():  # type: ignore[no-untyped-def]
    return read_glyphs()


def test_glyphs_are_balanced_uint8_images_of_ten_classes(glyphs) -> None:  # type: ignore[no-untyped-def]
    assert glyphs.train_data.shape == (GLYPHS_TRAIN_SIZE, 1, GLYPHS_SIZE, GLYPHS_SIZE)
    assert glyphs.test_data.shape == (GLYPHS_TEST_SIZE, 1, GLYPHS_SIZE, GLYPHS_SIZE)
    assert glyphs.train_data.dtype == glyphs.test_data.dtype == torch.uint8
    assert len(glyphs.class_names) == GLYPHS_CLASSES
    for labels, size in [(glyphs.train_labels, GLYPHS_TRAIN_SIZE), (glyphs.test_labels, 2000)]:
        counts = torch.bincount(labels, minlength=GLYPHS_CLASSES)
        assert counts.tolist() == [size // GLYPHS_CLASSES] * GLYPHS_CLASSES
    # ink and background both occur, and the noise reaches the whole range
    values = torch.bincount(glyphs.train_data.flatten(), minlength=256)
    assert values[0] > 0 and values[255] > 0 and (values > 0).sum() > 200


def test_glyphs_are_the_same_on_every_call_and_for_every_seed(glyphs) -> None:  # type: ignore[no-untyped-def]
    again = read_glyphs()
    assert torch.equal(again.train_data, glyphs.train_data)
    assert torch.equal(again.test_labels, glyphs.test_labels)
    first = load_dataset("glyphs", seed=0).test.tensors()
    second = load_dataset("glyphs", seed=3).test.tensors()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_glyphs_test_split_holds_no_training_image(glyphs) -> None:  # type: ignore[no-untyped-def]
    def digest(images: torch.Tensor) -> set[str]:
        return {hashlib.sha256(image.numpy().tobytes()).hexdigest() for image in images}

    assert not digest(glyphs.train_data) & digest(glyphs.test_data)


def test_glyphs_are_learnable_but_not_by_the_nearest_class_mean(glyphs) -> None:  # type: ignore[no-untyped-def]
    """A nearest-class-mean classifier on raw pixels sits well above chance (10 %) and well
    below 100 %: the classes are told apart by their glyphs, not read off trivially."""
    train = glyphs.train_data.flatten(1).double()
    test = glyphs.test_data.flatten(1).double()
    means = torch.stack(
        [train[glyphs.train_labels == k].mean(0) for k in range(GLYPHS_CLASSES)]
    )  # (10, 256)
    accuracy = (torch.cdist(test, means).argmin(1) == glyphs.test_labels).double().mean()
    assert 0.5 < float(accuracy) < 0.9


def test_glyphs_load_without_a_folder_and_are_fingerprinted_by_their_program() -> None:
    bundle = load_dataset("glyphs", validation_fraction=0.1)
    assert bundle.input_shape == (1, GLYPHS_SIZE, GLYPHS_SIZE) and bundle.num_classes == 10
    assert len(bundle.test) == GLYPHS_TEST_SIZE
    assert bundle.fingerprint["dataset"] == "glyphs"
    assert bundle.fingerprint["source"].endswith("marginkit/data")
    assert list(bundle.fingerprint["entries"]) == ["glyphs.py"]


@pytest.mark.parametrize("name", ["glyphs", "digits"])
def test_a_folder_given_for_a_data_set_that_reads_none_is_refused(
    name: str, tmp_path: Path
) -> None:
    from marginkit.data.errors import DataError

    with pytest.raises(DataError, match=rf"^data_dir: data set '{name}' reads no folder"):
        load_dataset(name, data_dir=tmp_path)
