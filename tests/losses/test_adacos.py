"""AdaCos against a naive float64 re-implementation of the paper (Zhang et al., CVPR 2019).

The reference below is written from the paper's eq. 14 (``s_f = sqrt(2) ln(C - 1)``), eq. 16
and Algorithm 1 (``B_avg`` at the previous scale, the median target angle, update then use),
one sample and one class at a time, with ``acos`` taken directly and the scale a constant of
the step (no gradient through it). It shares no code with marginkit.
"""

from __future__ import annotations

import copy
import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from marginkit.losses.adacos import AdaCos, dynamic_scale, log_mean_nontarget_sum
from marginkit.losses.head import MAX_SCALE

from .reference import EDGES, edge_embeddings

# ------------------------------------------------------------------------------ reference


def reference_adacos(
    embeddings: Tensor, weight: Tensor, labels: Tensor, previous_scale: float, update: bool
) -> tuple[Tensor, Tensor, float]:
    """The paper's loss, logits and scale for one batch, written out.

    Args:
        embeddings: (B, D) float64; weight: (C, D) float64; labels: (B,).
        previous_scale: ``s^(t-1)`` (the stored scale).
        update: a training step (Algorithm 1: new scale first, then the logits) or not.

    Returns:
        The mean cross-entropy, the (B, C) logits ``s cos theta_ij`` and the scale used.
    """
    batch, classes = embeddings.shape[0], weight.shape[0]
    cosine = [
        [
            (embeddings[i] * weight[j]).sum()
            / (torch.sqrt((embeddings[i] ** 2).sum()) * torch.sqrt((weight[j] ** 2).sum()))
            for j in range(classes)
        ]
        for i in range(batch)
    ]
    scale = previous_scale
    if update:
        total = 0.0
        for i in range(batch):
            for j in range(classes):
                if j != int(labels[i]):
                    total += math.exp(previous_scale * float(cosine[i][j].detach()))
        b_avg = total / batch
        angles = sorted(float(torch.acos(cosine[i][int(labels[i])].detach())) for i in range(batch))
        median = angles[(batch - 1) // 2]  # torch.median's: the lower middle one for even B
        scale = math.log(b_avg) / math.cos(min(math.pi / 4, median))
    logits = torch.stack([torch.stack([scale * c for c in row]) for row in cosine])
    losses = []
    for i in range(batch):
        row = logits[i]
        losses.append(torch.log(torch.exp(row).sum()) - row[int(labels[i])])
    return torch.stack(losses).sum() / batch, logits, scale


# -------------------------------------------------------------------------------- helpers


def make_problem(
    batch: int, classes: int, dim: int, seed: int, low: float = 0.1, high: float = 1.3
) -> tuple[Tensor, Tensor, Tensor]:
    """float64 embeddings (B, D) at target angles drawn in [low, high] (so that the median
    angle is sometimes below pi / 4 and sometimes capped), varied norms; weight (C, D)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, dim, dtype=torch.float64, generator=generator)
    weight = weight * (0.5 + 1.5 * torch.rand(classes, 1, generator=generator).double())
    labels = torch.randint(0, classes, (batch,), generator=generator)
    angles = low + (high - low) * torch.rand(batch, generator=generator).double()
    norms = 0.5 + 2.5 * torch.rand(batch, generator=generator).double()
    rows = []
    for i in range(batch):
        unit = weight[labels[i]] / weight[labels[i]].norm()
        other = torch.randn(dim, dtype=torch.float64, generator=generator)
        other = other - (other @ unit) * unit
        other = other / other.norm()
        rows.append(norms[i] * (math.cos(angles[i]) * unit + math.sin(angles[i]) * other))
    return torch.stack(rows), weight, labels


def make_head(weight: Tensor, dynamic: bool = True, scale: float | None = None) -> AdaCos:
    """A float64 head with the given weight, its stored scale ``scale`` (default: s_f)."""
    classes, dim = weight.shape
    head = AdaCos(classes, dim, dynamic=dynamic).double()
    with torch.no_grad():
        head.weight.copy_(weight)
        if dynamic and scale is not None:
            head.adaptive_scale.fill_(scale)
    return head


def head_step(head: AdaCos, embeddings: Tensor, labels: Tensor, **kwargs) -> list[Tensor]:
    x = embeddings.clone().requires_grad_(True)
    head.zero_grad()
    loss = head(x, labels, **kwargs)
    loss.backward()
    assert x.grad is not None and head.weight.grad is not None
    return [loss.detach(), x.grad, head.weight.grad.clone()]


def reference_step(
    embeddings: Tensor, weight: Tensor, labels: Tensor, previous: float, update: bool
) -> tuple[list[Tensor], float]:
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss, _, scale = reference_adacos(x, w, labels, previous, update)
    loss.backward()
    assert x.grad is not None and w.grad is not None
    return [loss.detach(), x.grad, w.grad], scale


def assert_close_all(actual: list[Tensor], expected: list[Tensor], rtol: float = 1e-10) -> None:
    for what, got, want in zip(
        ["loss", "d/dx", "d/dW"][: len(actual)], actual, expected, strict=True
    ):
        torch.testing.assert_close(got, want, rtol=rtol, atol=1e-12, msg=lambda m, w=what: w + m)


def stored(head: AdaCos) -> float:
    return float(head.adaptive_scale)


# ---------------------------------------------------------------------- the fixed scale


@pytest.mark.parametrize("classes", [3, 10, 1000, 100_000])
def test_fixed_scale_is_sqrt2_ln_c_minus_1(classes: int) -> None:
    expected = math.sqrt(2.0) * math.log(classes - 1)
    fixed = AdaCos(classes, 4, dynamic=False)
    assert fixed.hyperparameters() == {"scale": expected}
    assert fixed.scale_value() == expected and fixed.radial_factor(1.0) == expected
    assert "adaptive_scale" not in fixed.state_dict()
    dynamic = AdaCos(classes, 4)
    assert stored(dynamic) == expected  # float64 buffer: exact


@pytest.mark.parametrize(
    "convert",
    [
        lambda head: head.double(),
        lambda head: head.to(torch.float64),
        lambda head: head.float().half().to(torch.float64),
    ],
    ids=["double", "to-float64", "through-half"],
)
def test_float64_head_starts_from_the_exact_fixed_scale(convert) -> None:
    """C = 11: s_f = sqrt(2) ln 10, which float32 rounds by 3.5e-8 (relative). The float64
    head starts from it exactly, so its first training step and an eval step equal the
    paper's formula in float64 to 1e-12, however the head was converted."""
    exact = math.sqrt(2.0) * math.log(10.0)
    assert float(torch.tensor(exact, dtype=torch.float32)) != exact  # float32 would round it
    embeddings, weight, labels = make_problem(8, 11, 6, seed=21)
    head = convert(AdaCos(11, 6))
    assert head.weight.dtype == torch.float64 and head.adaptive_scale.dtype == torch.float64
    assert float(head.adaptive_scale) == exact and head.hyperparameters()["scale"] == exact
    with torch.no_grad():
        head.weight.copy_(weight)
    expected, _ = reference_step(embeddings, weight, labels, exact, update=False)
    assert_close_all(head_step(head.eval(), embeddings, labels), expected, rtol=1e-12)
    expected, scale = reference_step(embeddings, weight, labels, exact, update=True)
    assert_close_all(head_step(head.train(), embeddings, labels), expected, rtol=1e-12)
    assert stored(head) == pytest.approx(scale, rel=1e-13)


def test_scale_buffer_stays_float64_and_loads_a_float32_one() -> None:
    """``.to(dtype)`` converts the weight, never the scale's buffer (bookkeeping); a state
    saved with a float32 buffer (before the buffer became float64) still loads."""
    head = AdaCos(11, 4).float()
    assert head.weight.dtype == torch.float32 and head.adaptive_scale.dtype == torch.float64
    state = {**head.state_dict(), "adaptive_scale": torch.tensor(3.25, dtype=torch.float32)}
    head.load_state_dict(state)
    assert head.adaptive_scale.dtype == torch.float64 and stored(head) == 3.25


# ---------------------------------------------------------------- reference: values, grads


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(6, 4, 2), (7, 5, 8), (8, 6, 16)], ids=str)
def test_training_steps_match_reference(shape: tuple[int, int, int], seed: int) -> None:
    """Two training steps: each uses the scale updated from its own batch at the previous
    scale; loss, gradients and the stored scale match the paper's algorithm."""
    batch, classes, dim = shape
    embeddings, weight, labels = make_problem(batch, classes, dim, seed)
    second, _, second_labels = make_problem(batch, classes, dim, seed + 100)
    head = make_head(weight)
    previous = math.sqrt(2.0) * math.log(classes - 1)
    for x, y in ((embeddings, labels), (second, second_labels)):
        expected, scale = reference_step(x, weight, y, previous, update=True)
        assert_close_all(head_step(head, x, y), expected)
        assert stored(head) == pytest.approx(scale, rel=1e-12)
        assert head.hyperparameters()["scale"] == stored(head)
        assert scale != pytest.approx(previous, rel=1e-3)  # the scale did move
        previous = scale


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("shape", [(6, 4, 2), (8, 6, 16)], ids=str)
def test_eval_mode_matches_reference_with_the_stored_scale(
    shape: tuple[int, int, int], seed: int
) -> None:
    embeddings, weight, labels = make_problem(*shape, seed)
    head = make_head(weight, scale=7.25).eval()
    expected, scale = reference_step(embeddings, weight, labels, 7.25, update=False)
    assert scale == 7.25
    assert_close_all(head_step(head, embeddings, labels), expected)
    assert stored(head) == 7.25


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shape", [(5, 3, 2), (6, 7, 8)], ids=str)
def test_fixed_scale_matches_reference(shape: tuple[int, int, int], mode: str) -> None:
    embeddings, weight, labels = make_problem(*shape, seed=5)
    head = make_head(weight, dynamic=False).train(mode == "train")
    fixed = math.sqrt(2.0) * math.log(shape[1] - 1)
    expected, _ = reference_step(embeddings, weight, labels, fixed, update=False)
    assert_close_all(head_step(head, embeddings, labels), expected)


