"""Write a comparison's ``report.md`` and self-contained ``report.html`` from its run folders.

Everything in the report is read from files: ``grid.yaml`` (the comparison), ``grid.json``
(wall times, machine) and each run's ``config.yaml``, ``metrics.json``, ``eval.json``,
``embeddings.npz`` and ``noise_snapshots.json``. Numbers over several seeds are shown as
mean ± sample standard deviation. The HTML embeds its figures as base64 PNG data URIs, so
it opens from disk with no server and no other file; a small inline script marks
``<body data-images-loaded="loaded/total">`` once the page has loaded.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from marginkit.compare import figures
from marginkit.compare.claims import Observations, Observed, Verdict, contrast, judge
from marginkit.compare.evidence import NOT_TESTABLE, decide
from marginkit.compare.measures import (
    MEASURES,
    measure_label,
    read_json,
    run_measures,
    sampling_errors,
)
from marginkit.compare.spec import CompareSpec, Variant
from marginkit.progress import format_seconds
from marginkit.runfolder import RunFolder, json_safe
from marginkit.train.config import group_options

__all__ = ["Table", "evidence_markdown", "load_grid", "write_report"]

#: Columns of the headline table (also printed by the command).
SUMMARY = (
    "test_accuracy",
    "intra_angle",
    "inter_angle_min",
    "verification_auc",
    "precision_at_1",
    "train_time",
)
_NOISE_SUFFIX = re.compile(r"-noise\d+$")


@dataclass
class Table:
    """A report table: a title, column headings and rows of text cells."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""
    key: str = ""


@dataclass
class _Run:
    variant: Variant
    seed: int
    folder: Path
    measures: dict[str, float | None]
    errors: dict[str, float | None]
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    final: dict[str, Any]


@dataclass
class _Grid:
    spec: CompareSpec
    state: dict[str, Any]
    runs: dict[str, list[_Run]] = field(default_factory=dict)  # variant name -> its seeds
    stats: dict[str, dict[str, tuple[float, float | None] | None]] = field(default_factory=dict)
    split: str = "test"  # the split the runs were measured on (eval.json's "split")

    @property
    def observed(self) -> Observations:
        """run name -> seed -> its measures and their sampling errors (for the verdicts)."""
        return {
            name: {run.seed: Observed(run.measures, run.errors) for run in runs}
            for name, runs in self.runs.items()
        }


def load_grid(out: Path) -> _Grid:
    """Read a report folder's comparison and every finished, evaluated run."""
    import yaml

    spec = CompareSpec.from_dict(yaml.safe_load((out / "grid.yaml").read_text()), str(out))
    grid = _Grid(spec, read_json(out / "grid.json") or {})
    for variant in spec.variants:
        runs = []
        for seed in spec.seed_values:
            run = RunFolder(out / "runs" / spec.run_name(variant, seed))
            metrics = run.read_metrics()
            if metrics is None or not metrics.finished or not run.eval.is_file():
                continue
            folder = run.path
            config = run.read_config_values()
            measures = run_measures(folder)
            evaluation = run.read_eval()
            grid.split = (evaluation["split"] if evaluation else None) or grid.split
            runs.append(
                _Run(
                    variant,
                    seed,
                    folder,
                    measures,
                    sampling_errors(folder, measures),
                    config,
                    metrics.epochs,
                    metrics.final,
                )
            )
        grid.runs[variant.name] = runs
        grid.stats[variant.name] = {name: _mean_std(runs, name) for name in MEASURES}
    return grid


