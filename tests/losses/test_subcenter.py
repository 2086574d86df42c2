"""Sub-center ArcFace (Deng et al., ECCV 2020) against a naive float64 reference from the paper.

The reference below loops over samples, classes and sub-centres with scalar math:
``cos(theta_ij) = max_k x_i . W_jk / (||x_i|| ||W_jk||)``, the target logit
``s cos(theta_iy + m)`` (``acos`` taken directly; ``s (cos - m sin m)`` past
``theta + m = pi``, InsightFace's fallback), the others ``s cos(theta_ij)``, and the
cross-entropy written out. It imports nothing from marginkit.
"""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from marginkit.losses.arcface import ArcFace
from marginkit.losses.sampling import ClassSampledHead
from marginkit.losses.sanity import MarginWarning, unchecked
from marginkit.losses.subcenter import SubCenterArcFace
from marginkit.schedules import Warmup

from .reference import EDGES, edge_embeddings

# ------------------------------------------------------------------------- the reference


def _cosine(x: Tensor, w: Tensor) -> Tensor:
    return (x * w).sum() / (torch.sqrt((x * x).sum()) * torch.sqrt((w * w).sum()))


def _nearest(x: Tensor, weight: Tensor, j: int, subcenters: int) -> tuple[int, Tensor]:
    """Index and cosine of the sub-centre of class j nearest to x (the first on ties)."""
    cosines = [_cosine(x, weight[j * subcenters + k]) for k in range(subcenters)]
    best = max(range(subcenters), key=lambda k: float(cosines[k].detach()))
    return best, cosines[best]


def reference_logits(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    scale: float | Tensor,
    margin: float,
    subcenters: int,
) -> Tensor:
    """(B, C) training logits from the paper's formula, one sample and class at a time."""
    classes = weight.shape[0] // subcenters
    rows = []
    for i in range(embeddings.shape[0]):
        x, y = embeddings[i], int(labels[i])
        row = []
        for j in range(classes):
            _, cosine = _nearest(x, weight, j, subcenters)
            if j != y:
                row.append(scale * cosine)
                continue
            theta = torch.acos(cosine)
            if float(theta.detach()) + margin <= math.pi:
                row.append(scale * torch.cos(theta + margin))
            else:
                row.append(scale * (cosine - margin * math.sin(margin)))
        rows.append(torch.stack(row))
    return torch.stack(rows)


def reference_loss(
    embeddings: Tensor,
    weight: Tensor,
    labels: Tensor,
    scale: float | Tensor,
    margin: float,
    subcenters: int,
) -> Tensor:
    """Batch mean of ``log sum_j exp(z_j) - z_y``."""
    logits = reference_logits(embeddings, weight, labels, scale, margin, subcenters)
    total = torch.zeros((), dtype=embeddings.dtype)
    for i in range(logits.shape[0]):
        top = logits[i].max().detach()
        total = total + top + torch.log(torch.exp(logits[i] - top).sum()) - logits[i, labels[i]]
    return total / logits.shape[0]


def reference_scores(embeddings: Tensor, weight: Tensor, subcenters: int) -> Tensor:
    """(B, C) inference scores ``max_k cos(x_i, W_jk)``."""
    classes = weight.shape[0] // subcenters
    return torch.stack(
        [
            torch.stack([_nearest(x, weight, j, subcenters)[1] for j in range(classes)])
            for x in embeddings
        ]
    )


def reference_counts(
    embeddings: Tensor, weight: Tensor, labels: Tensor, classes: int, subcenters: int
) -> Tensor:
    """(C, K): how many samples of each class had each of its sub-centres as nearest."""
    counts = torch.zeros(classes, subcenters, dtype=torch.long)
    for x, y in zip(embeddings, labels.tolist(), strict=True):
        counts[y, _nearest(x, weight, y, subcenters)[0]] += 1
    return counts


# ---------------------------------------------------------------------------- helpers


def make_head(classes: int, dim: int, **kwargs: object) -> SubCenterArcFace:
    with unchecked():  # small C and D with the paper's margin: no sanity warnings here
        return SubCenterArcFace(classes, dim, **kwargs).double()  # type: ignore[arg-type]


