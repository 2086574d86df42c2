"""Image embeddings pooled into template embeddings: per media first, then per template.

An IJB template is a set of images of one subject: still photos and frames of videos. The
pooling of the public evaluation (InsightFace's ``image2template_feature``, after the
media-then-template averaging of the IJB baselines) treats a video as one piece of evidence,
however many frames it has:

1. each image's embedding ``e_i`` (with flip: the sum of the image's and its mirror's) is
   normalised, ``u_i = e_i / ||e_i||``; with detector-score weighting it is then multiplied
   by the image's detector score ``s_i`` (InsightFace's "D1" mode), ``u_i = s_i e_i / ||e_i||``;
2. a media (a photo, or one video of the template) is the mean of its images' ``u_i``;
3. a template is the sum of its media vectors, normalised to unit length (the mean and the
   sum have one direction).

Two templates are compared by the cosine of their embeddings, the dot product of the unit
vectors. (InsightFace's default also keeps each embedding's norm in step 1, its "N1" mode;
here every image has the weight of its detector score or none, never that of its norm.)
"""

from __future__ import annotations

import numpy as np
import torch

from marginkit.data.errors import DataError

__all__ = ["pool_templates"]

#: Images normalised at a time (in float64).
_CHUNK = 65536


def pool_templates(
    embeddings: np.ndarray,
    templates: np.ndarray,
    medias: np.ndarray,
    scores: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Template embeddings from image embeddings (see the module).

    Args:
        embeddings: ``(N, D)`` image embeddings, finite, none zero.
        templates: ``(N,)`` each image's template id.
        medias: ``(N,)`` each image's media id (media are pooled within a template).
        scores: ``(N,)`` detector scores to weight the images by; None: no weighting.

    Returns:
        ``(template_ids, features)``: ``(T,)`` int64 the template ids ascending, and
        ``(T, D)`` float64 their unit embeddings.

    Raises:
        ValueError: shapes that do not fit, an embedding that is zero or not finite.
        DataError: a template whose pooled embedding is zero (its images cancel out, or
            their detector scores are all 0 with weighting), naming it.
    """
    count, width = np.shape(embeddings)[0], np.shape(embeddings)[-1]
    if np.ndim(embeddings) != 2 or np.shape(templates) != (count,) or np.shape(medias) != (count,):
        raise ValueError(
            f"embeddings (N, D), templates (N,) and medias (N,) expected; got "
            f"{np.shape(embeddings)}, {np.shape(templates)}, {np.shape(medias)}"
        )
    if scores is not None and np.shape(scores) != (count,):
        raise ValueError(f"scores: expected shape ({count},), got {np.shape(scores)}")
    keys = np.stack([np.asarray(templates), np.asarray(medias)], axis=1).astype(np.int64)
    media_keys, media_of = np.unique(keys, axis=0, return_inverse=True)  # (K, 2), (N,)
    media_of_t = torch.from_numpy(media_of.reshape(-1).astype(np.int64))
    sums = torch.zeros((media_keys.shape[0], width), dtype=torch.float64)
    for start in range(0, count, _CHUNK):  # float64 a chunk at a time: memory K x D
        part = slice(start, start + _CHUNK)
        rows = torch.as_tensor(np.asarray(embeddings[part]), dtype=torch.float64)  # (n, D)
        norms = rows.norm(dim=1, keepdim=True)  # (n, 1)
        if not bool(torch.isfinite(rows).all()) or bool((norms == 0).any()):
            raise ValueError("embeddings: expected finite, non-zero rows")
        unit = rows / norms
        if scores is not None:
            weights = torch.as_tensor(np.asarray(scores[part]), dtype=torch.float64)
            unit = unit * weights.unsqueeze(1)
        sums.index_add_(0, media_of_t[part], unit)
    sizes = torch.bincount(media_of_t, minlength=media_keys.shape[0]).unsqueeze(1)  # (K, 1)
    template_ids, template_of = np.unique(media_keys[:, 0], return_inverse=True)  # (T,), (K,)
    features = torch.zeros((template_ids.shape[0], width), dtype=torch.float64)
    features.index_add_(0, torch.from_numpy(template_of.astype(np.int64)), sums / sizes)
    lengths = features.norm(dim=1, keepdim=True)  # (T, 1)
    if bool((lengths == 0).any()):
        template = int(template_ids[int(torch.nonzero(lengths.squeeze(1) == 0)[0])])
        raise DataError(
            f"template {template}: its pooled embedding is zero (its images' embeddings "
            "cancel out, or, weighted by their detector scores, the scores are all 0)"
        )
    return template_ids.astype(np.int64), (features / lengths).numpy()
