"""from_pml: the marginkit head equals the pytorch-metric-learning loss it is built from."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers, regularizers

from marginkit.losses import ArcFace, CosFace, LSoftmax, NormFace, SphereFace, from_pml

NUM_CLASSES = 10
BATCH = 16

#: PML loss (its defaults, except a margin of 3 for L-Softmax / SphereFace) -> marginkit class.
CASES = {
    "arcface": (lambda c, d: pml_losses.ArcFaceLoss(c, d), ArcFace),
    "cosface": (lambda c, d: pml_losses.CosFaceLoss(c, d), CosFace),
    "normface": (lambda c, d: pml_losses.NormalizedSoftmaxLoss(c, d), NormFace),
    "lsoftmax": (lambda c, d: pml_losses.LargeMarginSoftmaxLoss(c, d, margin=3), LSoftmax),
    "sphereface": (lambda c, d: pml_losses.SphereFaceLoss(c, d, margin=3), SphereFace),
}


def _pair(name: str, seed: int, embedding_dim: int):
    torch.manual_seed(seed)
    loss = CASES[name][0](NUM_CLASSES, embedding_dim).double()
    head = from_pml(loss)
    embeddings = torch.randn(BATCH, embedding_dim, dtype=torch.float64)
    labels = torch.randint(0, NUM_CLASSES, (BATCH,))
    return loss, head, embeddings, labels


@pytest.mark.filterwarnings("ignore::marginkit.losses.sanity.MarginWarning")  # PML's margins, D = 2
@pytest.mark.parametrize("embedding_dim", [2, 16])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_and_gradients_equal_pml(name: str, seed: int, embedding_dim: int) -> None:
    loss, head, embeddings, labels = _pair(name, seed, embedding_dim)
    assert type(head) is CASES[name][1]
    pml_input = embeddings.clone().requires_grad_(True)
    head_input = embeddings.clone().requires_grad_(True)
    expected = loss(pml_input, labels)
    actual = head(head_input, labels)
    expected.backward()
    actual.backward()
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(head_input.grad, pml_input.grad, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(head.weight.grad, loss.W.grad.t(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["lsoftmax", "sphereface"])
def test_lsoftmax_has_pml_constant_full_margin_not_the_annealed_default(name: str) -> None:
    """PML has no lambda: the head gets lambda_ = 0 for good, and stays equal after steps,
    whereas marginkit's default head (lambda annealed from 1000) is a different loss."""
    loss, head, embeddings, labels = _pair(name, 3, 4)
    for _ in range(3):
        head(embeddings, labels)  # advances the head's step
    assert head.hyperparameters() == {"lambda_": 0.0}
    torch.testing.assert_close(head(embeddings, labels), loss(embeddings, labels))
    default = CASES[name][1](NUM_CLASSES, 4, margin=3).double().set_total_steps(100)
    with torch.no_grad():
        default.weight.copy_(head.weight)
    assert default(embeddings, labels) < loss(embeddings, labels) - 0.1


def test_units_and_hyperparameters_are_converted() -> None:
    arcface = from_pml(pml_losses.ArcFaceLoss(5, 3, margin=30.0, scale=32))
    assert arcface.hyperparameters() == pytest.approx({"scale": 32.0, "margin": math.pi / 6})
    normface = from_pml(pml_losses.NormalizedSoftmaxLoss(5, 3, temperature=0.1))
    assert normface.hyperparameters() == pytest.approx({"scale": 10.0})
    cosface = from_pml(pml_losses.CosFaceLoss(5, 3, margin=0.2, scale=16))
    assert cosface.hyperparameters() == pytest.approx({"scale": 16.0, "margin": 0.2})
    sphereface = from_pml(pml_losses.SphereFaceLoss(5, 3, margin=2))
    assert (sphereface.num_classes, sphereface.embedding_dim, sphereface.margin) == (5, 3, 2)


def test_weight_is_a_transposed_copy_owned_by_the_head() -> None:
    loss = pml_losses.CosFaceLoss(6, 4)
    head = from_pml(loss)
    assert head.weight.shape == (6, 4)
    assert head.weight.dtype == loss.W.dtype
    torch.testing.assert_close(head.weight.detach(), loss.W.detach().t(), rtol=0, atol=0)
    assert isinstance(head.weight, torch.nn.Parameter) and head.weight is not loss.W
    before = loss.W.detach().clone()
    with torch.no_grad():
        head.weight.add_(1.0)
    torch.testing.assert_close(loss.W.detach(), before, rtol=0, atol=0)


@pytest.mark.parametrize(
    "value",
    [pml_losses.TripletMarginLoss(), torch.nn.CrossEntropyLoss(), "arcface", None],
)
def test_unsupported_object_is_a_type_error_naming_the_classes(value: object) -> None:
    with pytest.raises(TypeError, match=r"^loss must be .*ArcFaceLoss.*LargeMarginSoftmaxLoss"):
        from_pml(value)


def test_subclass_is_refused() -> None:
    class Custom(pml_losses.ArcFaceLoss):
        pass

    with pytest.raises(TypeError, match="got Custom"):
        from_pml(Custom(4, 3))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: pml_losses.ArcFaceLoss(4, 3, reducer=reducers.SumReducer()), "loss.reducer"),
        (
            lambda: pml_losses.CosFaceLoss(
                4, 3, weight_regularizer=regularizers.RegularFaceRegularizer()
            ),
            "loss.weight_regularizer",
        ),
        (
            lambda: pml_losses.NormalizedSoftmaxLoss(
                4, 3, embedding_regularizer=regularizers.LpRegularizer()
            ),
            "loss.embedding_regularizer",
        ),
        (lambda: pml_losses.LargeMarginSoftmaxLoss(4, 3, scale=2), "loss.scale must be 1"),
        (lambda: pml_losses.SphereFaceLoss(4, 3, scale=0.5), "loss.scale must be 1"),
    ],
)
def test_settings_without_counterpart_are_refused(make, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        from_pml(make())