@pytest.mark.parametrize("dim", [2, 8])
def test_margin_logits_and_logits_match_reference(dim: int) -> None:
    embeddings, weight, labels = make_problem(6, 5, dim, seed=6)
    head = make_head(weight, scale=3.5)
    for update in (True, False):  # training mode: the scale the next step would use
        head.train(update)
        _, logits, _ = reference_adacos(embeddings, weight, labels, 3.5, update)
        got = head.margin_logits(embeddings, labels)
        torch.testing.assert_close(got, logits, rtol=1e-10, atol=1e-12)
        assert stored(head) == 3.5
        _, plain, _ = reference_adacos(embeddings, weight, labels, 1.0, update=False)
        torch.testing.assert_close(head.logits(embeddings), plain, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------ the scale rule


def angle_batch(angles: list[float], classes: int = 5, dim: int = 6) -> tuple[Tensor, ...]:
    """Embeddings at exactly the given target angles (float64), labels cycling."""
    generator = torch.Generator().manual_seed(11)
    weight = torch.randn(classes, dim, dtype=torch.float64, generator=generator)
    labels = torch.arange(len(angles)) % classes
    rows = []
    for angle, label in zip(angles, labels, strict=True):
        unit = weight[label] / weight[label].norm()
        other = torch.randn(dim, dtype=torch.float64, generator=generator)
        other = other - (other @ unit) * unit
        rows.append(math.cos(angle) * unit + math.sin(angle) * other / other.norm())
    return torch.stack(rows), weight, labels


def brute_log_b_avg(embeddings: Tensor, weight: Tensor, labels: Tensor, scale: float) -> float:
    cosine = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T
    mask = torch.ones_like(cosine, dtype=torch.bool).scatter(1, labels.unsqueeze(1), False)
    return math.log(float(torch.exp(scale * cosine[mask]).sum()) / embeddings.shape[0])


@pytest.mark.parametrize(
    ("angles", "median"),
    [
        ([0.7, 0.1, 0.5, 0.3], 0.3),  # even B: the lower middle angle, not 0.4 nor 0.5
        ([0.6, 0.2, 0.4], 0.4),  # odd B: the middle one
        ([0.2, 1.2, 1.3, 1.4], math.pi / 4),  # the median 1.2 is capped at pi / 4
    ],
)
def test_scale_uses_lower_median_angle_capped_at_pi_over_4(
    angles: list[float], median: float
) -> None:
    embeddings, weight, labels = angle_batch(angles)
    previous = torch.tensor(4.0, dtype=torch.float64)
    got = float(dynamic_scale(embeddings, weight, labels, previous))
    log_b_avg = brute_log_b_avg(embeddings, weight, labels, 4.0)
    assert log_b_avg > 0
    assert got == pytest.approx(log_b_avg / math.cos(median), rel=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 50])
