"""Glyphs: a ten-class data set of 16x16 grey images drawn by a program, for checking the
defaults on data that none of them was chosen on (issue 25) without a download.

Each class is a fixed glyph of three quadratic Bezier strokes whose control points are drawn
once from the generator's seed. An image redraws its class's glyph with every control point
moved (Gaussian, standard deviation :data:`_JITTER` of the half-width), a random affine map
(rotation, scale, aspect, shear, shift), a random stroke width and ink per stroke, a stray
stroke in half of the images, and pixel noise, then rounds it to ``uint8``. The classes
overlap (a moved stroke of one glyph can look like another's): a nearest-class-mean
classifier on the pixels gets 74 % of the test images, softmax on the MLP 89 % after 1,000
steps (``docs/recipes.md``, "Every budget").

The generator's seed is fixed and independent of the run's seed, like the digits' split, so
every run sees the same images and test accuracies are comparable across runs. The images
are made in a few seconds on one core and never written to disk; the data set's fingerprint
is this file (:mod:`marginkit.data.fingerprint`): any edit of it, even of a comment, changes
it, so a run is never resumed on glyphs drawn another way.
"""

from __future__ import annotations

import torch
from torch import Tensor

from marginkit.data.raw import RawSplits

__all__ = ["GLYPHS_CLASSES", "GLYPHS_SIZE", "GLYPHS_TEST_SIZE", "GLYPHS_TRAIN_SIZE", "read_glyphs"]

GLYPHS_CLASSES = 10
#: Side of the square images, in pixels.
GLYPHS_SIZE = 16
#: Images per split (600 and 200 a class).
GLYPHS_TRAIN_SIZE = 6000
GLYPHS_TEST_SIZE = 2000

_GENERATOR_SEED = 20261207
_STROKES = 3
#: Points a stroke is drawn through (segments between them).
_STROKE_POINTS = 9
#: Standard deviation of the move of each control point, in half-widths of the image.
_JITTER = 0.09
#: Probability of a stray stroke (control points anywhere).
_STRAY = 0.5
_NOISE = 0.12
_CHUNK = 500


def _bezier(points: Tensor) -> Tensor:
    """Points along quadratic Bezier strokes.

    Args:
        points: ``(N, S, 3, 2)`` control points of S strokes.

    Returns:
        ``(N, S, P, 2)``: :data:`_STROKE_POINTS` points along each stroke.
    """
    t = torch.linspace(0.0, 1.0, _STROKE_POINTS, dtype=points.dtype).view(1, 1, -1, 1)
    start, control, end = points[:, :, 0:1], points[:, :, 1:2], points[:, :, 2:3]
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end


def _draw(strokes: Tensor, width: Tensor, ink: Tensor) -> Tensor:
    """Rasterise polylines: each pixel takes the darkest ink of the strokes near it.

    Args:
        strokes: ``(N, S, P, 2)`` points, the image spanning [-1, 1] in both coordinates.
        width: ``(N, 1)`` half-width of the strokes.
        ink: ``(N, S)`` ink of each stroke in [0, 1].

    Returns:
        ``(N, H, W)`` ink in [0, 1].
    """
    centres = (torch.arange(GLYPHS_SIZE, dtype=strokes.dtype) + 0.5) / GLYPHS_SIZE * 2 - 1
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij")[::-1], -1).view(1, -1, 1, 2)
    start = strokes[:, :, :-1].flatten(1, 2).unsqueeze(1)  # (N, 1, S(P-1), 2)
    step = strokes[:, :, 1:].flatten(1, 2).unsqueeze(1) - start
    along = ((grid - start) * step).sum(-1) / (step * step).sum(-1).clamp_min(1e-12)
    nearest = start + along.clamp(0.0, 1.0).unsqueeze(-1) * step  # (N, HW, S(P-1), 2)
    distance = (grid - nearest).norm(dim=-1)  # (N, HW, S(P-1))
    pixel = 2.0 / GLYPHS_SIZE
    coverage = ((width.unsqueeze(-1) - distance) / pixel + 0.5).clamp(0.0, 1.0)
    coverage = coverage * ink.repeat_interleave(_STROKE_POINTS - 1, dim=1).unsqueeze(1)
    return coverage.amax(-1).view(-1, GLYPHS_SIZE, GLYPHS_SIZE)


def _images(templates: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
    """``(N, 1, H, W)`` uint8 images of classes ``labels`` (``(N,)``)."""
    n = labels.numel()

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    points = templates[labels] + _JITTER * torch.randn(
        n, _STROKES, 3, 2, generator=generator, dtype=torch.float64
    )
    angle, shear = uniform(-0.35, 0.35, n), uniform(-0.25, 0.25, n)
    scale = uniform(0.8, 1.1, n)
    aspect = uniform(0.85, 1.15, n)
    cos, sin = torch.cos(angle), torch.sin(angle)
    linear = torch.stack(
        [
            torch.stack([scale * aspect * cos, scale * (shear * cos - sin)], -1),
            torch.stack([scale * aspect * sin, scale * (shear * sin + cos)], -1),
        ],
        -2,
    )  # (N, 2, 2)
    shift = uniform(-0.15, 0.15, n, 2)
    points = torch.einsum("nij,nscj->nsci", linear, points) + shift.view(n, 1, 1, 2)
    stray = uniform(-0.9, 0.9, n, 1, 3, 2)
    strokes = _bezier(torch.cat([points, stray], 1))  # (N, S + 1, P, 2)
    ink = uniform(0.6, 1.0, n, _STROKES + 1)
    ink[:, -1] *= (torch.rand(n, generator=generator, dtype=torch.float64) < _STRAY).double()
    width = uniform(0.07, 0.14, n, 1)
    pictures = torch.cat(
        [
            _draw(
                strokes[i : i + _CHUNK].float(),
                width[i : i + _CHUNK].float(),
                ink[i : i + _CHUNK].float(),
            )
            for i in range(0, n, _CHUNK)
        ]
    )
    pictures = pictures.double() + _NOISE * torch.randn(
        pictures.shape, generator=generator, dtype=torch.float64
    )
    return (pictures.clamp(0.0, 1.0) * 255).round().to(torch.uint8).unsqueeze(1)


def _balanced_labels(size: int, generator: torch.Generator) -> Tensor:
    labels = torch.arange(size) % GLYPHS_CLASSES
    return labels[torch.randperm(size, generator=generator)]


def read_glyphs() -> RawSplits:
    """The glyphs: 6,000 training and 2,000 test images, ``(N, 1, 16, 16)`` uint8, ten
    balanced classes, the same on every call."""
    generator = torch.Generator().manual_seed(_GENERATOR_SEED)
    templates = -0.75 + 1.5 * torch.rand(
        GLYPHS_CLASSES, _STROKES, 3, 2, generator=generator, dtype=torch.float64
    )
    train_labels = _balanced_labels(GLYPHS_TRAIN_SIZE, generator)
    test_labels = _balanced_labels(GLYPHS_TEST_SIZE, generator)
    return RawSplits(
        train_data=_images(templates, train_labels, generator),
        train_labels=train_labels,
        test_data=_images(templates, test_labels, generator),
        test_labels=test_labels,
        class_names=[f"glyph {k}" for k in range(GLYPHS_CLASSES)],
    )
