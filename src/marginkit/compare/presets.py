"""The papers' experiments as ready-made comparisons (``marginkit compare --preset NAME``).

Each preset is a YAML file in ``marginkit/compare/presets/`` (see
:mod:`marginkit.compare.spec` for the format): copy one, change it, and pass the copy's path
to ``--preset``. :func:`available_presets` lists them with their one-line summaries.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from marginkit.compare.spec import CompareSpec, parse_losses, parse_rates
from marginkit.train.config import ConfigError, read_text_file

__all__ = [
    "DEFAULT_PRESET",
    "GENERIC_SETTINGS",
    "REPORTS_FOLDER",
    "available_presets",
    "load_preset",
    "preset_text",
    "report_folder",
    "spec_from_options",
]

#: The comparison without a preset, when no other data set is asked for (the preset is
#: named after its data set).
DEFAULT_PRESET = "digits"
#: The settings a comparison without a preset starts from when its data set is not the
#: default preset's (the other options: the :class:`TrainConfig` defaults).
GENERIC_SETTINGS = {"epochs": 2, "log_every": 0}
#: Where reports go when no folder is given: ``REPORTS_FOLDER/<preset or data set>``.
REPORTS_FOLDER = "reports"


def _folder() -> Any:
    return resources.files("marginkit.compare") / "presets"


def available_presets() -> dict[str, str]:
    """Preset name -> its title, for every shipped preset (sorted by name)."""
    import yaml

    found = {}
    for entry in sorted(_folder().iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".yaml"):
            values = yaml.safe_load(entry.read_text()) or {}
            found[entry.name[: -len(".yaml")]] = str(values.get("title", ""))
    return found


def preset_text(name: str) -> str:
    """The YAML text of a shipped preset, or of a preset file given by path.

    Raises:
        ConfigError: naming ``--preset``: an unknown name (and the known presets), or a file
            that cannot be read or is not UTF-8 text.
    """
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return read_text_file(name, "--preset file")
    entry = _folder() / f"{name}.yaml"
    if not entry.is_file():
        known = ", ".join(available_presets())
        raise ConfigError(
            f"--preset: unknown preset {name!r}; expected a YAML file or one of: {known}"
        )
    return entry.read_text()


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> CompareSpec:
    """The comparison of preset ``name`` (a shipped name or a YAML path).

    Args:
        name: preset name (``marginkit compare --list-presets``) or path of a YAML file.
        overrides: top-level keys replacing the preset's (``runs``, ``seeds``, ``baseline``,
            ``label_noise``) and ``settings`` keys merged over its settings.

    Raises:
        ConfigError: unknown preset, invalid YAML, or a bad value (one line, naming it).
    """
    import yaml

    try:
        values = yaml.safe_load(preset_text(name)) or {}
    except yaml.YAMLError:
        raise ConfigError(f"--preset: {name} is not valid YAML") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--preset: {name} must hold a mapping with settings and runs")
    overrides = dict(overrides or {})
    settings = {**(values.get("settings") or {}), **overrides.pop("settings", {})}
    values = {**values, **overrides, "settings": settings}
    values.setdefault("preset", Path(name).stem if name.endswith((".yaml", ".yml")) else name)
    return CompareSpec.from_dict(values, source=f"preset {name}")


def spec_from_options(preset: str | None, options: dict[str, Any]) -> CompareSpec:
    """The comparison of ``marginkit compare``: a preset with the given options on top.

    Where the data live: ``data_dir`` when given, else ``$MARGINKIT_DATA/<dataset>``
    (:func:`marginkit.data.load_dataset`).

    Without a preset: :data:`DEFAULT_PRESET` when no other ``dataset`` is given; otherwise
    every loss, one seed, :data:`GENERIC_SETTINGS` and the other :class:`TrainConfig`
    defaults, with the given options on top.

    Args:
        preset: preset name or YAML path, or None.
        options: ``losses`` (comma list or ``all``), ``seeds``, ``baseline`` (a run name),
            ``label_noise`` (a rate or a comma list) and any :class:`TrainConfig` option
            (``dataset``, ``epochs``, ...); None values are ignored.

    Raises:
        ConfigError: a bad option, naming it.
    """
    options = {key: value for key, value in options.items() if value is not None}
    overrides: dict[str, Any] = {}
    if "losses" in options:
        overrides["runs"] = ",".join(parse_losses(options.pop("losses")))
    if "seeds" in options:
        seeds = options.pop("seeds")
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ConfigError(f"--seeds must be an integer >= 1; got {seeds!r}")
        overrides["seeds"] = seeds
    if "label_noise" in options:
        overrides["label_noise"] = parse_rates(options.pop("label_noise"), "--label-noise")
    if "baseline" in options:
        overrides["baseline"] = options.pop("baseline")
    if preset is None and options.get("dataset", DEFAULT_PRESET) == DEFAULT_PRESET:
        preset = DEFAULT_PRESET
    if preset is not None:
        return load_preset(preset, {**overrides, "settings": options})
    values = {
        "title": f"Loss comparison on {options['dataset']}",
        "settings": {**GENERIC_SETTINGS, **options},
        **overrides,
    }
    return CompareSpec.from_dict(values, source="options")


def report_folder(spec: CompareSpec) -> Path:
    """The default report folder of ``spec``: ``REPORTS_FOLDER/<preset or data set>``."""
    return Path(REPORTS_FOLDER) / (spec.preset or spec.settings.dataset)
