"""Shared fixtures: the digits bundle (loaded once) and a small fake image bundle."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from marginkit.data import ArrayDataset, DataBundle, load_dataset


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    return load_dataset("digits", progress=False)


@pytest.fixture
def fake_image_bundle() -> DataBundle:
    """Random 1x8x8 uint8 images of 4 classes; asks the trainer to augment."""
    count, classes, augment = 96, 4, True
    generator = torch.Generator().manual_seed(123)
    data = torch.randint(0, 256, (count, 1, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.arange(count) % classes
    train = ArrayDataset(data, labels, mean=[0.5], std=[0.25])
    test = ArrayDataset(data[:32], labels[:32], mean=[0.5], std=[0.25])
    return DataBundle(
        name="fake",
        train=train,
        validation=None,
        test=test,
        num_classes=classes,
        input_shape=(1, 8, 8),
        class_names=[str(c) for c in range(classes)],
        train_labels=labels,
        train_clean_labels=labels,
        test_labels=labels[:32],
        pairs=None,
        augment=augment,
    )


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    """``fit`` applies ``config.threads`` process-wide; put torch's setting back after."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
