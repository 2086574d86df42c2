"""augment_batch: random crop with zero padding + horizontal flip, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginkit.data import augment_batch


def _candidates(image: np.ndarray, padding: int) -> list[np.ndarray]:
    """Every crop of the zero-padded image, plain and mirrored (numpy, independent)."""
    channels, height, width = image.shape
    padded = np.zeros((channels, height + 2 * padding, width + 2 * padding), image.dtype)
    padded[:, padding : padding + height, padding : padding + width] = image
    crops = []
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + height, left : left + width]
            crops += [crop, crop[:, :, ::-1]]
    return crops


def test_outputs_are_padded_crops_or_their_mirrors() -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(16, 3, 8, 6, generator=generator)
    outputs = augment_batch(inputs, torch.Generator().manual_seed(1), padding=2)
    assert outputs.shape == inputs.shape and outputs.dtype == inputs.dtype
    used = set()
    for image, output in zip(inputs.numpy(), outputs.numpy(), strict=True):
        matches = [k for k, c in enumerate(_candidates(image, 2)) if np.array_equal(c, output)]
        assert matches, "output is not a crop of the padded image"
        used.add(matches[0])
    assert len(used) > 1  # not the same transform for every image


def test_offsets_and_flips_are_all_used() -> None:
    # one bright pixel in the middle of an otherwise zero 9x9 image shows the transform
    inputs = torch.zeros(4000, 1, 9, 9)
    inputs[:, 0, 4, 2] = 1.0  # left of centre, so a flip moves it
    outputs = augment_batch(inputs, torch.Generator().manual_seed(3), padding=4)
    found = torch.nonzero(outputs[:, 0] == 1.0)  # (N, 3): image, row, column
    rows, cols = found[:, 1], found[:, 2]
    # row = 4 + (4 - top); column = 2 + (4 - left) or mirrored 8 - that
    assert set(rows.tolist()) == set(range(0, 9))  # offsets outside the image drop the pixel
    assert int((cols > 4).sum()) > 0 and int((cols < 4).sum()) > 0
    assert outputs.sum() < 4000  # some crops move the pixel out of view


def test_seeded_and_identity_without_padding() -> None:
    inputs = torch.randn(10, 3, 5, 5)
    first = augment_batch(inputs, torch.Generator().manual_seed(9))
    second = augment_batch(inputs, torch.Generator().manual_seed(9))
    assert torch.equal(first, second)
    assert torch.equal(augment_batch(inputs, padding=0, flip=False), inputs)
    flipped = augment_batch(inputs, torch.Generator().manual_seed(2), padding=0)
    for image, output in zip(inputs, flipped, strict=True):
        assert torch.equal(output, image) or torch.equal(output, image.flip(-1))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"inputs: expected a \(B, C, H, W\) tensor, got \(3, 4\)"):
        augment_batch(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"padding: expected an int >= 0, got -1"):
        augment_batch(torch.zeros(1, 1, 4, 4), padding=-1)