def _mean_std(runs: list[_Run], name: str) -> tuple[float, float | None] | None:
    """Mean and sample standard deviation over seeds (None with a single seed)."""
    values = [value for run in runs if (value := run.measures.get(name)) is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _cell(stats: tuple[float, float | None] | None, name: str) -> str:
    if stats is None:
        return "—"
    measure = MEASURES[name]
    mean, std = stats
    if not math.isfinite(mean):
        return "—"
    spread = "" if std is None else f" ± {std:.{measure.digits}f}"
    return f"{mean:.{measure.digits}f}{spread}{measure.suffix}"


def _measure_table(
    grid: _Grid, title: str, names: tuple[str, ...], key: str, note: str = ""
) -> Table | None:
    shown = [n for n in names if any(grid.stats[v][n] is not None for v in grid.stats)]
    if not shown:
        return None
    headers = ["run", *(measure_label(n, grid.split) for n in shown)]
    rows = [
        [variant, *(_cell(grid.stats[variant][n], n) for n in shown)]
        for variant in grid.stats
        if grid.runs[variant]
    ]
    return Table(title, headers, rows, note, key)


def _loss_args_text(run: _Run) -> str:
    args = run.config.get("loss_args") or {}
    return ", ".join(f"{k}={v}" for k, v in args.items()) or "—"


def _settings_table(grid: _Grid) -> Table:
    """The resolved options of the runs (first seed); an option the recipe sets per loss
    (e.g. the learning rate) lists its values with the runs that use them."""
    configs = {name: runs[0].config for name, runs in grid.runs.items() if runs}
    if not configs:
        configs = {"settings": grid.spec.settings.to_dict()}
    keys = (
        "dataset",
        "classes",
        "label_noise",
        "train_fraction",
        *group_options("model"),
        "epochs",
        "max_steps",
        "batch_size",
        "recipe",
        "optimizer",
        "lr",
        "weight_decay",
        "lr_schedule",
        "threads",
    )
    rows = []
    for key in keys:
        users: dict[str, list[str]] = {}
        for name, config in configs.items():
            value = config.get(key)
            users.setdefault("—" if value is None else str(value), []).append(name)
        if len(users) == 1:
            rows.append([key, next(iter(users))])
        else:
            rows.append([key, "; ".join(f"{v} ({', '.join(n)})" for v, n in users.items())])
    rows.append(["seeds", ", ".join(str(s) for s in grid.spec.seed_values)])
    return Table(
        "Settings",
        ["option", "value"],
        rows,
        "Each run of a seed starts from the same initial backbone weights and sees "
        "the same batches. Options that differ between runs are listed with the runs that "
        "use them: the loss, and "
        + (
            "the learning rate each run chose from the same grid on the validation split."
            if grid.spec.lr_grid
            else "whatever the recipe sets per loss family (the normalised heads' smaller "
            "learning rate among them): the runs differ in more than their loss there."
        ),
        "settings",
    )


def _runs_table(grid: _Grid) -> Table:
    rows = []
    for name, runs in grid.runs.items():
        if not runs:
            rows.append([name, "—", "not finished", "—"])
            continue
        run = runs[0]
        final = ", ".join(f"{k}={v:.4g}" for k, v in run.final.get("hyperparameters", {}).items())
        rows.append([name, run.config["loss"], _loss_args_text(run), final or "—"])
    return Table(
        "Runs",
        [
            "run",
            "loss",
            "loss arguments (recipe applied)",
            "hyper-parameters at the end (first seed)",
        ],
        rows,
        key="runs",
    )


def _unfinished(claim: dict[str, Any], grid: _Grid) -> Verdict | None:
    """*Not testable* while a run the claim needs has not finished (a grid in progress)."""
    names = [*claim.get("runs", []), *([claim["baseline"]] if "baseline" in claim else [])]
    waiting = [name for name in names if name in grid.runs and not grid.runs[name]]
    if not waiting:
        return None
    return Verdict(NOT_TESTABLE, "—", f"run {waiting[0]!r} has not finished yet")


def _verdicts(grid: _Grid) -> list[tuple[dict[str, Any], Verdict]]:
    """Each claim of the comparison with its verdict."""
    observed = grid.observed
    return [
        (claim, _unfinished(claim, grid) or judge(claim, observed, grid.spec.rule, grid.split))
        for claim in grid.spec.claims
    ]


def _claims_table(verdicts: list[tuple[dict[str, Any], Verdict]]) -> Table | None:
    if not verdicts:
        return None
    rows = []
    for claim, verdict in verdicts:
        rule = f"{verdict.rule}. Note: {claim['note']}" if "note" in claim else verdict.rule
        rows.append(
            [
                claim["claim"],
                claim["source"],
                str(claim.get("paper", "—")),
                verdict.ours,
                verdict.verdict,
                rule,
            ]
        )
    return Table(
        "Claims of the papers",
        [
            "claim",
            "source",
            "paper",
            "ours: difference [interval], seeds (means)",
            "verdict",
            "rule",
        ],
        rows,
        "Verdicts are decided from the measured numbers by the rule below, fixed in the "
        "preset before any run; 'not testable here' gives the reason.",
        "claims",
    )


#: Measures the comparison against the baseline covers: those of the test data with a
#: better direction (not the training loss, which is a different function for each loss,
#: nor the test error, the mirror of the test accuracy).
COMPARED = tuple(
    name
    for name, measure in MEASURES.items()
    if measure.higher_is_better is not None
    and name not in ("train_loss", "train_accuracy", "test_error")
)


def _comparisons(grid: _Grid) -> list[dict[str, Any]]:
    """Every run against the baseline on every measure with a direction: the paired
    difference, its interval and the verdict on "the run does better than the baseline"."""
    base = grid.spec.baseline_name
    if not grid.runs.get(base):
        return []
    observed = grid.observed
    rows = []
    for name, runs in grid.runs.items():
        if name == base or not runs:
            continue
        for metric in COMPARED:
            result = contrast(observed, {name: 1.0, base: -1.0}, metric, grid.spec.rule)
            if isinstance(result, str):
                continue
            better = 1.0 if MEASURES[metric].higher_is_better else -1.0
            rows.append(
                {
                    "run": name,
                    "baseline": base,
                    "measure": metric,
                    **result.to_dict(),
                    "verdict": decide(result, better),
                }
            )
    return rows


def _comparison_table(grid: _Grid, rows: list[dict[str, Any]]) -> Table | None:
    if not rows:
        return None
    cells = []
    for row in rows:
        measure = MEASURES[row["measure"]]
        digits, unit = measure.digits, measure.suffix
        interval = row["interval"]
        shown = (
            "—" if interval is None else f"[{interval[0]:+.{digits}f}, {interval[1]:+.{digits}f}]"
        )
        cells.append(
            [
                row["run"],
                measure_label(row["measure"], grid.split),
                f"{row['difference']:+.{digits}f}{unit}",
                shown,
                str(row["seeds"]),
                row["verdict"],
            ]
        )
    base = grid.spec.baseline_name
    return Table(
        f"Every run against {base}",
        ["run", "measure", f"difference (run − {base})", "interval", "seeds", "verdict"],
        cells,
        f"The claim tested in each row: the run does better than {base} on the measure "
        "(higher, or lower for errors, angles within a class and losses). Reproduced: "
        "better beyond the interval; contradicted: worse beyond it; inconclusive: the "
        "interval holds zero. Choose another baseline with --baseline.",
        "comparison",
    )


def _selection_table(out: Path) -> Table | None:
    record = read_json(out / "selection.json")
    if not record:
        return None
    rates = sorted(
        {float(lr) for row in record["runs"].values() for lr in row["validation_accuracy"]}
    )
    rows = [
        [
            name,
            *(
                f"{100 * row['validation_accuracy'][f'{lr:g}']:.2f} %"
                if f"{lr:g}" in row["validation_accuracy"]
                else "—"
                for lr in rates
            ),
            f"{row['chosen']:g}",
        ]
        for name, row in record["runs"].items()
    ]
    return Table(
        "Learning rate, chosen on the validation split",
        ["run", *(f"lr {lr:g}" for lr in rates), "chosen"],
        rows,
        f"Every run's learning rate comes from the same grid by the same procedure: one "
        f"training per rate on seed {record['seed']}, the rate with the highest final "
        "validation accuracy kept (the smaller on a tie). The test split played no part.",
        "selection",
    )


def _noise_table(grid: _Grid) -> Table | None:
    names = (
        "label_noise",
        "test_accuracy",
        "noise_gradient_ratio",
        "noise_gradient_ratio_training",
        "noise_angle_flipped",
    )
    if not any((grid.stats[v]["label_noise"] or (0.0, 0.0))[0] > 0 for v in grid.stats):
        return None
    return _measure_table(
        grid,
        "Label noise",
        names,
        "label_noise",
        "Gradient ratio: mean per-sample gradient norm of the training samples whose label was "
        "flipped, divided by that of the clean ones (below 1: mislabelled samples pull less); "
        "'mean over epochs' averages the snapshots taken after every epoch of training.",
    )


# ------------------------------------------------------------------------------ figures
def _load_embeddings(run: _Run) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    path = RunFolder(run.folder).embeddings
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["embeddings"], data["labels"], data["weight"]


def _figures(grid: _Grid, folder: Path) -> list[tuple[Path, str]]:
    """Draw the report's figures into ``folder``; ``(path, caption)`` of each drawn."""
    shown = {name: runs[0] for name, runs in grid.runs.items() if runs}
    if not shown:
        return []
    first_seed = {run.seed for run in shown.values()}
    seed_note = f"seed {min(first_seed)}" if len(first_seed) == 1 else "first finished seed"
    return [
        *_embedding_figures(grid, shown, folder, seed_note),
        *_training_figures(grid, shown, folder, seed_note),
        *_noise_figures(grid, shown, folder),
    ]


def _embedding_figures(
    grid: _Grid, shown: dict[str, _Run], folder: Path, seed_note: str
) -> list[tuple[Path, str]]:
    """Features of every run side by side, similarity histograms, open-set scores."""
    dataset = grid.spec.settings.dataset
    loaded = {name: _load_embeddings(run) for name, run in shown.items()}
    embedded = {name: value for name, value in loaded.items() if value is not None}
    if not embedded:
        return []
    first = next(iter(shown.values()))
    report = RunFolder(first.folder).read_eval()
    split = "test" if report is None else report["split"]
    known = {
        name: (e[labels < w.shape[0]], labels[labels < w.shape[0]], w)
        for name, (e, labels, w) in embedded.items()
    }
    dimension = next(iter(known.values()))[0].shape[1]
    if dimension == 2:
        view = "2-D features (rays: class-weight directions)"
    else:
        view = "features on the unit sphere" + (
            " (first 3 principal components)" if dimension > 3 else ""
        )
    written = []
    path = figures.features_grid(
        known, folder / "features.png", title=f"{dataset}: {split} {view}, {seed_note}"
    )
    written.append((path, f"The {split} split's features, every run: {view}, {seed_note}."))
    path = figures.similarity_grid(
        {name: (e, labels) for name, (e, labels, _) in known.items()},
        folder / "similarity.png",
        f"{dataset}: same-class vs different-class {split} pairs",
    )
    caption = (
        f"Cosine similarity of same-class and different-class {split} pairs "
        f"(a sample of 1,500 {split} samples per run)."
    )
    written.append((path, caption))
    num_known = {value[2].shape[0] for value in embedded.values()}
    if len(num_known) == 1:
        trained = next(iter(num_known))
        if any((labels >= trained).any() for _, labels, _ in embedded.values()):
            path = figures.open_set_scores(
                embedded, trained, folder / "open_set.png", f"{dataset}: seen vs unseen classes"
            )
            caption = (
                "Open set: the largest cosine to a trained class's weight, for test samples "
                "of trained classes and of unseen ones."
            )
            written.append((path, caption))
    return written


def _training_figures(
    grid: _Grid, shown: dict[str, _Run], folder: Path, seed_note: str
) -> list[tuple[Path, str]]:
    """The overlaid verification ROC and the learning curves of every run."""
    dataset = grid.spec.settings.dataset
    written = []
    curves = {}
    for name, run in shown.items():
        report = RunFolder(run.folder).read_eval()
        analysis = None if report is None else report.analysis()
        verification = None if analysis is None else analysis.section("verification")
        if verification is not None:
            curves[name] = (verification["roc"]["far"], verification["roc"]["tar"])
    if curves:
        path = figures.roc_overlay(curves, folder / "roc.png", f"{dataset}: verification ROC")
        written.append((path, f"Verification ROC of every run ({seed_note})."))
    histories = {name: run.epochs for name, run in shown.items() if run.epochs}
    if histories:
        accuracy = measure_label("test_accuracy", grid.split)
        path = figures.learning_curves(
            histories,
            folder / "learning_curves.png",
            f"{dataset}: learning curves ({seed_note})",
            accuracy,
        )
        written.append((path, f"Training loss and {accuracy} after every epoch."))
    return written


def _noise_figures(grid: _Grid, shown: dict[str, _Run], folder: Path) -> list[tuple[Path, str]]:
    """Clean vs flipped labels during training; accuracy against the noise rate."""
    spec, dataset = grid.spec, grid.spec.settings.dataset
    written = []
    snapshots = {name: RunFolder(run.folder).read_noise_snapshots() for name, run in shown.items()}
    snapshots = {name: rows for name, rows in snapshots.items() if rows}
    if snapshots:
        path = figures.label_noise_training(
            snapshots,
            folder / "label_noise_training.png",
            f"{dataset}: clean vs flipped labels during training",
        )
        caption = (
            "During training (after every epoch): how hard the samples with flipped labels "
            "pull, relative to the clean ones, and how far each group lies from its "
            "training label's weight."
        )
        written.append((path, caption))
    if len({variant.label_noise or 0.0 for variant in spec.variants}) > 1:
        series: dict[str, tuple[list[float], list[float], list[float]]] = {}
        for variant in spec.variants:
            stats = grid.stats[variant.name]["test_accuracy"]
            if stats is None:
                continue
            line = series.setdefault(_NOISE_SUFFIX.sub("", variant.name), ([], [], []))
            line[0].append(100.0 * (variant.label_noise or 0.0))
            line[1].append(stats[0])
            line[2].append(0.0 if stats[1] is None else stats[1])
        path = figures.label_noise_accuracy(
            series, folder / "label_noise_accuracy.png", f"{dataset}: accuracy under label noise"
        )
        caption = (
            "Test accuracy (clean test labels) against the training-label noise rate; bars: "
            "standard deviation over seeds."
        )
        written.append((path, caption))
    return written


# ------------------------------------------------------------------------------ output
def _header(grid: _Grid) -> list[str]:
    state = grid.state
    invocations = state.get("invocations") or [{}]
    last = invocations[-1]
    machine = state.get("machine") or {}
    runs = [run for runs in grid.runs.values() for run in runs]
    spent = sum((r.measures["train_time"] or 0) + (r.measures["eval_time"] or 0) for r in runs)
    total = sum(invocation.get("wall_time", 0.0) for invocation in invocations)
    lines = [
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('threads', '?')} torch threads, torch {machine.get('torch', '?')}, "
        f"Python {machine.get('python', '?')}.",
        f"Wall time of the grid: {format_seconds(total)} in {len(invocations)} "
        f"invocation{'s' if len(invocations) > 1 else ''} (the last: "
        f"{format_seconds(last.get('wall_time', 0.0))}, {len(last.get('trained', []))} runs "
        f"trained, {len(last.get('skipped', []))} finished earlier and reused); training plus "
        f"evaluation summed over all {len(runs)} runs: {format_seconds(spent)}.",
    ]
    if last.get("command"):
        lines.append(f"Command: `{last['command']}`.")
    return lines


