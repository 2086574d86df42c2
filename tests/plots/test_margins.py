"""Target-logit and gradient curves: drawn data equal the heads' own values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from marginkit.losses import (
    ArcFace,
    CamSoftmax,
    CosFace,
    NormFace,
    Softmax,
    SphereFace,
    VirtualSoftmax,
)
from marginkit.plots import (
    build_gradient_curves,
    build_target_logit_curves,
    gradient_curves,
    loss_gradient,
    target_logit_curves,
)
from marginkit.plots.margins import describe_head, theta_grid


def _heads():
    return {
        "softmax": Softmax(10, 4),
        "CosFace": CosFace(10, 4, margin=0.35),
        "ArcFace": ArcFace(10, 4, margin=0.5),
        "SphereFace": SphereFace(10, 4, margin=4, lambda_=5.0),
        "Cam-softmax": CamSoftmax(10, 4, c=math.pi / 4),
    }


def _line(axes, name):
    (line,) = [line for line in axes.lines if line.get_label().startswith(name)]
    return line


def test_target_curves_are_the_heads_target_values():
    heads = _heads()
    fig = build_target_logit_curves(heads, points=181)
    value_axes, slope_axes = fig.axes
    for name, head in heads.items():
        line = _line(value_axes, name)
        theta = np.asarray(line.get_xdata())
        np.testing.assert_allclose(theta, (np.arange(181) + 0.5) * math.pi / 181)
        expected = head.target(torch.cos(torch.tensor(theta, dtype=torch.float64)))
        np.testing.assert_allclose(line.get_ydata(), expected.numpy(), atol=1e-12)
    assert "radial factor" in value_axes.get_ylabel()
    assert "radians" in value_axes.get_xlabel()
    ticks = [label.get_text() for label in value_axes.get_xticklabels()]
    assert ticks == ["0\n0°", "π/4\n45°", "π/2\n90°", "3π/4\n135°", "π\n180°"]
    assert slope_axes.get_ylabel() == "df/dθ_y (per radian)"
    assert fig.get_suptitle().startswith("Target logit against the target angle")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "softmax",
        "CosFace (margin=0.35)",
        "ArcFace (margin=0.5)",
        "SphereFace (m=4, lambda=5)",
        "Cam-softmax (c=0.785)",
    ]


def test_derivative_curves_match_closed_forms_and_finite_differences():
    heads = _heads()
    fig = build_target_logit_curves(heads, points=720)
    slope_axes = fig.axes[1]
    theta = np.asarray(_line(slope_axes, "softmax").get_xdata())
    np.testing.assert_allclose(_line(slope_axes, "softmax").get_ydata(), -np.sin(theta), atol=1e-12)
    np.testing.assert_allclose(_line(slope_axes, "CosFace").get_ydata(), -np.sin(theta), atol=1e-12)
    inside = theta + 0.5 < math.pi  # ArcFace's cos(theta + m) region, up to theta = 0
    np.testing.assert_allclose(
        np.asarray(_line(slope_axes, "ArcFace").get_ydata())[inside],
        -np.sin(theta[inside] + 0.5),
        atol=1e-9,
    )
    # Cam-softmax: central differences of the head's own target
    head, step = heads["Cam-softmax"], 1e-6
    inner = theta
    plus = head.target(torch.cos(torch.tensor(inner + step, dtype=torch.float64))).numpy()
    minus = head.target(torch.cos(torch.tensor(inner - step, dtype=torch.float64))).numpy()
    np.testing.assert_allclose(
        _line(slope_axes, "Cam-softmax").get_ydata(),
        (plus - minus) / (2 * step),
        atol=1e-6,
    )


def test_target_logit_curves_write_files(tmp_path):
    paths = target_logit_curves(_heads(), tmp_path / "target")
    assert all(p.stat().st_size > 1000 for p in paths)


def _softmax_gradient(theta, radial, classes, other_cosine=0.0, virtual=False):
    """|dL/dtheta| for L = -log softmax: (1 - p_y) * r * sin(theta), by hand."""
    target = np.exp(radial * np.cos(theta))
    denominator = target + (classes - 1) * np.exp(radial * other_cosine)
    if virtual:
        denominator = denominator + np.exp(radial)
    return (1.0 - target / denominator) * radial * np.sin(theta)


def test_loss_gradient_matches_the_softmax_closed_form():
    theta = theta_grid(91)
    np.testing.assert_allclose(
        loss_gradient(NormFace(7, 3, scale=10.0), theta),
        _softmax_gradient(theta.numpy(), 10.0, 7),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        loss_gradient(Softmax(5, 3), theta, feature_norm=3.0, other_cosine=0.2),
        _softmax_gradient(theta.numpy(), 3.0, 5, other_cosine=0.2),
        atol=1e-10,
    )
    np.testing.assert_allclose(
        loss_gradient(VirtualSoftmax(5, 3), theta, feature_norm=4.0),
        _softmax_gradient(theta.numpy(), 4.0, 5, virtual=True),
        atol=1e-10,
    )
    # with respect to the cosine the sin(theta) factor is absent
    with_cosine = loss_gradient(NormFace(7, 3, scale=10.0), theta, with_respect_to="cosine")
    expected = _softmax_gradient(theta.numpy(), 10.0, 7) / np.sin(theta.numpy())
    np.testing.assert_allclose(with_cosine, expected, atol=1e-10)


def test_loss_gradient_uses_the_current_learned_or_scheduled_scale():
    theta = theta_grid(31)
    learned = NormFace(4, 3, scale=12.0, learn_scale=True)
    np.testing.assert_allclose(
        loss_gradient(learned, theta, feature_norm=99.0),
        _softmax_gradient(theta.numpy(), 12.0, 4),
        rtol=1e-6,
    )
    unnormalised = CamSoftmax(4, 3, c=math.pi / 2, normalize=False)
    np.testing.assert_allclose(
        loss_gradient(unnormalised, theta, feature_norm=5.0),
        _softmax_gradient(theta.numpy(), 5.0, 4),
        atol=1e-10,
    )


def test_cam_softmax_gradient_vanishes_far_from_the_class_where_softmax_does_not():
    theta = torch.tensor([0.75 * math.pi], dtype=torch.float64)
    cam = loss_gradient(CamSoftmax(10, 3, scale=20.0, c=math.pi / 4), theta)
    normface = loss_gradient(NormFace(10, 3, scale=20.0), theta)
    assert cam[0] < 0.05 * normface[0]


def test_gradient_figure_lines_and_labels(tmp_path):
    heads = {"NormFace": NormFace(10, 3, scale=20.0), "Softmax": Softmax(10, 3)}
    fig = build_gradient_curves(heads, points=101, feature_norm=8.0)
    (axes,) = fig.axes
    theta = theta_grid(101)
    for name, head in heads.items():
        line = _line(axes, name)
        np.testing.assert_allclose(line.get_ydata(), loss_gradient(head, theta, feature_norm=8.0))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["NormFace, r=20, C=10", "Softmax, r=8, C=10"]
    assert axes.get_ylabel() == "|∂L/∂θ_y| (per radian)"
    paths = gradient_curves(heads, tmp_path / "gradient")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_describe_head_shows_current_hyperparameters_without_scale():
    assert describe_head("a", ArcFace(3, 2, scale=30.0, margin=0.25)) == "a (margin=0.25)"
    assert describe_head("a", ArcFace(3, 2, scale=30.0), with_scale=True) == (
        "a (scale=30, margin=0.5)"
    )


@pytest.mark.parametrize(
    ("heads", "kwargs", "error", "match"),
    [
        ({}, {}, ValueError, "heads is empty"),
        ([NormFace(3, 2)], {}, TypeError, "heads must be a dict"),
        ({"x": torch.nn.Linear(2, 3)}, {}, TypeError, r"heads\['x'\]"),
        ({"x": NormFace(3, 2)}, {"other_cosine": 1.5}, ValueError, "other_cosine"),
        ({"x": NormFace(3, 2)}, {"feature_norm": 0.0}, ValueError, "feature_norm"),
        ({"x": NormFace(3, 2)}, {"with_respect_to": "degrees"}, ValueError, "with_respect_to"),
        ({"x": NormFace(3, 2)}, {"points": 1}, ValueError, "points"),
    ],
)
def test_gradient_curves_bad_input(heads, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_gradient_curves(heads, **kwargs)


def test_target_logit_curves_bad_input():
    with pytest.raises(ValueError, match="heads is empty"):
        build_target_logit_curves({})
    with pytest.raises(TypeError, match=r"heads\['w'\] must be a marginkit MarginHead"):
        build_target_logit_curves({"w": "arcface"})  # type: ignore[dict-item]
