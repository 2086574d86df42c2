"""Train every run of a comparison, evaluate each, and write the report.

Layout of a report folder (``--out``)::

    grid.yaml                 the comparison (marginkit.compare.spec.CompareSpec)
    grid.json                 wall time of each invocation, the machine
    runs/<name>-seed<k>/      one run folder each (config.yaml, checkpoints, metrics.json,
                              eval.json, embeddings.npz, noise_snapshots.json)
    selection/<name>-lr<lr>/  with lr_grid: the first seed's run at each learning rate
    selection.json            with lr_grid: each run's validation accuracy per rate, the choice
    report.json               every run's config, seed and measures, every verdict
    figures/*.png             the report's figures
    report.md, report.html    the report (the HTML embeds its figures)

The data of each distinct data setting (data set, class subset, noise rate, ...) is loaded
once and kept in memory for the whole grid. A finished run (its ``metrics.json`` has a
non-empty ``final``) is never trained again; an unfinished one is resumed from its last
checkpoint, so a grid killed half-way continues where it stopped; either is refused, before
anything is trained, when its data differ from those it recorded (``RUN/data.json``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from marginkit.compare.spec import CompareSpec
from marginkit.errors import MarginkitError
from marginkit.progress import format_seconds
from marginkit.runfolder import RunFolder
from marginkit.train.config import TrainConfig

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle

__all__ = [
    "GridError",
    "GridResult",
    "choose_learning_rates",
    "fresh_folder",
    "machine",
    "run_grid",
]

#: Without a live bar, per-epoch lines come at most this often (seconds); run lines always.
LINE_INTERVAL = 10.0
#: Training samples used for the per-epoch label-noise snapshots.
SNAPSHOT_SAMPLES = 4000
#: Training samples the evaluation embeds (nearest class centres, label-noise statistics):
#: a seeded sample of this many where the training split is larger.
EVAL_TRAIN_SAMPLES = 10_000


class GridError(MarginkitError, ValueError):
    """The report folder cannot be used for this comparison (one line, naming it)."""


@dataclass
class GridResult:
    """What :func:`run_grid` returns.

    Attributes:
        out: the report folder.
        trained: runs trained (or resumed) by this call.
        skipped: runs found finished.
        wall_time: seconds this call took.
        report_md: path of ``report.md``.
        report_html: path of ``report.html``.
        table: the report's main table (Markdown).
    """

    out: Path
    trained: list[str]
    skipped: list[str]
    wall_time: float
    report_md: Path
    report_html: Path
    table: str


def machine() -> dict[str, Any]:
    """The CPU, core count, torch threads and versions (for the report)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def _data_key(config: TrainConfig) -> tuple[Any, ...]:
    """What decides the data a run loads: its config's whole ``data`` group (so no data option
    can be left out), with the seed where it draws the data."""
    key: list[Any] = [json.dumps(config.group("data"), sort_keys=True)]
    if config.label_noise > 0 or config.validation_fraction > 0:
        key.append(config.seed)  # the seed draws the noise and the validation split
    return tuple(key)


def evaluation_bundle(bundle: DataBundle, limit: int = EVAL_TRAIN_SAMPLES) -> DataBundle:
    """``bundle`` with its training split cut to a seeded sample of ``limit`` samples (the
    same for every run), so that evaluating a run does not embed all of a large training
    set; smaller splits, and splits that are not in-memory arrays, are kept whole."""
    import torch

    from marginkit.data import ArrayDataset

    train = bundle.train
    count = len(bundle.train_labels)
    if count <= limit or not isinstance(train, ArrayDataset):
        return bundle
    generator = torch.Generator().manual_seed(0)
    keep = torch.randperm(count, generator=generator)[:limit].sort().values  # (limit,)
    subset = ArrayDataset(
        train.data[keep],
        train.labels[keep],
        mean=train.mean.flatten().tolist(),
        std=train.std.flatten().tolist(),
        value_scale=train.value_scale,
        clean_labels=train.clean_labels[keep],
    )
    return dataclasses.replace(
        bundle,
        train=subset,
        train_labels=bundle.train_labels[keep],
        train_clean_labels=bundle.train_clean_labels[keep],
    )


def _finished(run_dir: Path) -> bool:
    metrics = RunFolder(run_dir).read_metrics()
    return metrics is not None and metrics.finished


