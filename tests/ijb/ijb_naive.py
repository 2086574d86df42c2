"""An independent, naive implementation of the IJB pooling and figures: plain loops over
images, media, templates, thresholds and probes (imported by the tests of marginkit.ijb).

Ties: a tie with another subject counts against a probe, as in marginkit's rank-k; the
designed and random sets of the tests have none.
"""

from __future__ import annotations

import math

import numpy as np


def templates(
    embeddings: np.ndarray,
    template_of: np.ndarray,
    media_of: np.ndarray,
    scores: np.ndarray | None = None,
) -> dict[int, np.ndarray]:
    """Each template's unit embedding: images normalised (times their score), averaged per
    media of the template, the media summed, the sum normalised."""
    pooled = {}
    for template in sorted(set(template_of.tolist())):
        media_vectors = []
        medias = {int(m) for t, m in zip(template_of, media_of, strict=True) if t == template}
        for media in sorted(medias):
            members = [
                i
                for i in range(len(template_of))
                if template_of[i] == template and media_of[i] == media
            ]
            vectors = []
            for i in members:
                vector = embeddings[i] / math.sqrt(sum(float(x) ** 2 for x in embeddings[i]))
                vectors.append(vector * (1.0 if scores is None else float(scores[i])))
            media_vectors.append(sum(vectors) / len(vectors))
        total = sum(media_vectors)
        pooled[template] = total / math.sqrt(sum(float(x) ** 2 for x in total))
    return pooled


def tar_at_far(scores: list[float], same: list[bool], far: float) -> float | None:
    """The best TAR over thresholds whose FAR is at most ``far``; None when the negatives
    are fewer than ``ceil(1 / far)``."""
    positives = [s for s, x in zip(scores, same, strict=True) if x]
    negatives = [s for s, x in zip(scores, same, strict=True) if not x]
    if len(negatives) < math.ceil(1 / far - 1e-9):
        return None
    negative_array, positive_array = np.array(negatives), np.array(positives)
    best = 0.0
    for threshold in [*sorted(set(scores)), math.inf]:
        if np.sum(negative_array >= threshold) <= far * len(negatives):
            best = max(best, float(np.sum(positive_array >= threshold)) / len(positives))
    return best


def identification(
    pooled: dict[int, np.ndarray],
    gallery: list[tuple[int, int]],
    probes: list[tuple[int, int]],
    ranks: tuple[int, ...],
    fpirs: tuple[float, ...],
) -> tuple[dict[int, float], list[float | None]]:
    """Rank-k of the mated probes, and TPIR at each FPIR, by loops over probes."""
    subjects = sorted({subject for _, subject in gallery})
    places, hit_scores, non_mated = [], [], []
    for template, subject in probes:
        best = {}
        for gallery_template, gallery_subject in gallery:
            score = float(pooled[template] @ pooled[gallery_template])
            best[gallery_subject] = max(best.get(gallery_subject, -2.0), score)
        if subject in subjects:
            place = sum(1 for s in subjects if best[s] >= best[subject])
            places.append(place)
            hit_scores.append(best[subject] if place == 1 else -math.inf)
        else:
            non_mated.append(max(best.values()))
    found = {k: sum(1 for p in places if p <= k) / len(places) for k in ranks}
    tpirs: list[float | None] = []
    for fpir in fpirs:
        if len(non_mated) < math.ceil(1 / fpir - 1e-9):
            tpirs.append(None)
            continue
        best_rate = 0.0
        for threshold in [*sorted(set(hit_scores + non_mated)), math.inf]:
            if sum(1 for s in non_mated if s >= threshold) <= fpir * len(non_mated):
                hits = sum(1 for s in hit_scores if s >= threshold)
                best_rate = max(best_rate, hits / len(places))
        tpirs.append(best_rate)
    return found, tpirs