def _table_markdown(table: Table) -> list[str]:
    lines = ["| " + " | ".join(table.headers) + " |", "|" + "---|" * len(table.headers)]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table.rows
    ]
    return lines


def _markdown(
    title: str, intro: list[str], tables: list[Table], written: list[tuple[Path, str]], out: Path
) -> str:
    parts = [f"# {title}", "", *[f"{line}\n" for line in intro]]
    for table in tables:
        parts += [f"## {table.title}", ""]
        if table.note:
            parts += [table.note, ""]
        if table.headers:  # a section of text alone has none
            parts += [*_table_markdown(table), ""]
    if written:
        parts += ["## Figures", ""]
        for path, caption in written:
            parts += [f"![{caption}]({path.relative_to(out).as_posix()})", "", f"*{caption}*", ""]
    return "\n".join(parts)


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}
th{background:#f3f3f3} td.reproduced{background:#e3f6e3} td.contradicted{background:#fbe3e3}
td.inconclusive{background:#fff6d9} td.not-testable-here{background:#f0f0f0}
figure{margin:1em 0} img{max-width:100%}
figcaption{font-style:italic;color:#555} code{background:#f3f3f3;padding:0 3px}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images-loaded', loaded.length + '/' + images.length);
});
"""


def _inline(text: str) -> str:
    escaped = html.escape(text)
    coded = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", coded)


def _html(
    title: str, intro: list[str], tables: list[Table], written: list[tuple[Path, str]]
) -> str:
    body = [f"<h1>{html.escape(title)}</h1>", *[f"<p>{_inline(line)}</p>" for line in intro]]
    for table in tables:
        body.append(f"<h2>{html.escape(table.title)}</h2>")
        if table.note:
            body.append(f"<p>{_inline(table.note)}</p>")
        if not table.headers:  # a section of text alone
            continue
        body.append(
            f'<table data-table="{table.key}"><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
            + "</tr></thead><tbody>"
        )
        for row in table.rows:
            cells = []
            for header, cell in zip(table.headers, row, strict=True):
                css = f' class="{cell.replace(" ", "-")}"' if header == "verdict" else ""
                cells.append(f"<td{css}>{_inline(cell)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        body.append("</tbody></table>")
    if written:
        body.append("<h2>Figures</h2>")
        for path, caption in written:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(caption)}" '
                f'src="data:image/png;base64,{data}"><figcaption>'
                f"{html.escape(caption)}</figcaption></figure>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>"
        f"<script>{_SCRIPT}</script></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


#: The report's measure tables after the summary: (title, measures, anchor, note).
_SECTIONS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    (
        "Accuracy",
        (
            "test_accuracy",
            "test_error",
            "nearest_centre_accuracy",
            "train_accuracy",
            "train_loss",
            "train_time",
            "eval_time",
        ),
        "accuracy",
        "Top-1 accuracy of the head's logits on the test split (the validation split where "
        "there is no test split; trained classes only); nearest-centre: nearest class mean "
        "of the training embeddings by cosine (a seeded sample of 10,000 of them where there "
        "are more).",
    ),
    (
        "Compactness and separation",
        ("intra_angle", "inter_angle_min", "inter_angle_mean", "compactness_ratio"),
        "geometry",
        "Angles of the test embeddings: to their class centre (intra) and between class "
        "centres (inter).",
    ),
    (
        "Verification and retrieval",
        (
            "verification_auc",
            "verification_eer",
            "tar_at_far",
            "ten_fold_accuracy",
            "precision_at_1",
            "map_at_r",
        ),
        "verification",
        "Pairs by cosine similarity: the data set's pairs file (LFW) or a seeded sample of "
        "test pairs; retrieval: every test embedding queries the others.",
    ),
    (
        "Open set",
        (
            "unseen_rank1",
            "unseen_detection_auroc",
            "oscr",
            "watch_list_rank1",
            "watch_list_dir",
        ),
        "open_set",
        "Test samples of classes left out of training, three protocols under their own "
        "names. Unseen-identity rank-1: one image of each unseen class enrolled, their other "
        "images identified among them (mean of 10 seeded enrolments; chance is one over the "
        "number of unseen classes). Seen-vs-unseen detection AUROC and OSCR: by the largest "
        "cosine to a trained class's weight. Watch list: one image of each seen class "
        "enrolled; rank-1 of the seen classes' other images, and the detection and "
        "identification rate at FAR 1e-2 with the unseen images as impostors to reject.",
    ),
)


def _intro(grid: _Grid, out: Path) -> list[str]:
    """The report's opening paragraphs: the description, the preset, the header lines."""
    spec = grid.spec
    intro = [" ".join(line.split()) for line in spec.description.strip().split("\n\n") if line]
    if spec.preset:
        intro.append(
            f"Preset `{spec.preset}`; the comparison is in `grid.yaml` (run it again "
            f"or change it: `marginkit compare --preset {out / 'grid.yaml'}`)."
        )
    return intro + _header(grid)


#: Version of ``report.json``'s layout.
REPORT_FORMAT = 1


def _evidence(
    grid: _Grid,
    out: Path,
    verdicts: list[tuple[dict[str, Any], Verdict]],
    comparisons: list[dict[str, Any]],
) -> dict[str, Any]:
    """``report.json``: the comparison, every run (config, seed, measures and their sampling
    errors), every claim's contrasts with intervals and verdict, and every comparison with
    the baseline."""
    return json_safe(
        {
            "format": REPORT_FORMAT,
            "title": grid.spec.title,
            "preset": grid.spec.preset,
            "comparison": grid.spec.to_dict(),
            "rule": {**grid.spec.rule.to_dict(), "text": grid.spec.rule.describe()},
            "baseline": grid.spec.baseline_name,
            "measured_split": grid.split,
            "machine": grid.state.get("machine"),
            "invocations": grid.state.get("invocations", []),
            "selection": read_json(out / "selection.json"),
            "runs": [
                {
                    "name": name,
                    "seed": run.seed,
                    "folder": run.folder.relative_to(out).as_posix(),
                    "config": run.config,
                    "measures": run.measures,
                    "sampling_errors": run.errors,
                }
                for name, runs in grid.runs.items()
                for run in runs
            ],
            "claims": [{**claim, **verdict.to_dict()} for claim, verdict in verdicts],
            "comparisons": comparisons,
        }
    )


#: The measures of the evidence summary's table of runs.
EVIDENCE_MEASURES = ("test_accuracy", "unseen_rank1", "verification_auc", "ten_fold_accuracy")


def _evidence_runs(evidence: dict[str, Any]) -> Table:
    """Each run's headline measures (mean ± std over seeds), its headline difference from
    the baseline with interval and verdict, and its learning rate."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for run in evidence["runs"]:
        runs.setdefault(run["name"], []).append(run)
    shown = [
        name
        for name in EVIDENCE_MEASURES
        if any(run["measures"].get(name) is not None for run in evidence["runs"])
    ]
    headline = {  # run -> its headline measure against the baseline, with interval and verdict
        row["run"]: (
            f"{row['difference']:+.2f} [{row['interval'][0]:+.2f}, {row['interval'][1]:+.2f}] "
            f"{row['verdict']}"
            if row["interval"]
            else f"{row['difference']:+.2f} (no interval) {row['verdict']}"
        )
        for row in evidence["comparisons"]
        if row["measure"] == EVIDENCE_MEASURES[0]
    }
    rows = []
    for name, seeds in runs.items():
        cells = []
        for metric in shown:
            values = [
                run["measures"][metric] for run in seeds if run["measures"].get(metric) is not None
            ]
            std = statistics.stdev(values) if len(values) > 1 else None
            cells.append(_cell((statistics.fmean(values), std), metric) if values else "—")
        lr = sorted(v for v in {run["config"].get("lr") for run in seeds} if v is not None)
        rows.append([name, *cells, headline.get(name, "—"), ", ".join(f"{v:g}" for v in lr)])
    split = evidence.get("measured_split", "test")
    against = f"{measure_label(EVIDENCE_MEASURES[0], split)} − {evidence['baseline']} [interval]"
    return Table("", ["run", *(measure_label(m, split) for m in shown), against, "lr"], rows)


def _evidence_counts(evidence: dict[str, Any]) -> Table | None:
    """How many measures each run is better, worse or inconclusive on against the baseline."""
    counts: dict[str, dict[str, int]] = {}
    for row in evidence["comparisons"]:
        tally = counts.setdefault(row["run"], {})
        tally[row["verdict"]] = tally.get(row["verdict"], 0) + 1
    if not counts:
        return None
    words = ("reproduced", "contradicted", "inconclusive")
    rows = [[run, *(str(tally.get(w, 0)) for w in words)] for run, tally in counts.items()]
    return Table("", ["run", "better", "worse", "inconclusive"], rows)


def evidence_markdown(evidence: dict[str, Any]) -> str:
    """A summary of one ``report.json`` in Markdown, every number read from it: each
    run's headline measures (mean ± standard deviation over seeds), each claim with its
    difference, interval, seeds and verdict, and the count of verdicts against the
    baseline. ``docs/results.md`` is built from these (``scripts/results_page.py``)."""
    machine = evidence.get("machine") or {}
    wall = sum(invocation.get("wall_time", 0.0) for invocation in evidence["invocations"])
    seeds = len({run["seed"] for run in evidence["runs"]})
    lines = [
        f"Seeds: {seeds}. Rule: {evidence['rule']['confidence']:g} "
        f"confidence, one-seed factor {evidence['rule']['single_seed_factor']:g}. Wall time: "
        f"{format_seconds(wall)} on {machine.get('cores', '?')} cores "
        f"({machine.get('cpu', '?')}, torch {machine.get('torch', '?')}).",
        "",
        *_table_markdown(_evidence_runs(evidence)),
    ]
    if evidence["claims"]:
        claims = [
            [claim["claim"], str(claim.get("paper", "—")), claim["ours"], claim["verdict"]]
            for claim in evidence["claims"]
        ]
        lines += ["", *_table_markdown(Table("", ["claim", "paper", "ours", "verdict"], claims))]
    counts = _evidence_counts(evidence)
    if counts is not None:
        lines += [
            "",
            f"Against {evidence['baseline']} on every measure (better / worse / inconclusive):",
            "",
            *_table_markdown(counts),
        ]
    return "\n".join(lines) + "\n"


def write_report(out: str | Path) -> tuple[Path, Path, str]:
    """Write ``report.md``, ``report.html``, ``report.json`` and ``figures/`` of the report
    folder ``out``.

    Returns:
        The paths of ``report.md`` and ``report.html``, and the headline table as Markdown.
    """
    from marginkit.runfolder import atomic_write_text

    out = Path(out)
    grid = load_grid(out)
    intro = _intro(grid, out)
    summary = _measure_table(
        grid,
        "Summary",
        SUMMARY,
        "summary",
        "Mean ± standard deviation over seeds where there are several.",
    )
    verdicts = _verdicts(grid)
    comparisons = _comparisons(grid)
    rule = Table("How verdicts are decided", [], [], grid.spec.rule.describe(), "rule")
    candidates = [
        _claims_table(verdicts),
        rule if verdicts or comparisons else None,
        summary,
        _comparison_table(grid, comparisons),
        _settings_table(grid),
        _selection_table(out),
        _runs_table(grid),
        *(_measure_table(grid, *section) for section in _SECTIONS),
        _noise_table(grid),
    ]
    tables = [table for table in candidates if table is not None]
    written = _figures(grid, out / "figures")
    title = grid.spec.title
    atomic_write_text(out / "report.md", _markdown(title, intro, tables, written, out))
    atomic_write_text(out / "report.html", _html(title, intro, tables, written))
    evidence = _evidence(grid, out, verdicts, comparisons)
    atomic_write_text(out / "report.json", json.dumps(evidence, indent=2, allow_nan=False) + "\n")
    table = "" if summary is None else "\n".join(_table_markdown(summary))
    return out / "report.md", out / "report.html", table
