"""CurricularFace against a naive float64 per-sample re-implementation of the paper's formula.

The reference (:func:`reference_logits`, :func:`reference_t`) loops over samples and classes
with scalar math and ``torch.acos`` taken directly, and shares no code with marginkit:
target ``s cos(theta_y + m)`` (``s (cos(theta_y) - m sin(m))`` past ``theta_y + m = pi``, the
official code's fallback), non-targets ``s cos(theta_j)`` when ``cos(theta_j) <=
cos(theta_y + m)`` and ``s cos(theta_j) (t + cos(theta_j))`` otherwise, and
``t <- momentum mean(cos(theta_y)) + (1 - momentum) t`` before each training batch
(Huang et al., CVPR 2020; the official code's order and hard-negative test).
"""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from marginkit.losses.curricularface import CurricularFace
from marginkit.losses.sanity import MarginWarning
from marginkit.schedules import Warmup

from .reference import EDGES, edge_embeddings, random_problem

#: Some settings here leave no room for the margin on purpose (targets past ArcFace's switch).
pytestmark = pytest.mark.filterwarnings("ignore::marginkit.losses.sanity.MarginWarning")

TOLERANCE = {"rtol": 1e-10, "atol": 1e-10}
#: (scale, margin, momentum): the paper's defaults, a margin with targets past the fallback
#: switch and a fast ``t``, a small margin with ``t`` equal to the batch mean.
SETTINGS = [(64.0, 0.5, 0.01), (16.0, 1.2, 0.3), (30.0, 0.2, 1.0)]
SHAPES = [(6, 4, 2), (7, 5, 8)]  # (B, C, D)
SEEDS = [0, 1, 2]


# ---------------------------------------------------------------------------- reference
def _cosine(x: Tensor, w: Tensor) -> Tensor:
    return (x * w).sum() / (torch.sqrt((x * x).sum()) * torch.sqrt((w * w).sum()))


def reference_logits(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    scale: float | Tensor,
    margin: float,
    t: float,
) -> Tensor:
    """(B, C) training logits, one sample and one class at a time, from the paper."""
    rows = []
    for i in range(embeddings.shape[0]):
        x, y = embeddings[i], int(labels[i])
        cos_y = _cosine(x, weight[y])
        theta_y = torch.acos(cos_y)
        boundary = math.cos(float(theta_y.detach()) + margin)  # cos(theta_y + m), no gradient
        row = []
        for j in range(weight.shape[0]):
            if j == y:
                if float(theta_y.detach()) + margin <= math.pi:
                    row.append(scale * torch.cos(theta_y + margin))
                else:
                    row.append(scale * (cos_y - margin * math.sin(margin)))
                continue
            cos_j = _cosine(x, weight[j])
            if float(cos_j.detach()) > boundary:  # hard negative
                row.append(scale * cos_j * (t + cos_j))
            else:
                row.append(scale * cos_j)
        rows.append(torch.stack(row))
    return torch.stack(rows)


def reference_loss(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    scale: float | Tensor,
    margin: float,
    t: float,
) -> Tensor:
    """Mean over samples of ``log sum_j exp(z_j) - z_y``."""
    logits = reference_logits(embeddings, weight, labels, scale, margin, t)
    total = 0.0
    for i in range(logits.shape[0]):
        top = logits[i].max().detach()
        total = (
            total + top + torch.log(torch.exp(logits[i] - top).sum()) - logits[i, int(labels[i])]
        )
    return total / logits.shape[0]


def reference_t(
    embeddings: Tensor, weight: Tensor, labels: Tensor, t: float, momentum: float
) -> float:
    """``t`` after folding in the batch's mean target cosine."""
    cosines = [float(_cosine(embeddings[i], weight[int(labels[i])])) for i in range(len(labels))]
    return momentum * sum(cosines) / len(cosines) + (1.0 - momentum) * t


def classify(
    embeddings: Tensor, weight: Tensor, labels: Tensor, margin: float
) -> tuple[int, int, float]:
    """Numbers of hard and easy negatives, and the smallest distance of any non-target cosine
    to its boundary or of any target angle to the fallback switch (rounding can decide those)."""
    hard = easy = 0
    closest = math.inf
    for i in range(embeddings.shape[0]):
        y = int(labels[i])
        theta_y = math.acos(float(_cosine(embeddings[i], weight[y])))
        boundary = math.cos(theta_y + margin)
        closest = min(closest, abs(theta_y + margin - math.pi))
        for j in range(weight.shape[0]):
            if j != y:
                cos_j = float(_cosine(embeddings[i], weight[j]))
                closest = min(closest, abs(cos_j - boundary))
                hard, easy = hard + (cos_j > boundary), easy + (cos_j <= boundary)
    return hard, easy, closest