def _evaluated(run_dir: Path) -> bool:
    run = RunFolder(run_dir)
    return (
        run.eval.is_file()
        and run.embeddings.is_file()
        and run.eval.stat().st_mtime >= run.metrics.stat().st_mtime
    )


def fresh_folder(out: Path, spec: CompareSpec) -> Path:
    """``out`` if it is free or holds this comparison, else ``out-2``, ``out-3``, ...

    Used by ``marginkit`` without arguments: a finished report of another comparison is
    never overwritten.
    """
    candidate, number = out, 1
    while _holds_other_grid(candidate, spec):
        number += 1
        candidate = out.with_name(f"{out.name}-{number}")
    return candidate


def _holds_other_grid(out: Path, spec: CompareSpec) -> bool:
    import yaml

    saved = out / "grid.yaml"
    if not out.exists():
        return False
    if not saved.is_file():
        return out.is_file() or any(out.iterdir())
    try:
        other = CompareSpec.from_dict(yaml.safe_load(saved.read_text()), source=str(saved))
    except ValueError:
        return True
    return other.grid_identity() != spec.grid_identity()


def _check_out(out: Path, spec: CompareSpec) -> None:
    if out.exists() and not out.is_dir():
        raise GridError(f"--out {out} exists and is not a folder")
    if _holds_other_grid(out, spec):
        held = "another comparison" if (out / "grid.yaml").is_file() else "files of no report"
        raise GridError(
            f"--out {out} holds {held}; choose another --out (finished work is never replaced)"
        )


class _NoiseSnapshots:
    """Per-epoch statistics of clean vs flipped training labels, written during training
    to ``RUN/noise_snapshots.json``: mean per-sample gradient norm and target angle of each
    group on a seeded sample of the training set."""

    def __init__(self, run_dir: Path, bundle: DataBundle, seed: int) -> None:
        import torch

        self.run = RunFolder(run_dir)
        self.rows: list[dict[str, Any]] = self.run.read_noise_snapshots()
        inputs, _ = bundle.train.tensors()  # (N, *input_shape)
        count = inputs.shape[0]
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(count, generator=generator)[: min(count, SNAPSHOT_SAMPLES)]
        self.inputs = inputs[keep]  # (n, *input_shape)
        self.labels = bundle.train_labels[keep]  # (n,) labels trained on
        self.flipped = (bundle.train_labels != bundle.train_clean_labels)[keep]  # (n,)

    def __call__(self, row: dict[str, Any], backbone: Any, head: Any) -> None:
        import torch

        from marginkit.metrics import per_sample_gradient_norms, target_angles

        with torch.no_grad():
            backbone.eval()
            embeddings = torch.cat([backbone(chunk) for chunk in self.inputs.split(512)])
        gradients = torch.as_tensor(per_sample_gradient_norms(head, embeddings, self.labels))
        angles = torch.as_tensor(target_angles(head, embeddings, self.labels))
        flipped = self.flipped

        def mean(values: torch.Tensor, mask: torch.Tensor) -> float | None:
            return float(values[mask].mean()) if bool(mask.any()) else None

        clean, noisy = mean(gradients, ~flipped), mean(gradients, flipped)
        snapshot = {
            "epoch": row["epoch"],
            "step": row["step"],
            "gradient_clean": clean,
            "gradient_flipped": noisy,
            "gradient_ratio": None if not clean or noisy is None else noisy / clean,
            "angle_clean": None if (v := mean(angles, ~flipped)) is None else math.degrees(v),
            "angle_flipped": None if (v := mean(angles, flipped)) is None else math.degrees(v),
            "hyperparameters": row.get("hyperparameters", {}),
        }
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [snapshot]
        self.run.write_noise_snapshots(self.rows)


