"""marginkit.pairs.pairset and .evaluate: inputs normalised as in training, flip
test-time augmentation as a sum of two embeddings, figures from the metrics functions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from marginkit.data import ArrayDataset
from marginkit.metrics import verification_report
from marginkit.pairs import (
    PairSet,
    embed_pair_images,
    evaluate_both,
    evaluate_pairs,
)

MEAN = (0.4, 0.5, 0.6)
STD = (0.2, 0.25, 0.3)


def pair_set(pairs: int = 12, seed: int = 0) -> PairSet:
    """``2 pairs`` random 8x8 images, consecutive pairs, alternating flags."""
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 256, (2 * pairs, 3, 8, 8), generator=generator, dtype=torch.uint8)
    same = torch.arange(pairs) % 2 == 0
    return PairSet.consecutive(codes, same, mean=MEAN, std=STD, source="toy")


class Toy(nn.Module):
    """A linear map of the flattened image with a batch norm: mirror-sensitive, and with
    running statistics that training mode would change."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(3 * 8 * 8, 6)
        self.norm = nn.BatchNorm1d(6)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(inputs.flatten(1)))


def test_inputs_are_normalised_as_training_normalises() -> None:
    pairs = pair_set()
    training = ArrayDataset(pairs.images, torch.zeros(pairs.num_images), MEAN, STD)
    expected, _ = training.tensors()
    assert torch.equal(pairs.inputs(0, pairs.num_images), expected)
    assert torch.equal(pairs.inputs(3, 7), expected[3:7])


def test_consecutive_pairs_and_float_inputs() -> None:
    pairs = pair_set(pairs=3)
    assert len(pairs) == 3 and pairs.num_images == 6
    assert pairs.first.tolist() == [0, 2, 4] and pairs.second.tolist() == [1, 3, 5]
    floats = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    given = PairSet.consecutive(floats, [True, False])
    assert torch.equal(given.inputs(0, 4), floats.float())  # used as they are


def test_pair_set_refuses_inconsistent_attributes() -> None:
    codes = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"images: expected \(2P, C, H, W\) = \(6, ...\)"):
        PairSet.consecutive(codes, [True, False, True], mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=r"mean: expected 3 values"):
        PairSet.consecutive(codes, [True, False])
    with pytest.raises(ValueError, match=r"mean/std: only for uint8 images"):
        PairSet.consecutive(codes.float(), [True, False], mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=r"first/second: expected indices below the 4 images"):
        PairSet(codes, torch.tensor([0]), torch.tensor([4]), torch.tensor([True]), None, MEAN, STD)
    with pytest.raises(ValueError, match=r"lengths differ"):
        PairSet(
            codes, torch.tensor([0, 1]), torch.tensor([2]), torch.tensor([True]), None, MEAN, STD
        )
    with pytest.raises(ValueError, match=r"std: expected positive values"):
        PairSet.consecutive(codes, [True, False], mean=MEAN, std=(1.0, 0.0, 1.0))


def test_flip_embedding_is_the_sum_of_the_image_and_mirror_embeddings() -> None:
    pairs, backbone = pair_set(), Toy().eval()
    inputs = pairs.inputs(0, pairs.num_images)  # (I, 3, 8, 8)
    with torch.no_grad():
        by_hand = backbone(inputs) + backbone(inputs.flip(-1))  # mirror: the width axis
        plain_by_hand = backbone(inputs)
    flipped = embed_pair_images(backbone, pairs, flip=True, batch_size=5)
    plain = embed_pair_images(backbone, pairs, flip=False, batch_size=5)
    torch.testing.assert_close(flipped, by_hand, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(plain, plain_by_hand, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(flipped, 2 * plain, atol=1e-3)  # the mirror did matter


def test_evaluate_pairs_gives_the_metrics_functions_figures() -> None:
    pairs, backbone = pair_set(pairs=40), Toy()
    for flip in (True, False):
        embeddings = embed_pair_images(backbone, pairs, flip=flip, batch_size=7)
        expected = verification_report(
            embeddings[pairs.first], embeddings[pairs.second], pairs.same
        )
        report = evaluate_pairs(backbone, pairs, flip=flip, batch_size=7)
        assert report.pop("flip") is flip and report.pop("pairs_source") == "toy"
        assert report == expected
    both = evaluate_both(backbone, pairs, batch_size=7)
    assert both["flip"] == evaluate_pairs(backbone, pairs, flip=True, batch_size=7)
    assert both["no_flip"] == evaluate_pairs(backbone, pairs, flip=False, batch_size=7)
    assert both["flip"]["auc"] != both["no_flip"]["auc"]  # two different measurements


def test_given_folds_are_used_and_their_source_reported() -> None:
    base = pair_set(pairs=40)
    folds = torch.arange(len(base)) // 4  # ten blocks of consecutive pairs
    pairs = PairSet.consecutive(
        base.images, base.same, fold=folds, mean=MEAN, std=STD, fold_source="blocks"
    )
    backbone = Toy()
    report = evaluate_pairs(backbone, pairs)
    embeddings = embed_pair_images(backbone, pairs)
    expected = verification_report(
        embeddings[pairs.first], embeddings[pairs.second], pairs.same, folds
    )
    assert report["ten_fold"]["accuracies"] == pytest.approx(expected["ten_fold"]["accuracies"])
    assert report["ten_fold"]["fold_source"] == "blocks"


def test_the_backbone_keeps_its_mode_and_statistics() -> None:
    backbone = Toy().train()
    before = backbone.norm.running_mean.clone()
    evaluate_pairs(backbone, pair_set())
    assert backbone.training  # a verification during training leaves it training
    assert torch.equal(backbone.norm.running_mean, before)  # embedded in eval mode
    with pytest.raises(TypeError, match=r"pairs: expected a PairSet, got tuple"):
        evaluate_pairs(backbone, (torch.zeros(2, 3, 8, 8), [True]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"batch_size must be >= 1"):
        evaluate_pairs(backbone, pair_set(), batch_size=0)


def test_a_share_of_the_images_embeds_as_those_rows_of_all() -> None:
    """``images=``: a process's share (``--verify`` on several processes), in batches that
    start at the share; the rows of the whole set's embeddings, and an empty share refused."""
    pairs, backbone = pair_set(), Toy()
    whole = embed_pair_images(backbone, pairs, batch_size=5)  # (24, 6)
    shares = [slice(0, 13), slice(13, 24)]
    parts = [embed_pair_images(backbone, pairs, batch_size=5, images=rows) for rows in shares]
    assert [part.shape[0] for part in parts] == [13, 11]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="images"):
        embed_pair_images(backbone, pairs, images=slice(24, 24))
