"""Compare losses under identical settings and report the result (``marginkit compare``).

>>> from marginkit.compare import load_preset, run_grid
>>> result = run_grid(load_preset("digits"), "reports/digits")  # doctest: +SKIP
>>> print(result.table)  # doctest: +SKIP

- :mod:`~marginkit.compare.spec`: what a comparison trains (settings, variants, seeds).
- :mod:`~marginkit.compare.grid`: trains, evaluates and resumes every run.
- :mod:`~marginkit.compare.report`: ``report.md`` and self-contained ``report.html``.
- :mod:`~marginkit.compare.claims`: the papers' claims and the verdict rules.
- :mod:`~marginkit.compare.presets`: the papers' experiments, as YAML files.

The names below load their module on first access: ``marginkit.compare.presets`` (the
defaults, which the command line's help shows) imports no torch.
"""

from marginkit._lazy import lazy_attributes

_EXPORTS = {
    "claims": ["Verdict", "judge"],
    "grid": ["GridError", "GridResult", "fresh_folder", "run_grid"],
    "presets": ["available_presets", "load_preset"],
    "report": ["write_report"],
    "spec": ["CompareSpec", "Variant", "parse_losses"],
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
