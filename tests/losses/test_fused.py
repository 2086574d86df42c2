"""The fused path (``MarginHead.forward``) against the reference composition.

The reference is ``F.cross_entropy(head.margin_logits(x, y), y)``: normalise / matmul /
scatter with autograd (``MarginHead.margin_logits``), an independent computation of the same
loss (it shares only the geometry and the (B,) target logits with the fused path). Values and
gradients (embeddings, weight, bias, learned scale) must agree for every head, in float64 and
float32, for several shapes including D = 2 and B = 1.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from marginkit.losses import available, build
from marginkit.losses.fused import NegativeModulation, column_norms, fused_margin_cross_entropy

from .runs import RUN_STEPS, training_loss

HEADS = [
    ("softmax", {}),
    ("softmax", {"bias": True}),
    ("lsoftmax", {}),
    ("lsoftmax", {"margin": 3, "lambda_": 0.0}),
    ("sphereface", {"lambda_": 0.0}),
    ("sphereface", {}),
    ("normface", {}),
    ("normface", {"learn_scale": True}),
    ("cosface", {}),
    ("cosface", {"learn_scale": True}),
    ("arcface", {}),
    ("arcface", {"learn_scale": True}),
    ("arcface", {"margin": 1.5, "fallback": "continuous"}),
    ("combined", {"multiplicative": 1.3, "angular": 0.2, "additive": 0.1}),
    ("combined", {"multiplicative": 1.0, "angular": 0.5, "additive": 0.0}),
    ("combined", {"multiplicative": 1.3, "angular": 0.2, "additive": 0.1, "learn_scale": True}),
    ("virtual", {}),
    ("camsoftmax", {"c": 1.2}),
    ("camsoftmax", {"c": 1.2, "normalize": False}),
    ("camsoftmax", {"c": 1.2, "learn_scale": True}),
    ("camsoftmax", {}),
    ("adacos", {}),
    ("magface", {}),
    ("magface", {"fallback": "continuous", "learn_scale": True}),
    ("adaface", {}),
    ("subcenter", {}),
    ("subcenter", {"subcenters": 2, "learn_scale": True}),
    ("curricularface", {}),
    ("curricularface", {"margin": 1.2, "learn_scale": True}),
]
SHAPES = [(8, 5, 13), (1, 2, 3), (16, 2, 40), (5, 32, 7)]  # (B, D, C)
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kwargs.items())}" for name, kwargs in HEADS]


def make_case(name, kwargs, batch, dim, classes, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    head = build(name, num_classes=classes, embedding_dim=dim, **kwargs).to(dtype)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator, dtype=dtype))
        if getattr(head, "bias", None) is not None:
            head.bias.copy_(torch.randn(classes, generator=generator, dtype=dtype))
        if hasattr(head, "t"):  # CurricularFace: its hard negatives modulated
            head.t.fill_(0.3)
    embeddings = torch.randn(batch, dim, generator=generator, dtype=dtype) * 3.0
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return head.eval(), embeddings, labels


def loss_and_grads(head, embeddings, labels, fused):
    embeddings = embeddings.clone().requires_grad_(True)
    if fused:
        loss = head(embeddings, labels)
    else:
        loss = training_loss(head, head.margin_logits(embeddings, labels), embeddings, labels)
    parameters = [p for p in head.parameters() if p.requires_grad]
    return [loss.detach(), *torch.autograd.grad(loss, [embeddings, *parameters])]


def assert_all_close(actual, expected, rtol, atol_scale):
    for got, want in zip(actual, expected, strict=True):
        atol = atol_scale * max(1.0, float(want.abs().max()))
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("name", "kwargs"), HEADS, ids=IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-D{}-C{}".format(*s))
def test_fused_matches_reference_float64(name, kwargs, shape):
    head, embeddings, labels = make_case(name, kwargs, *shape, torch.float64, seed=sum(shape))
    fused = loss_and_grads(head, embeddings, labels, fused=True)
    reference = loss_and_grads(head, embeddings, labels, fused=False)
    assert_all_close(fused, reference, rtol=1e-10, atol_scale=1e-12)


@pytest.mark.parametrize(("name", "kwargs"), HEADS, ids=IDS)
@pytest.mark.parametrize(
    "shape", [(8, 5, 13), (32, 64, 100)], ids=lambda s: "B{}-D{}-C{}".format(*s)
)
def test_fused_matches_reference_float32(name, kwargs, shape):
    """float32 fused and float32 reference both within 1e-5 (relative) of float64."""
    head, embeddings, labels = make_case(name, kwargs, *shape, torch.float32, seed=7)
    fused = loss_and_grads(head, embeddings, labels, fused=True)
    reference = loss_and_grads(head, embeddings, labels, fused=False)
    assert_all_close(fused, reference, rtol=1e-5, atol_scale=1e-5)


def test_learned_scale_gets_the_reference_gradient():
    head, embeddings, labels = make_case(
        "normface", {"learn_scale": True}, 8, 5, 13, torch.float64, 3
    )
    fused = loss_and_grads(head, embeddings, labels, fused=True)
    reference = loss_and_grads(head, embeddings, labels, fused=False)
    # parameters() order: weight, log_scale
    assert float(fused[-1].abs()) > 1e-6
    torch.testing.assert_close(fused[-1], reference[-1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ["cosface", "sphereface", "arcface"])
def test_clamped_cosines_match_reference(name):
    """Embeddings parallel or antiparallel to class weights: rounding pushes some cosines
    past +-1 and the clamp bites (checked), in target and non-target entries alike."""
    generator = torch.Generator().manual_seed(1)
    head = build(name, num_classes=6, embedding_dim=5).double().eval()
    with torch.no_grad():
        head.weight.copy_(torch.randn(6, 5, dtype=torch.float64, generator=generator))
    factors = torch.rand(40, 1, dtype=torch.float64, generator=generator) * 10.0 + 0.1
    signs = torch.where(torch.arange(40) % 3 == 0, -1.0, 1.0).double().unsqueeze(1)
    classes = torch.arange(40) % 6
    embeddings = head.weight.detach()[classes] * factors * signs  # (40, 5)
    labels = (classes + (torch.arange(40) // 6) % 2) % 6  # some on the target, some not
    x = embeddings / embeddings.norm(dim=1, keepdim=True)
    w = head.weight.detach() / head.weight.detach().norm(dim=1, keepdim=True)
    raw = x @ w.t()
    assert bool((raw.abs() > 1.0).any()), "the case must exercise the clamp"
    fused = loss_and_grads(head, embeddings, labels, fused=True)
    reference = loss_and_grads(head, embeddings, labels, fused=False)
    assert all(bool(torch.isfinite(t).all()) for t in fused)
    assert_all_close(fused, reference, rtol=1e-7, atol_scale=1e-9)


@pytest.mark.parametrize("name", ["arcface", "sphereface", "virtual", "camsoftmax"])
@pytest.mark.parametrize("magnitude", [1e-30, 1e30])
def test_tiny_and_huge_norms_are_finite(name, magnitude):
    head = build(name, num_classes=6, embedding_dim=4).set_total_steps(RUN_STEPS)
    embeddings = (torch.randn(5, 4) * magnitude).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 3, 5])
    loss = head(embeddings, labels)
    loss.backward()
    assert bool(torch.isfinite(loss))
    assert bool(torch.isfinite(embeddings.grad).all())
    assert bool(torch.isfinite(head.weight.grad).all())


def test_column_norms_match_scaled_norms_at_extremes():
    weight = torch.randn(5, 7)
    weight[1] *= 1e-30
    weight[2] *= 1e25
    expected = weight.double().norm(dim=1).float()
    torch.testing.assert_close(column_norms(weight), expected, rtol=1e-6, atol=0.0)


def test_fused_function_gradcheck():
    """torch.autograd.gradcheck of the Function itself (rows, weight, bias), float64."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(4, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(6, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 5, 2, 2])

    def target_function(rows, target_weight):
        cosine = torch.nn.functional.cosine_similarity(rows, target_weight, dim=1)
        radial = rows.norm(dim=1) * target_weight.norm(dim=1)
        return radial * (cosine - 0.3) ** 3, radial * 0.5, cosine.detach()

    for normalized_weight, chunk_size in [(True, None), (False, None), (True, 4), (False, 5)]:
        use_bias = None if normalized_weight else bias

        def loss(rows, weight, bias=use_bias, normalized=normalized_weight, chunk=chunk_size):
            return fused_margin_cross_entropy(
                rows,
                weight,
                bias,
                labels,
                target_function,
                normalized_weight=normalized,
                chunk_size=chunk,
            )[0]

        inputs = (rows, weight) if use_bias is None else (rows, weight, use_bias)
        # nondet_tol: the weight gradient's reduction order may differ by one ulp between calls
        assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-8, nondet_tol=1e-12)


