"""Training recipes: the optimiser, learning-rate schedule and loss settings that a run leaves
to marginkit, in one place.

Why the margin losses fail with the papers' settings on a short run, and what each part of
the ``marginkit`` recipe does about it (measurements in ``docs/recipes.md``):

- At initialisation every cosine is near 0, so a margin makes the target logit strongly
  negative (ArcFace: ``s cos(pi/2 + m) = -64 sin 0.5 = -31``) and the first gradients, scaled
  by ``s``, are enormous; SGD at lr 0.1 then throws the backbone far from where it started
  (the same lr sends even plain softmax on LeNet++ to non-finite embeddings). **AdamW**
  (lr 1e-3) divides every step by the gradient's running magnitude, so the scale ``s`` and the
  margin no longer set the step size; a **cosine** learning-rate decay over the run needs no
  milestones tuned to its length.
- **A smaller lr where the loss ignores ||x||**: the normalised heads see only ``x / ||x||``,
  so a step of fixed size turns the embedding by about ``lr / ||x||``; LeNet++ starts with
  ``||x|| ~ 0.2`` (128-D), and at lr 1e-3 ArcFace's embeddings turned too far each step. These
  heads train at lr 3e-4.
- **Softmax first, margin second**: the additive margins (CosFace, ArcFace, combined) warm up
  linearly from 0 over the first 20 % of the run, and the multiplicative ones (L-Softmax,
  SphereFace) anneal lambda from 1000 to its floor over the first 40 % (the heads' own
  run-relative default); Cam-softmax's ``c`` may reach pi/4 within the first 40 %. All follow
  the run's length, so the full margin holds for at least the last 60 % of any run, one epoch
  or a hundred.
- **A scale that can reach a confident posterior**: a normalised head with scale ``s`` and C
  classes cannot give its target a probability above ``P`` unless
  ``s >= (C - 1) / C * ln((C - 1) P / (1 - P))`` (NormFace, Wang et al. 2017, Prop. 2;
  AdaCos, Zhang et al. 2019): the fixed scales of NormFace (16) and Cam-softmax (20) are
  raised to that bound at ``P = 0.999`` when C is large.
- **An additive margin the geometry can grant**: unlike a multiplicative one, an additive
  margin penalises even an embedding at its class centre, and C class centres in D dimensions
  can be at most :func:`separation_bound` apart (``2 pi / C`` on the circle). CosFace's 0.35
  with ten classes in 2-D exceeds ``1 - cos 36 deg = 0.19``: no embedding anywhere can meet it.
  The recipe caps the additive margins so that every embedding within a quarter of the
  centres' spacing of its own centre can meet them; in 128-D (or 3-D with ten classes) the
  papers' margins are far below the cap and stay as they are.

``recipe: paper`` keeps the papers' own settings: SGD (momentum 0.9, lr 0.1, weight decay
5e-4) with step decays at 50 % and 75 % of the run, constant margins, and the official
step-based annealings (L-Softmax's and SphereFace's lambda, the Cam-softmax authors' ramp).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from marginkit.registry import LOSSES
from marginkit.schedules import ANNEAL_FRACTION
from marginkit.train.config import ConfigError, TrainConfig

__all__ = [
    "MARGIN_WARMUP_FRACTION",
    "RECIPES",
    "RECIPE_OPTIONS",
    "apply_recipe",
    "margin_caps",
    "scale_bound",
    "separation_bound",
]

#: Share of the run over which the additive margins warm up from 0.
MARGIN_WARMUP_FRACTION = 0.2

_PERCENT = f"{round(100 * MARGIN_WARMUP_FRACTION)}%"
_ANNEAL = f"{round(100 * ANNEAL_FRACTION)}%"

#: Training settings of each recipe (fields of :class:`TrainConfig` that are None there).
_TRAINING = {
    "marginkit": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 5e-4, "lr_schedule": "cosine"},
    "paper": {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4, "lr_schedule": "step"},
}

RECIPES = tuple(_TRAINING)

#: The TrainConfig options a recipe fills when they are None.
RECIPE_OPTIONS = frozenset(_TRAINING["marginkit"])


def scale_bound(num_classes: int, probability: float = 0.999) -> float:
    """The smallest scale at which a normalised head can give probability ``probability``
    to the target class among ``num_classes`` (NormFace, Wang et al. 2017, Prop. 2):
    ``(C - 1) / C * ln((C - 1) P / (1 - P))``."""
    classes = num_classes
    return (classes - 1) / classes * math.log((classes - 1) * probability / (1 - probability))


def _cap_share(radius: float, embedding_dim: int, points: int = 2048) -> float:
    """The share of the unit sphere in ``embedding_dim`` dimensions covered by a cap of
    angular radius ``radius`` in ``[0, pi]``: ``int_0^r sin^(D-2) t dt`` over the same
    integral to ``pi`` (midpoint rule on one grid over ``[0, pi]``; exact for D = 2)."""
    width = math.pi / points
    density = [math.sin((k + 0.5) * width) ** (embedding_dim - 2) for k in range(points)]
    covered = radius / width  # grid cells inside the cap, the last one in part
    whole = int(covered)
    inside = sum(density[:whole]) + (covered - whole) * (density[whole] if whole < points else 0)
    return inside / sum(density)


def separation_bound(num_classes: int, embedding_dim: int) -> float:
    """An upper bound on the smallest angle (radians) between ``num_classes`` unit vectors in
    ``embedding_dim`` dimensions: how far apart class centres can be at best.

    The smaller of two bounds: the regular simplex, ``arccos(-1 / (C - 1))``, and cap packing
    (caps of angular radius half the spacing around each centre cannot overlap, so
    ``C * share(spacing / 2) <= 1``). In 2-D this is exactly ``2 pi / C``; in 3-D it is
    ``2 arccos(1 - 2 / C)``.

    Args:
        num_classes: C >= 2.
        embedding_dim: D >= 2.
    """
    if num_classes < 2 or embedding_dim < 2:
        raise ValueError(
            f"separation_bound needs num_classes >= 2 and embedding_dim >= 2; "
            f"got {num_classes}, {embedding_dim}"
        )
    simplex = math.acos(-1.0 / (num_classes - 1))
    if embedding_dim == 2:
        return min(simplex, 2 * math.pi / num_classes)
    low, high = 0.0, simplex  # bisection on the spacing: C caps of radius spacing/2 fit
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (
            (middle, high)
            if num_classes * _cap_share(middle / 2, embedding_dim) <= 1
            else (low, middle)
        )
    return low


def margin_caps(num_classes: int, embedding_dim: int) -> tuple[float, float]:
    """The largest additive margins (cosine, angular) the marginkit recipe uses for C classes
    in D dimensions: with centres ``phi = separation_bound(C, D)`` apart, an embedding
    ``phi / 4`` from its centre towards a neighbour still meets the margin,
    ``cos(phi / 4) - m_cos >= cos(3 phi / 4)`` and ``phi / 4 + m_angle <= 3 phi / 4``.

    Returns:
        ``(cos(phi / 4) - cos(3 phi / 4), phi / 2)``.
    """
    spacing = separation_bound(num_classes, embedding_dim)
    return math.cos(spacing / 4) - math.cos(3 * spacing / 4), spacing / 2


def _margin(target: float, cap: float) -> str:
    """The recipe's margin schedule: a warm-up to ``min(target, cap)``."""
    return f"warmup:{min(target, float(f'{cap:.3g}'))}:{_PERCENT}"


