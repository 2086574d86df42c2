"""What a comparison trains: shared settings, named loss variants, seeds, noise levels, and
the claims its report checks.

A comparison is written as a mapping (a preset's YAML file, or built from the command line)::

    title: Margin sweep
    description: does a larger margin help?
    settings:                  # TrainConfig options shared by every run
      dataset: mnist
      backbone: lenetpp
      embedding_dim: 2
      epochs: 2
    runs:                      # a loss name, "all", or a named variant
      - softmax
      - {name: arcface-m0.3, loss: arcface, loss_args: {margin: "warmup:0.3:20%"}}
    seeds: 1                   # seeds settings.seed, settings.seed + 1, ...
    label_noise: [0.0, 0.2]    # optional: every run at every rate (names get -noise20)
    claims: [...]              # see marginkit.compare.claims
    rule: {confidence: 0.95, single_seed_factor: 3}   # optional: how verdicts are decided
    baseline: softmax          # optional: the run every other is compared with
    lr_grid: [3e-4, 1e-3]      # optional: each run's learning rate, chosen on validation

Every run of a seed starts from the same initial backbone weights and sees the same batches
(both follow the seed alone), so the runs differ only in their loss, and in the learning
rate where the recipe gives a loss family another one. With ``lr_grid`` every run gets the
same tuning instead: its learning rate is the grid's value with the best validation accuracy
(first seed, ``settings.validation_fraction`` of the training set held out), the same
procedure for every loss, softmax included; the test split is never looked at.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from marginkit.compare.evidence import Rule
from marginkit.registry import LOSSES, UnknownNameError
from marginkit.train.config import ConfigError, TrainConfig, group_options, inert_options

__all__ = ["ALL_LOSSES", "CompareSpec", "Variant", "parse_losses", "parse_rates"]

#: The ``runs`` (and ``--losses``) value meaning every registered loss; a comparison without
#: ``runs`` compares them all.
ALL_LOSSES = "all"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
#: Options of :class:`TrainConfig` that each run sets itself (``settings.seed`` is the
#: first seed: run ``k`` of each variant gets ``settings.seed + k``).
_PER_RUN = (*group_options("loss"), "out")


@dataclass(frozen=True)
class Variant:
    """One column of a comparison: a loss with its arguments under a name.

    Attributes:
        name: the run's label in tables, figures and folder names (``runs/<name>-seed<k>``).
        loss: registered loss name.
        loss_args: the loss's hyper-parameters (loss-argument language); the recipe fills
            the rest.
        label_noise: training-label noise rate of this variant (None: the settings').
    """

    name: str
    loss: str
    loss_args: dict[str, Any] = field(default_factory=dict)
    label_noise: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        values: dict[str, Any] = {"name": self.name, "loss": self.loss}
        if self.loss_args:
            values["loss_args"] = dict(self.loss_args)
        if self.label_noise is not None:
            values["label_noise"] = self.label_noise
        return values


@dataclass
class CompareSpec:
    """A comparison: shared settings, variants, seeds, and the claims to check.

    Attributes:
        settings: the options every run shares (its ``loss``, ``loss_args`` and ``out`` are
            set per run; its ``seed`` is the first seed).
        variants: the runs of one seed, in table order.
        seeds: how many seeds (``settings.seed``, ``settings.seed + 1``, ...).
        title: the report's title.
        description: what the comparison asks (Markdown).
        claims: the claims the report checks (mappings, :mod:`marginkit.compare.claims`).
        preset: the preset's name, when it came from one.
        rule: how verdicts are decided (:mod:`marginkit.compare.evidence`).
        baseline: the run every other is compared with (None: softmax if the grid has
            it, else the first run).
        lr_grid: learning rates to choose each run's from on the validation split (None:
            the recipe's).
    """

    settings: TrainConfig
    variants: list[Variant]
    seeds: int = 1
    title: str = "Loss comparison"
    description: str = ""
    claims: list[dict[str, Any]] = field(default_factory=list)
    preset: str | None = None
    rule: Rule = field(default_factory=Rule)
    baseline: str | None = None
    lr_grid: list[float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds must be an integer >= 1; got {self.seeds!r}")
        if not self.variants:
            raise ConfigError("runs must name at least one loss")
        names = [variant.name for variant in self.variants]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(f"runs must have distinct names; repeated: {', '.join(repeated)}")
        if self.baseline is not None and self.baseline not in names:
            raise ConfigError(
                f"baseline must be one of the runs ({', '.join(names)}); got {self.baseline!r}"
            )
        if self.lr_grid is not None:
            rates = self.lr_grid
            if (
                not isinstance(rates, list)
                or not rates
                or not all(
                    isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r < 10
                    for r in rates
                )
            ):
                raise ConfigError(
                    f"lr_grid must be a list of learning rates in (0, 10); got {rates!r}"
                )
            if self.settings.validation_fraction <= 0:
                raise ConfigError(
                    "lr_grid needs a validation split to choose on: set "
                    "settings.validation_fraction (e.g. 0.1); the test split is never used"
                )
            if self.settings.lr is not None:
                raise ConfigError("lr_grid and settings.lr exclude each other; keep one")

    @property
    def baseline_name(self) -> str:
        """The run every other is compared with."""
        if self.baseline is not None:
            return self.baseline
        names = [variant.name for variant in self.variants]
        return "softmax" if "softmax" in names else names[0]

    @property
    def seed_values(self) -> list[int]:
        """The seeds of the grid."""
        return [self.settings.seed + k for k in range(self.seeds)]

    def run_config(self, variant: Variant, seed: int) -> TrainConfig:
        """The options of one run (before its recipe is applied)."""
        noise = self.settings.label_noise if variant.label_noise is None else variant.label_noise
        return dataclasses.replace(
            self.settings,
            loss=variant.loss,
            loss_args=dict(variant.loss_args),
            label_noise=noise,
            seed=seed,
            out=None,
        )

    @staticmethod
    def run_name(variant: Variant, seed: int) -> str:
        """The run's folder name under ``runs/``."""
        return f"{variant.name}-seed{seed}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (``grid.yaml``); :meth:`from_dict` reads it back."""
        settings = {
            key: value for key, value in self.settings.to_dict().items() if key not in _PER_RUN
        }
        return {
            "title": self.title,
            "description": self.description,
            "preset": self.preset,
            "settings": settings,
            "runs": [variant.to_dict() for variant in self.variants],
            "seeds": self.seeds,
            "claims": list(self.claims),
            "rule": self.rule.to_dict(),
            "baseline": self.baseline,
            "lr_grid": self.lr_grid,
        }

    def grid_identity(self) -> dict[str, Any]:
        """What makes two grids the same set of runs (settings, runs, seeds)."""
        values = self.to_dict()
        free = inert_options()  # where the data lives, threads, device, ...
        values["settings"] = {k: v for k, v in values["settings"].items() if k not in free}
        return {key: values[key] for key in ("settings", "runs", "seeds", "lr_grid")}

    @classmethod
    def from_dict(cls, values: Any, source: str = "comparison") -> CompareSpec:
        """Build from a preset's mapping; unknown keys raise :class:`ConfigError`."""
        from marginkit.compare.claims import check_claim

        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping with settings and runs")
        known = {"title", "description", "preset", "settings", "runs", "seeds", "label_noise"}
        known |= {"claims", "rule", "baseline", "lr_grid"}
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})"
                )
        settings = values.get("settings") or {}
        if not isinstance(settings, dict):
            raise ConfigError(f"{source}: settings must be a mapping of training options")
        for key in _PER_RUN:
            if key in settings:
                raise ConfigError(f"{source}: settings.{key} is set per run; put it under runs")
        config = TrainConfig.from_dict(dict(settings), source=f"{source}: settings")
        variants = expand_runs(values.get("runs", ALL_LOSSES), source)
        rates = values.get("label_noise")
        if rates is not None:
            variants = with_noise(variants, parse_rates(rates, f"{source}: label_noise"))
        claims = values.get("claims") or []
        if not isinstance(claims, list):
            raise ConfigError(f"{source}: claims must be a list")
        for index, claim in enumerate(claims):
            check_claim(claim, f"{source}: claims[{index}]")
        given: dict[str, Any] = {
            key: str(values[key]) for key in ("title", "description") if values.get(key)
        }
        if "seeds" in values:
            given["seeds"] = values["seeds"]
        baseline = values.get("baseline")
        if baseline is not None and not isinstance(baseline, str):
            raise ConfigError(f"{source}: baseline must be a run name; got {baseline!r}")
        return cls(
            settings=config,
            variants=variants,
            claims=claims,
            preset=values.get("preset"),
            rule=Rule.from_dict(values.get("rule"), f"{source}: rule"),
            baseline=baseline,
            lr_grid=values.get("lr_grid"),
            **given,
        )


