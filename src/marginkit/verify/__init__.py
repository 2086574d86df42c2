"""Face verification on standard pair sets: InsightFace ``.bin`` files and LFW pairs files.

>>> from marginkit.verify import load_pair_set, evaluate_pairs
>>> pairs = load_pair_set("lfw.bin", (112, 112), mean=(0.5,) * 3, std=(0.5,) * 3)  # doctest: +SKIP
>>> evaluate_pairs(backbone, pairs, flip=True)["ten_fold"]["mean"]  # doctest: +SKIP

- :mod:`~marginkit.verify.pairset`: :class:`PairSet`, images ready for a backbone, the
  pairs, flags and folds.
- :mod:`~marginkit.verify.files`: :func:`load_pair_set` reads a ``.bin`` (with a
  restricted unpickler, :func:`marginkit.data.binfile.read_bin`) or a pairs file;
  :func:`write_bin` packs a pairs file's images into a ``.bin``.
- :mod:`~marginkit.verify.evaluate`: :func:`evaluate_pairs` (flip test-time augmentation:
  the sum of the embeddings of an image and its mirror), :func:`evaluate_both`.
- :mod:`~marginkit.verify.run`: :func:`verify_run` (``marginkit verify``, writes
  ``RUN/verify.json``) and :func:`summarize_verification`.
"""

from marginkit.verify.evaluate import (
    embed_pair_images,
    evaluate_both,
    evaluate_pairs,
    pairs_report,
)
from marginkit.verify.files import load_pair_set, write_bin
from marginkit.verify.pairset import PairSet
from marginkit.verify.run import VERIFY_FILE, summarize_verification, verify_run

__all__ = [
    "VERIFY_FILE",
    "PairSet",
    "embed_pair_images",
    "evaluate_both",
    "evaluate_pairs",
    "load_pair_set",
    "pairs_report",
    "summarize_verification",
    "verify_run",
    "write_bin",
]