def make_head(weight: Tensor, **kwargs: object) -> CurricularFace:
    head = CurricularFace(weight.shape[0], weight.shape[1], **kwargs).double()  # type: ignore[arg-type]
    with torch.no_grad():
        head.weight.copy_(weight)
    return head


def head_loss_and_grads(
    head: CurricularFace, embeddings: Tensor, labels: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    x = embeddings.clone().requires_grad_(True)
    head.zero_grad()
    loss = head(x, labels)
    loss.backward()
    return loss.detach(), x.grad, head.weight.grad.clone()


def reference_loss_and_grads(
    embeddings: Tensor, weight: Tensor, labels: Tensor, scale: float, margin: float, t: float
) -> tuple[Tensor, Tensor, Tensor]:
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss = reference_loss(x, w, labels, scale, margin, t)
    loss.backward()
    return loss.detach(), x.grad, w.grad


def assert_close(actual: Tensor, expected: Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, **TOLERANCE, msg=lambda m: f"{what}: {m}")


# ------------------------------------------------------------------ values and gradients
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-D{}".format(*s))
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "s{}-m{}-mom{}".format(*s))
def test_training_steps_match_reference(
    setting: tuple[float, float, float], shape: tuple[int, int, int], seed: int
) -> None:
    """Three training steps: ``t`` updated before use, loss and gradients as the paper's."""
    scale, margin, momentum = setting
    head = make_head(random_problem(*shape, seed)[1], scale=scale, margin=margin, momentum=momentum)
    t = 0.0
    for step in range(3):
        embeddings, _, labels = random_problem(*shape, seed=seed)[:3]
        embeddings = embeddings + 0.3 * step  # a different batch each step
        hard, _, closest = classify(embeddings, head.weight.detach(), labels, margin)
        assert closest > 1e-6, "a cosine within 1e-6 of a switch: pick another seed"
        t = reference_t(embeddings, head.weight.detach(), labels, t, momentum)
        expected = reference_loss_and_grads(
            embeddings, head.weight.detach().clone(), labels, scale, margin, t
        )
        actual = head_loss_and_grads(head, embeddings, labels)
        for what, a, e in zip(
            ("loss", "d/d embeddings", "d/d weight"), actual, expected, strict=True
        ):
            assert_close(a, e, f"step {step} {what}")
        assert float(head.t) == pytest.approx(t, rel=1e-12, abs=1e-15)
        with torch.no_grad():
            head.weight.sub_(0.1 * head.weight.grad)  # move the weights too
    assert hard > 0


@pytest.mark.parametrize("t", [-0.2, 0.37])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-D{}".format(*s))
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "s{}-m{}-mom{}".format(*s))
def test_eval_matches_reference_with_running_t(
    setting: tuple[float, float, float], shape: tuple[int, int, int], t: float
) -> None:
    scale, margin, momentum = setting
    embeddings, weight, labels = random_problem(*shape, seed=11)[:3]
    hard, easy, closest = classify(embeddings, weight, labels, margin)
    assert hard > 0 and easy > 0 and closest > 1e-6
    head = make_head(weight, scale=scale, margin=margin, momentum=momentum).eval()
    head.t.fill_(t)
    actual = head_loss_and_grads(head, embeddings, labels)
    expected = reference_loss_and_grads(embeddings, weight, labels, scale, margin, t)
    for what, a, e in zip(("loss", "d/d embeddings", "d/d weight"), actual, expected, strict=True):
        assert_close(a, e, what)
    assert float(head.t) == t  # eval never moves t


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-C{}-D{}".format(*s))
def test_margin_logits_match_reference(shape: tuple[int, int, int], training: bool) -> None:
    embeddings, weight, labels = random_problem(*shape, seed=5)[:3]
    head = make_head(weight, scale=30.0, margin=0.5, momentum=0.2).train(training)
    head.t.fill_(0.25)
    t = reference_t(embeddings, weight, labels, 0.25, 0.2) if training else 0.25
    expected = reference_logits(embeddings, weight, labels, 30.0, 0.5, t)
    assert_close(head.margin_logits(embeddings, labels).detach(), expected, "margin_logits")
    assert float(head.t) == 0.25  # margin_logits never stores t
    cosines = torch.stack(
        [torch.stack([_cosine(x, w) for w in weight]) for x in embeddings]
    )  # (B, C)
    assert_close(head.logits(embeddings), cosines, "logits")  # plain cosines, (B, C)