def test_chunked_equals_unchunked(chunk_size: int) -> None:
    embeddings, weight, labels = make_problem(9, 7, 4, seed=7)
    whole, chunked = make_head(weight), make_head(weight).set_chunk_size(chunk_size)
    for _ in range(2):  # the second step starts from the first's scale
        assert_close_all(
            head_step(chunked, embeddings, labels), head_step(whole, embeddings, labels), 1e-12
        )
        assert stored(chunked) == pytest.approx(stored(whole), rel=1e-13)
    unit = F.normalize(embeddings, dim=1)
    scale = torch.tensor(30.0, dtype=torch.float64)
    one = log_mean_nontarget_sum(unit, weight, labels, scale)
    blocks = log_mean_nontarget_sum(unit, weight, labels, scale, chunk_size)
    assert float(blocks) == pytest.approx(float(one), rel=1e-13)


def test_log_b_avg_has_no_overflow_at_the_largest_scale_in_float32() -> None:
    embeddings, weight, labels = make_problem(8, 6, 5, seed=8)
    head = make_head(weight, scale=MAX_SCALE).float()
    loss = head(embeddings.float(), labels)
    assert torch.isfinite(loss) and 0 < stored(head) <= MAX_SCALE
    unit = F.normalize(embeddings, dim=1)
    exact = log_mean_nontarget_sum(
        unit, weight, labels, torch.tensor(MAX_SCALE, dtype=torch.float64)
    )
    in_float32 = log_mean_nontarget_sum(
        unit.float(), weight.float(), labels, torch.tensor(MAX_SCALE)
    )
    assert torch.isfinite(in_float32)
    assert float(in_float32) == pytest.approx(float(exact), rel=1e-5)


