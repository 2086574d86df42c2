"""Face verification: pairs of embeddings scored by cosine, ROC, EER, TAR@FAR, LFW 10-fold.

The protocol is that of Labeled Faces in the Wild (Huang et al., 2007, "Labeled Faces in the
Wild: A Database for Studying Face Recognition in Unconstrained Environments"): pairs are
split into ten folds; for each fold a threshold is chosen on the other nine (the one that
maximises their accuracy) and accuracy is measured on the held-out fold. The ROC
quantities (FAR/TAR, AUC, EER, TAR@FAR) are those of :mod:`marginkit.metrics.roc`.

Pairs come either from an LFW ``pairs.txt`` file (read by the data package) or from
:func:`make_pairs`, which builds all, or a seeded sample of, the positive and negative pairs
of a labelled set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from marginkit._validation import (
    ArrayLike,
    as_flags,
    as_labels,
    as_matrix,
    check_count,
    check_fars,
    check_same_length,
)
from marginkit.metrics.roc import (
    DEFAULT_FARS,
    RocCurve,
    auc,
    checked_scores,
    equal_error_rate,
    operating_point,
    roc_curve,
    tar_at_far,
)
from marginkit.metrics.sphere import normalize_rows

__all__ = [
    "MAX_ENUMERATED_PAIRS",
    "Pairs",
    "assign_folds",
    "auc",
    "cosine_scores",
    "equal_error_rate",
    "lfw_ten_fold",
    "make_pairs",
    "pair_folds",
    "roc_curve",
    "tar_at_far",
    "verification_report",
]

#: :func:`make_pairs` refuses to enumerate more pairs than this of one kind; pass a count.
MAX_ENUMERATED_PAIRS = 5_000_000


class Pairs(NamedTuple):
    """Index pairs into a labelled set.

    Attributes:
        first: (P,) int64 index of the first sample of each pair.
        second: (P,) int64 index of the second sample (``first < second``).
        same: (P,) bool, True when both samples share a label.
        fold: (P,) int64 fold in ``[0, num_folds)``, balanced in positives and negatives.
    """

    first: Tensor
    second: Tensor
    same: Tensor
    fold: Tensor


def cosine_scores(embeddings_first: ArrayLike, embeddings_second: ArrayLike) -> np.ndarray:
    """Cosine similarity of matching rows, (P, D) x (P, D) -> (P,) float64 numpy array."""
    first = as_matrix("embeddings_first", embeddings_first)
    second = as_matrix("embeddings_second", embeddings_second)
    check_same_length(embeddings_first=first, embeddings_second=second)
    if first.shape[1] != second.shape[1]:
        raise ValueError(
            f"embeddings_first has {first.shape[1]} columns but embeddings_second has "
            f"{second.shape[1]}; the embedding_dim must match"
        )
    unit_first = normalize_rows(first, "embeddings_first")  # (P, D)
    unit_second = normalize_rows(second, "embeddings_second")  # (P, D)
    return (unit_first * unit_second).sum(dim=1).clamp(-1, 1).numpy()


# ---------------------------------------------------------------------------- pairs
def make_pairs(
    labels: ArrayLike,
    num_positive: int | None = None,
    num_negative: int | None = None,
    seed: int = 0,
    num_folds: int = 10,
) -> Pairs:
    """Positive and negative pairs of a labelled set, deterministic for a given ``seed``.

    With a count of None every pair of that kind is returned (at most
    :data:`MAX_ENUMERATED_PAIRS`); with a count, a uniform sample without replacement. The
    pairs are sorted positives first, each kind by ``(first, second)``. Folds are assigned
    by shuffling each kind (seeded) and dealing it round-robin, so every fold holds the same
    share of positives and negatives.

    Args:
        labels: (N,) integer identity labels.
        num_positive: how many same-label pairs, or None for all.
        num_negative: how many different-label pairs, or None for all.
        seed: seed of the sampling and of the fold assignment.
        num_folds: number of folds (>= 2).

    Raises:
        ValueError: a count is negative or larger than the pairs that exist, an
            enumeration would exceed :data:`MAX_ENUMERATED_PAIRS`, or ``num_folds < 2``.
    """
    labels = as_labels("labels", labels, min_length=2)
    for name, count in (("num_positive", num_positive), ("num_negative", num_negative)):
        if count is not None:
            check_count(name, count, 0)
    check_count("seed", seed, 0)
    check_count("num_folds", num_folds, 2)

    label_np = labels.numpy()
    size = label_np.shape[0]
    order = np.argsort(label_np, kind="stable")  # members of each class, ascending index
    _, class_sizes = np.unique(label_np, return_counts=True)
    class_pairs = class_sizes * (class_sizes - 1) // 2
    total_positive = int(class_pairs.sum())
    total_negative = size * (size - 1) // 2 - total_positive
    _check_pair_count("num_positive", num_positive, total_positive, "same-label")
    _check_pair_count("num_negative", num_negative, total_negative, "different-label")

    rng = np.random.default_rng(seed)
    positive = _positive_pairs(order, class_sizes, class_pairs, num_positive, rng)
    negative = _negative_pairs(label_np, total_negative, num_negative, rng)
    fold = np.concatenate(
        [_deal(positive.shape[0], num_folds, rng), _deal(negative.shape[0], num_folds, rng)]
    )
    pairs = np.concatenate([positive, negative])  # (P, 2)
    same = np.r_[np.ones(positive.shape[0], bool), np.zeros(negative.shape[0], bool)]
    return Pairs(
        first=torch.from_numpy(pairs[:, 0].astype(np.int64)),
        second=torch.from_numpy(pairs[:, 1].astype(np.int64)),
        same=torch.from_numpy(same),
        fold=torch.from_numpy(fold.astype(np.int64)),
    )


def _check_pair_count(name: str, count: int | None, available: int, kind: str) -> None:
    """Refuse asking for more pairs of a ``kind`` than exist, or enumerating too many."""
    if count is None and available > MAX_ENUMERATED_PAIRS:
        raise ValueError(
            f"{name} must be given: the labels have {available} {kind} pairs, more than "
            f"{MAX_ENUMERATED_PAIRS} to enumerate"
        )
    if count is not None and count > available:
        raise ValueError(f"{name} asks for {count} {kind} pairs but only {available} exist")


def _upper_pair(index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major index into the pairs ``i < j`` of ``size`` items -> ``(i, j)``."""
    index = index.astype(np.int64)
    # offset(i) = i (2 size - i - 1) / 2 is the first index of row i
    first = np.floor(((2 * size - 1) - np.sqrt((2.0 * size - 1) ** 2 - 8.0 * index)) / 2)
    first = first.astype(np.int64)
    for _ in range(2):  # correct the rare off-by-one of the float square root
        first -= (first * (2 * size - first - 1) // 2 > index).astype(np.int64)
        first += ((first + 1) * (2 * size - first - 2) // 2 <= index).astype(np.int64)
    second = index - first * (2 * size - first - 1) // 2 + first + 1
    return first, second


def _positive_pairs(
    order: np.ndarray,
    class_sizes: np.ndarray,
    class_pairs: np.ndarray,
    count: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    total = int(class_pairs.sum())
    chosen = np.arange(total) if count is None else rng.choice(total, size=count, replace=False)
    ends = np.cumsum(class_pairs)
    which = np.searchsorted(ends, chosen, side="right")  # class of each chosen pair
    within = chosen - (ends - class_pairs)[which]
    member_start = (np.cumsum(class_sizes) - class_sizes)[which]
    first, second = _upper_pair_per_class(within, class_sizes[which])
    pairs = np.stack([order[member_start + first], order[member_start + second]], axis=1)
    return _sorted_pairs(pairs)


def _upper_pair_per_class(index: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_upper_pair` with a different ``size`` per element."""
    if index.shape[0] == 0:
        return index.astype(np.int64), index.astype(np.int64)
    first = np.empty_like(index, dtype=np.int64)
    second = np.empty_like(index, dtype=np.int64)
    for size in np.unique(sizes):
        mask = sizes == size
        first[mask], second[mask] = _upper_pair(index[mask], int(size))
    return first, second


def _negative_pairs(
    labels: np.ndarray, total_negative: int, count: int | None, rng: np.random.Generator
) -> np.ndarray:
    size = labels.shape[0]
    total = size * (size - 1) // 2
    if count is None or (2 * count > total_negative and total <= MAX_ENUMERATED_PAIRS):
        first, second = np.triu_indices(size, k=1)
        keep = labels[first] != labels[second]
        pairs = np.stack([first[keep], second[keep]], axis=1)
        if count is not None:
            pairs = pairs[np.sort(rng.choice(pairs.shape[0], size=count, replace=False))]
        return _sorted_pairs(pairs)
    found = np.empty(0, dtype=np.int64)
    while found.shape[0] < count:  # rejection sampling over all pairs, then deduplicate
        draw = rng.integers(0, total, size=max(2 * (count - found.shape[0]), 1024))
        first, second = _upper_pair(draw, size)
        candidates = np.concatenate([found, draw[labels[first] != labels[second]]])
        _, keep = np.unique(candidates, return_index=True)
        found = candidates[np.sort(keep)]
    first, second = _upper_pair(found[:count], size)
    return _sorted_pairs(np.stack([first, second], axis=1))


def _sorted_pairs(pairs: np.ndarray) -> np.ndarray:
    pairs = pairs.reshape(-1, 2).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _deal(count: int, num_folds: int, rng: np.random.Generator) -> np.ndarray:
    """Folds for ``count`` items: a seeded shuffle dealt round-robin."""
    fold = np.empty(count, dtype=np.int64)
    fold[rng.permutation(count)] = np.arange(count) % num_folds
    return fold


# ---------------------------------------------------------------------- LFW 10-fold
def _runs(count: int, num_folds: int) -> Tensor:
    """Run ``k`` of ``count`` items cut into ``num_folds`` runs of consecutive items, the
    first ``count % num_folds`` one longer (scikit-learn's ``KFold`` without shuffling);
    fewer items than runs: one item in each of the first ``count`` runs."""
    sizes = [count // num_folds + (1 if k < count % num_folds else 0) for k in range(num_folds)]
    return torch.repeat_interleave(torch.arange(num_folds), torch.tensor(sizes, dtype=torch.long))


def assign_folds(same: ArrayLike, num_folds: int = 10) -> Tensor:
    """Stratified folds, in order, for pairs that come without any (LFW View 1's
    ``pairsDevTest.txt``, every ``.bin`` file).

    The matched pairs, in their given order, are cut into ``num_folds`` runs of consecutive
    pairs (the first ``count % num_folds`` runs one pair longer), and so are the mismatched
    pairs; fold ``k`` holds the ``k``-th run of each kind. So:

    - every fold holds both kinds in the file's proportion (to within one pair of each);
    - a file made of ``num_folds`` consecutive blocks, each with the same numbers of
      matched and of mismatched pairs in any order (LFW's ``pairs.txt``, InsightFace's
      ``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``), gets exactly those blocks, its
      official folds;
    - reordering the pairs while keeping the order within each kind keeps every pair's
      fold: a ``.bin`` written from a pairs file (grouped by fold,
      :func:`marginkit.verify.write_bin`) gets the folds of the pairs file.

    Args:
        same: (P,) booleans, True for positive pairs.
        num_folds: number of folds (>= 2).

    Returns:
        (P,) int64 fold of each pair.
    """
    same_t = as_flags("same", same)
    check_count("num_folds", num_folds, 2)
    fold = torch.empty(same_t.shape[0], dtype=torch.int64)
    for kind in (same_t, ~same_t):
        fold[kind] = _runs(int(kind.sum()), num_folds)
    return fold


def pair_folds(
    same: ArrayLike, fold: ArrayLike | None = None, num_folds: int = 10
) -> tuple[Tensor, str]:
    """The folds the k-fold accuracy uses, and how they were made.

    Args:
        same: (P,) booleans, True for positive pairs.
        fold: (P,) given folds (LFW View 2 ``pairs.txt``: 0..9), or None.
        num_folds: folds to assign (:func:`assign_folds`) when ``fold`` is None or names
            fewer than two (View 1 files name one).

    Returns:
        ``(fold, source)``: (P,) int64 folds; ``"given"`` or ``"assigned: ..."``.
    """
    same_t = as_flags("same", same)
    if fold is not None:
        fold = as_labels("fold", fold)
        check_same_length(same=same_t, fold=fold)
        if torch.unique(fold).numel() >= 2:
            return fold, "given"
    source = (
        f"assigned: {num_folds} folds, fold k the k-th of {num_folds} runs of consecutive "
        "matched pairs and of mismatched pairs"
    )
    return assign_folds(same_t, num_folds), source


def lfw_ten_fold(scores: ArrayLike, same: ArrayLike, fold: ArrayLike) -> dict[str, Any]:
    """The LFW protocol: per fold, a threshold fitted on the other folds, accuracy on it.

    The threshold is chosen among the midpoints between consecutive distinct training
    scores and the two ends ("accept all" at the lowest score, "accept none" just above the
    highest), as the one maximising training accuracy (accept when ``score >= threshold``);
    when several tie, the middle one of them (the lower middle for an even count).

    Args:
        scores: (P,) pair scores (cosine), higher meaning "same".
        same: (P,) booleans, True for pairs of one identity.
        fold: (P,) integer fold of each pair; every distinct value is a fold (LFW: 0..9).

    Returns:
        ``{"mean", "std", "standard_error", "accuracies", "thresholds", "folds"}``:
        mean accuracy over folds, its population standard deviation (as reported by most
        face-recognition papers), the standard error ``sample std / sqrt(k)`` (the LFW
        README's figure), and per fold (ascending fold value) the accuracy and threshold.

    Raises:
        ValueError: lengths differ, fewer than two folds, or ``same`` holds only positive
            or only negative pairs (a threshold needs both).
    """
    scores_np, same_np = checked_scores(scores, same)
    fold_t = as_labels("fold", fold)
    check_same_length(scores=torch.from_numpy(scores_np), fold=fold_t)
    folds = torch.unique(fold_t, sorted=True).tolist()
    if len(folds) < 2:
        raise ValueError(f"fold must name at least two folds; got {len(folds)}")
    fold_np = fold_t.numpy()
    accuracies, thresholds = [], []
    for held_out in folds:
        test = fold_np == held_out
        threshold = _best_threshold(scores_np[~test], same_np[~test])
        accuracies.append(float(np.mean((scores_np[test] >= threshold) == same_np[test])))
        thresholds.append(threshold)
    accuracy = np.asarray(accuracies)
    return {
        "mean": float(accuracy.mean()),
        "std": float(accuracy.std()),
        "standard_error": float(accuracy.std(ddof=1) / math.sqrt(len(folds))),
        "accuracies": accuracies,
        "thresholds": thresholds,
        "folds": [int(value) for value in folds],
    }


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The accuracy-maximising threshold on (scores, same); see :func:`lfw_ten_fold`."""
    order = np.argsort(scores, kind="stable")
    ascending = scores[order]
    positive = same[order]
    size = ascending.shape[0]
    # rejected = the first `cut` scores; cuts only between distinct values (and both ends)
    cut = np.r_[0, np.flatnonzero(ascending[1:] > ascending[:-1]) + 1, size]
    negatives_below = np.r_[0, np.cumsum(~positive)][cut]
    positives_above = int(positive.sum()) - np.r_[0, np.cumsum(positive)][cut]
    correct = negatives_below + positives_above
    best = np.flatnonzero(correct == correct.max())
    chosen = int(cut[best[(best.shape[0] - 1) // 2]])
    if chosen == 0:
        return float(ascending[0])
    if chosen == size:
        return float(np.nextafter(ascending[-1], np.inf))
    low, high = ascending[chosen - 1], ascending[chosen]
    middle = low + (high - low) / 2.0
    return float(middle if middle > low else high)


# ------------------------------------------------------------------------- report
def verification_report(
    embeddings_first: ArrayLike,
    embeddings_second: ArrayLike,
    same: ArrayLike,
    fold: ArrayLike | None = None,
    fars: Sequence[float] | float = DEFAULT_FARS,
    max_roc_points: int = 1000,
    num_folds: int = 10,
) -> dict[str, Any]:
    """Everything about a set of verification pairs, as a JSON-serialisable dict.

    The k-fold accuracy uses the given folds (LFW View 2 ``pairs.txt``: 0..9); when
    ``fold`` is None or names a single fold (View 1 files), ``num_folds`` folds are
    assigned by :func:`assign_folds` and the report says so (``ten_fold["fold_source"]``).

    Args:
        embeddings_first: (P, D) embedding of the first image of each pair.
        embeddings_second: (P, D) embedding of the second image.
        same: (P,) booleans, True for pairs of one identity.
        fold: optional (P,) fold of each pair.
        fars: FARs for TAR@FAR, each in (0, 1).
        max_roc_points: the stored ROC is thinned to at most this many points.
        num_folds: folds to assign when ``fold`` gives fewer than two.

    Returns:
        ``{"num_pairs", "num_positive", "num_negative", "auc", "eer", "eer_threshold",
        "tar_at_far": [OperatingPoint.to_dict(), ...], "roc": {"far", "tar",
        "thresholds"}, "ten_fold": {... as lfw_ten_fold, "fold_source"}}``.
    """
    checked_fars = check_fars(fars)
    check_count("max_roc_points", max_roc_points, 2)
    scores = cosine_scores(embeddings_first, embeddings_second)
    same_t = as_flags("same", same)
    check_same_length(embeddings_first=torch.from_numpy(scores), same=same_t)
    fold, fold_source = pair_folds(same_t, fold, num_folds)
    scores_np, same_np = checked_scores(scores, same_t)
    curve = RocCurve.from_checked(scores_np, same_np)
    eer, eer_threshold = curve.equal_error_rate()
    return {
        "num_pairs": int(scores_np.shape[0]),
        "num_positive": curve.num_positive,
        "num_negative": curve.num_negative,
        "auc": curve.auc(),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "tar_at_far": [
            operating_point(curve, far, "negative pairs").to_dict() for far in checked_fars
        ],
        "roc": curve.to_dict(max_points=max_roc_points),
        "ten_fold": {**lfw_ten_fold(scores_np, same_np, fold), "fold_source": fold_source},
    }
