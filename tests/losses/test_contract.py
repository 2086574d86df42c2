"""The contract every registered head keeps, over every name in ``available()`` and alias.

Build, forward, backward, the shapes of ``logits`` and ``margin_logits``, the ``state_dict``
round trip (weights and schedule state), train vs eval mode, and the README's plain loop.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from marginkit.losses import MarginHead, available, build, resolve
from marginkit.losses.registry import ALIASES
from marginkit.schedules import RunLengthWarning

from .runs import RUN_STEPS, training_loss

CLASSES, DIM, BATCH = 5, 3, 8
NAMES = [*available(), *ALIASES]


def make(name: str) -> MarginHead:
    """The registry's default head, told the run's length (run-relative defaults need it)."""
    return build(name, num_classes=CLASSES, embedding_dim=DIM).set_total_steps(RUN_STEPS)


def tight_batch(head: MarginHead, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Embeddings close to their class weights (small target angles), so that adaptive
    schedules move, and labels covering every class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(BATCH) % CLASSES
    noise = 0.05 * torch.randn(BATCH, DIM, generator=generator)
    weight = head.class_weight()
    embeddings = 3.0 * weight[labels] / weight[labels].norm(dim=1, keepdim=True) + noise
    return embeddings, labels


def test_registry_lists_every_method() -> None:
    assert available() == [
        "softmax",
        "lsoftmax",
        "sphereface",
        "normface",
        "cosface",
        "arcface",
        "combined",
        "virtual",
        "camsoftmax",
        "adacos",
        "curricularface",
        "subcenter",
        "magface",
        "adaface",
    ]
    assert build("amsoftmax", CLASSES, DIM).__class__ is build("cosface", CLASSES, DIM).__class__


@pytest.mark.parametrize("name", NAMES)
def test_build_forward_backward_and_shapes(name: str) -> None:
    head = make(name)
    assert isinstance(head, MarginHead)
    rows_per_class = getattr(head, "subcenters", 1)  # sub-centre ArcFace: K rows per class
    assert head.weight.shape == (CLASSES * rows_per_class, DIM)  # nn.Linear's layout
    assert head.class_weight().shape == (CLASSES, DIM)
    assert head.geometry in {"normalized", "weight_normalized", "unnormalized"}
    assert all(isinstance(value, float) for value in head.hyperparameters().values())
    assert name.lower() in repr(head).lower() or type(head).__name__ in repr(head)
    embeddings, labels = tight_batch(head)
    embeddings.requires_grad_(True)
    loss = head(embeddings, labels)
    assert loss.shape == () and loss.dtype == torch.float32 and loss.requires_grad
    assert torch.isfinite(loss)
    loss.backward()
    assert embeddings.grad is not None and embeddings.grad.shape == (BATCH, DIM)
    assert head.weight.grad is not None and head.weight.grad.shape == head.weight.shape
    assert float(head.weight.grad.abs().sum()) > 0.0
    scores = head.logits(embeddings)
    assert scores.shape == (BATCH, CLASSES)
    margin = head.margin_logits(embeddings, labels)
    assert margin.shape == (BATCH, CLASSES + 1 if head.virtual_class else CLASSES)
    assert head.virtual_class == (name == "virtual")


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_cross_entropy_of_margin_logits(name: str) -> None:
    """``forward`` is the mean cross-entropy of exactly what ``margin_logits`` returns (plus
    MagFace's penalty), in training mode (batch statistics updated, then used) and eval."""
    head = make(name).double()
    embeddings, labels = tight_batch(head, seed=1)
    embeddings = embeddings.double()
    head.eval()
    expected = training_loss(head, head.margin_logits(embeddings, labels), embeddings, labels)
    torch.testing.assert_close(head(embeddings, labels), expected, rtol=1e-12, atol=1e-12)
    head.train()
    expected = training_loss(head, head.margin_logits(embeddings, labels), embeddings, labels)
    torch.testing.assert_close(head(embeddings, labels), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_backward_twice_with_retained_graph(name: str) -> None:
    """``loss.backward(retain_graph=True)`` then ``loss.backward()`` accumulates twice the
    gradient, as for any autograd graph (needed by gradcheck and multi-loss training)."""
    head = make(name).double()
    embeddings, labels = tight_batch(head, seed=2)
    embeddings = embeddings.double().requires_grad_(True)
    loss = head(embeddings, labels)
    loss.backward(retain_graph=True)
    assert embeddings.grad is not None and head.weight.grad is not None
    once = (embeddings.grad.clone(), head.weight.grad.clone())
    loss.backward()
    torch.testing.assert_close(embeddings.grad, 2.0 * once[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(head.weight.grad, 2.0 * once[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name: str) -> None:
    head = make(name)
    embeddings, labels = tight_batch(head, seed=3)
    for _ in range(3):
        head(embeddings, labels)
    assert int(head.step) == 3
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    fresh = make(name)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert int(fresh.step) == 3
    assert fresh.hyperparameters() == head.hyperparameters()
    assert torch.equal(fresh.weight, head.weight)
    torch.testing.assert_close(
        fresh.margin_logits(embeddings, labels), head.margin_logits(embeddings, labels)
    )
    # the schedules continue identically from the restored state
    head(embeddings, labels)
    fresh(embeddings, labels)
    assert int(fresh.step) == int(head.step) == 4
    assert fresh.hyperparameters() == head.hyperparameters()


@pytest.mark.parametrize("name", ["lsoftmax", "sphereface", "camsoftmax"])
def test_state_dict_restores_moved_schedules(name: str) -> None:
    """The annealed defaults really move, and a fresh head gets the moved values."""
    head = make(name)
    start = head.hyperparameters()
    embeddings, labels = tight_batch(head, seed=4)
    for _ in range(5):
        head(embeddings, labels)
    moved = head.hyperparameters()
    key = "c" if name == "camsoftmax" else "lambda_"
    assert moved[key] < start[key]
    fresh = make(name)
    assert fresh.hyperparameters() == start
    fresh.load_state_dict(head.state_dict())
    assert fresh.hyperparameters() == moved
    if name == "camsoftmax":
        running = fresh.state_dict()["schedules.c.running_quantile"]
        assert not math.isnan(float(running))
        assert float(running) == float(head.state_dict()["schedules.c.running_quantile"])


@pytest.mark.parametrize("name", NAMES)
def test_train_and_eval_mode(name: str) -> None:
    head = make(name)
    embeddings, labels = tight_batch(head, seed=5)
    head(embeddings, labels)
    assert int(head.step) == 1
    values = head.hyperparameters()
    head.eval()
    for _ in range(3):
        head(embeddings, labels)
        head.logits(embeddings)
        head.margin_logits(embeddings, labels)
    assert int(head.step) == 1  # eval never advances
    assert head.hyperparameters() == values
    head.train()
    head.logits(embeddings)
    head.margin_logits(embeddings, labels)
    assert int(head.step) == 1  # scoring never advances, even in training mode
    head(embeddings, labels)
    assert int(head.step) == 2


@pytest.mark.parametrize("name", NAMES)
def test_float64_head(name: str) -> None:
    head = make(name).double()
    assert head.weight.dtype == torch.float64
    embeddings, labels = tight_batch(head, seed=6)
    loss = head(embeddings.double(), labels)
    assert loss.dtype == torch.float64
    assert head.logits(embeddings.double()).dtype == torch.float64


def readme_quick_start() -> str:
    """The Python code of the README's quick start (the pytorch-metric-learning-style loop)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Quick start") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```", start)]


@pytest.mark.parametrize("name", available())
def test_readme_plain_loop_trains_every_head_as_built(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's quick start, run as written with each head in ArcFace's place (a small
    backbone and three batches of random data; 50 classes of width 16 instead of 10,000 of
    512, which prove nothing more): no exception, finite losses and weights, and a head
    whose default follows the run (no run length is given here) says once that it trains
    on the paper's step-based schedule instead."""
    head_class = resolve(name)
    code = readme_quick_start()
    assert "head = ArcFace(" in code and "loss.backward()" in code and "set_total_steps" not in code
    code = code.replace("ArcFace", head_class.__name__)
    code = code.replace("10_000", "50").replace("512", "16")
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(8, 1, 8, 8, generator=generator), torch.randint(50, (8,), generator=generator))
        for _ in range(3)
    ]
    namespace: dict[str, Any] = {}
    losses: list[Tensor] = []

    def loader() -> Iterator[tuple[Tensor, Tensor]]:
        for batch in batches:
            yield batch
            losses.append(namespace["loss"].detach())  # the step on this batch is done

    def my_net(embedding_dim: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, embedding_dim))

    namespace.update(MyNet=my_net, loader=loader())
    monkeypatch.chdir(tmp_path)  # the loop saves model.pt
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, "README.md", "exec"), namespace)
    head = namespace["head"]
    assert isinstance(head, head_class) and int(head.step) == len(batches) == len(losses)
    assert all(bool(torch.isfinite(loss)) for loss in losses)
    assert all(bool(torch.isfinite(p).all()) for p in head.parameters())
    assert all(bool(torch.isfinite(p).all()) for p in namespace["backbone"].parameters())
    assert namespace["scores"].shape == (8, 50) and torch.isfinite(namespace["scores"]).all()
    assert (tmp_path / "model.pt").is_file()
    fallbacks = [w for w in caught if issubclass(w.category, RunLengthWarning)]
    assert len(fallbacks) == (1 if head_class.run_relative_defaults else 0)