def parse_losses(text: str) -> list[str]:
    """``"softmax,arcface"`` -> the names; ``"all"`` -> every registered loss.

    Raises:
        ConfigError: naming ``--losses`` and the unknown or empty name.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("--losses must be 'all' or comma-separated loss names; got nothing")
    if text.strip() == ALL_LOSSES:
        return LOSSES.names()
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if not name:
            raise ConfigError(
                f"--losses has an empty name in {text!r}; expected e.g. softmax,arcface"
            )
        try:
            LOSSES.canonical(name)
        except UnknownNameError:
            raise ConfigError(
                f"--losses: unknown loss {name!r}; expected {ALL_LOSSES!r} or names from: "
                f"{', '.join(LOSSES.names())}"
            ) from None
    return names


def parse_rates(value: Any, source: str = "--label-noise") -> list[float]:
    """A noise rate or a list of them (``0.2``, ``"0,0.2,0.4"``, ``[0, 0.2]``), each in [0, 1).

    Raises:
        ConfigError: naming ``source`` and the bad value.
    """
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        items = [items]
    rates = []
    for item in items:
        try:
            rate = float(item)
        except (TypeError, ValueError):
            raise ConfigError(f"{source} must be rates in [0, 1); got {item!r}") from None
        if isinstance(item, bool) or not 0.0 <= rate < 1.0:
            raise ConfigError(f"{source} must be rates in [0, 1); got {item!r}")
        rates.append(rate)
    if not rates:
        raise ConfigError(f"{source} must name at least one rate")
    return rates


def expand_runs(runs: Any, source: str) -> list[Variant]:
    """The variants of a ``runs`` entry: ``"all"``, a comma list, or a list of names and
    ``{name, loss, loss_args}`` mappings."""
    if isinstance(runs, str):
        return [Variant(name, name) for name in parse_losses(runs)]
    if not isinstance(runs, list):
        raise ConfigError(f"{source}: runs must be 'all' or a list of losses and variants")
    variants: list[Variant] = []
    for index, entry in enumerate(runs):
        where = f"{source}: runs[{index}]"
        if isinstance(entry, str):
            variants += [Variant(name, name) for name in parse_losses(entry)]
            continue
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a loss name or a mapping with name and loss")
        unknown = set(entry) - {"name", "loss", "loss_args", "label_noise"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        loss = entry.get("loss")
        if not isinstance(loss, str):
            raise ConfigError(f"{where}: loss must be a loss name; got {loss!r}")
        try:
            LOSSES.canonical(loss)
        except UnknownNameError as error:
            raise ConfigError(f"{where}: {error}") from None
        name = entry.get("name", loss)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: name must be letters, digits, . _ + -; got {name!r}")
        loss_args = entry.get("loss_args") or {}
        TrainConfig(loss=loss, loss_args=loss_args)  # checks the argument language
        noise = entry.get("label_noise")
        if noise is not None:
            noise = parse_rates(noise, f"{where}: label_noise")[0]
        variants.append(Variant(name, loss, dict(loss_args), noise))
    return variants


def with_noise(variants: list[Variant], rates: list[float]) -> list[Variant]:
    """Every variant at every noise rate, named ``<name>-noise<percent>`` (grouped by rate)."""
    if len(rates) == 1:
        return [dataclasses.replace(variant, label_noise=rates[0]) for variant in variants]
    return [
        dataclasses.replace(
            variant, name=f"{variant.name}-noise{round(100 * rate)}", label_noise=rate
        )
        for rate in rates
        for variant in variants
    ]
