"""Everything marginkit measures and draws about a trained run, in one call.

:func:`analyse` takes a run's backbone, head and data and returns a JSON-serialisable
report of every measurement that applies (closed-set accuracy, geometry on the sphere,
retrieval, pair verification, open-set recognition when the run was trained on a class
subset, label-noise statistics when it was trained with noisy labels), and writes the
pictures into a folder. :func:`marginkit.evaluate.evaluate_run` (``marginkit eval``) calls it.

Which split is measured: the test split (the validation split where a data set has none);
verification uses the data set's own pairs (LFW's ``pairsDevTest.txt``: people never seen
in training) or, without them, a seeded sample of positive and negative pairs of the
measured split.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from marginkit.losses import MarginHead

__all__ = ["analyse", "comparison_heads"]

_PAIRS_PER_KIND = 3000
_MAX_RETRIEVAL = 20_000


def comparison_heads(head: MarginHead, name: str) -> dict[str, MarginHead]:
    """The run's head next to the classic margins at their published settings, for the
    target-logit and gradient pictures (all with the run's class count).
    """
    from marginkit.losses import ArcFace, CamSoftmax, CosFace, NormFace, Softmax, SphereFace

    classes = head.num_classes
    heads: dict[str, MarginHead] = {f"this run: {name}": head}
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


def _subsample(count: int, limit: int, seed: int = 0) -> Tensor:
    """Sorted indices of a seeded sample of at most ``limit`` of ``count`` items."""
    if count <= limit:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:limit].sort().values


def analyse(
    backbone: nn.Module,
    head: MarginHead,
    bundle: Any,
    *,
    loss_name: str,
    label_noise: float = 0.0,
    plots_dir: str | Path | None = None,
    metrics_file: str | Path | None = None,
    batch_size: int = 512,
    embedded: dict[str, tuple[Tensor, Tensor]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure (and draw) a trained backbone + head on its data.

    Args:
        backbone: the trained backbone (put in eval mode).
        head: the trained head (put in eval mode; its step does not move).
        bundle: the run's :class:`~marginkit.data.DataBundle`.
        loss_name: the registry name of the head, for titles.
        label_noise: the training-label noise rate the run used (0: no noise section).
        plots_dir: folder for the PNG + SVG pictures, or None for no pictures.
        metrics_file: the run's ``metrics.json`` (learning curves), if any.
        batch_size: inputs per forward pass when embedding.
        embedded: embeddings the caller already has, by split name (``"train"``,
            ``"validation"``, ``"test"``): ``(embeddings (N, D), labels (N,))``; other
            splits are embedded here.
        progress: show the progress of the embedding and of the five stages (embeddings,
            measurements, verification, label noise, pictures) on stderr, with an ETA.

    Returns:
        JSON-serialisable dict with the sections that apply: ``closed_set``, ``geometry``,
        ``retrieval``, ``verification``, ``open_set``, ``label_noise``, and ``plots`` (the
        written files).
    """
    from marginkit import metrics
    from marginkit.evaluate import embed
    from marginkit.progress import Progress

    embedded = dict(embedded or {})
    stages = Progress(5, "analysis", enabled=progress, every=1, unit="stage")

    def embedding_of(name: str) -> tuple[Tensor, Tensor]:
        if name not in embedded:
            embedded[name] = embed(
                backbone, getattr(bundle, name), batch_size, progress=progress, name=name
            )
        return embedded[name]

    backbone.eval()
    head.eval()
    split = "test" if bundle.test is not None else "validation"
    dataset = getattr(bundle, split)
    report: dict[str, Any] = {"split": split}
    train_embeddings, train_labels = embedding_of("train")  # (N, D), (N,)
    weight = head.weight.detach().float()  # (C, D)
    num_known = bundle.num_classes

    embeddings = labels = known = None
    if dataset is not None:
        embeddings, labels = embedding_of(split)  # (M, D), (M,)
    stages.update(postfix="embeddings done")
    if dataset is not None:
        known = labels < num_known  # (M,)
        known_embeddings, known_labels = embeddings[known], labels[known]
        report["closed_set"] = {
            "samples": int(known.sum()),
            "top1_accuracy": metrics.top1_accuracy(head.logits(known_embeddings), known_labels),
            "nearest_centre_accuracy": metrics.nearest_centre_accuracy(
                train_embeddings, train_labels, known_embeddings, known_labels
            ),
        }
        if torch.unique(known_labels).numel() >= 2:
            report["geometry"] = metrics.angular_geometry(known_embeddings, known_labels, weight)
            sample = _subsample(len(known_labels), _MAX_RETRIEVAL)
            report["retrieval"] = {
                **metrics.retrieval_metrics(known_embeddings[sample], known_labels[sample]),
                "sampled_from": len(known_labels),
            }
        if not bool(known.all()):
            gallery, probe = metrics.split_gallery_probe(labels, num_known, seed=0)
            report["open_set"] = {
                **metrics.open_set_report(embeddings, labels, weight, num_known),
                "identification": metrics.identification_report(
                    embeddings[gallery], labels[gallery], embeddings[probe], labels[probe]
                ),
            }

    stages.update(postfix="closed-set, geometry, retrieval and open-set measures done")
    verification = None
    if bundle.pairs is not None:
        pair_embeddings, _ = embed(
            backbone, bundle.pairs.images, batch_size, progress=progress, name="pairs"
        )  # (I, D)
        verification = metrics.verification_report(
            pair_embeddings[bundle.pairs.first],
            pair_embeddings[bundle.pairs.second],
            bundle.pairs.same,
            bundle.pairs.fold,
        )
        verification["pairs_source"] = "the data set's pairs file"
    elif embeddings is not None and known is not None and int(known.sum()) >= 4:
        known_embeddings, known_labels = embeddings[known], labels[known]
        pairs = metrics.make_pairs(
            known_labels,
            num_positive=_available(known_labels, same=True, wanted=_PAIRS_PER_KIND),
            num_negative=_available(known_labels, same=False, wanted=_PAIRS_PER_KIND),
            seed=0,
        )
        verification = metrics.verification_report(
            known_embeddings[pairs.first], known_embeddings[pairs.second], pairs.same, pairs.fold
        )
        verification["pairs_source"] = f"seeded sample of the {split} split"
    if verification is not None:
        report["verification"] = verification
    stages.update(postfix="verification done")

    noise = None
    if label_noise > 0:
        test_accuracy = report.get("closed_set", {}).get("top1_accuracy")
        noise = metrics.label_noise_report(
            head,
            train_embeddings,
            bundle.train_labels,
            bundle.train_clean_labels,
            test_accuracy=test_accuracy,
        )
        report["label_noise"] = noise
    stages.update(postfix="label-noise statistics done")

    if plots_dir is not None:
        report["plots"] = _draw(
            Path(plots_dir),
            head,
            loss_name,
            bundle,
            train_embeddings,
            embeddings,
            labels,
            known,
            verification,
            metrics_file,
            label_noise > 0,
        )
    stages.update(postfix="pictures done")
    stages.close()
    return report


def _available(labels: Tensor, *, same: bool, wanted: int) -> int:
    """How many pairs of one kind to sample: ``wanted``, or all there are."""
    counts = torch.bincount(labels).double()
    total = labels.numel()
    positives = float((counts * (counts - 1) / 2).sum())
    pairs = positives if same else total * (total - 1) / 2 - positives
    return int(min(wanted, pairs))


def _draw(
    folder: Path,
    head: MarginHead,
    loss_name: str,
    bundle: Any,
    train_embeddings: Tensor,
    embeddings: Tensor | None,
    labels: Tensor | None,
    known: Tensor | None,
    verification: dict[str, Any] | None,
    metrics_file: str | Path | None,
    noisy: bool,
) -> list[str]:
    """Every picture that applies, into ``folder``; returns the written paths."""
    from marginkit import metrics, plots

    written: list[Path] = []
    weight = head.weight.detach().float()
    title = f"{bundle.name}, {loss_name}"
    if embeddings is not None and labels is not None and known is not None:
        shown_embeddings, shown_labels = embeddings[known], labels[known]
        names = list(bundle.class_names)
        dimension = shown_embeddings.shape[1]
        if dimension == 2:
            written += plots.features_2d(
                shown_embeddings,
                shown_labels,
                weight,
                folder / "features_2d",
                normalized=True,
                class_names=names,
                title=f"{title}: test features",
            )
        if dimension >= 3:
            written += plots.features_3d(
                shown_embeddings,
                shown_labels,
                folder / "features_3d",
                class_names=names,
                title=f"{title}: test features on the sphere",
            )
        written += plots.similarity_histograms(
            shown_embeddings,
            shown_labels,
            folder / "similarity",
            title=f"{title}: intra- vs inter-class cosine (test)",
        )
    heads = comparison_heads(head, loss_name)
    written += plots.target_logit_curves(heads, folder / "target_logit")
    written += plots.gradient_curves(heads, folder / "gradient")
    if verification is not None:
        roc = verification["roc"]
        written += plots.roc_curves(
            {loss_name: (roc["far"], roc["tar"])},  # the legend adds the AUC
            folder / "roc",
            title=f"{title}: verification ROC",
        )
    if metrics_file is not None and Path(metrics_file).is_file():
        written += plots.learning_curves(
            Path(metrics_file), folder / "learning_curves", title=f"{title}: learning curves"
        )
    if noisy:
        flipped = (bundle.train_labels != bundle.train_clean_labels).numpy()
        angles = metrics.target_angles(head, train_embeddings, bundle.train_labels)
        gradients = metrics.per_sample_gradient_norms(head, train_embeddings, bundle.train_labels)
        written += plots.label_noise_histograms(
            angles[~flipped],
            angles[flipped],
            folder / "label_noise_angles",
            quantity="target angle",
            title=f"{title}: angle to the training label's weight",
        )
        written += plots.label_noise_histograms(
            gradients[~flipped],
            gradients[flipped],
            folder / "label_noise_gradients",
            quantity="gradient norm",
            unit=None,
            title=f"{title}: per-sample gradient norm",
        )
    return [str(path) for path in written]