def _loss_arguments(recipe: str, loss: str, num_classes: int, embedding_dim: int) -> dict[str, Any]:
    """The loss arguments the recipe sets for ``loss`` (canonical name)."""
    if recipe == "paper":
        return {
            "lsoftmax": {"lambda_": "lsoftmax"},
            "sphereface": {"lambda_": "sphereface"},
            "camsoftmax": {"c": "ramp"},
        }.get(loss, {})
    if loss in ("cosface", "arcface", "combined"):  # the additive margins, capped
        cosine_cap, angular_cap = margin_caps(num_classes, embedding_dim)
        return {
            "cosface": {"margin": _margin(0.35, cosine_cap)},
            "arcface": {"margin": _margin(0.5, angular_cap)},
            "combined": {"angular": _margin(0.5, angular_cap)},
        }[loss]
    bound = math.ceil(scale_bound(num_classes))
    return {
        "normface": {"scale": float(max(16, bound))},
        "lsoftmax": {"lambda_": f"lsoftmax:{_ANNEAL}"},
        "sphereface": {"lambda_": f"sphereface:{_ANNEAL}"},
        "camsoftmax": {"scale": float(max(20, bound)), "c": f"adaptive:{_ANNEAL}"},
    }.get(loss, {})


#: Heads whose loss ignores the embedding's norm (``x / ||x||``): the marginkit recipe gives
#: them a smaller learning rate (cause 2 in ``docs/recipes.md``).
_NORMALIZED = frozenset({"normface", "cosface", "arcface", "combined", "camsoftmax"})
_NORMALIZED_LR = 3e-4


def _training(recipe: str, loss: str) -> dict[str, Any]:
    """The optimiser settings the recipe gives ``loss`` (canonical name)."""
    values = dict(_TRAINING[recipe])
    if recipe == "marginkit" and loss in _NORMALIZED:
        values["lr"] = _NORMALIZED_LR
    return values


def apply_recipe(config: TrainConfig, num_classes: int) -> TrainConfig:
    """``config`` with everything it leaves to its recipe filled in.

    Fields that are None (``optimizer``, ``lr``, ``weight_decay``, ``lr_schedule``) take the
    recipe's values (an optimiser chosen by the user gets its usual lr: 0.1 for SGD, 1e-3 for
    AdamW); the recipe's loss arguments for ``config.loss`` are added under those the
    user gave (a user's value always wins, e.g. ``margin=0.4`` is a constant margin). The
    result is what the run uses and what its ``config.yaml`` records.

    Args:
        config: the run's options.
        num_classes: the number of training classes (for the scale bound and the margins'
            caps).

    Raises:
        ConfigError: an unknown recipe name, or fewer than 2 classes or embedding dimensions
            for the marginkit recipe's margin caps.
        marginkit.registry.UnknownNameError: an unknown loss name.
    """
    if config.recipe not in _TRAINING:
        raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}; got {config.recipe!r}")
    loss = LOSSES.canonical(config.loss)
    training = _training(config.recipe, loss)
    if config.optimizer not in (None, training["optimizer"]):
        # the user's own optimiser gets its usual lr, not the one tuned for the recipe's
        training["lr"] = config.learning_rate()
    values = {name: value for name, value in training.items() if getattr(config, name) is None}
    try:
        recipe_args = _loss_arguments(config.recipe, loss, num_classes, config.embedding_dim)
    except ValueError as error:  # fewer than 2 classes or dimensions: no margin caps
        raise ConfigError(str(error)) from None
    loss_args = {**recipe_args, **config.loss_args}
    return dataclasses.replace(config, **values, loss_args=loss_args)
