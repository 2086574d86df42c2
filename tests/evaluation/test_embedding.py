"""marginkit.evaluation.embedding: the one rule for the measured split, and embedding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from marginkit.data import load_dataset
from marginkit.evaluation import embed, measured_split


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits", progress=False)


def test_the_requested_split_is_measured(digits) -> None:  # type: ignore[no-untyped-def]
    assert [measured_split(digits, split) for split in ("train", "test")] == ["train", "test"]
    assert measured_split(digits) == "test"


def test_a_data_set_without_test_split_is_measured_on_validation(digits) -> None:  # type: ignore[no-untyped-def]
    without_test = dataclasses.replace(digits, test=None, validation=digits.test)
    assert measured_split(without_test, "test") == "validation"
    assert measured_split(without_test, "train") == "train"


def test_an_unknown_split_is_refused(digits) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="split must be one of train, validation, test"):
        measured_split(digits, "dev")


def test_embed_keeps_the_order_and_checks_the_batch_size(digits) -> None:  # type: ignore[no-untyped-def]
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    embeddings, labels = embed(backbone, digits.test, batch_size=100)
    inputs, expected = digits.test.tensors()
    with torch.no_grad():
        torch.testing.assert_close(embeddings, backbone(inputs))
    assert torch.equal(labels, expected)
    with pytest.raises(TypeError, match="batch_size must be an int; got float"):
        embed(backbone, digits.test, batch_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be >= 1; got 0"):
        embed(backbone, digits.test, batch_size=0)
