"""Class sampling (Partial FC): the loss over the sampled classes, positives always in."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from marginkit.losses import build
from marginkit.losses.sampling import ClassSampledHead


def batch(classes=200, size=24, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(size, dim, dtype=torch.float64, generator=generator)
    labels = torch.randint(0, classes, (size,), generator=generator)
    return embeddings, labels


def grads(module, head, embeddings, labels):
    embeddings = embeddings.clone().requires_grad_(True)
    loss = module(embeddings, labels)
    return [loss.detach(), *torch.autograd.grad(loss, [embeddings, head.weight])]


@pytest.mark.parametrize("name", ["arcface", "cosface", "softmax", "virtual", "sphereface"])
def test_fraction_one_is_the_full_head(name):
    head = build(name, num_classes=200, embedding_dim=8).double().eval()
    sampled = ClassSampledHead(head, fraction=1.0).eval()
    embeddings, labels = batch()
    full = grads(head, head, embeddings, labels)
    partial = grads(sampled, head, embeddings, labels)
    assert torch.equal(sampled.sampled_classes, torch.arange(200))
    for got, want in zip(partial, full, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["arcface", "softmax", "camsoftmax"])
@pytest.mark.parametrize("fraction", [0.1, 0.01])
def test_loss_is_the_full_head_restricted_to_the_sampled_classes(name, fraction):
    head = build(name, num_classes=200, embedding_dim=8).double().eval()
    sampled = ClassSampledHead(head, fraction=fraction, seed=3).eval()
    embeddings, labels = batch(seed=1)
    embeddings.requires_grad_(True)
    loss = sampled(embeddings, labels)
    classes = sampled.sampled_classes
    assert bool(torch.isin(labels, classes).all()), "every positive class is sampled"
    assert len(classes) == max(math.ceil(fraction * 200), len(labels.unique()))
    assert bool((classes[1:] > classes[:-1]).all())
    # Independent computation: the reference margin logits, columns restricted, labels remapped.
    logits = head.margin_logits(embeddings, labels)[:, classes]  # (B, K)
    remapped = (labels.unsqueeze(1) == classes.unsqueeze(0)).long().argmax(dim=1)
    expected = F.cross_entropy(logits, remapped)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
    (weight_grad,) = torch.autograd.grad(loss, head.weight)
    (expected_grad,) = torch.autograd.grad(expected, head.weight)
    torch.testing.assert_close(weight_grad, expected_grad, rtol=1e-10, atol=1e-13)
    unsampled = torch.ones(200, dtype=torch.bool)
    unsampled[classes] = False
    assert bool((weight_grad[unsampled] == 0).all()), "unsampled rows get no gradient"


def test_sampling_is_deterministic_by_seed_and_varies_across_steps():
    head = build("cosface", num_classes=1000, embedding_dim=4)
    embeddings, labels = batch(classes=1000, dim=4)
    embeddings = embeddings.float()
    first, second = ClassSampledHead(head, 0.05, seed=9), ClassSampledHead(head, 0.05, seed=9)
    draws_first = [first.sample(labels) for _ in range(3)]
    draws_second = [second.sample(labels) for _ in range(3)]
    for a, b in zip(draws_first, draws_second, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(draws_first[0], draws_first[1])
    other = ClassSampledHead(head, 0.05, seed=10).sample(labels)
    assert not torch.equal(other, draws_first[0])


def test_logits_score_every_class_and_training_advances_the_head():
    head = build("arcface", num_classes=300, embedding_dim=4)
    sampled = ClassSampledHead(head, 0.1)
    embeddings, labels = torch.randn(6, 4), torch.randint(0, 300, (6,))
    assert sampled.logits(embeddings).shape == (6, 300)
    sampled(embeddings, labels).backward()
    assert int(head.step) == 1
    assert head.weight.grad is not None


def test_arguments_are_validated():
    head = build("arcface", num_classes=10, embedding_dim=4)
    with pytest.raises(ValueError, match="fraction"):
        ClassSampledHead(head, 0.0)
    with pytest.raises(ValueError, match="fraction"):
        ClassSampledHead(head, 1.5)
    with pytest.raises(TypeError, match="fraction"):
        ClassSampledHead(head, "0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="head"):
        ClassSampledHead(torch.nn.Linear(4, 10), 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        ClassSampledHead(head, 0.5)(torch.randn(3, 4), torch.tensor([0, 1, 10]))


def test_any_head_takes_a_class_subset_and_checks_it():
    head = build("cosface", num_classes=10, embedding_dim=4).double().eval()
    embeddings, labels = torch.randn(3, 4, dtype=torch.float64), torch.tensor([1, 4, 4])
    classes = torch.tensor([0, 1, 4, 7])
    expected = F.cross_entropy(
        head.margin_logits(embeddings, labels)[:, classes], labels.new_tensor([1, 2, 2])
    )
    torch.testing.assert_close(head(embeddings, labels, classes=classes), expected)
    for bad in (torch.tensor([0, 4, 7]), torch.tensor([4, 1, 7]), torch.tensor([1, 4, 10])):
        with pytest.raises(ValueError, match="classes must be increasing"):
            head(embeddings, labels, classes=bad)
    with pytest.raises(TypeError, match="classes must be an int64"):
        head(embeddings, labels, classes=classes.float())