def make_problem(
    batch: int, classes: int, dim: int, subcenters: int, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """float64 embeddings (B, D) and weights (C K, D) with varied norms, labels (B,)."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, dtype=torch.float64, generator=generator)
    embeddings = embeddings * (0.5 + 3.0 * torch.rand(batch, 1, generator=generator).double())
    weight = torch.randn(classes * subcenters, dim, dtype=torch.float64, generator=generator)
    weight = weight * (0.2 + 2.0 * torch.rand(classes * subcenters, 1, generator=generator))
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return embeddings, weight, labels


def set_weight(head: SubCenterArcFace, weight: Tensor) -> SubCenterArcFace:
    with torch.no_grad():
        head.weight.copy_(weight)
    return head


CASES = [  # (scale, margin, subcenters, learn_scale)
    (64.0, 0.5, 3, False),
    (30.0, 0.2, 2, False),
    (16.0, 1.2, 4, False),  # past theta + m = pi for some samples
    (20.0, 0.5, 3, True),
]


# ------------------------------------------------------------------- the reference tests


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dim", [2, 8])
@pytest.mark.parametrize("case", CASES, ids=lambda case: "-".join(map(str, case)))
def test_loss_gradients_and_counts_match_the_reference(
    case: tuple[float, float, int, bool], dim: int, seed: int, training: bool
) -> None:
    scale, margin, subcenters, learn_scale = case
    classes = 4
    embeddings, weight, labels = make_problem(6, classes, dim, subcenters, seed)
    head = make_head(
        classes, dim, scale=scale, margin=margin, subcenters=subcenters, learn_scale=learn_scale
    )
    set_weight(head, weight).train(training)
    embeddings.requires_grad_(True)
    logits = head.margin_logits(embeddings, labels)
    loss = head(embeddings, labels)
    parameters = [embeddings, head.weight] + ([head.log_scale] if learn_scale else [])
    grads = torch.autograd.grad(loss, parameters)

    reference_weight = weight.clone().requires_grad_(True)
    # the learned log-scale starts at float32's log(s): the reference takes the same value
    log_scale = torch.tensor(math.log(scale), dtype=torch.float32).double().requires_grad_(True)
    reference_scale = log_scale.exp() if learn_scale else scale
    reference = reference_loss(
        embeddings, reference_weight, labels, reference_scale, margin, subcenters
    )
    expected_logits = reference_logits(
        embeddings, weight, labels, reference_scale, margin, subcenters
    )
    expected_grads = torch.autograd.grad(
        reference, [embeddings, reference_weight] + ([log_scale] if learn_scale else [])
    )
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-10, atol=1e-10)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    counts = reference_counts(embeddings.detach(), weight, labels, classes, subcenters)
    expected_counts = counts if training else torch.zeros_like(counts)
    assert torch.equal(head.subcenter_counts, expected_counts)


def test_inference_scores_are_the_largest_subcenter_cosines() -> None:
    embeddings, weight, _ = make_problem(5, 4, 3, 3, seed=4)
    head = set_weight(make_head(4, 3), weight)
    scores = head.logits(embeddings)
    assert scores.shape == (5, 4)
    torch.testing.assert_close(scores, reference_scores(embeddings, weight, 3), rtol=0, atol=1e-14)


@pytest.mark.parametrize("learn_scale", [False, True])
def test_one_subcenter_is_exactly_arcface(learn_scale: bool) -> None:
    embeddings, weight, labels = make_problem(7, 5, 6, 1, seed=5)
    with unchecked():
        arcface = ArcFace(5, 6, learn_scale=learn_scale).double()
    head = set_weight(make_head(5, 6, subcenters=1, learn_scale=learn_scale), weight)
    set_weight(arcface, weight)
    results = []
    for module in (head, arcface):
        x = embeddings.clone().requires_grad_(True)
        loss = module(x, labels)
        parameters = [module.weight] + ([module.log_scale] if learn_scale else [])
        results.append([loss, *torch.autograd.grad(loss, [x, *parameters])])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        head.margin_logits(embeddings, labels), arcface.margin_logits(embeddings, labels)
    )
    torch.testing.assert_close(head.logits(embeddings), arcface.logits(embeddings))
    assert torch.equal(head.class_weight(), arcface.class_weight())


def test_gradient_reaches_only_the_arg_max_subcenters() -> None:
    embeddings, weight, labels = make_problem(6, 3, 4, 3, seed=6)
    head = set_weight(make_head(3, 4), weight)
    (grad,) = torch.autograd.grad(head(embeddings, labels), head.weight)
    nearest = torch.tensor(
        [[_nearest(x, weight, j, 3)[0] for j in range(3)] for x in embeddings]
    )  # (B, C): every class is a logit of every sample
    used = torch.zeros(9, dtype=torch.bool)
    used[(torch.arange(3) * 3 + nearest).flatten()] = True
    assert bool((grad[~used] == 0).all())
    assert bool((grad[used].abs().sum(dim=1) > 0).all())


# ------------------------------------------------------------------------- gradcheck


def smooth_point(seed: int, dim: int, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """A problem whose target angles are >= 0.05 from 0, pi and pi - m, and whose two
    largest sub-centre cosines of every (sample, class) differ by >= 0.05 (no arg-max switch)."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(200):
        embeddings = torch.randn(4, dim, dtype=torch.float64, generator=generator)
        weight = torch.randn(9, dim, dtype=torch.float64, generator=generator)
        labels = torch.randint(0, 3, (4,), generator=generator)
        cosines = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T  # (B, C K)
        top2 = cosines.view(4, 3, 3).topk(2, dim=2).values  # (B, C, 2)
        angles = torch.acos(top2[:, :, 0].clamp(-1, 1))  # (B, C)
        target = angles.gather(1, labels.unsqueeze(1))
        kinks = torch.tensor([0.0, math.pi, math.pi - margin], dtype=torch.float64)
        if (
            float((top2[:, :, 0] - top2[:, :, 1]).min()) > 0.05
            and float((target - kinks).abs().min()) > 0.05
        ):
            return embeddings, weight, labels
    raise RuntimeError("no smooth point found")


@pytest.mark.parametrize("learn_scale", [False, True])
@pytest.mark.parametrize("dim", [2, 4])
def test_gradcheck(dim: int, learn_scale: bool) -> None:
    embeddings, weight, labels = smooth_point(dim, dim, 0.5)
    head = make_head(3, dim, scale=16.0, margin=0.5, learn_scale=learn_scale).eval()
    others = {"log_scale": head.log_scale.detach().clone() + 0.1} if learn_scale else {}

    def loss(x: Tensor, w: Tensor, *rest: Tensor) -> Tensor:
        parameters = {"weight": w, **dict(zip(others, rest, strict=True))}
        return functional_call(head, parameters, (x, labels))

    inputs = tuple(t.clone().requires_grad_(True) for t in (embeddings, weight, *others.values()))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("learn_scale", [False, True])
@pytest.mark.parametrize("dim", [2, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("edge", EDGES)
def test_finite_loss_and_gradients_at_edges(
    edge: str, dtype: torch.dtype, dim: int, learn_scale: bool
) -> None:
    head = make_head(4, dim, learn_scale=learn_scale).to(dtype)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    targets = head.weight[labels * 3 + 1]  # sub-centre 1 of each label: cos = +1 or -1 with it
    embeddings = edge_embeddings(edge, targets, dtype).requires_grad_(True)
    loss = head(embeddings, labels)
    assert loss.dtype == dtype and torch.isfinite(loss)
    loss.backward()
    assert embeddings.grad is not None and torch.isfinite(embeddings.grad).all()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert torch.isfinite(head.logits(embeddings.detach())).all()
    assert torch.isfinite(head.margin_logits(embeddings.detach(), labels)).all()
    if edge == "zero-row":  # no direction: every logit 0, loss term log C
        logits = head.margin_logits(embeddings.detach(), labels)
        assert bool((logits[0] == 0).all())


def test_bfloat16_autocast_float32_head() -> None:
    backbone = torch.nn.Linear(6, 8)
    with unchecked():
        head = SubCenterArcFace(4, 8)
    inputs, labels = torch.randn(6, 6), torch.tensor([0, 1, 2, 3, 1, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = backbone(inputs)
    assert embeddings.dtype == torch.bfloat16
    expected = head.eval()(embeddings.detach().float(), labels)
    head.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(embeddings, labels)
        scores = head.logits(embeddings)
    assert loss.dtype == torch.float32 and scores.dtype == torch.float32
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-6, atol=1e-6)
    loss.backward()
    assert head.weight.dtype == torch.float32
    for parameter in [*head.parameters(), *backbone.parameters()]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


# ----------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"subcenters": 0}, ValueError, r"^subcenters must be >= 1; got 0$"),
        ({"subcenters": -2}, ValueError, r"^subcenters must be >= 1"),
        ({"subcenters": 1.5}, TypeError, r"^subcenters must be an int; got float$"),
        ({"subcenters": True}, TypeError, r"^subcenters must be an int; got bool$"),
        ({"subcenters": "3"}, TypeError, r"^subcenters must be an int"),
        ({"scale": 0.0}, ValueError, r"^scale must lie in \(0.0, 10000.0\]"),
        ({"scale": 1e5}, ValueError, r"^scale must lie in"),
        ({"scale": "64"}, TypeError, r"scale"),
        ({"margin": -0.1}, ValueError, r"^margin must lie in \[0.0, 3.14"),
        ({"margin": math.pi}, ValueError, r"^margin must lie in"),
        ({"learn_scale": 1}, TypeError, r"^learn_scale must be a bool"),
        ({"num_classes": 1}, ValueError, r"^num_classes must be >= 2"),
    ],
)
def test_bad_hyperparameters_give_one_line_errors(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    arguments = {"num_classes": 4, "embedding_dim": 3, **kwargs}
    with pytest.raises(error, match=match) as raised:
        SubCenterArcFace(**arguments)  # type: ignore[arg-type]
    assert "\n" not in str(raised.value)


def test_bad_inputs_are_refused() -> None:
    head = make_head(4, 3)
    with pytest.raises(ValueError, match=r"embeddings must have 3 columns"):
        head(torch.randn(2, 4, dtype=torch.float64), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        head(torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 4]))
    assert int(head.step) == 0 and int(head.subcenter_counts.sum()) == 0


def test_margin_warning_as_arcface() -> None:
    with pytest.warns(MarginWarning, match=r"SubCenterArcFace: margin 0.5 leaves no room"):
        SubCenterArcFace(11, 2)


# -------------------------------------------------------------------- state and modes


def test_state_dict_round_trip_keeps_weight_counts_and_step() -> None:
    embeddings, weight, labels = make_problem(8, 4, 3, 3, seed=7)
    head = set_weight(make_head(4, 3), weight)
    for _ in range(2):
        head(embeddings, labels)
    assert int(head.subcenter_counts.sum()) == 16
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    restored = make_head(4, 3)
    restored.load_state_dict(torch.load(buffer))
    assert torch.equal(restored.weight, head.weight)
    assert torch.equal(restored.subcenter_counts, head.subcenter_counts)
    assert int(restored.step) == 2
    assert torch.equal(restored.class_weight(), head.class_weight())
    assert torch.equal(restored.logits(embeddings), head.logits(embeddings))


def test_eval_margin_logits_and_logits_never_change_buffers() -> None:
    embeddings, weight, labels = make_problem(6, 4, 3, 3, seed=8)
    head = set_weight(make_head(4, 3), weight)
    head.margin_logits(embeddings, labels)  # training mode
    head.logits(embeddings)
    assert int(head.subcenter_counts.sum()) == 0 and int(head.step) == 0
    head.eval()(embeddings, labels)
    assert int(head.subcenter_counts.sum()) == 0 and int(head.step) == 0
    head.train()(embeddings, labels)
    assert int(head.subcenter_counts.sum()) == 6 and int(head.step) == 1


def steps_and_grads(head: SubCenterArcFace, embeddings: Tensor, labels: Tensor) -> list[Tensor]:
    """Two training steps' losses and gradients (embeddings, weight, log-scale)."""
    results = []
    for _ in range(2):
        x = embeddings.clone().requires_grad_(True)
        loss = head(x, labels)
        parameters = [x, *[p for p in head.parameters() if p.requires_grad]]
        results += [loss.detach(), *torch.autograd.grad(loss, parameters)]
    return results


@pytest.mark.parametrize("learn_scale", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 11])
def test_chunked_training_steps_equal_one_block(chunk_size: int, learn_scale: bool) -> None:
    """Class blocks (sub-centres never split) give the one block's losses, gradients and
    sub-centre counts, float64, over two training steps; chunk sizes that do not divide C."""
    embeddings, weight, labels = make_problem(12, 10, 5, 3, seed=chunk_size)
    labels[:3] = torch.tensor([0, 9, 9])  # the first and last class, a repeated label
    whole = set_weight(make_head(10, 5, learn_scale=learn_scale), weight)
    chunked = set_weight(make_head(10, 5, learn_scale=learn_scale), weight)
    chunked.set_chunk_size(chunk_size)
    expected = steps_and_grads(whole, embeddings, labels)
    for got, want in zip(steps_and_grads(chunked, embeddings, labels), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)
    assert torch.equal(chunked.subcenter_counts, whole.subcenter_counts)
    assert int(chunked.subcenter_counts.sum()) == 24


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_clamped_cosines_match_the_composed_logits(chunk_size: int | None) -> None:
    """Embeddings parallel or antiparallel to sub-centres, target or not: rounding pushes
    some cosines past +-1 and the clamp bites (checked); the fused pass (one block or
    several) equals the cross-entropy of margin_logits."""
    generator = torch.Generator().manual_seed(3)
    head = make_head(6, 5).eval().set_chunk_size(chunk_size)
    with torch.no_grad():
        head.weight.copy_(torch.randn(18, 5, dtype=torch.float64, generator=generator))
    rows = torch.arange(40) % 18
    factors = torch.rand(40, 1, dtype=torch.float64, generator=generator) * 10.0 + 0.1
    signs = torch.where(torch.arange(40) % 3 == 0, -1.0, 1.0).double().unsqueeze(1)
    embeddings = head.weight.detach()[rows] * factors * signs  # (40, 5)
    labels = (rows // 3 + (torch.arange(40) // 6) % 2) % 6  # some on the target, some not
    raw = F.normalize(embeddings, dim=1) @ F.normalize(head.weight.detach(), dim=1).T
    assert bool((raw.abs() > 1.0).any()), "the case must exercise the clamp"
    results = []
    for fused in (True, False):
        x = embeddings.clone().requires_grad_(True)
        loss = head(x, labels) if fused else F.cross_entropy(head.margin_logits(x, labels), labels)
        results.append([loss.detach(), *torch.autograd.grad(loss, [x, head.weight])])
    for got, want in zip(*results, strict=True):
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9 * float(want.abs().max()))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_cross_entropy_of_margin_logits_is_forward(training: bool) -> None:
    embeddings, weight, labels = make_problem(6, 5, 4, 3, seed=9)
    head = set_weight(make_head(5, 4), weight).train(training)
    expected = F.cross_entropy(head.margin_logits(embeddings, labels), labels)
    torch.testing.assert_close(head(embeddings, labels), expected, rtol=1e-12, atol=0)


def test_class_subset_is_the_columns_of_margin_logits_and_counts_use_class_indices() -> None:
    embeddings, weight, labels = make_problem(6, 7, 4, 3, seed=10)
    labels = torch.tensor([1, 4, 4, 6, 1, 6])
    classes = torch.tensor([0, 1, 4, 5, 6])
    head = set_weight(make_head(7, 4), weight)
    full = set_weight(make_head(7, 4), weight)
    x = embeddings.clone().requires_grad_(True)
    loss = head(x, labels, classes=classes)
    remapped = torch.searchsorted(classes, labels)
    y = embeddings.clone().requires_grad_(True)
    expected = F.cross_entropy(full.margin_logits(y, labels)[:, classes], remapped)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    got = torch.autograd.grad(loss, [x, head.weight])
    want = torch.autograd.grad(expected, [y, full.weight])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    unsampled = ~torch.isin(torch.arange(7).repeat_interleave(3), classes)  # all K rows
    assert bool((got[1][unsampled] == 0).all())
    full(embeddings, labels)  # the same batch over all classes
    assert torch.equal(head.subcenter_counts, full.subcenter_counts)


def test_class_sampled_wrapper_trains_the_subcenter_head() -> None:
    embeddings, weight, labels = make_problem(6, 20, 4, 3, seed=11)
    head = set_weight(make_head(20, 4), weight)
    sampled = ClassSampledHead(head, fraction=0.5, seed=1)
    sampled(embeddings, labels).backward()
    rows = torch.isin(torch.arange(20).repeat_interleave(3), sampled.sampled_classes)
    assert head.weight.grad is not None
    assert bool((head.weight.grad[~rows] == 0).all())
    assert int(head.subcenter_counts.sum()) == 6


def test_warmup_schedule_on_the_margin() -> None:
    embeddings, weight, labels = make_problem(5, 4, 3, 3, seed=12)
    head = set_weight(make_head(4, 3, margin=Warmup(0.5, steps=4)), weight)
    assert head.hyperparameters()["margin"] == 0.0
    for _ in range(2):
        head(embeddings, labels)
    assert head.hyperparameters()["margin"] == pytest.approx(0.25)
    torch.testing.assert_close(
        head.eval().margin_logits(embeddings, labels),
        reference_logits(embeddings, weight, labels, 64.0, 0.25, 3),
        rtol=1e-10,
        atol=1e-10,
    )


def test_class_weight_is_the_dominant_subcenter() -> None:
    head = make_head(3, 2)
    by_class = head.weight.detach().view(3, 3, 2)
    assert torch.equal(head.class_weight(), by_class[:, 0])  # before training: k = 0
    with torch.no_grad():
        head.subcenter_counts.copy_(torch.tensor([[1, 5, 2], [4, 0, 4], [0, 0, 9]]))
    assert head.dominant_subcenters().tolist() == [1, 0, 2]  # ties: the lowest k
    assert torch.equal(head.class_weight(), by_class[[0, 1, 2], [1, 0, 2]])


def test_a_tiny_separable_problem_trains() -> None:
    """30 steps of plain gradient descent (no torch.optim: its first import costs seconds)."""
    torch.manual_seed(0)
    centres = 4.0 * torch.eye(4, 6)
    labels = torch.arange(40) % 4
    inputs = centres[labels] + 0.5 * torch.randn(40, 6)
    backbone = torch.nn.Linear(6, 8)
    head = SubCenterArcFace(4, 8)
    parameters = [*backbone.parameters(), *head.parameters()]
    losses = []
    for _ in range(30):
        loss = head(backbone(inputs), labels)
        losses.append(float(loss.detach()))
        with torch.no_grad():
            for parameter, grad in zip(
                parameters, torch.autograd.grad(loss, parameters), strict=True
            ):
                parameter -= 0.05 * grad
    accuracy = (head.logits(backbone(inputs)).argmax(dim=1) == labels).float().mean()
    assert float(accuracy) >= 0.95
    assert losses[-1] < 0.01 * losses[0]
    assert int(head.subcenter_counts.sum()) == 30 * 40


# ------------------------------------------------------------------ the paper's cleaning


def cleaning_problem() -> tuple[SubCenterArcFace, Tensor, Tensor, Tensor, list[int]]:
    """4 classes x 3 orthogonal sub-centres in R^12 (row j K + k = 2 e_{3j+k}); class 3 has
    no sample. Per class j with dominant k_j: 4 samples 20 degrees from W_{j k_j}, one 60
    degrees from it, one 80 degrees (still nearest to it) and two 10 degrees from another
    sub-centre (about 90 degrees from the dominant one): the last three are the noise."""
    head = make_head(4, 12)
    basis = torch.eye(12, dtype=torch.float64)
    set_weight(head, 2.0 * basis)
    dominant = [1, 2, 0]
    generator = torch.Generator().manual_seed(0)
    rows, labels, keep = [], [], []

    def at(angle_degrees: float, k: int, j: int) -> Tensor:
        # in the plane of sub-centre (j, k) and the spare axis 9 + j, orthogonal to all others
        theta = math.radians(angle_degrees)
        norm = 0.5 + 4.0 * float(torch.rand((), generator=generator))
        return norm * (math.cos(theta) * basis[3 * j + k] + math.sin(theta) * basis[9 + j])

    for j, k in enumerate(dominant):
        other = (k + 1) % 3
        for angle, subcentre, kept in [
            (20, k, True), (20, k, True), (20, k, True), (20, k, True),
            (60, k, True), (80, k, False), (10, other, False), (10, other, False),
        ]:  # fmt: skip
            rows.append(at(angle, subcentre, j))
            labels.append(j)
            keep.append(kept)
    with torch.no_grad():  # the training counts of class 3 (no sample): dominant k = 2
        head.subcenter_counts[3] = torch.tensor([1, 0, 7])
    return head, torch.stack(rows), torch.tensor(labels), torch.tensor(keep), [*dominant, 2]


def test_drop_non_dominant_drops_the_noise_and_keeps_the_dominant_subcenters() -> None:
    head, embeddings, labels, expected_keep, dominant = cleaning_problem()
    old = head.weight.detach().view(4, 3, 12).clone()
    old_counts = head.subcenter_counts.clone()
    keep = head.drop_non_dominant(embeddings, labels)
    assert keep.dtype == torch.bool and torch.equal(keep, expected_keep)
    assert head.subcenters == 1 and head.weight.shape == (4, 12)
    assert torch.equal(head.weight.detach(), old[torch.arange(4), dominant])
    assert torch.equal(head.class_weight(), head.weight.detach())
    assert head.subcenter_counts.shape == (4, 1)
    assert head.subcenter_counts[:, 0].tolist() == old_counts[torch.arange(4), dominant].tolist()
    assert "subcenters=1" in repr(head)
    # the head trains on (a new optimiser holds the new weight), and its state loads into K = 1
    head(embeddings[keep], labels[keep]).backward()
    assert head.weight.grad is not None and head.weight.grad.shape == (4, 12)
    assert head.subcenter_counts[:, 0].tolist() == [5, 5, 5, 7]  # + the kept samples
    restored = make_head(4, 12, subcenters=1)
    restored.load_state_dict(head.state_dict())
    assert torch.equal(restored.weight, head.weight)


def test_drop_threshold_is_the_given_angle() -> None:
    head, embeddings, labels, expected_keep, _ = cleaning_problem()
    keep = head.drop_non_dominant(embeddings, labels, max_angle=math.radians(85.0))
    eighty = torch.tensor([False, False, False, False, False, True, False, False] * 3)
    assert torch.equal(keep, expected_keep | eighty)  # the 80-degree samples are now kept


@pytest.mark.parametrize(
    ("max_angle", "error", "match"),
    [
        (0.0, ValueError, r"^max_angle must lie in \(0, pi\] radians; got 0.0$"),
        (-1.0, ValueError, r"^max_angle must lie in"),
        (4.0, ValueError, r"^max_angle must lie in"),
        (math.nan, ValueError, r"^max_angle must lie in"),
        (True, TypeError, r"^max_angle must be a real number \(radians\); got bool$"),
        ("75", TypeError, r"^max_angle must be a real number"),
    ],
)
def test_drop_arguments_are_validated(
    max_angle: object, error: type[Exception], match: str
) -> None:
    head, embeddings, labels, _, _ = cleaning_problem()
    with pytest.raises(error, match=match):
        head.drop_non_dominant(embeddings, labels, max_angle)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        head.drop_non_dominant(embeddings, labels + 4)
    with pytest.raises(ValueError, match=r"embeddings must have 12 columns"):
        head.drop_non_dominant(embeddings[:, :5], labels)
    assert head.subcenters == 3 and head.weight.shape == (12, 12)  # untouched


def test_no_warning_at_the_paper_defaults_for_many_classes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        head = SubCenterArcFace(1000, 16)
    assert head.weight.shape == (3000, 16) and head.class_weight().shape == (1000, 16)