def test_scale_is_capped_at_max_scale() -> None:
    """Every non-target cosine +1 (collapsed classes): ln B_avg = s + ln(C - 1) would pass
    MAX_SCALE."""
    weight = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    embeddings = torch.tensor([[3.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    head = make_head(weight, scale=MAX_SCALE - 0.5)
    loss = head(embeddings.requires_grad_(True), labels)
    loss.backward()
    assert stored(head) == MAX_SCALE
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all()


def test_non_positive_value_keeps_the_previous_scale() -> None:
    """Both non-target cosines -1 (three classes): ln B_avg = ln 2 - s_f < 0, so the paper's
    formula gives a negative scale; the previous (positive) scale is kept."""
    weight = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [-2.0, 0.0]], dtype=torch.float64)
    embeddings = torch.tensor([[2.0, 0.0], [0.5, 0.0], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.zeros(3, dtype=torch.long)
    head = make_head(weight)
    start = stored(head)
    unit = F.normalize(embeddings, dim=1)
    log_b_avg = log_mean_nontarget_sum(
        unit, weight, labels, torch.tensor(start, dtype=torch.float64)
    )
    assert float(log_b_avg) == pytest.approx(math.log(2.0) - start, rel=1e-12)
    assert float(log_b_avg) < 0  # the unguarded rule would give a negative scale
    for dtype in (torch.float64, torch.float32):
        head = make_head(weight).to(dtype)
        loss = head(embeddings.to(dtype).requires_grad_(True), labels)
        loss.backward()
        assert stored(head) == pytest.approx(start, rel=1e-6) and stored(head) > 0
        assert torch.isfinite(loss)


def test_softmax_over_the_target_alone_keeps_the_scale() -> None:
    """A class subset of one class: no non-target term, ln B_avg = -inf."""
    embeddings, weight, _ = make_problem(4, 5, 3, seed=9)
    labels = torch.full((4,), 2)
    head = make_head(weight, scale=6.0)
    loss = head(embeddings, labels, classes=torch.tensor([2]))
    assert float(loss.detach()) == 0.0 and stored(head) == 6.0


# ---------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("dim", [2, 4])
@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-eval", "fixed-train"])
def test_gradcheck(dim: int, dynamic: bool) -> None:
    """The scale is a constant of each step (a detached statistic), so the derivative is
    checked with it held: the stored scale in eval mode, s_f in training mode."""
    embeddings, weight, labels = make_problem(5, 3, dim, seed=dim, low=0.2, high=2.5)
    head = make_head(weight, dynamic=dynamic, scale=5.0).train(not dynamic)

    def loss(x: Tensor, w: Tensor) -> Tensor:
        return functional_call(head, {"weight": w}, (x, labels))

    inputs = (embeddings.requires_grad_(True), weight.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic", "fixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("dim", [2, 16])
def test_finite_loss_and_gradients_at_edges(
    dim: int, edge: str, dtype: torch.dtype, dynamic: bool
) -> None:
    head = AdaCos(4, dim, dynamic=dynamic).to(dtype)
    labels = torch.tensor([0, 1, 2, 3, 1, 0])
    for step in range(2):  # the second step starts from the first's scale
        embeddings = edge_embeddings(edge, head.weight[labels], dtype).requires_grad_(True)
        head.zero_grad()
        loss = head(embeddings, labels)
        loss.backward()
        assert loss.dtype == dtype and torch.isfinite(loss), f"step {step}: loss {loss}"
        assert torch.isfinite(embeddings.grad).all()
        assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()
        scale = head.hyperparameters()["scale"]
        assert 0.0 < scale <= MAX_SCALE and math.isfinite(scale)
    assert torch.isfinite(head.margin_logits(embeddings.detach(), labels)).all()
    assert torch.isfinite(head.logits(embeddings.detach())).all()


def test_bfloat16_autocast_float32_head() -> None:
    backbone = torch.nn.Linear(6, 8)
    head = AdaCos(5, 8)
    twin = copy.deepcopy(head)
    inputs, labels = torch.randn(6, 6), torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = backbone(inputs)
        assert embeddings.dtype == torch.bfloat16
        loss = head(embeddings, labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    expected = twin(embeddings.detach().float(), labels)  # the same step in float32
    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-6, atol=1e-6)
    assert stored(head) == stored(twin) and head.adaptive_scale.dtype == torch.float64
    loss.backward()
    for parameter in [*head.parameters(), *backbone.parameters()]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()


# ---------------------------------------------------------------------------- contract


@pytest.mark.parametrize(
    ("kwargs", "error", "argument"),
    [
        ({"num_classes": 2}, ValueError, "num_classes must be >= 3"),
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"num_classes": 3.0}, TypeError, "num_classes"),
        ({"embedding_dim": 0}, ValueError, "embedding_dim"),
        ({"dynamic": 1}, TypeError, "dynamic must be a bool"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict, error: type, argument: str) -> None:
    arguments = {"num_classes": 5, "embedding_dim": 3, **kwargs}
    with pytest.raises(error, match=argument) as raised:
        AdaCos(**arguments)
    assert "\n" not in str(raised.value)


def test_bad_inputs_are_refused_by_the_base() -> None:
    head = AdaCos(5, 3)
    with pytest.raises(ValueError, match="embedding_dim"):
        head(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch sizes must match"):
        head(torch.randn(4, 3), torch.zeros(3, dtype=torch.long))
    assert int(head.step) == 0 and stored(head) == pytest.approx(math.sqrt(2) * math.log(4))


def test_state_dict_round_trip() -> None:
    embeddings, weight, labels = make_problem(8, 5, 3, seed=10)
    head = make_head(weight).float()
    for _ in range(3):
        head(embeddings.float(), labels)
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert float(state["adaptive_scale"]) == stored(head) != pytest.approx(head.fixed_scale)
    fresh = AdaCos(5, 3)
    fresh.load_state_dict(state)
    assert stored(fresh) == stored(head) and int(fresh.step) == 3
    assert fresh.hyperparameters() == head.hyperparameters()
    for mode in (False, True):
        head.train(mode), fresh.train(mode)
        assert torch.equal(fresh(embeddings.float(), labels), head(embeddings.float(), labels))
        assert stored(fresh) == stored(head)


def test_eval_and_scoring_never_change_the_scale() -> None:
    embeddings, weight, labels = make_problem(6, 5, 4, seed=12)
    head = make_head(weight)
    head(embeddings, labels)
    after_step = stored(head)
    head.eval()
    for _ in range(2):
        head(embeddings, labels)
        head.margin_logits(embeddings, labels)
        head.logits(embeddings)
    assert stored(head) == after_step and int(head.step) == 1
    head.train()
    head.margin_logits(embeddings, labels)
    head.logits(embeddings)
    assert stored(head) == after_step and int(head.step) == 1
    head(embeddings, labels)
    assert stored(head) != after_step and int(head.step) == 2


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_forward_is_cross_entropy_of_margin_logits(mode: str, chunk_size: int | None) -> None:
    embeddings, weight, labels = make_problem(7, 6, 4, seed=13)
    head = make_head(weight, scale=4.5).set_chunk_size(chunk_size).train(mode == "train")
    expected = F.cross_entropy(head.margin_logits(embeddings, labels), labels)
    torch.testing.assert_close(head(embeddings, labels), expected, rtol=1e-12, atol=1e-12)


def test_class_subset() -> None:
    """Eval: the cross-entropy over those columns of margin_logits. Training: the scale is
    that of the softmax actually taken, i.e. B_avg over the sampled classes."""
    embeddings, weight, labels = make_problem(6, 8, 4, seed=14)
    labels = torch.tensor([1, 4, 4, 6, 1, 6])
    classes = torch.tensor([0, 1, 4, 6, 7])
    remapped = torch.tensor([1, 2, 2, 3, 1, 3])
    head = make_head(weight, scale=4.0).eval()
    expected = F.cross_entropy(head.margin_logits(embeddings, labels)[:, classes], remapped)
    torch.testing.assert_close(
        head(embeddings, labels, classes=classes), expected, rtol=1e-12, atol=1e-12
    )
    head.train()
    reference, scale = reference_step(embeddings, weight[classes], remapped, 4.0, update=True)
    got = head_step(head, embeddings, labels, classes=classes)
    assert_close_all(got[:2], reference[:2])
    grad_weight = torch.zeros_like(weight).index_copy(0, classes, reference[2])
    torch.testing.assert_close(got[2], grad_weight, rtol=1e-10, atol=1e-12)
    assert stored(head) == pytest.approx(scale, rel=1e-12)


@pytest.mark.parametrize("classes", [3, 10, 100_000])
def test_no_margin_warning(classes: int) -> None:
    """s_f is below NormFace's bound for most C, but the scale adapts: nothing to warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dynamic in (True, False):
            AdaCos(classes, 8, dynamic=dynamic)


def test_a_shard_holds_its_rows_and_the_whole_scale() -> None:
    from marginkit.distributed.head import ShardedHead

    whole = AdaCos(6, 3)
    sharded = ShardedHead(whole, rank=1, world_size=2)  # the distributed tests train it
    assert torch.equal(sharded.head.weight, whole.weight[3:6])
    assert float(sharded.head.adaptive_scale) == math.sqrt(2.0) * math.log(5)


def test_trains_a_separable_problem() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(15)
    centres = 3.0 * torch.randn(4, 6, generator=generator)
    labels = torch.arange(32) % 4
    inputs = centres[labels] + 0.5 * torch.randn(32, 6, generator=generator)
    backbone, head = torch.nn.Linear(6, 8), AdaCos(4, 8)
    with torch.no_grad():
        before = float((head.logits(backbone(inputs)).argmax(1) == labels).float().mean())
    assert before < 0.7  # not solved before training
    optimiser = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=0.05)
    for _ in range(30):
        optimiser.zero_grad()
        head(backbone(inputs), labels).backward()
        optimiser.step()
    accuracy = float((head.logits(backbone(inputs)).argmax(1) == labels).float().mean())
    assert accuracy >= 0.95
    assert stored(head) != pytest.approx(head.fixed_scale)  # the scale adapted
