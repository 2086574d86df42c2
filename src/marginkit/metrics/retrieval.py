"""Retrieval quality of an embedding set: precision@1, R-precision and MAP@R.

The definitions are those of Musgrave, Belongie & Lim (ECCV 2020, "A Metric Learning
Reality Check") as computed by pytorch-metric-learning's ``AccuracyCalculator`` with
the query set equal to the reference set: every embedding is a query, the references are
all the other embeddings, ranked by cosine similarity (highest first).

For a query with ``R`` other samples of its label (its relevant references):

- precision@1: 1 if the nearest reference has the query's label, else 0.
- R-precision: the fraction of the ``R`` nearest references that have its label.
- MAP@R: ``(1 / R) sum_{i=1..R} P(i) rel(i)``, where ``rel(i)`` is 1 when the ``i``-th
  nearest reference has the query's label and ``P(i)`` is the precision of the ``i``
  nearest.

Each measure is the mean over queries; queries whose label has no other sample
(``R = 0``) are left out, as pytorch-metric-learning does. Ties in similarity are broken
by ``torch.topk``, as in any nearest-neighbour search.

The computation is chunked over queries: memory is ``O(chunk_size * (N + max R))``, never
an N x N matrix; the time grows as N^2, the top-R search dominating.
"""

from __future__ import annotations

import torch

from marginkit._validation import ArrayLike, as_labels, as_matrix, check_count, check_same_length
from marginkit.metrics.sphere import normalize_rows

__all__ = ["retrieval_metrics"]


def retrieval_metrics(
    embeddings: ArrayLike, labels: ArrayLike, chunk_size: int = 256
) -> dict[str, float | int]:
    """Precision@1, R-precision and MAP@R with each embedding as a query (leave-one-out).

    Args:
        embeddings: (N, D) embeddings (non-zero rows); ranked by cosine similarity in
            float32.
        labels: (N,) integer labels.
        chunk_size: queries handled at once (memory ~ ``chunk_size * N`` floats).

    Returns:
        ``{"precision_at_1", "r_precision", "map_at_r", "num_queries"}`` where
        ``num_queries`` counts the queries with at least one relevant reference.

    Raises:
        ValueError: lengths differ, or no label occurs twice (nothing to retrieve).
    """
    embeddings_t = as_matrix("embeddings", embeddings, min_rows=2)
    labels_t = as_labels("labels", labels, min_length=2)
    check_same_length(embeddings=embeddings_t, labels=labels_t)
    check_count("chunk_size", chunk_size, 1)
    _, inverse, counts = torch.unique(labels_t, return_inverse=True, return_counts=True)
    relevant = counts[inverse] - 1  # (N,) R of every query
    if int(relevant.max()) == 0:
        raise ValueError("labels must contain some label at least twice; every label is unique")

    unit = normalize_rows(embeddings_t, "embeddings").to(torch.float32)  # (N, D)
    size = unit.shape[0]
    depth = int(relevant.max())  # the deepest R any query needs
    totals = torch.zeros(3, dtype=torch.float64)  # sums of P@1, R-precision, AP@R
    ranks = torch.arange(1, depth + 1, dtype=torch.float64)  # (K,)
    for start in range(0, size, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, size))
        rows = rows[relevant[rows] > 0]
        if rows.shape[0] == 0:
            continue
        similarity = unit[rows] @ unit.T  # (Q, N)
        similarity[torch.arange(rows.shape[0]), rows] = -torch.inf  # a query is no reference
        nearest = similarity.topk(depth, dim=1).indices  # (Q, K)
        del similarity
        r = relevant[rows]  # (Q,)
        hits = labels_t[nearest] == labels_t[rows].unsqueeze(1)  # (Q, K) bool
        hits_within = hits & (ranks.unsqueeze(0) <= r.unsqueeze(1))  # only the first R count
        found = hits_within.cumsum(dim=1, dtype=torch.int32)  # (Q, K) exact counts
        # sum_i P(i) rel(i) over i <= R; float64 for the per-query sums
        precision_sum = (
            (found / ranks).masked_fill_(~hits_within, 0).sum(dim=1, dtype=torch.float64)
        )
        totals[0] += hits[:, 0].sum()
        totals[1] += (found[:, -1] / r.double()).sum()
        totals[2] += (precision_sum / r).sum()
    num_queries = int((relevant > 0).sum())
    precision_at_1, r_precision, map_at_r = (totals / num_queries).tolist()
    return {
        "precision_at_1": precision_at_1,
        "r_precision": r_precision,
        "map_at_r": map_at_r,
        "num_queries": num_queries,
    }