class _GridBar:
    """The grid's progress: one bar (or, off a terminal, lines) over the optimiser steps of
    every run, with an ETA from the steps trained in this call (steps of runs finished
    earlier count as done from the start)."""

    def __init__(
        self, steps: dict[str, int], done_before: dict[str, int], enabled: bool, stream: TextIO
    ) -> None:
        from marginkit.progress import Progress

        self.steps, self.done_before = steps, done_before
        self.bar = Progress(
            sum(steps.values()),
            "comparison",
            enabled=enabled,
            stream=stream,
            every=0,
            initial=sum(done_before.values()),
            unit="step",
        )
        self.label = ""
        self.run_origin = 0  # the bar's count when the current run had done no step
        self.last_line = -math.inf

    def begin_run(self, index: int, name: str) -> None:
        self.label = f"[{index + 1}/{len(self.steps)}] {name}"
        self.run_origin = self.bar.count - self.done_before[name]

    def run_at(self, step: int, note: str = "") -> None:
        """The current run has done ``step`` steps; ``note``: an epoch line (at most one
        every :data:`LINE_INTERVAL` seconds, and only without a live bar)."""
        self.bar.update(max(0, self.run_origin + step - self.bar.count))
        due = time.perf_counter() - self.last_line >= LINE_INTERVAL
        if note and due and not self.bar.interactive:
            self.say(note)

    def say(self, text: str) -> None:
        eta = self.bar.eta()
        shown = "?" if eta is None else format_seconds(eta)
        done = 100 * self.bar.count / max(1, self.bar.total)
        self.bar.write(f"{self.label}: {text} (grid {done:.0f} %, ETA {shown})")
        self.last_line = time.perf_counter()

    def close(self) -> None:
        self.bar.close()


def run_grid(
    spec: CompareSpec,
    out: str | Path,
    *,
    progress: bool = True,
    stream: TextIO | None = None,
) -> GridResult:
    """Train, evaluate and report every run of ``spec`` into the folder ``out``.

    Args:
        spec: the comparison.
        out: the report folder (created; a folder holding this comparison is resumed).
        progress: show the grid's progress bar (or lines) with its ETA.
        stream: where progress goes (default ``sys.stderr``).

    Returns:
        A :class:`GridResult`.

    Raises:
        GridError: ``out`` holds another comparison or other files; the data have no split
            to measure the runs on, or differ from those a run folder recorded (before any
            run is trained).
        marginkit.train.ConfigError, marginkit.data.DataError: bad options or data.
        marginkit.train.RunFolderError: a run folder holds a run of other settings.
    """
    import torch
    import yaml

    from marginkit.compare.report import write_report
    from marginkit.runfolder import atomic_write_text

    start = time.perf_counter()
    out = Path(out)
    stream = sys.stderr if stream is None else stream
    _check_out(out, spec)
    if spec.settings.threads is not None:
        torch.set_num_threads(spec.settings.threads)
    runs = _grid_runs(spec)
    bundles = _Bundles()
    first = bundles(runs[0][2])  # bad data options fail before anything is written
    _check_measurable(runs, bundles)
    trials = _selection_runs(spec)
    _check_runs_data(out / "selection", trials, bundles, stream)
    _check_runs_data(out / "runs", runs, bundles, stream)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "grid.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    if progress:
        extra = f" (+{len(trials)} to choose learning rates)" if trials else ""
        print(f"{spec.title}: {len(runs)} runs{extra} into {out}", file=stream, flush=True)
    trained: list[str] = []
    skipped: list[str] = []
    if trials:
        _train_all(
            out / "selection", trials, bundles, first, progress, stream, trained, skipped, False
        )
        runs = _grid_runs(spec, choose_learning_rates(out, spec))
    _train_all(out / "runs", runs, bundles, first, progress, stream, trained, skipped)
    wall_time = time.perf_counter() - start
    _record_invocation(out, wall_time, trained, skipped)
    md, html, table = write_report(out)
    return GridResult(out, trained, skipped, time.perf_counter() - start, md, html, table)


def _train_all(
    folder: Path,
    runs: list[tuple[str, int, TrainConfig]],
    bundles: _Bundles,
    first: Any,
    progress: bool,
    stream: TextIO,
    trained: list[str],
    skipped: list[str],
    evaluate: bool = True,
) -> None:
    """Train (or find finished) every run of ``runs`` under ``folder``, and evaluate each
    (``evaluate``; a run that only chooses a learning rate needs its validation accuracy
    alone, which training records)."""
    from marginkit.train.loop import planned_steps

    steps = {name: planned_steps(config, first) for name, _, config in runs}
    done_before = {
        name: steps[name] if _finished(folder / name) else _steps_done(folder / name)
        for name, _, _ in runs
    }
    bar = _GridBar(steps, done_before, enabled=progress, stream=stream)
    try:
        for index, (name, seed, config) in enumerate(runs):
            run_dir = folder / name
            bar.begin_run(index, name)
            bundle = bundles(config)
            if _finished(run_dir):
                _check_finished(run_dir, config, bundle)
                skipped.append(name)
                bar.say("finished earlier, not retrained")
            else:
                _train(run_dir, config, bundle, seed, steps[name], bar)
                trained.append(name)
            if evaluate and not _evaluated(run_dir):
                _evaluate(run_dir, config, bundle)
    finally:
        bar.close()


