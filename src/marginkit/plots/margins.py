"""Margin shapes drawn from the loss modules: target logit, its derivative, loss gradient.

The curves are evaluated by the heads themselves -- ``head.target(torch.cos(theta))`` with
autograd for every derivative -- never from re-typed formulas, so a picture always shows
what the loss computes. The pictures follow AM-Softmax (Wang et al., 2018, Fig. 2) and
Cam-softmax (Süveges & McKenna, ICPR 2020): the target logit ``f`` against the angle
``theta_y`` between an embedding and its class weight, and the size of the gradient the
loss sends through a sample as a function of that angle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from marginkit._validation import check_count
from marginkit.losses.head import MarginHead
from marginkit.plots.figures import new_figure, save_figure, set_angle_ticks

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "build_gradient_curves",
    "build_target_logit_curves",
    "describe_head",
    "gradient_curves",
    "loss_gradient",
    "target_and_derivative",
    "target_logit_curves",
    "theta_grid",
]

_LINESTYLES = ("-", "--", "-.", ":")


def _line_width(index: int) -> float:
    """Wider lines first, so a later head with the same curve leaves the earlier visible."""
    return max(1.4, 3.4 - 0.3 * index)


def theta_grid(points: int = 720) -> torch.Tensor:
    """``points`` angles evenly spaced on the open interval ``(0, pi)``: the midpoints
    ``(k + 1/2) pi / points`` (float64, radians).

    The end points are left out on purpose: ``f(cos theta)`` is even about ``theta = 0`` and
    ``theta = pi``, so the two-sided derivative autograd gives there is 0, not the one-sided
    slope a curve on ``[0, pi]`` has (ArcFace's ``-sin(m)`` at ``theta = 0``).
    """
    check_count("points", points, 2)
    return (torch.arange(points, dtype=torch.float64) + 0.5) * (math.pi / points)


def _check_heads(heads: Mapping[str, MarginHead]) -> None:
    if not isinstance(heads, Mapping):
        raise TypeError(f"heads must be a dict of name -> MarginHead; got {type(heads).__name__}")
    if not heads:
        raise ValueError("heads is empty; expected at least one name -> MarginHead")
    for name, head in heads.items():
        if not isinstance(name, str):
            raise TypeError(f"heads keys must be str names; got {type(name).__name__}")
        if not isinstance(head, MarginHead):
            raise TypeError(
                f"heads[{name!r}] must be a marginkit MarginHead; got {type(head).__name__}"
            )


def describe_head(name: str, head: MarginHead, *, with_scale: bool = False) -> str:
    """Legend text: ``name`` and the head's current hyper-parameters (``margin=0.5``...).

    The scale is left out unless ``with_scale`` (it does not change ``f``).
    """
    values = {
        key.rstrip("_"): value
        for key, value in head.hyperparameters().items()
        if with_scale or key != "scale"
    }
    margin = getattr(head, "margin", None)
    if "margin" not in values and isinstance(margin, int) and not isinstance(margin, bool):
        values = {"m": margin, **values}
    if not values:
        return name
    shown = ", ".join(f"{key}={float(value):.3g}" for key, value in values.items())
    return f"{name} ({shown})"


def target_and_derivative(head: MarginHead, theta: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``f(cos theta)`` from ``head.target`` and ``df/dtheta`` by autograd, at ``theta``.

    Args:
        head: any margin head.
        theta: (T,) angles in radians.

    Returns:
        Two (T,) float64 arrays: the target value and its derivative per radian.
    """
    angle = theta.detach().to(torch.float64).clone().requires_grad_(True)  # (T,)
    with torch.enable_grad():
        value = head.target(torch.cos(angle))  # (T,)
        if value.requires_grad:
            (slope,) = torch.autograd.grad(value.sum(), angle)
        else:
            slope = torch.zeros_like(angle)
    return value.detach().numpy().astype(np.float64), slope.numpy().astype(np.float64)


def _style_theta_axis(axes: Axes) -> None:
    axes.set_xlim(0.0, math.pi)
    set_angle_ticks(axes)
    axes.set_xlabel("θ_y: angle between the embedding and its class weight (radians)")
    axes.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
    axes.grid(True, color="0.92")


def build_target_logit_curves(
    heads: Mapping[str, MarginHead], *, points: int = 720, title: str | None = None
) -> Figure:
    """The target-logit figure (see :func:`target_logit_curves`), not yet saved.

    Returns:
        A figure with two axes: ``f(theta)`` (left) and ``df/dtheta`` (right); every line
        is labelled by :func:`describe_head`.
    """
    _check_heads(heads)
    theta = theta_grid(points)
    fig = new_figure(13.0, 5.5)
    value_axes, slope_axes = fig.subplots(1, 2)
    for index, (name, head) in enumerate(heads.items()):
        value, slope = target_and_derivative(head, theta)
        style = {
            "color": f"C{index % 10}",
            "linestyle": _LINESTYLES[index % len(_LINESTYLES)],
            "linewidth": _line_width(index),
            "label": describe_head(name, head),
        }
        value_axes.plot(theta.numpy(), value, **style)
        slope_axes.plot(theta.numpy(), slope, **style)
    for axes in (value_axes, slope_axes):
        _style_theta_axis(axes)
    value_axes.set_ylabel(
        "f(cos θ_y) = target logit ÷ radial factor\n(÷ s, ‖x‖ or ‖W_y‖‖x‖; dimensionless)"
    )
    value_axes.set_title("Target logit")
    slope_axes.set_ylabel("df/dθ_y (per radian)")
    slope_axes.set_title("Its derivative (autograd through the head)")
    handles, labels = value_axes.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", frameon=False, title="head")
    fig.suptitle(
        "Target logit against the target angle, from each head's margin function"
        if title is None
        else title
    )
    return fig


def target_logit_curves(
    heads: Mapping[str, MarginHead],
    path: str | Path,
    *,
    points: int = 720,
    title: str | None = None,
) -> list[Path]:
    """Plot each head's target logit ``f(theta)`` and ``df/dtheta`` on ``(0, pi)``; PNG + SVG.

    ``f = head.target(torch.cos(theta))`` is the target logit divided by the head's radial
    factor (the scale ``s`` for normalised heads, ``||x||`` for SphereFace,
    ``||W_y|| ||x||`` for unnormalised heads), so every method shares one axis; the
    derivative is taken by autograd through the same call. Curves use the hyper-parameters
    in force now (``head.hyperparameters()``, shown in the legend), so build e.g.
    ``SphereFace(..., lambda_=5.0)`` to draw the annealed end state.

    Args:
        heads: legend name -> head, drawn in order.
        path: output path without suffix.
        points: number of angles sampled in ``(0, pi)`` (see :func:`theta_grid`).
        title: figure title.

    Returns:
        The PNG and SVG paths.
    """
    fig = build_target_logit_curves(heads, points=points, title=title)
    return save_figure(fig, path)


def _check_gradient_setting(with_respect_to: str, other_cosine: float, feature_norm: float) -> None:
    if with_respect_to not in ("angle", "cosine"):
        raise ValueError(f"with_respect_to must be 'angle' or 'cosine'; got {with_respect_to!r}")
    for name, value in (("other_cosine", other_cosine), ("feature_norm", feature_norm)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not -1.0 <= other_cosine <= 1.0:
        raise ValueError(f"other_cosine must lie in [-1, 1]; got {other_cosine}")
    if not (math.isfinite(feature_norm) and feature_norm > 0.0):
        raise ValueError(f"feature_norm must be a finite number > 0; got {feature_norm}")


def loss_gradient(
    head: MarginHead,
    theta: torch.Tensor,
    *,
    with_respect_to: Literal["angle", "cosine"] = "angle",
    other_cosine: float = 0.0,
    feature_norm: float = 16.0,
) -> np.ndarray:
    """``|dL/dtheta_y|`` (or ``|dL/dcos theta_y|``) of one sample's cross-entropy ``L``.

    The setting: the target logit is ``r * head.target(cos theta_y)``; each of the other
    ``C - 1`` classes (``C = head.num_classes``) has logit ``r * other_cosine`` and, for
    Virtual Softmax, the virtual logit is ``r``; ``r = head.radial_factor(feature_norm)``, the
    scale ``s`` of a normalised head (its current value if scheduled or learned), otherwise
    ``feature_norm`` (standing for ``||x||`` or ``||W_y|| ||x||``, all class weights of equal
    norm). Then
    ``L = logsumexp(logits) - target logit`` is differentiated by autograd.

    Args:
        head: any margin head.
        theta: (T,) target angles in radians.
        with_respect_to: ``"angle"`` (per radian) or ``"cosine"``.
        other_cosine: cosine of the embedding with every other class weight, in [-1, 1].
        feature_norm: radial factor of heads without a scale (> 0).

    Returns:
        (T,) float64 gradient magnitudes.
    """
    _check_gradient_setting(with_respect_to, other_cosine, feature_norm)
    radial = head.radial_factor(float(feature_norm))
    angle = theta.detach().to(torch.float64).clone()  # (T,)
    with torch.enable_grad():
        if with_respect_to == "angle":
            leaf = angle.requires_grad_(True)
            cosine = torch.cos(leaf)
        else:
            leaf = torch.cos(angle).requires_grad_(True)
            cosine = leaf
        target_logit = radial * head.target(cosine)  # (T,)
        others = torch.full(
            (len(angle), head.num_classes - 1), radial * float(other_cosine), dtype=torch.float64
        )  # (T, C - 1)
        columns = [target_logit.unsqueeze(1), others]
        if head.virtual_class:
            columns.append(torch.full((len(angle), 1), radial, dtype=torch.float64))
        logits = torch.cat(columns, dim=1)  # (T, C) or (T, C + 1)
        loss = torch.logsumexp(logits, dim=1) - target_logit  # (T,)
        (gradient,) = torch.autograd.grad(loss.sum(), leaf)
    return gradient.abs().numpy().astype(np.float64)


def build_gradient_curves(
    heads: Mapping[str, MarginHead],
    *,
    with_respect_to: Literal["angle", "cosine"] = "angle",
    other_cosine: float = 0.0,
    feature_norm: float = 16.0,
    points: int = 720,
    title: str | None = None,
) -> Figure:
    """The gradient-magnitude figure (see :func:`gradient_curves`), not yet saved."""
    _check_heads(heads)
    _check_gradient_setting(with_respect_to, other_cosine, feature_norm)
    theta = theta_grid(points)
    fig = new_figure(12.0, 5.5)
    axes = fig.subplots()
    for index, (name, head) in enumerate(heads.items()):
        magnitude = loss_gradient(
            head,
            theta,
            with_respect_to=with_respect_to,
            other_cosine=other_cosine,
            feature_norm=feature_norm,
        )
        radial = head.radial_factor(float(feature_norm))
        axes.plot(
            theta.numpy(),
            magnitude,
            color=f"C{index % 10}",
            linestyle=_LINESTYLES[index % len(_LINESTYLES)],
            linewidth=_line_width(index),
            label=f"{describe_head(name, head)}, r={radial:.3g}, C={head.num_classes}",
        )
    _style_theta_axis(axes)
    axes.set_ylim(bottom=0.0)
    symbol = "θ_y" if with_respect_to == "angle" else "cos θ_y"
    unit = " (per radian)" if with_respect_to == "angle" else ""
    axes.set_ylabel(f"|∂L/∂{symbol}|{unit}")
    fig.legend(loc="outside right upper", frameon=False, title="head")
    axes.set_title(
        (
            "Per-sample loss gradient against the target angle\n"
            f"(other C−1 logits r·{float(other_cosine):g}; r = scale s, "
            f"or {float(feature_norm):g} for heads without one)"
        )
        if title is None
        else title
    )
    return fig


def gradient_curves(
    heads: Mapping[str, MarginHead],
    path: str | Path,
    *,
    with_respect_to: Literal["angle", "cosine"] = "angle",
    other_cosine: float = 0.0,
    feature_norm: float = 16.0,
    points: int = 720,
    title: str | None = None,
) -> list[Path]:
    """Plot the size of one sample's loss gradient against its target angle; PNG + SVG.

    For each head, :func:`loss_gradient` gives ``|dL/dtheta_y|`` (or ``|dL/dcos theta_y|``)
    in a fixed setting: target logit ``r * head.target(cos theta_y)``, the other ``C - 1``
    logits all ``r * other_cosine`` (default 0: the other class weights orthogonal to the
    embedding), the virtual logit ``r`` for Virtual Softmax, ``r`` the head's scale or
    ``feature_norm``. This is the shape Cam-softmax relies on: a sample far from its
    labelled class (large ``theta_y``, likely a wrong label) gets a small gradient, where
    softmax's grows.

    Args:
        heads: legend name -> head.
        path: output path without suffix.
        with_respect_to: ``"angle"`` or ``"cosine"``.
        other_cosine: cosine of the embedding with every other class weight.
        feature_norm: radial factor of heads without a scale.
        points: number of angles sampled in ``(0, pi)`` (see :func:`theta_grid`).
        title: figure title.

    Returns:
        The PNG and SVG paths.
    """
    fig = build_gradient_curves(
        heads,
        with_respect_to=with_respect_to,
        other_cosine=other_cosine,
        feature_norm=feature_norm,
        points=points,
        title=title,
    )
    return save_figure(fig, path)
