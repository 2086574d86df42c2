"""Verification pair sets, below training: read from files and scored with a backbone.

Training reads and scores them for ``--verify`` (:mod:`marginkit.train.verification`), and
``marginkit verify`` (:mod:`marginkit.verify`, which re-exports these names) does for a saved
run; this package imports nothing of either.

>>> from marginkit.pairs import load_pair_set, evaluate_pairs
>>> pairs = load_pair_set("lfw.bin", (112, 112), mean=(0.5,) * 3, std=(0.5,) * 3)  # doctest: +SKIP
>>> evaluate_pairs(backbone, pairs, flip=True)["ten_fold"]["mean"]  # doctest: +SKIP

- :mod:`~marginkit.pairs.pairset`: :class:`PairSet`, images ready for a backbone, the
  pairs, flags and folds.
- :mod:`~marginkit.pairs.files`: :func:`load_pair_set` reads a ``.bin`` (with a
  restricted unpickler, :func:`marginkit.data.binfile.read_bin`) or a pairs file.
- :mod:`~marginkit.pairs.evaluate`: :func:`evaluate_pairs` (flip test-time augmentation:
  the sum of the embeddings of an image and its mirror), :func:`evaluate_both`.
"""

from marginkit.pairs.evaluate import (
    embed_pair_images,
    evaluate_both,
    evaluate_pairs,
    pairs_report,
)
from marginkit.pairs.files import load_pair_set
from marginkit.pairs.pairset import PairSet

__all__ = [
    "PairSet",
    "embed_pair_images",
    "evaluate_both",
    "evaluate_pairs",
    "load_pair_set",
    "pairs_report",
]