def smooth_descendant_point(seed: int, subcenters: int):
    """rows (4, 3), weight (5 K, 3), labels, boundaries (4,): every cosine at least 0.01 from
    +-1, from its row's boundary and (K > 1) from the next-largest sub-centre's of its
    class, so that no clamp, hard-negative test or arg-max flips within gradcheck's steps."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(1000):
        rows = torch.randn(4, 3, dtype=torch.float64, generator=generator) * 2.0
        weight = torch.randn(5 * subcenters, 3, dtype=torch.float64, generator=generator)
        labels = torch.randint(0, 5, (4,), generator=generator)
        boundary = torch.rand(4, dtype=torch.float64, generator=generator) - 0.5
        cosines = F.normalize(rows, dim=1) @ F.normalize(weight, dim=1).T  # (B, 5 K)
        top = cosines.view(4, 5, subcenters).topk(min(2, subcenters), dim=2).values
        gaps = [1.0 - top[:, :, 0].abs(), (top[:, :, 0] - boundary.unsqueeze(1)).abs()]
        if subcenters > 1:
            gaps.append(top[:, :, 0] - top[:, :, 1])
        if all(float(gap.min()) > 0.01 for gap in gaps):
            return rows, weight, labels, boundary
    raise RuntimeError("no smooth point found")


@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("descendant", ["subcenters", "modulation"])
def test_fused_function_gradcheck_descendants(descendant: str, chunk_size) -> None:
    """torch.autograd.gradcheck of the Function with three sub-centres a class, or with
    CurricularFace's modulation (rows of any norm: the radial term is checked too)."""
    subcenters = 3 if descendant == "subcenters" else 1
    rows, weight, labels, boundary = smooth_descendant_point(subcenters, subcenters)
    modulation = NegativeModulation(0.3, boundary) if descendant == "modulation" else None

    def target_function(rows, target_weight):
        cosine = torch.nn.functional.cosine_similarity(rows, target_weight, dim=1)
        return rows.norm(dim=1) * (cosine - 0.3) ** 3, None, cosine.detach()

    def loss(rows, weight):
        return fused_margin_cross_entropy(
            rows,
            weight,
            None,
            labels,
            target_function,
            normalized_weight=True,
            chunk_size=chunk_size,
            subcenters=subcenters,
            modulation=modulation,
        )[0]

    inputs = (rows.requires_grad_(True), weight.requires_grad_(True))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-8, nondet_tol=1e-12)


