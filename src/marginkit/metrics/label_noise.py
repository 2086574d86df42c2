"""What a margin head does to mislabelled training samples.

Cam-softmax (Süveges & McKenna, ICPR 2020, "Cam-softmax for discriminative deep feature
learning") argues that a target function that stops rewarding small target angles keeps
the gradient of mislabelled samples -- features that sit far from the weight of the wrong
label they were given -- from dominating training. This module measures exactly that on a
trained model: for the training set, split into clean samples and samples whose label was
flipped by the noise option, the distribution of

- the target angle: the angle (radians) between each embedding and the class weight of the
  label used in training (the noisy one);
- the per-sample gradient magnitude ``|| d loss_i / d x_i ||``, the gradient of the
  sample's own cross-entropy on the head's training logits (``head.margin_logits``) with
  respect to its embedding, computed by autograd through the head itself.

The head is evaluated in ``eval`` mode at its current hyper-parameter values; no schedule
advances and no parameter gradient is accumulated.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from marginkit._validation import ArrayLike, as_labels, as_matrix, check_count, check_same_length
from marginkit.losses.head import MarginHead
from marginkit.metrics.sphere import angles_between, normalize_rows

__all__ = [
    "QUANTILES",
    "LabelNoiseSamples",
    "label_noise_report",
    "label_noise_samples",
    "per_sample_gradient_norms",
    "summarize_label_noise",
    "target_angles",
]

#: Quantiles reported for every distribution.
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


def _check_head(head: MarginHead, embeddings: Tensor, labels: Tensor) -> None:
    if not isinstance(head, MarginHead):
        raise TypeError(f"head must be a marginkit MarginHead; got {type(head).__name__}")
    if embeddings.shape[1] != head.embedding_dim:
        raise ValueError(
            f"embeddings must have {head.embedding_dim} columns (head.embedding_dim); "
            f"got {embeddings.shape[1]}"
        )
    if int(labels.max()) >= head.num_classes:
        raise ValueError(
            f"labels must lie in [0, {head.num_classes}) (head.num_classes); "
            f"got a maximum of {int(labels.max())}"
        )


def target_angles(head: MarginHead, embeddings: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Angle (radians) between each embedding and the weight of its label, (N,) float64.

    Args:
        head: a margin head; its ``weight`` (C, D) gives the class directions.
        embeddings: (N, D) embeddings.
        labels: (N,) labels (those used in training).
    """
    embeddings_t = as_matrix("embeddings", embeddings)
    labels_t = as_labels("labels", labels)
    check_same_length(embeddings=embeddings_t, labels=labels_t)
    _check_head(head, embeddings_t, labels_t)
    weight = head.class_weight().cpu().to(torch.float64)  # (C, D)
    unit_weight = normalize_rows(weight, "head.class_weight()")  # (C, D)
    return angles_between(normalize_rows(embeddings_t, "embeddings"), unit_weight[labels_t]).numpy()


def per_sample_gradient_norms(
    head: MarginHead, embeddings: ArrayLike, labels: ArrayLike, chunk_size: int = 4096
) -> np.ndarray:
    """``|| d loss_i / d x_i ||`` for every sample, (N,) float64.

    ``loss_i`` is the cross-entropy of row ``i`` of ``head.margin_logits(x, y)``. Each
    loss depends on its own embedding only, so the gradient of their sum with respect to
    the (N, D) batch holds every per-sample gradient in its rows.

    Args:
        head: a margin head (evaluated in eval mode, restored afterwards).
        embeddings: (N, D) embeddings.
        labels: (N,) labels used in training.
        chunk_size: samples per autograd pass.
    """
    embeddings_t = as_matrix("embeddings", embeddings)
    labels_t = as_labels("labels", labels)
    check_same_length(embeddings=embeddings_t, labels=labels_t)
    _check_head(head, embeddings_t, labels_t)
    check_count("chunk_size", chunk_size, 1)
    device = head.weight.device
    was_training = head.training
    head.eval()
    norms = []
    try:
        with torch.enable_grad():
            for start in range(0, embeddings_t.shape[0], chunk_size):
                x = embeddings_t[start : start + chunk_size].to(device).requires_grad_(True)
                y = labels_t[start : start + chunk_size].to(device)
                losses = F.cross_entropy(head.margin_logits(x, y), y, reduction="none")  # (B,)
                (gradient,) = torch.autograd.grad(losses.sum(), x)  # (B, D)
                norms.append(gradient.norm(dim=1).detach().cpu().to(torch.float64))
    finally:
        head.train(was_training)
    return torch.cat(norms).numpy()


def _distribution(values: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """Count, mean, population std, :data:`QUANTILES` and histogram counts on ``edges``."""
    counts = np.histogram(values, bins=edges)[0].tolist()
    if values.shape[0] == 0:
        return {"count": 0, "mean": None, "std": None, "quantiles": None, "histogram": counts}
    return {
        "count": int(values.shape[0]),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": {
            str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        },
        "histogram": counts,
    }


