"""The numbers a comparison reports for each run, read from the run's own files.

:func:`run_measures` turns a run folder's ``metrics.json`` (training), ``eval.json``
(:func:`marginkit.evaluation.evaluate_run`) and ``noise_snapshots.json`` (per-epoch label-noise
statistics written during training) into one flat mapping ``name -> number`` (None where
the measurement does not apply); :data:`MEASURES` says what each name means, in its unit
(``eval.json`` holds fractions, ``metrics.json`` percentages; a ``"%"`` measure is a
percentage). Claims and tables refer to these names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginkit.runfiles import ACCURACY_UNIT, metrics_in_fractions

__all__ = [
    "MEASURES",
    "Measure",
    "measure_label",
    "read_json",
    "run_measures",
    "sampling_errors",
]


@dataclass(frozen=True)
class Measure:
    """What a measure name means.

    Attributes:
        label: column heading.
        unit: printed after the value (``"%"``, ``"°"``, ``"s"`` or ``""``).
        higher_is_better: the direction in which a loss does better (None: neither).
        digits: decimals shown.
    """

    label: str
    unit: str
    higher_is_better: bool | None
    digits: int = 2

    @property
    def suffix(self) -> str:
        """The unit as printed after a number: ``" %"`` and ``" s"`` with a space, ``"°"``
        and ``""`` without."""
        return f" {self.unit}" if self.unit in ("%", "s") else self.unit


MEASURES: dict[str, Measure] = {
    "test_accuracy": Measure("test accuracy", "%", True),
    "test_error": Measure("test error", "%", False),
    "train_accuracy": Measure("train accuracy (running, last epoch)", "%", True),
    "train_loss": Measure("train loss (last epoch)", "", False, 4),
    "nearest_centre_accuracy": Measure("nearest-centre accuracy", "%", True),
    "intra_angle": Measure("intra-class angle (mean)", "°", False, 1),
    "inter_angle_min": Measure("inter-class angle (min)", "°", True, 1),
    "inter_angle_mean": Measure("inter-class angle (mean)", "°", True, 1),
    "compactness_ratio": Measure("intra / min inter", "", False, 3),
    "verification_auc": Measure("verification AUC", "", True, 4),
    "verification_eer": Measure("EER", "%", False),
    "tar_at_far": Measure("TAR @ FAR 1e-3", "%", True),
    "ten_fold_accuracy": Measure("10-fold pair accuracy", "%", True),
    "precision_at_1": Measure("retrieval P@1", "%", True),
    "map_at_r": Measure("MAP@R", "%", True),
    "unseen_detection_auroc": Measure("seen-vs-unseen detection AUROC", "", True, 4),
    "oscr": Measure("OSCR (seen classified, unseen rejected)", "", True, 4),
    "unseen_rank1": Measure("unseen-identity rank-1 (1 enrolment image)", "%", True),
    "watch_list_rank1": Measure("watch-list rank-1 (seen identities)", "%", True),
    "watch_list_dir": Measure("watch-list DIR @ FAR 1e-2 (unseen rejected)", "%", True),
    "noise_gradient_ratio": Measure("flipped / clean gradient (end)", "", False, 3),
    "noise_gradient_ratio_training": Measure(
        "flipped / clean gradient (mean over epochs)", "", False, 3
    ),
    "noise_angle_flipped": Measure("target angle, flipped (end)", "°", None, 1),
    "label_noise": Measure("label noise", "%", None, 0),
    "train_time": Measure("training time", "s", None, 1),
    "eval_time": Measure("evaluation time", "s", None, 1),
}


def measure_label(name: str, split: str = "test") -> str:
    """The heading of measure ``name`` for runs measured on ``split``: a data set without a
    test split (``folder``, ``lfw``) is measured on its validation split, and its "test
    accuracy" is then named "validation accuracy" (the other closed-set headings name no
    split; the report says which one was measured)."""
    label = MEASURES[name].label
    if split != "test" and name in ("test_accuracy", "test_error"):
        return label.replace("test", split, 1)
    return label


#: The FAR at which the watch-list measure reads its detection and identification rate.
WATCH_LIST_FAR = 1e-2


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when the file is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _percent(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


def _degrees(value: Any) -> float | None:
    return None if value is None else math.degrees(float(value))


def _ratio(noise: dict[str, Any]) -> float | None:
    clean = noise["gradient_norm"]["clean"]["mean"]
    flipped = noise["gradient_norm"]["flipped"]["mean"]
    if clean is None or flipped is None or clean <= 0:
        return None
    return flipped / clean


def run_measures(run_dir: Path) -> dict[str, float | None]:
    """Every measure of :data:`MEASURES` for one finished, evaluated run folder."""
    metrics = metrics_in_fractions(read_json(run_dir / "metrics.json") or {})
    report = read_json(run_dir / "eval.json") or {}
    final = metrics.get("final") or {}
    analysis = report.get("analysis") or {}
    values: dict[str, float | None] = dict.fromkeys(MEASURES)
    if "accuracy" not in report:
        accuracy = _percent(final.get("test_accuracy"))
    elif report.get("accuracy_unit") == ACCURACY_UNIT:
        accuracy = _percent(report["accuracy"])
    else:  # an eval.json of an earlier version: in percent
        accuracy = report["accuracy"]
    values["test_accuracy"] = accuracy
    values["test_error"] = None if accuracy is None else 100.0 - accuracy
    values["train_accuracy"] = _percent(final.get("train_accuracy"))
    values["train_loss"] = final.get("train_loss")
    values["train_time"] = final.get("wall_time")
    values["eval_time"] = report.get("eval_time")
    values["label_noise"] = 100.0 * (metrics.get("config") or {}).get("label_noise", 0.0)
    closed = analysis.get("closed_set")
    if closed:
        values["nearest_centre_accuracy"] = _percent(closed.get("nearest_centre_accuracy"))
    geometry = analysis.get("geometry")
    if geometry:
        overall = geometry["overall"]
        values["intra_angle"] = _degrees(overall["compactness_mean"])
        values["inter_angle_min"] = _degrees(overall["separation_min"])
        values["inter_angle_mean"] = _degrees(overall["separation_mean"])
        values["compactness_ratio"] = overall.get("ratio")
    verification = analysis.get("verification")
    if verification:
        values["verification_auc"] = verification.get("auc")
        values["verification_eer"] = _percent(verification.get("eer"))
        points = {point["far"]: point["rate"] for point in verification.get("tar_at_far", [])}
        values["tar_at_far"] = _percent(points.get(1e-3))
        values["ten_fold_accuracy"] = _percent(verification["ten_fold"]["mean"])
    retrieval = analysis.get("retrieval")
    if retrieval:
        values["precision_at_1"] = _percent(retrieval.get("precision_at_1"))
        values["map_at_r"] = _percent(retrieval.get("map_at_r"))
    open_set = analysis.get("open_set")
    if open_set:
        values["unseen_detection_auroc"] = open_set.get("auroc")
        values["oscr"] = open_set.get("oscr")
        unseen = open_set.get("unseen_identification")  # None in an eval.json of before 0.2
        if unseen:
            values["unseen_rank1"] = _percent(unseen.get("rank1"))
        watch_list = open_set.get("watch_list") or open_set.get("identification") or {}
        values["watch_list_rank1"] = _percent(watch_list.get("rank1"))
        points = {p["far"]: p["rate"] for p in watch_list.get("dir_at_far", [])}
        values["watch_list_dir"] = _percent(points.get(WATCH_LIST_FAR))
    noise = analysis.get("label_noise")
    if noise and noise.get("num_flipped"):
        values["noise_gradient_ratio"] = _ratio(noise)
        values["noise_angle_flipped"] = _degrees(noise["target_angle"]["flipped"]["mean"])
    snapshots = read_json(run_dir / "noise_snapshots.json") or []
    ratios = [row["gradient_ratio"] for row in snapshots if row.get("gradient_ratio") is not None]
    if ratios:
        values["noise_gradient_ratio_training"] = sum(ratios) / len(ratios)
    return values


def sampling_errors(run_dir: Path, values: dict[str, float | None]) -> dict[str, float | None]:
    """The test-set standard error of each measure of ``values`` (the run's
    :func:`run_measures`), in the measure's unit; None where the measure has no known
    sampling error (angles, losses, times, MAP@R, EER).

    Rates are binomial over the items they count (test samples, pairs, probes, queries);
    AUCs follow Hanley and McNeil (:func:`marginkit.compare.evidence.auc_error`).
    """
    from marginkit.compare.evidence import auc_error, proportion_error

    analysis = (read_json(run_dir / "eval.json") or {}).get("analysis") or {}
    closed = analysis.get("closed_set") or {}
    verification = analysis.get("verification") or {}
    retrieval = analysis.get("retrieval") or {}
    open_set = analysis.get("open_set") or {}
    unseen = open_set.get("unseen_identification") or {}
    watch_list = open_set.get("watch_list") or {}
    counts: dict[str, int | None] = {
        "test_accuracy": closed.get("samples"),
        "test_error": closed.get("samples"),
        "nearest_centre_accuracy": closed.get("samples"),
        "tar_at_far": verification.get("num_positive"),
        "ten_fold_accuracy": verification.get("num_pairs"),
        "precision_at_1": retrieval.get("num_queries"),
        "unseen_rank1": unseen.get("num_probes"),
        "watch_list_rank1": watch_list.get("num_mated_probes"),
        "watch_list_dir": watch_list.get("num_mated_probes"),
    }
    errors: dict[str, float | None] = dict.fromkeys(values)
    for name, count in counts.items():
        errors[name] = proportion_error(values.get(name), count)
    errors["verification_auc"] = auc_error(
        values.get("verification_auc"),
        verification.get("num_positive"),
        verification.get("num_negative"),
    )
    errors["unseen_detection_auroc"] = auc_error(
        values.get("unseen_detection_auroc"),
        open_set.get("num_known_samples"),
        open_set.get("num_unknown_samples"),
    )
    return errors