def test_descendants_need_normalized_weights() -> None:
    rows, weight = torch.randn(2, 3), torch.randn(6, 3)
    for options in ({"subcenters": 2}, {"modulation": NegativeModulation(0.1, torch.zeros(2))}):
        with pytest.raises(ValueError, match=r"^subcenters > 1 and modulation need norm"):
            fused_margin_cross_entropy(
                rows,
                weight,
                None,
                torch.tensor([0, 1]),
                lambda r, w: (r.sum(1), None, r.sum(1)),
                normalized_weight=False,
                **options,
            )


def test_autocast_bfloat16_matches_float32():
    head = build("arcface", num_classes=20, embedding_dim=8)
    embeddings = torch.randn(6, 8)
    labels = torch.randint(0, 20, (6,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(embeddings.bfloat16(), labels)
    assert loss.dtype == torch.float32
    assert head.weight.dtype == torch.float32
    reference = F.cross_entropy(head.margin_logits(embeddings.bfloat16(), labels), labels)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)


def test_training_steps_schedules_with_detached_target_cosines():
    head = build("camsoftmax", num_classes=10, embedding_dim=4).set_total_steps(RUN_STEPS)
    seen = []
    schedule = head.schedules["c"]
    original = schedule.advance

    def spy(step, target_cosines=None):
        seen.append(target_cosines)
        original(step, target_cosines)

    schedule.advance = spy
    embeddings = torch.randn(5, 4, requires_grad=True)
    labels = torch.randint(0, 10, (5,))
    head.train()
    head(embeddings, labels)
    assert int(head.step) == 1
    assert seen[0] is not None and not seen[0].requires_grad
    expected = torch.nn.functional.cosine_similarity(embeddings, head.weight[labels], dim=1)
    torch.testing.assert_close(seen[0], expected.detach(), rtol=1e-5, atol=1e-6)
    head.eval()
    head(embeddings, labels)
    assert int(head.step) == 1


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("name", available())
def test_loss_and_correct_matches_the_argmax_of_the_plain_logits(name: str, chunk_size) -> None:
    """The running accuracy from the fused pass equals argmax(logits) == label, and the loss
    is forward's."""
    generator = torch.Generator().manual_seed(7)
    head = build(name, num_classes=7, embedding_dim=5)
    head.set_chunk_size(chunk_size)  # every head: sub-centres and CurricularFace included
    head.set_total_steps(RUN_STEPS)
    head.eval()  # no schedule advances: both calls see the same hyper-parameters
    embeddings = torch.randn(64, 5, generator=generator)
    labels = torch.randint(0, 7, (64,), generator=generator)
    loss, correct = head.loss_and_correct(embeddings, labels)
    expected = head.logits(embeddings).argmax(1) == labels
    assert correct.dtype == torch.bool and correct.shape == (64,)
    assert torch.equal(correct, expected)
    assert 0 < int(correct.sum()) < 64  # both outcomes occur
    assert torch.equal(loss, head(embeddings, labels))
    classes = torch.unique(torch.cat([labels, torch.tensor([6])]))
    _, sampled = head.loss_and_correct(embeddings, labels, classes=classes)
    among = head.logits(embeddings)[:, classes].argmax(1)
    assert torch.equal(sampled, classes[among] == labels)