@dataclass(frozen=True)
class LabelNoiseSamples:
    """The per-sample quantities of a training set, computed once for the report and the
    pictures.

    Attributes:
        angles: (N,) float64 target angle (radians) of each sample, to its training label.
        gradient_norms: (N,) float64 ``|| d loss_i / d x_i ||`` of each sample.
        flipped: (N,) bool, True where the training label differs from the true one.
    """

    angles: np.ndarray
    gradient_norms: np.ndarray
    flipped: np.ndarray


def label_noise_samples(
    head: MarginHead,
    embeddings: ArrayLike,
    training_labels: ArrayLike,
    clean_labels: ArrayLike,
    chunk_size: int = 4096,
) -> LabelNoiseSamples:
    """Target angles and per-sample gradient magnitudes of the training samples, and which
    of them were flipped.

    Args:
        head: the trained head.
        embeddings: (N, D) training embeddings.
        training_labels: (N,) labels used in training (after the noise was applied).
        clean_labels: (N,) true labels; a sample is flipped where they differ.
        chunk_size: samples per autograd pass.
    """
    embeddings_t = as_matrix("embeddings", embeddings)
    training_t = as_labels("training_labels", training_labels)
    clean_t = as_labels("clean_labels", clean_labels)
    check_same_length(embeddings=embeddings_t, training_labels=training_t, clean_labels=clean_t)
    return LabelNoiseSamples(
        angles=target_angles(head, embeddings_t, training_t),
        gradient_norms=per_sample_gradient_norms(head, embeddings_t, training_t, chunk_size),
        flipped=(training_t != clean_t).numpy(),
    )


def _check_summary_options(test_accuracy: float | None, num_bins: int) -> None:
    check_count("num_bins", num_bins, 1)
    if test_accuracy is not None:
        if isinstance(test_accuracy, bool) or not isinstance(test_accuracy, numbers.Real):
            raise TypeError(
                f"test_accuracy must be a float or None; got {type(test_accuracy).__name__}"
            )
        if not 0.0 <= test_accuracy <= 1.0:
            raise ValueError(f"test_accuracy must lie in [0, 1] or be None; got {test_accuracy}")


def summarize_label_noise(
    samples: LabelNoiseSamples, test_accuracy: float | None = None, num_bins: int = 36
) -> dict[str, Any]:
    """The report of :func:`label_noise_report` from samples measured already."""
    _check_summary_options(test_accuracy, num_bins)
    angles, gradients, flipped = samples.angles, samples.gradient_norms, samples.flipped
    angle_edges = np.linspace(0.0, np.pi, num_bins + 1)
    gradient_edges = np.linspace(
        0.0, max(float(gradients.max()), np.finfo(float).tiny), num_bins + 1
    )
    return {
        "test_accuracy": None if test_accuracy is None else float(test_accuracy),
        "num_samples": int(flipped.shape[0]),
        "num_flipped": int(flipped.sum()),
        "flip_rate": float(flipped.mean()),
        "target_angle": {
            "edges": angle_edges.tolist(),
            "clean": _distribution(angles[~flipped], angle_edges),
            "flipped": _distribution(angles[flipped], angle_edges),
        },
        "gradient_norm": {
            "edges": gradient_edges.tolist(),
            "clean": _distribution(gradients[~flipped], gradient_edges),
            "flipped": _distribution(gradients[flipped], gradient_edges),
        },
    }


def label_noise_report(
    head: MarginHead,
    embeddings: ArrayLike,
    training_labels: ArrayLike,
    clean_labels: ArrayLike,
    test_accuracy: float | None = None,
    num_bins: int = 36,
    chunk_size: int = 4096,
) -> dict[str, Any]:
    """Target angles and per-sample gradient magnitudes, clean vs flipped training samples.

    Args:
        head: the trained head.
        embeddings: (N, D) training embeddings.
        training_labels: (N,) labels used in training (after the noise was applied).
        clean_labels: (N,) true labels; a sample is flipped where they differ.
        test_accuracy: the test accuracy, passed through into the report.
        num_bins: histogram bins; angles over ``[0, pi]``, gradient magnitudes over
            ``[0, largest magnitude]``, the same edges for both groups.
        chunk_size: samples per autograd pass.

    Returns:
        JSON-serialisable ``{"test_accuracy", "num_samples", "num_flipped",
        "flip_rate", "target_angle": {"edges", "clean", "flipped"},
        "gradient_norm": {"edges", "clean", "flipped"}}``; each group a dict of
        ``count, mean, std, quantiles, histogram`` (statistics None for an empty group).
    """
    _check_summary_options(test_accuracy, num_bins)  # before the gradients are computed
    samples = label_noise_samples(head, embeddings, training_labels, clean_labels, chunk_size)
    return summarize_label_noise(samples, test_accuracy, num_bins)
