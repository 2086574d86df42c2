"""The bundled scikit-learn digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from marginkit.data import load_dataset


def test_digits_split_and_values() -> None:
    bundle = load_dataset("digits")
    assert (len(bundle.train), len(bundle.test)) == (1347, 450)
    assert bundle.input_shape == (1, 8, 8) and bundle.num_classes == 10
    reference = load_digits()
    images = reference.images / 16.0  # (1797, 8, 8) in [0, 1]
    mean, std = bundle.mean[0], bundle.std[0]
    inputs, labels = bundle.train.tensors()
    restored = inputs[:, 0].double() * std + mean  # back to [0, 1]
    # train + test together are exactly the original (image, label) pairs
    test_inputs, test_labels = bundle.test.tensors()
    found = []
    for x, y in [(inputs, labels), (test_inputs, test_labels)]:
        values = np.round((x[:, 0].double() * std + mean).numpy() * 16).astype(np.int64)
        found += [(row.tobytes(), int(t)) for row, t in zip(values, y.tolist(), strict=True)]
    original = [
        (np.round(row * 16).astype(np.int64).tobytes(), int(t))
        for row, t in zip(images, reference.target, strict=True)
    ]
    assert sorted(found) == sorted(original)
    assert float(restored.min()) >= -1e-6 and float(restored.max()) <= 1 + 1e-6
    # train statistics normalise to zero mean and unit variance
    assert float(inputs.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(inputs.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    # the test split is stratified: each class holds floor or ceil of its share of 450
    counts = torch.bincount(test_labels, minlength=10).double()
    share = torch.bincount(torch.from_numpy(reference.target), minlength=10) * 450 / 1797
    assert bool(((counts == share.floor()) | (counts == share.ceil())).all())
    assert int(counts.sum()) == 450


def test_digits_split_does_not_depend_on_seed() -> None:
    first = load_dataset("digits", seed=0).test.tensors()
    second = load_dataset("digits", seed=5).test.tensors()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_dataloader_batches_match_tensors() -> None:
    bundle = load_dataset("digits", label_noise=0.3, seed=2)
    loader = torch.utils.data.DataLoader(bundle.train, batch_size=100, shuffle=False)
    inputs = torch.cat([x for x, _ in loader])
    labels = torch.cat([y for _, y in loader])
    expected_inputs, expected_labels = bundle.train.tensors()
    assert inputs.dtype == torch.float32 and torch.equal(inputs, expected_inputs)
    assert labels.dtype == torch.long and torch.equal(labels, bundle.train_labels)
    assert torch.equal(expected_labels, bundle.train_labels)
    assert not torch.equal(bundle.train_labels, bundle.train_clean_labels)
