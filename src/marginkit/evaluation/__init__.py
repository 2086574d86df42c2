"""Evaluate a saved run: which split, its embeddings, the measurements, the pictures.

>>> from marginkit.evaluation import evaluate_run, summarize
>>> print(summarize(evaluate_run("runs/mnist-arcface")))  # doctest: +SKIP

- :mod:`~marginkit.evaluation.load`: :func:`load_run` rebuilds a run folder's config,
  networks (at a checkpoint) and data; :func:`load_run_backbone` its backbone alone with
  the preprocessing of its inputs, without the data (:class:`RunBackbone`);
  :func:`run_checkpoint` finds the checkpoint.
- :mod:`~marginkit.evaluation.embedding`: :func:`measured_split`, the one rule for which split
  is measured; :func:`embed`, a dataset through the backbone; :class:`EmbeddedSplits`, each
  split embedded once.
- :mod:`~marginkit.evaluation.measure`: the report sections, pure functions of embeddings,
  labels and the head.
- :mod:`~marginkit.evaluation.draw`: the pictures (:func:`draw`, :func:`comparison_heads`).
- :mod:`~marginkit.evaluation.run`: :func:`evaluate_run` (``marginkit eval``, writes
  ``eval.json``) and :func:`analyse`, which put the others together.
- :mod:`~marginkit.evaluation.summary`: :func:`summarize`, the headline figures as text.

Every accuracy and rate in a report is a fraction in [0, 1]; :func:`summarize` prints
percentages.
"""

from marginkit.evaluation.draw import comparison_heads
from marginkit.evaluation.embedding import SPLITS, EmbeddedSplits, embed, measured_split
from marginkit.evaluation.load import RunBackbone, load_run, load_run_backbone, run_checkpoint
from marginkit.evaluation.run import analyse, evaluate_run
from marginkit.evaluation.summary import summarize

__all__ = [
    "SPLITS",
    "EmbeddedSplits",
    "RunBackbone",
    "analyse",
    "comparison_heads",
    "embed",
    "evaluate_run",
    "load_run",
    "load_run_backbone",
    "measured_split",
    "run_checkpoint",
    "summarize",
]