def _lr_name(variant_name: str, lr: float) -> str:
    return f"{variant_name}-lr{lr:g}"


def _grid_runs(
    spec: CompareSpec, learning_rates: dict[str, float] | None = None
) -> list[tuple[str, int, TrainConfig]]:
    """``(folder name, seed, config)`` of every run of the grid, seed by seed; with
    ``learning_rates`` (variant name -> rate), each variant's config at its chosen rate."""
    runs = []
    for seed in spec.seed_values:
        for variant in spec.variants:
            config = spec.run_config(variant, seed)
            if learning_rates is not None:
                config = dataclasses.replace(config, lr=learning_rates[variant.name])
            runs.append((spec.run_name(variant, seed), seed, config))
    return runs


def _selection_runs(spec: CompareSpec) -> list[tuple[str, int, TrainConfig]]:
    """With ``lr_grid``: every variant at every learning rate, on the first seed."""
    if not spec.lr_grid:
        return []
    seed = spec.seed_values[0]
    return [
        (
            _lr_name(variant.name, lr),
            seed,
            dataclasses.replace(spec.run_config(variant, seed), lr=lr),
        )
        for variant in spec.variants
        for lr in spec.lr_grid
    ]


def choose_learning_rates(out: Path, spec: CompareSpec) -> dict[str, float]:
    """Each variant's learning rate: the ``lr_grid`` value whose selection run has the
    highest final validation accuracy (the smaller rate on a tie), written with every
    rate's accuracy to ``out/selection.json``.

    Raises:
        GridError: a selection run has no validation accuracy.
    """
    from marginkit.runfolder import atomic_write_text

    chosen: dict[str, float] = {}
    record: dict[str, Any] = {"measure": "validation_accuracy", "seed": spec.seed_values[0]}
    record["runs"] = {}
    for variant in spec.variants:
        scores: dict[float, float] = {}
        for lr in spec.lr_grid or []:
            folder = out / "selection" / _lr_name(variant.name, lr)
            metrics = RunFolder(folder).read_metrics()
            final = {} if metrics is None else metrics.final
            accuracy = final.get("validation_accuracy")
            if accuracy is None or not math.isfinite(accuracy):
                raise GridError(f"{folder}: no finite validation accuracy to choose lr by")
            scores[lr] = float(accuracy)
        best = max(sorted(scores), key=lambda lr: scores[lr])  # the smaller one on a tie
        chosen[variant.name] = best
        record["runs"][variant.name] = {
            "validation_accuracy": {f"{lr:g}": scores[lr] for lr in scores},
            "chosen": best,
        }
    atomic_write_text(out / "selection.json", json.dumps(record, indent=2) + "\n")
    return chosen