def test_passes_in_one_step_count_one_step_with_every_target_cosine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Gradient accumulation's contract: three training passes inside ``one_step(3)`` move the
    step counter and the schedules once, after the last, with the three batches' target
    cosines in order; a pass outside it counts a step of its own."""
    torch.manual_seed(0)
    head = build("arcface", num_classes=5, embedding_dim=4, total_steps=10).train()
    seen: list[tuple[int, Tensor | None]] = []
    schedule = head.schedules["margin"]
    monkeypatch.setattr(schedule, "advance", lambda step, cosine=None: seen.append((step, cosine)))
    batches = [(torch.randn(size, 4), torch.randint(0, 5, (size,))) for size in (3, 2, 4)]
    with head.one_step(3):
        for index, (embeddings, labels) in enumerate(batches):
            head(embeddings, labels)
            if index < 2:
                assert int(head.step) == 0 and not seen  # held back until the last pass
    assert int(head.step) == 1 and [step for step, _ in seen] == [1]
    cosine = seen[0][1]
    assert cosine is not None and cosine.shape == (9,)
    weight = F.normalize(head.weight.detach(), dim=1)  # (C, D)
    expected = torch.cat([(F.normalize(e, dim=1) * weight[y]).sum(1) for e, y in batches])
    torch.testing.assert_close(cosine, expected)
    head.train()(*batches[0])
    assert int(head.step) == 2 and [step for step, _ in seen] == [1, 2]
