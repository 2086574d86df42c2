"""The former home of :mod:`marginkit.evaluation`, kept only for the callers that still
import from here (``marginkit.cli``, ``marginkit.compare.grid``,
``experiments/camsoftmax_schedules.py``); import from :mod:`marginkit.evaluation`.
"""

from marginkit.evaluation import embed, evaluate_run, summarize

__all__ = ["embed", "evaluate_run", "summarize"]
