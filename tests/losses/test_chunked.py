"""Chunked mode (``head.chunk_size``): same loss and gradients as one block, any block size."""

from __future__ import annotations

import pytest
import torch

from marginkit.losses import build

HEADS = [
    ("softmax", {"bias": True}),
    ("lsoftmax", {"lambda_": 0.0}),
    ("sphereface", {"lambda_": 0.0}),
    ("normface", {"learn_scale": True}),
    ("cosface", {}),
    ("arcface", {}),
    ("virtual", {}),
    ("camsoftmax", {"c": 1.2}),
    ("camsoftmax", {"c": 1.2, "normalize": False}),
    ("subcenter", {}),
    ("subcenter", {"subcenters": 2, "learn_scale": True}),
    ("curricularface", {}),
    ("curricularface", {"learn_scale": True}),
]
CHUNKS = [1, 7, 16, 50, 64, 1000]  # 7 and 16 do not divide C = 50


def loss_and_grads(head, embeddings, labels):
    embeddings = embeddings.clone().requires_grad_(True)
    loss = head(embeddings, labels)
    parameters = [p for p in head.parameters() if p.requires_grad]
    return [loss.detach(), *torch.autograd.grad(loss, [embeddings, *parameters])]


@pytest.mark.parametrize(("name", "kwargs"), HEADS, ids=lambda v: str(v))
@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_chunked_matches_unchunked(name, kwargs, chunk_size):
    generator = torch.Generator().manual_seed(chunk_size)
    head = build(name, num_classes=50, embedding_dim=6, **kwargs).double().eval()
    with torch.no_grad():
        if getattr(head, "bias", None) is not None:
            head.bias.normal_(generator=generator)
        if hasattr(head, "t"):  # CurricularFace: hard negatives modulated
            head.t.fill_(0.3)
    embeddings = torch.randn(12, 6, dtype=torch.float64, generator=generator) * 2.0
    labels = torch.randint(0, 50, (12,), generator=generator)
    labels[:3] = torch.tensor([0, 49, 49])  # first and last class, and a repeated label
    whole = loss_and_grads(head, embeddings, labels)
    head.set_chunk_size(chunk_size)
    assert head.chunk_size == chunk_size
    chunked = loss_and_grads(head, embeddings, labels)
    for got, want in zip(chunked, whole, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)


def test_chunked_float32_and_training_step():
    torch.manual_seed(0)
    head = build("arcface", num_classes=300, embedding_dim=16)
    embeddings, labels = torch.randn(32, 16), torch.randint(0, 300, (32,))
    whole = loss_and_grads(head, embeddings, labels)
    head.chunk_size = 64
    chunked = loss_and_grads(head, embeddings, labels)
    for got, want in zip(chunked, whole, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert int(head.step) == 2  # training mode: both calls advanced the schedules


def test_chunk_size_is_validated():
    head = build("cosface", num_classes=10, embedding_dim=3)
    with pytest.raises(ValueError, match="chunk_size"):
        head.set_chunk_size(0)
    with pytest.raises(TypeError, match="chunk_size"):
        head.set_chunk_size(2.5)  # type: ignore[arg-type]
    assert head.set_chunk_size(None).chunk_size is None
