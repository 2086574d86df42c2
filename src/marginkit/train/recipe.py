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
- **A smaller lr where the loss ignores ||x|| and ||x|| starts small**: the normalised heads
  see only ``x / ||x||``, so a step of fixed size turns the embedding by about
  ``lr / ||x||``; LeNet++ starts with ``||x|| ~ 0.2`` (128-D), and at lr 1e-3 ArcFace's
  embeddings turned too far each step. On a backbone without a normalisation layer (LeNet++,
  FaceNet) these heads train at lr 3e-4. A backbone with one (MLP, ResNet, IResNet, MNISTNet)
  starts 15-30 times larger, and there lr 3e-4 only slowed them (five points of validation
  accuracy behind at 100 steps on the glyphs), so they keep 1e-3.
- **Softmax first, margin second**: the additive margins (CosFace, ArcFace, combined, and
  those of CurricularFace, sub-centre ArcFace, MagFace and AdaFace) warm up linearly from 0
  over the first 20 % of the run, and the multiplicative ones (L-Softmax,
  SphereFace) anneal lambda from 1000 to its floor over the first 40 % (the heads' own
  run-relative default); Cam-softmax's ``c`` may reach pi/4 within the first 40 %. All follow
  the run's length, so the full margin holds for at least the last 60 % of any run, one epoch
  or a hundred.
- **A scale that can reach a confident posterior**: a normalised head with scale ``s`` and C
  classes cannot give its target a probability above ``P`` unless
  ``s >= (C - 1) / C * ln((C - 1) P / (1 - P))`` (NormFace, Wang et al. 2017, Prop. 2;
  AdaCos, Zhang et al. 2019): the fixed scales of NormFace (16) and Cam-softmax (20) are
  raised to that bound at ``P = 0.999`` when C is large. With ``learn_scale=true`` that
  value is only where the learned scale starts (the head still learns it); the margin heads'
  scales, fixed or learned, are left as given.
``recipe: paper`` keeps the papers' own settings: SGD (momentum 0.9, lr 0.1, weight decay
5e-4) with step decays at 50 % and 75 % of the run, constant margins, and the official
step-based annealings (L-Softmax's and SphereFace's lambda, the Cam-softmax authors' ramp).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from marginkit.losses.geometry import GEOMETRIES
from marginkit.losses.sanity import scale_bound
from marginkit.registry import LOSSES
from marginkit.schedules import ANNEAL_FRACTION
from marginkit.train.config import ConfigError, TrainConfig

__all__ = [
    "MARGIN_WARMUP_FRACTION",
    "RECIPES",
    "RECIPE_OPTIONS",
    "apply_recipe",
    "scale_bound",
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


def _loss_arguments(recipe: str, loss: str, num_classes: int) -> dict[str, Any]:
    """The loss arguments the recipe sets for ``loss`` (canonical name)."""
    arguments: dict[str, dict[str, Any]]
    if recipe == "paper":
        arguments = {
            "lsoftmax": {"lambda_": "lsoftmax"},
            "sphereface": {"lambda_": "sphereface"},
            "camsoftmax": {"c": "ramp"},
        }
        return arguments.get(loss, {})
    bound = math.ceil(scale_bound(num_classes))
    arguments = {
        "normface": {"scale": float(max(16, bound))},
        "cosface": {"margin": f"warmup:0.35:{_PERCENT}"},
        "arcface": {"margin": f"warmup:0.5:{_PERCENT}"},
        "combined": {"angular": f"warmup:0.5:{_PERCENT}"},
        # SphereFace's floor 5, not L-Softmax's 0: docs/recipes.md, cause 6
        "lsoftmax": {"lambda_": f"sphereface:{_ANNEAL}"},
        "sphereface": {"lambda_": f"sphereface:{_ANNEAL}"},
        "camsoftmax": {"scale": float(max(20, bound)), "c": f"adaptive:{_ANNEAL}"},
        "curricularface": {"margin": f"warmup:0.5:{_PERCENT}"},
        "subcenter": {"margin": f"warmup:0.5:{_PERCENT}"},
        "magface": {
            "lower_margin": f"warmup:0.45:{_PERCENT}",
            "upper_margin": f"warmup:0.8:{_PERCENT}",
        },
        "adaface": {"margin": f"warmup:0.4:{_PERCENT}"},
    }
    return arguments.get(loss, {})


#: The marginkit recipe's learning rate for the heads whose loss ignores the embedding's norm,
#: on a backbone without a normalisation layer (cause 2 in ``docs/recipes.md``).
_NORMALIZED_LR = 3e-4


def _normalizes_embeddings(loss: str) -> bool:
    """Whether the head registered as ``loss`` sees only ``x / ||x||``: read from its class's
    geometry, so no normalised head can be left out of the smaller learning rate."""
    return GEOMETRIES[LOSSES.get(loss).geometry].normalized_embeddings


def _backbone_normalizes(config: TrainConfig, input_shape: Sequence[int]) -> bool:
    """Whether the run's backbone holds a normalisation layer. It is built on the meta device
    (no memory, no random number drawn); a backbone of one's own that cannot be built there is
    built on the CPU with the random state put back."""
    import torch

    from marginkit.models import build_backbone, has_normalization

    shape, width = tuple(input_shape), config.embedding_dim
    try:
        with torch.device("meta"):
            backbone = build_backbone(config.backbone, shape, width)
    except Exception:  # its own code needed real tensors: try the CPU
        with torch.random.fork_rng(devices=[]):
            backbone = build_backbone(config.backbone, shape, width)
    return has_normalization(backbone)


def _training(config: TrainConfig, loss: str, input_shape: Sequence[int]) -> dict[str, Any]:
    """The optimiser settings the recipe gives ``loss`` (canonical name) in ``config``'s run."""
    values = dict(_TRAINING[config.recipe])
    if (
        config.recipe == "marginkit"
        and config.lr is None
        and _normalizes_embeddings(loss)
        and not _backbone_normalizes(config, input_shape)
    ):
        values["lr"] = _NORMALIZED_LR
    return values


def apply_recipe(config: TrainConfig, num_classes: int, input_shape: Sequence[int]) -> TrainConfig:
    """``config`` with everything it leaves to its recipe filled in.

    Fields that are None (``optimizer``, ``lr``, ``weight_decay``, ``lr_schedule``) take the
    recipe's values (an optimiser chosen by the user gets its usual lr: 0.1 for SGD, 1e-3 for
    AdamW); the recipe's loss arguments for ``config.loss`` are added under those the
    user gave (a user's value always wins, e.g. ``margin=0.4`` is a constant margin). The
    result is what the run uses and what its ``config.yaml`` records.

    Args:
        config: the run's options.
        num_classes: the number of training classes (for the scale bound).
        input_shape: the shape of one input (to build the backbone, whose normalisation
            layers set the normalised heads' learning rate).

    Raises:
        ConfigError: an unknown recipe name.
        marginkit.registry.UnknownNameError: an unknown loss or backbone name.
        marginkit.models.BackboneError: a backbone that cannot be built for ``input_shape``.
    """
    if config.recipe not in _TRAINING:
        raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}; got {config.recipe!r}")
    loss = LOSSES.canonical(config.loss)
    training = _training(config, loss, input_shape)
    if config.optimizer not in (None, training["optimizer"]):
        # the user's own optimiser gets its usual lr, not the one tuned for the recipe's
        training["lr"] = config.learning_rate()
    values = {name: value for name, value in training.items() if getattr(config, name) is None}
    loss_args = {**_loss_arguments(config.recipe, loss, num_classes), **config.loss_args}
    return dataclasses.replace(config, **values, loss_args=loss_args)