def test_learned_scale_gradient_matches_reference() -> None:
    embeddings, weight, labels = random_problem(6, 5, 4, seed=3)[:3]
    head = make_head(weight, scale=20.0, margin=0.5, momentum=0.1, learn_scale=True)
    assert head.log_scale is not None
    with torch.no_grad():
        head.log_scale.add_(0.1)
    x = embeddings.clone().requires_grad_(True)
    loss = head(x, labels)
    loss.backward()
    log_scale = head.log_scale.detach().clone().requires_grad_(True)
    rx, rw = embeddings.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    t = reference_t(embeddings, weight, labels, 0.0, 0.1)
    expected = reference_loss(rx, rw, labels, log_scale.exp(), 0.5, t)
    expected.backward()
    assert_close(loss.detach(), expected.detach(), "loss")
    assert_close(x.grad, rx.grad, "d/d embeddings")
    assert_close(head.weight.grad, rw.grad, "d/d weight")
    assert_close(head.log_scale.grad, log_scale.grad, "d/d log_scale")


def test_hard_test_compares_with_cos_theta_plus_m_not_the_fallback() -> None:
    """Past ``theta_y + m = pi`` the target is the fallback ``cos(theta_y) - m sin(m)``, but a
    negative is hard only above ``cos(theta_y + m)`` (the official code's test)."""
    margin, scale, angle = 1.0, 10.0, 2.5  # theta_y + m = 3.5 > pi
    embedding = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    head = CurricularFace(3, 2, scale=scale, margin=margin).double().eval()
    with torch.no_grad():  # cosines with the embedding: cos(2.5), -0.95, -0.5
        head.weight.copy_(
            torch.tensor(
                [
                    [math.cos(angle), math.sin(angle)],
                    [-0.95, math.sqrt(1.0 - 0.95**2)],
                    [-0.5, -math.sqrt(1.0 - 0.5**2)],
                ],
                dtype=torch.float64,
            )
        )
        head.t.fill_(0.3)
    fallback = math.cos(angle) - margin * math.sin(margin)
    assert fallback < -0.95 < math.cos(angle + margin) < -0.5
    logits = head.margin_logits(embedding, torch.tensor([0]))[0]
    # class 1 lies above the fallback target but below cos(theta_y + m): easy, unmodulated
    expected = scale * torch.tensor([fallback, -0.95, -0.5 * (0.3 - 0.5)], dtype=torch.float64)
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3, 5])
def test_warmup_margin_matches_reference_at_each_step(steps: int) -> None:
    embeddings, weight, labels = random_problem(6, 4, 3, seed=8)[:3]
    head = make_head(weight, margin=Warmup(0.5, steps=4), momentum=0.5)
    t = 0.0
    for step in range(steps):
        margin = head.hyperparameters()["margin"]
        assert margin == pytest.approx(0.5 * min(step, 4) / 4)
        t = reference_t(embeddings, weight, labels, t, 0.5)
        expected = reference_loss(embeddings, weight, labels, 64.0, margin, t)
        assert_close(head(embeddings, labels).detach(), expected, f"step {step}")


