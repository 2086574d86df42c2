"""Face verification on standard pair sets: InsightFace ``.bin`` files and LFW pairs files.

>>> from marginkit.verify import load_pair_set, evaluate_pairs
>>> pairs = load_pair_set("lfw.bin", (112, 112), mean=(0.5,) * 3, std=(0.5,) * 3)  # doctest: +SKIP
>>> evaluate_pairs(backbone, pairs, flip=True)["ten_fold"]["mean"]  # doctest: +SKIP

- :mod:`marginkit.pairs` (re-exported here): :class:`PairSet`, :func:`load_pair_set` (a
  ``.bin`` or a pairs file), :func:`evaluate_pairs` (flip test-time augmentation: the sum of
  the embeddings of an image and its mirror), :func:`evaluate_both`. They live below
  training, which reads and scores pair sets for ``--verify``.
- :mod:`~marginkit.verify.files`: :func:`write_bin` packs a pairs file's images into a
  ``.bin``.
- :mod:`~marginkit.verify.run`: :func:`verify_run` (``marginkit verify``, writes
  ``RUN/verify.json``) and :func:`summarize_verification`.
"""

from marginkit.pairs import (
    PairSet,
    embed_pair_images,
    evaluate_both,
    evaluate_pairs,
    load_pair_set,
    pairs_report,
)
from marginkit.verify.files import write_bin
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
