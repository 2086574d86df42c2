"""ArrayDataset (uint8 storage, normalised on access) and the exact channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginkit.data import ArrayDataset
from marginkit.data.arrays import channel_statistics


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 22])
def test_channel_statistics_match_numpy(chunk: int) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (50, 3, 5, 4), dtype=np.uint8)
    data[:, 2] //= 8  # a channel whose codes stop early, so chunk histograms differ in length
    mean, std = channel_statistics(torch.from_numpy(data), 1 / 255, chunk=chunk)
    values = data.transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64) / 255
    np.testing.assert_allclose(mean, values.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std, values.std(axis=1), rtol=1e-12)


def test_constant_channel_gets_unit_std() -> None:
    mean, std = channel_statistics(torch.full((4, 1, 2, 2), 51, dtype=torch.uint8))
    assert mean == [pytest.approx(0.2)] and std == [1.0]


def test_items_and_tensors_agree() -> None:
    data = torch.randint(0, 256, (6, 2, 3, 3), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    dataset = ArrayDataset(data, labels, [0.5, 0.25], [0.2, 0.4])
    inputs, out_labels = dataset.tensors()
    expected = (data.double() / 255 - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1).double()) / (
        torch.tensor([0.2, 0.4]).view(1, 2, 1, 1).double()
    )
    assert inputs.dtype == torch.float32 and torch.allclose(inputs.double(), expected, atol=1e-5)
    for k in range(6):
        image, label = dataset[k]
        assert torch.equal(image, inputs[k]) and label == int(labels[k])
    assert torch.equal(out_labels, labels) and len(dataset) == 6
    assert dataset.input_shape == (2, 3, 3)


def test_bad_construction() -> None:
    data = torch.zeros(3, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"labels: expected shape \(3,\)"):
        ArrayDataset(data, torch.zeros(2, dtype=torch.long), [0.0], [1.0])
    with pytest.raises(ValueError, match=r"mean/std: expected 1 values"):
        ArrayDataset(data, torch.zeros(3, dtype=torch.long), [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"clean_labels: expected shape \(3,\) like labels"):
        labels = torch.zeros(3, dtype=torch.long)
        ArrayDataset(data, labels, [0.0], [1.0], clean_labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"std: expected positive values"):
        ArrayDataset(data, torch.zeros(3, dtype=torch.long), [0.0], [0.0])