# ----------------------------------------------------------------------------- gradcheck
def smooth_point(margin: float, dim: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Random (embeddings, weight, labels), every angle 0.05 from 0, pi and the fallback switch,
    every non-target cosine 0.05 from its boundary ``cos(theta_y + m)``."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(500):
        embeddings = torch.randn(5, dim, dtype=torch.float64, generator=generator)
        weight = torch.randn(3, dim, dtype=torch.float64, generator=generator)
        labels = torch.randint(0, 3, (5,), generator=generator)
        cosines = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T
        angles = torch.acos(cosines)
        target = angles.gather(1, labels.unsqueeze(1))
        boundary = torch.cos(target + margin)
        others = cosines.scatter(1, labels.unsqueeze(1), math.inf)
        if (
            float(angles.min()) > 0.05
            and float(angles.max()) < math.pi - 0.05
            and float((target + margin - math.pi).abs().min()) > 0.05
            and float((others - boundary).abs().min()) > 0.05
            and bool((others < boundary).any())
            and bool(((others > boundary) & (others < math.inf)).any())
        ):
            return embeddings, weight, labels
    raise RuntimeError("no smooth point found")


@pytest.mark.parametrize("learn_scale", [False, True], ids=["fixed-scale", "learned-scale"])
@pytest.mark.parametrize("margin", [0.5, 1.3])
@pytest.mark.parametrize("dim", [2, 4])
def test_gradcheck(dim: int, margin: float, learn_scale: bool) -> None:
    """In eval mode: in training mode ``t`` moves with every call (and takes no gradient)."""
    embeddings, weight, labels = smooth_point(margin, dim, seed=dim)
    head = CurricularFace(3, dim, scale=8.0, margin=margin, learn_scale=learn_scale)
    head = head.double().eval()
    head.t.fill_(0.4)
    extra = {key: p.detach() + 0.1 for key, p in head.named_parameters() if key != "weight"}

    def loss(x: Tensor, w: Tensor, *others: Tensor) -> Tensor:
        parameters = {"weight": w, **dict(zip(extra, others, strict=True))}
        return functional_call(head, parameters, (x, labels))

    inputs = tuple(t.clone().requires_grad_(True) for t in (embeddings, weight, *extra.values()))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------ numerics


@pytest.mark.parametrize("learn_scale", [False, True], ids=["fixed-scale", "learned-scale"])
@pytest.mark.parametrize("dim", [2, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("edge", EDGES)
def test_finite_at_edges(edge: str, dtype: torch.dtype, dim: int, learn_scale: bool) -> None:
    head = CurricularFace(4, dim, learn_scale=learn_scale).to(dtype)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    embeddings = edge_embeddings(edge, head.weight[labels], dtype).requires_grad_(True)
    for _ in range(2):  # the second step with a moved t
        head.zero_grad()
        embeddings.grad = None
        loss = head(embeddings, labels)
        assert loss.dtype == dtype and torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(embeddings.grad).all()
        for name, parameter in head.named_parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(head.t)
    assert torch.isfinite(head.margin_logits(embeddings.detach(), labels)).all()
    assert torch.isfinite(head.logits(embeddings.detach())).all()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_zero_embedding_has_every_logit_zero(training: bool) -> None:
    head = CurricularFace(10, 8).train(training)
    head.t.fill_(0.5)
    embeddings = torch.zeros(1, 8, requires_grad=True)
    logits = head.margin_logits(embeddings.detach(), torch.tensor([3]))
    assert torch.equal(logits, torch.zeros_like(logits))
    loss = head(embeddings, torch.tensor([3]))
    torch.testing.assert_close(loss.detach(), torch.tensor(math.log(10)))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all() and torch.isfinite(head.weight.grad).all()


def test_bfloat16_autocast_float32_head() -> None:
    backbone = torch.nn.Linear(6, 8)
    head = CurricularFace(4, 8)
    head.t.fill_(0.3)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = backbone(torch.randn(6, 6))
    assert embeddings.dtype == torch.bfloat16
    expected = head.eval()(embeddings.detach().float(), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(embeddings, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-6, atol=1e-6)
    head.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(embeddings, labels)
    assert loss.dtype == torch.float32 and head.t.dtype == torch.float32
    loss.backward()
    for parameter in [*head.parameters(), *backbone.parameters()]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


# ---------------------------------------------------------------------------- bad inputs
BAD = [
    ({"scale": 0.0}, ValueError, r"^scale must lie in \(0.0, 10000.0\]; got 0.0$"),
    ({"scale": 2e4}, ValueError, r"^scale must lie in"),
    ({"scale": "64"}, TypeError, r"^scale must be"),
    ({"margin": -0.1}, ValueError, r"^margin must lie in \[0.0, 3.14159\d*\)"),
    ({"margin": math.pi}, ValueError, r"^margin must lie in"),
    ({"margin": Warmup(4.0, steps=10)}, ValueError, r"^margin must lie in .*schedule spanning"),
    ({"margin": math.nan}, ValueError, r"^margin must be finite"),
    ({"momentum": 0.0}, ValueError, r"^momentum must lie in \(0.0, 1.0\]; got 0.0$"),
    ({"momentum": 1.5}, ValueError, r"^momentum must lie in"),
    ({"momentum": math.nan}, ValueError, r"^momentum must be finite; got nan$"),
    ({"momentum": "0.01"}, TypeError, r"^momentum must be a float; got str$"),
    ({"momentum": True}, TypeError, r"^momentum must be a float; got bool$"),
    ({"momentum": Warmup(0.01, steps=10)}, TypeError, r"^momentum must be a float; got Warmup$"),
    ({"learn_scale": "yes"}, TypeError, r"^learn_scale must be a bool"),
    ({"num_classes": 1}, ValueError, r"^num_classes must be >= 2"),
    ({"embedding_dim": 0}, ValueError, r"^embedding_dim must be >= 1"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD, ids=lambda v: repr(v)[:30])
def test_bad_hyperparameters_are_one_line_errors(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    arguments = {"num_classes": 5, "embedding_dim": 3, **kwargs}
    with pytest.raises(error, match=match) as caught:
        CurricularFace(**arguments)
    assert "\n" not in str(caught.value)


def test_bad_inputs_are_refused() -> None:
    head = CurricularFace(5, 3)
    with pytest.raises(ValueError, match=r"embeddings must have 3 columns"):
        head(torch.randn(4, 4), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        head(torch.randn(2, 3), torch.tensor([0, 5]))
    assert head.unshardable is None  # marginkit.distributed.shard splits it


def test_margin_without_room_is_warned_about() -> None:
    with pytest.warns(MarginWarning, match=r"CurricularFace: margin 0.45 leaves no room"):
        CurricularFace(12, 2, margin=0.45)


# ------------------------------------------------------------------------ contract, state
def batch(seed: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, generator=generator, dtype=dtype), torch.arange(8) % 5


def test_t_starts_at_zero_and_moves_only_in_training_forward() -> None:
    head = CurricularFace(5, 3, momentum=0.1)
    assert head.t.shape == () and float(head.t) == 0.0 and not head.t.requires_grad
    embeddings, labels = batch(0)
    for _ in range(2):  # scoring in training mode stores nothing
        head.margin_logits(embeddings, labels)
        head.logits(embeddings)
    assert float(head.t) == 0.0
    head(embeddings.requires_grad_(True), labels)
    mean = head.logits(embeddings.detach()).gather(1, labels.unsqueeze(1)).mean()
    torch.testing.assert_close(head.t, 0.1 * mean, rtol=1e-6, atol=1e-7)
    assert not head.t.requires_grad and head.t.grad_fn is None
    moved = head.t.clone()
    head.eval()
    first = head(embeddings, labels)
    second = head(embeddings, labels)
    assert torch.equal(head.t, moved) and torch.equal(first, second)
    assert int(head.step) == 1


def steps_and_grads(head: CurricularFace, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
    """Three training steps' losses, gradients (embeddings, weight, log-scale) and ``t``."""
    results = []
    for _ in range(3):
        x = embeddings.clone().requires_grad_(True)
        loss = head(x, labels)
        parameters = [x, *[p for p in head.parameters() if p.requires_grad]]
        results += [loss.detach(), *torch.autograd.grad(loss, parameters), head.t.clone()]
    return results


@pytest.mark.parametrize("learn_scale", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 16])
def test_chunked_training_steps_equal_one_block(chunk_size: int, learn_scale: bool) -> None:
    """Class blocks give the one block's losses, gradients and ``t`` (which moves), float64,
    chunk sizes that do not divide C; the margin leaves hard and easy negatives both."""
    embeddings, weight, labels = random_problem(12, 16, 5, seed=chunk_size)[:3]
    labels[:3] = torch.tensor([0, 15, 15])  # the first and last class, a repeated label
    whole = make_head(weight, margin=1.2, momentum=0.5, learn_scale=learn_scale)
    chunked = make_head(weight, margin=1.2, momentum=0.5, learn_scale=learn_scale)
    chunked.set_chunk_size(chunk_size)
    expected = steps_and_grads(whole, embeddings, labels)
    for got, want in zip(steps_and_grads(chunked, embeddings, labels), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)
    assert float(whole.t) != 0.0


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_clamped_cosines_match_the_composed_logits(chunk_size: int | None) -> None:
    """Embeddings parallel or antiparallel to class weights, target or not: rounding pushes
    some cosines past +-1 and the clamp bites (checked), on hard negatives (logit
    ``s N(t, +-1)``) and easy ones; the fused pass equals the cross-entropy of
    margin_logits."""
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(6, 5, dtype=torch.float64, generator=generator)
    head = make_head(weight, scale=8.0, learn_scale=True).eval().set_chunk_size(chunk_size)
    head.t.fill_(0.3)
    factors = torch.rand(40, 1, dtype=torch.float64, generator=generator) * 10.0 + 0.1
    signs = torch.where(torch.arange(40) % 3 == 0, -1.0, 1.0).double().unsqueeze(1)
    classes = torch.arange(40) % 6
    embeddings = weight[classes] * factors * signs  # (40, 5)
    labels = (classes + (torch.arange(40) // 6) % 2) % 6  # some on the target, some not
    raw = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T
    assert bool((raw.abs() > 1.0).any()), "the case must exercise the clamp"
    results = []
    for fused in (True, False):
        x = embeddings.clone().requires_grad_(True)
        loss = head(x, labels) if fused else F.cross_entropy(head.margin_logits(x, labels), labels)
        parameters = [x, head.weight, head.log_scale]
        results.append([loss.detach(), *torch.autograd.grad(loss, parameters)])
    for got, want in zip(*results, strict=True):
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9 * float(want.abs().max()))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_loss_is_cross_entropy_of_margin_logits(training: bool) -> None:
    head = CurricularFace(5, 3, scale=30.0, momentum=0.3).double().train(training)
    head.t.fill_(0.2)
    embeddings, labels = batch(1, torch.float64)
    x = embeddings.clone().requires_grad_(True)
    expected = F.cross_entropy(head.margin_logits(x, labels), labels)
    expected.backward()
    expected_grads = (x.grad.clone(), head.weight.grad.clone())
    x.grad, head.weight.grad = None, None
    loss = head(x, labels)
    loss.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, expected_grads[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head.weight.grad, expected_grads[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_class_subset_is_the_cross_entropy_over_those_columns(training: bool) -> None:
    head = CurricularFace(10, 4, momentum=0.3).double().train(training)
    head.t.fill_(0.2)
    twin = CurricularFace(10, 4, momentum=0.3).double().train(training)
    twin.load_state_dict(head.state_dict())
    generator = torch.Generator().manual_seed(4)
    embeddings = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    labels, classes = torch.tensor([1, 4, 4]), torch.tensor([0, 1, 4, 7])
    expected = F.cross_entropy(
        head.margin_logits(embeddings, labels)[:, classes], torch.tensor([1, 2, 2])
    )
    torch.testing.assert_close(head(embeddings, labels, classes=classes), expected)
    twin(embeddings, labels)  # the full softmax: the same t (the mean over the batch's targets)
    assert torch.equal(head.t, twin.t)
    assert (float(head.t) != 0.2) == training


def test_state_dict_round_trip_restores_t() -> None:
    head = CurricularFace(5, 3, momentum=0.2)
    embeddings, labels = batch(2)
    for _ in range(3):
        head(embeddings, labels)
    state = io.BytesIO()
    torch.save(head.state_dict(), state)
    state.seek(0)
    fresh = CurricularFace(5, 3, momentum=0.2)
    fresh.load_state_dict(torch.load(state, weights_only=True))
    assert float(head.t) != 0.0 and torch.equal(fresh.t, head.t)
    assert int(fresh.step) == 3
    torch.testing.assert_close(
        fresh.eval().margin_logits(embeddings, labels),
        head.eval().margin_logits(embeddings, labels),
    )
    fresh.train()(embeddings, labels)
    head.train()(embeddings, labels)
    assert torch.equal(fresh.t, head.t)


def test_trains_a_separable_problem() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = 4.0 * torch.randn(4, 8, generator=generator)
    labels = torch.arange(64) % 4
    inputs = centres[labels] + torch.randn(64, 8, generator=generator)
    backbone = torch.nn.Linear(8, 8)
    head = CurricularFace(4, 8)
    optimiser = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=0.02)
    for _ in range(30):
        optimiser.zero_grad()
        head(backbone(inputs), labels).backward()
        optimiser.step()
    accuracy = (head.logits(backbone(inputs)).argmax(dim=1) == labels).float().mean()
    assert float(accuracy) >= 0.95
    assert 0.0 < float(head.t) < 1.0  # the mean target cosine has been folded in
