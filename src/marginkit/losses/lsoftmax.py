"""L-Softmax (Liu et al., ICML 2016) and A-Softmax / SphereFace (Liu et al., CVPR 2017)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from marginkit.losses.functional import lsoftmax_target
from marginkit.losses.geometry import GeometryName
from marginkit.losses.head import MarginHead, RunRelativeDefault, check_range
from marginkit.schedules import ANNEAL_FRACTION, Schedule, lsoftmax_lambda, sphereface_lambda

__all__ = ["LSoftmax", "SphereFace"]


def _check_integer_margin(margin: int) -> int:
    if isinstance(margin, bool) or not isinstance(margin, int):
        raise TypeError(f"margin must be an integer m >= 1; got {margin!r}")
    if margin < 1:
        raise ValueError(f"margin must be an integer m >= 1; got {margin}")
    return margin


class LSoftmax(MarginHead):
    """Large-margin softmax: target logit ``||W_y|| ||x|| (lambda cos + psi(theta)) / (1 + lambda)``
    with ``psi(theta) = (-1)^k cos(m theta) - 2k``; other logits ``W_j . x``.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        margin: the integer angular multiplier m (>= 1; 4 for MNIST, 2 for CIFAR in the paper).
        lambda_: softmax blend, a float >= 0 or a schedule; default run-relative: from 1000
            to SphereFace's floor 5 over the first 40 % of the run
            (``sphereface_lambda(fraction=0.4)``; not to L-Softmax's official 0, whose whole
            m = 4 margin a run of about 100 steps does not recover from: ``docs/recipes.md``,
            cause 6), given
            the run's length (``total_steps``, or ``head.set_total_steps(N)`` before
            training). Without it the head trains, after one ``RunLengthWarning``, on the
            official step-based annealing ``max(0, 1000 (1 + 2.5e-5 step)^-35)``
            (``lsoftmax_lambda()``).
        total_steps: the run's number of training steps, or None (see ``lambda_``).
    """

    geometry: GeometryName = "unnormalized"
    run_relative_defaults: ClassVar[Mapping[str, RunRelativeDefault]] = {
        "lambda_": RunRelativeDefault(
            functools.partial(sphereface_lambda, ANNEAL_FRACTION), lsoftmax_lambda
        )
    }

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        margin: int = 4,
        lambda_: float | Schedule | None = None,
        *,
        total_steps: int | None = None,
    ) -> None:
        _check_integer_margin(margin)
        if lambda_ is not None:  # None: the default (run_relative_defaults)
            check_range("lambda_", lambda_, 0.0)
        super().__init__(num_classes, embedding_dim, total_steps=total_steps, lambda_=lambda_)
        self.margin = margin

    def target(self, cosine: Tensor) -> Tensor:
        return lsoftmax_target(cosine, self.margin, self.schedules["lambda_"].current())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}"


class SphereFace(LSoftmax):
    """A-Softmax (SphereFace): L-Softmax with unit-norm class weights and no bias, so the
    logits are ``||x|| cos(theta_j)`` and the target ``||x|| (lambda cos + psi) / (1 + lambda)``.

    Args:
        num_classes: number of classes C.
        embedding_dim: embedding width D.
        margin: the integer angular multiplier m (>= 1; 4 in the paper).
        lambda_: softmax blend; default run-relative: from 1000 to 5 over the first 40 % of
            the run (``sphereface_lambda(fraction=0.4)``), given the run's length
            (``total_steps``, or ``head.set_total_steps(N)`` before training). Without it
            the head trains, after one ``RunLengthWarning``, on the official
            ``max(5, 1000 (1 + 0.12 step)^-1)`` (``sphereface_lambda()``).
        total_steps: the run's number of training steps, or None (see ``lambda_``).
    """

    geometry = "weight_normalized"
    run_relative_defaults: ClassVar[Mapping[str, RunRelativeDefault]] = {
        "lambda_": RunRelativeDefault(
            functools.partial(sphereface_lambda, ANNEAL_FRACTION), sphereface_lambda
        )
    }
