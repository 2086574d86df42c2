"""scikit-learn's bundled 8x8 handwritten digits (the UCI optical digits test set)."""

from __future__ import annotations

import torch

from marginkit.data.options import derived_generator, stratified_split
from marginkit.data.raw import RawSplits

__all__ = ["DIGITS_TEST_SIZE", "read_digits"]

#: Size of the fixed test split (1,347 training / 450 test samples of 1,797).
DIGITS_TEST_SIZE = 450
_SPLIT_SEED = 0


def read_digits() -> RawSplits:
    """The 1,797 digits (Alpaydin & Kaynak, UCI 1998), values 0..16, split 1,347 / 450.

    The split is stratified and fixed (seed 0, independent of the user's seed) so that test
    accuracies are comparable across runs.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = torch.from_numpy(bunch.images).round().to(torch.uint8).unsqueeze(1)  # (1797, 1, 8, 8)
    labels = torch.from_numpy(bunch.target).long()  # (1797,)
    fraction = DIGITS_TEST_SIZE / labels.numel()
    train, test = stratified_split(labels, fraction, derived_generator(_SPLIT_SEED, "digits"))
    return RawSplits(
        train_data=data[train],
        train_labels=labels[train],
        test_data=data[test],
        test_labels=labels[test],
        class_names=[str(digit) for digit in range(10)],
        value_scale=1.0 / 16.0,
    )
