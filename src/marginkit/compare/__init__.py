"""Compare losses under identical settings and report the result (``marginkit compare``).

>>> from marginkit.compare import load_preset, run_grid
>>> result = run_grid(load_preset("digits"), "reports/digits")  # doctest: +SKIP
>>> print(result.table)  # doctest: +SKIP

- :mod:`~marginkit.compare.spec`: what a comparison trains (settings, variants, seeds).
- :mod:`~marginkit.compare.grid`: trains, evaluates and resumes every run.
- :mod:`~marginkit.compare.report`: ``report.md`` and self-contained ``report.html``.
- :mod:`~marginkit.compare.claims`: the papers' claims and the verdict rules.
- :mod:`~marginkit.compare.presets`: the papers' experiments, as YAML files.
"""

from marginkit.compare.claims import Verdict, judge
from marginkit.compare.grid import GridError, GridResult, fresh_folder, run_grid
from marginkit.compare.presets import available_presets, load_preset
from marginkit.compare.report import write_report
from marginkit.compare.spec import CompareSpec, Variant, parse_losses

__all__ = [
    "CompareSpec",
    "GridError",
    "GridResult",
    "Variant",
    "Verdict",
    "available_presets",
    "fresh_folder",
    "judge",
    "load_preset",
    "parse_losses",
    "run_grid",
    "write_report",
]