class _Bundles:
    """The data of each distinct data setting (:func:`_data_key`), loaded once and kept in
    memory for the whole grid."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[Any, ...], Any] = {}

    def __call__(self, config: TrainConfig) -> Any:
        from marginkit.train import load_bundle

        key = _data_key(config)
        if key not in self.loaded:
            self.loaded[key] = load_bundle(config, progress=False)
        return self.loaded[key]


def _check_measurable(runs: list[tuple[str, int, TrainConfig]], bundles: _Bundles) -> None:
    """Refuse, before any run is trained, data with no split to measure the runs on (the
    split :func:`~marginkit.evaluation.evaluate_run` takes: a data set without a test split,
    such as ``folder``, is measured on its validation split)."""
    from marginkit.evaluation.embedding import EvaluationError, measured_split, split_dataset

    for _, _, config in runs:
        bundle = bundles(config)
        try:
            split_dataset(bundle, measured_split(bundle))
        except EvaluationError:
            raise GridError(
                f"data set {config.dataset!r} has no test split to measure the runs on; set "
                "validation_fraction (e.g. 0.2) in the settings to hold out a validation split"
            ) from None


def _check_runs_data(
    folder: Path, runs: list[tuple[str, int, TrainConfig]], bundles: _Bundles, stream: TextIO
) -> None:
    """Before any run is trained: refuse a run folder under ``folder`` (finished or not)
    holding a run on other data than its data setting's now (``--data-dir`` elsewhere,
    files that changed), naming what differs. A finished run whose data cannot be checked
    (an older run) is adopted with a warning; :func:`fit` warns for an unfinished one."""
    from marginkit.train.datarecord import data_difference, unchecked_data

    for name, _, config in runs:
        run_dir = folder / name
        if not RunFolder(run_dir).holds_run():  # a run of a newer format is refused
            continue
        bundle = bundles(config)
        difference = data_difference(run_dir, bundle)
        if difference is not None:
            raise GridError(
                f"run folder {run_dir} holds a run on other data ({difference}); give the "
                "grid its data again or choose another --out (finished work is never replaced)"
            )
        unchecked = unchecked_data(run_dir, bundle)
        if unchecked is not None and _finished(run_dir):
            print(f"warning: {unchecked}; adopting it unchecked", file=stream, flush=True)


def _check_finished(run_dir: Path, config: TrainConfig, bundle: DataBundle) -> None:
    """Refuse a finished run folder that holds a run of other settings than ``config``."""
    from marginkit.train.config import load_config
    from marginkit.train.loop import differing_options
    from marginkit.train.recipe import apply_recipe

    resolved = apply_recipe(config, bundle.num_classes, bundle.input_shape)
    differing = differing_options(load_config(RunFolder(run_dir).config), resolved)
    if differing:
        key = next(iter(differing))
        raise GridError(f"run folder {run_dir} holds a run with another {key}")


def _train(
    run_dir: Path, config: TrainConfig, bundle: DataBundle, seed: int, run_steps: int, bar: _GridBar
) -> None:
    """Train (or resume) one run of the grid into ``run_dir``, moving the grid's bar."""
    from marginkit.evaluation.embedding import measured_split
    from marginkit.train import fit

    split = measured_split(bundle)  # a data set without a test split: its validation split
    snapshots = _NoiseSnapshots(run_dir, bundle, seed) if config.label_noise > 0 else None

    def on_epoch(row: dict[str, Any], backbone: Any, head: Any) -> None:
        if snapshots is not None:
            snapshots(row, backbone, head)
        last = row["step"] >= run_steps  # the run's own line follows
        note = "" if last else f"epoch {row['epoch']}, {split} accuracy {_shown(row)}"
        bar.run_at(row["step"], note)

    result = fit(
        dataclasses.replace(config, out=str(run_dir)),
        bundle=bundle,
        resume=RunFolder(run_dir).holds_run(),
        progress=False,
        on_epoch=on_epoch,
    )
    bar.run_at(run_steps)
    bar.say(f"trained, {split} accuracy {_shown(result.final)}")


def _shown(row: dict[str, Any]) -> str:
    accuracy = row.get("test_accuracy")
    return "n/a" if accuracy is None else f"{100 * accuracy:.2f} %"


def _evaluate(run_dir: Path, config: TrainConfig, bundle: DataBundle) -> None:
    """``eval.json`` and ``embeddings.npz`` of a trained run (each split embedded once).

    The run is the grid's own, trained from the comparison the user gave: its backbone
    (an import spec too) is the user's, and an ``embeddings.npz`` left by an interrupted
    evaluation is replaced."""
    from marginkit.evaluation import evaluate_run

    run = RunFolder(run_dir)
    began = time.perf_counter()
    report = evaluate_run(
        run_dir,
        bundle=evaluation_bundle(bundle),
        plots=False,
        save_embeddings=run.embeddings,
        force=True,
        backbone=config.backbone,
    )
    report["eval_time"] = time.perf_counter() - began
    run.write_eval(report)


def _steps_done(run_dir: Path) -> int:
    """Steps of a partly trained run's last checkpoint (0 for a fresh folder)."""
    metrics = RunFolder(run_dir).read_metrics()
    epochs = [] if metrics is None else metrics.epochs
    return int(epochs[-1]["step"]) if epochs else 0


def _record_invocation(out: Path, wall_time: float, trained: list[str], skipped: list[str]) -> None:
    """Append this call's wall time and the machine to ``grid.json``."""
    from marginkit.compare.measures import read_json
    from marginkit.runfolder import atomic_write_text

    state = read_json(out / "grid.json") or {"invocations": []}
    state["invocations"].append(
        {
            "finished_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "wall_time": wall_time,
            "wall_time_text": format_seconds(wall_time),
            "trained": trained,
            "skipped": skipped,
            "command": " ".join(["marginkit", *sys.argv[1:]])
            if Path(sys.argv[0]).name == "marginkit"
            else None,
        }
    )
    state["machine"] = machine()
    atomic_write_text(out / "grid.json", json.dumps(state, indent=2) + "\n")
