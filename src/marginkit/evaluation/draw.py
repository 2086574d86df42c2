"""The pictures of a trained run (PNG + SVG), from what was measured.

:func:`draw` writes every picture that applies, described by one :class:`Drawing`: the
measured split's features and cosine histograms, the head's target logit and gradient beside
the classic margins (:func:`comparison_heads`), the verification ROC, the learning curves,
and the clean-vs-flipped label-noise histograms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from marginkit import plots
from marginkit.losses import ArcFace, CamSoftmax, CosFace, MarginHead, NormFace, Softmax, SphereFace
from marginkit.losses.sanity import unchecked
from marginkit.metrics import LabelNoiseSamples

__all__ = ["Drawing", "comparison_heads", "draw"]


def comparison_heads(head: MarginHead, name: str) -> dict[str, MarginHead]:
    """The run's head next to the classic margins at their published settings, for the
    target-logit and gradient pictures (all with the run's class count).
    """
    classes = head.num_classes
    heads: dict[str, MarginHead] = {f"this run: {name}": head}
    with unchecked():  # 2-D heads for their curves only: no MarginWarning about them
        reference = {  # the legend adds each head's hyper-parameter values
            "softmax": Softmax(classes, 2),
            "normface": NormFace(classes, 2),
            "cosface": CosFace(classes, 2),
            "arcface": ArcFace(classes, 2),
            "sphereface": SphereFace(classes, 2, lambda_=5.0),
            "camsoftmax": CamSoftmax(classes, 2, c=math.pi / 4),
        }
    for label, candidate in reference.items():
        if label != name:
            heads[label] = candidate.eval()
    return heads


@dataclass(frozen=True)
class Drawing:
    """What the pictures of a run show.

    Attributes:
        folder: where the pictures go.
        head: the trained head (its class weights (C, D) give the 2-D rays).
        loss_name: the registry name of the head.
        title: the start of every title (``"digits, arcface"``).
        split: the measured split's name.
        class_names: the name of each known class.
        features: ``(embeddings (K, D), labels (K,))`` of the measured split's known
            samples, or None when no split was measured.
        verification: the verification section (its ``roc``), or None.
        metrics_file: the run's ``metrics.json``, or None.
        label_noise: the training samples' label-noise quantities, or None.
    """

    folder: Path
    head: MarginHead
    loss_name: str
    title: str
    split: str
    class_names: list[str]
    features: tuple[Tensor, Tensor] | None = None
    verification: dict[str, Any] | None = None
    metrics_file: Path | None = None
    label_noise: LabelNoiseSamples | None = None


def draw(drawing: Drawing) -> list[str]:
    """Every picture that applies, into ``drawing.folder``; returns the written paths."""
    written = [
        *_feature_pictures(drawing),
        *_margin_pictures(drawing),
        *_run_pictures(drawing),
        *_label_noise_pictures(drawing),
    ]
    return [str(path) for path in written]


def _feature_pictures(drawing: Drawing) -> list[Path]:
    """The features (2-D with class-weight rays, or on the 3-D sphere) and the intra- vs
    inter-class cosine histograms of the measured split."""
    if drawing.features is None:
        return []
    embeddings, labels = drawing.features
    folder, title, split = drawing.folder, drawing.title, drawing.split
    written: list[Path] = []
    dimension = embeddings.shape[1]
    if dimension == 2:
        written += plots.features_2d(
            embeddings,
            labels,
            drawing.head.class_weight().float(),
            folder / "features_2d",
            normalized=True,
            class_names=drawing.class_names,
            title=f"{title}: {split} features",
        )
    if dimension >= 3:
        written += plots.features_3d(
            embeddings,
            labels,
            folder / "features_3d",
            class_names=drawing.class_names,
            title=f"{title}: {split} features on the sphere",
        )
    written += plots.similarity_histograms(
        embeddings,
        labels,
        folder / "similarity",
        title=f"{title}: intra- vs inter-class cosine ({split})",
    )
    return written


def _margin_pictures(drawing: Drawing) -> list[Path]:
    """Target logit and its gradient against the angle, the run's head beside the others."""
    heads = comparison_heads(drawing.head, drawing.loss_name)
    return [
        *plots.target_logit_curves(heads, drawing.folder / "target_logit"),
        *plots.gradient_curves(heads, drawing.folder / "gradient"),
    ]


def _run_pictures(drawing: Drawing) -> list[Path]:
    """The verification ROC and the learning curves, where there are any."""
    written: list[Path] = []
    if drawing.verification is not None:
        roc = drawing.verification["roc"]
        written += plots.roc_curves(
            {drawing.loss_name: (roc["far"], roc["tar"])},  # the legend adds the AUC
            drawing.folder / "roc",
            title=f"{drawing.title}: verification ROC",
        )
    if drawing.metrics_file is not None and drawing.metrics_file.is_file():
        written += plots.learning_curves(
            drawing.metrics_file,
            drawing.folder / "learning_curves",
            title=f"{drawing.title}: learning curves",
        )
    return written


def _label_noise_pictures(drawing: Drawing) -> list[Path]:
    """Target angle and per-sample gradient norm, clean vs flipped training samples."""
    samples = drawing.label_noise
    if samples is None:
        return []
    flipped = samples.flipped
    return [
        *plots.label_noise_histograms(
            samples.angles[~flipped],
            samples.angles[flipped],
            drawing.folder / "label_noise_angles",
            quantity="target angle",
            title=f"{drawing.title}: angle to the training label's weight",
        ),
        *plots.label_noise_histograms(
            samples.gradient_norms[~flipped],
            samples.gradient_norms[flipped],
            drawing.folder / "label_noise_gradients",
            quantity="gradient norm",
            unit=None,
            title=f"{drawing.title}: per-sample gradient norm",
        ),
    ]
