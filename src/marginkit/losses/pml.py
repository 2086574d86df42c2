"""From pytorch-metric-learning (PML) to marginkit: :func:`from_pml` builds the equal head.

PML keeps its class weights as ``W`` of shape (D, C), gives ArcFace's margin in degrees
(stored in radians after construction) and NormalizedSoftmaxLoss a temperature ``T``; a
marginkit head holds (C, D) weights, radians and a scale ``s = 1 / T``. What each PML loss
computes, and its marginkit equivalent (same loss and gradients, see
``tests/losses/test_pml.py``):

==========================  ========================================================
PML loss                    marginkit head
==========================  ========================================================
``ArcFaceLoss``             ``ArcFace(scale=s, margin=radians)``: same fallback
                            ``cos(theta) - m sin(m)`` past ``theta + m > pi``
``CosFaceLoss``             ``CosFace(scale=s, margin=m)``
``NormalizedSoftmaxLoss``   ``NormFace(scale=1 / temperature)``
``LargeMarginSoftmaxLoss``  ``LSoftmax(margin=m, lambda_=0.0)``: PML has no lambda
``SphereFaceLoss``          ``SphereFace(margin=m, lambda_=0.0)``: PML has no lambda
==========================  ========================================================

PML's L-Softmax and SphereFace use the paper's ``psi(theta) = (-1)^k cos(m theta) - 2k``
without the softmax blend ``lambda``: the full margin from the first step. The equal
marginkit head therefore has a constant ``lambda_ = 0``, not marginkit's annealed default.

What marginkit has no counterpart for is refused with a ``ValueError`` naming the attribute:
a reducer other than PML's ``MeanReducer`` (marginkit averages over the batch), a weight or
embedding regularizer, a distance with ``power != 1`` or ``p != 2`` (or, for
NormalizedSoftmaxLoss, one that does not normalise the embeddings), and a ``scale != 1`` on
L-Softmax or SphereFace (marginkit's have no scale). PML's miner weights (``indices_tuple``)
have no counterpart either: call the head without them.

pytorch-metric-learning is an optional dependency (the ``bench`` extra); it is imported only
when :func:`from_pml` is called.
"""

from __future__ import annotations

from typing import Any

import torch

from marginkit.losses.arcface import ArcFace
from marginkit.losses.cosface import CosFace
from marginkit.losses.head import MarginHead
from marginkit.losses.lsoftmax import LSoftmax, SphereFace
from marginkit.losses.normface import NormFace

__all__ = ["SUPPORTED", "from_pml"]

#: The PML loss classes :func:`from_pml` converts (exact classes, not subclasses).
SUPPORTED = (
    "ArcFaceLoss",
    "CosFaceLoss",
    "SphereFaceLoss",
    "NormalizedSoftmaxLoss",
    "LargeMarginSoftmaxLoss",
)


def _check_common(loss: Any) -> None:
    """Refuse what the heads cannot reproduce: reducer, regularizers, distance options."""
    from pytorch_metric_learning.reducers import MeanReducer

    for name in ("weight_regularizer", "embedding_regularizer"):
        if getattr(loss, name) is not None:
            raise ValueError(f"loss.{name} must be None (marginkit heads have no regularizer)")
    if type(loss.reducer) is not MeanReducer:
        raise ValueError(
            "loss.reducer must be pytorch_metric_learning's MeanReducer (a marginkit head "
            f"averages over the batch); got {type(loss.reducer).__name__}"
        )
    distance = loss.distance
    if distance.power != 1 or distance.p != 2 or not distance.normalize_embeddings:
        raise ValueError(
            "loss.distance must normalise the embeddings with p=2 and power=1 (the cosine); "
            f"got normalize_embeddings={distance.normalize_embeddings}, p={distance.p}, "
            f"power={distance.power}"
        )


def _check_unit_scale(loss: Any) -> None:
    if loss.scale != 1:
        raise ValueError(
            f"loss.scale must be 1 for {type(loss).__name__} (marginkit's L-Softmax and "
            f"SphereFace have no scale); got {loss.scale}"
        )


def _head(loss: Any) -> MarginHead:
    """The head with PML's hyper-parameters (its weight still the initial one)."""
    name = type(loss).__name__
    num_classes, embedding_dim = loss.W.shape[1], loss.W.shape[0]
    if name == "ArcFaceLoss":  # PML converts its degrees to radians at construction
        return ArcFace(
            num_classes, embedding_dim, scale=float(loss.scale), margin=float(loss.margin)
        )
    if name == "CosFaceLoss":
        return CosFace(
            num_classes, embedding_dim, scale=float(loss.scale), margin=float(loss.margin)
        )
    if name == "NormalizedSoftmaxLoss":
        return NormFace(num_classes, embedding_dim, scale=1.0 / float(loss.temperature))
    _check_unit_scale(loss)
    if name == "SphereFaceLoss":
        return SphereFace(num_classes, embedding_dim, margin=int(loss.margin), lambda_=0.0)
    return LSoftmax(num_classes, embedding_dim, margin=int(loss.margin), lambda_=0.0)


def from_pml(loss: Any) -> MarginHead:
    """The marginkit head that computes the same loss as the PML loss ``loss``.

    The head's weight is a copy of ``loss.W`` transposed to (C, D), on its device and in its
    dtype (the head's own ``nn.Parameter``); the hyper-parameters are PML's, constant.

    Args:
        loss: a ``pytorch_metric_learning.losses`` ``ArcFaceLoss``, ``CosFaceLoss``,
            ``SphereFaceLoss``, ``NormalizedSoftmaxLoss`` or ``LargeMarginSoftmaxLoss``.

    Returns:
        The head, in training mode; ``head(embeddings, labels)`` equals
        ``loss(embeddings, labels)``, and its gradients equal PML's (the weight's transposed).

    Raises:
        TypeError: ``loss`` is not one of the supported classes (subclasses included).
        ValueError: a setting marginkit cannot reproduce (see the module docstring).
    """
    from pytorch_metric_learning import losses as pml_losses

    supported = tuple(getattr(pml_losses, name) for name in SUPPORTED)
    if type(loss) not in supported:
        raise TypeError(
            "loss must be a pytorch_metric_learning loss of one of the classes "
            f"{', '.join(SUPPORTED)}; got {type(loss).__name__}"
        )
    _check_common(loss)
    head = _head(loss)
    weight = loss.W.detach()  # (D, C)
    head.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        head.weight.copy_(weight.t())  # (C, D)
    return head
