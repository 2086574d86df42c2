"""The numbers a comparison reports for each run, read from the run's own files.

:func:`run_measures` turns a run folder's ``metrics.json`` (training), ``eval.json``
(:func:`marginkit.evaluation.evaluate_run`) and ``noise_snapshots.json`` (per-epoch label-noise
statistics written during training) into one flat mapping ``name -> number`` (None where
the measurement does not apply); :data:`MEASURES` says what each name means, in its unit
(the files hold fractions; a ``"%"`` measure is a percentage). Claims and tables refer to
these names. The files are read through :class:`marginkit.runfolder.RunFolder`, in the
current layout whatever version wrote them, and ``eval.json`` by key: a figure missing from
a section that was measured is an error, never a blank in the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginkit.runfolder import Metrics, RunFolder, Section

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


def _ratio(noise: Section) -> float | None:
    clean = noise["gradient_norm"]["clean"]["mean"]
    flipped = noise["gradient_norm"]["flipped"]["mean"]
    if clean is None or flipped is None or clean <= 0:
        return None
    return flipped / clean


def _analysis(run: RunFolder) -> Section | None:
    """The analysis of the run's ``eval.json``, or None (not evaluated, or without it)."""
    report = run.read_eval()
    return None if report is None else report.analysis()


def _part(analysis: Section | None, name: str) -> Section | None:
    """A section of ``analysis`` (read by key: a renamed key is an error), or None when the
    analysis or the section is absent (not measured)."""
    return None if analysis is None else analysis.section(name)


def run_measures(run_dir: Path) -> dict[str, float | None]:
    """Every measure of :data:`MEASURES` for one finished, evaluated run folder.

    Raises:
        RunFolderError: the run's ``eval.json`` lacks a figure that a section it holds must
            have (damaged, or of another version), or the run is of a newer format.
    """
    run = RunFolder(run_dir)
    metrics = run.read_metrics() or Metrics()
    report = run.read_eval()  # accuracies as fractions, whatever version wrote it
    analysis = None if report is None else report.analysis()
    final = metrics.final
    values: dict[str, float | None] = dict.fromkeys(MEASURES)
    if report is None or "accuracy" not in report:
        accuracy = _percent(final.get("test_accuracy"))
    else:
        accuracy = _percent(report["accuracy"])
    values["test_accuracy"] = accuracy
    values["test_error"] = None if accuracy is None else 100.0 - accuracy
    values["train_accuracy"] = _percent(final.get("train_accuracy"))
    values["train_loss"] = final.get("train_loss")
    values["train_time"] = final.get("wall_time")
    if report is not None and "eval_time" in report:  # a comparison's runs time it
        values["eval_time"] = report["eval_time"]
    values["label_noise"] = 100.0 * metrics.config.get("label_noise", 0.0)
    closed = _part(analysis, "closed_set")
    if closed:
        values["nearest_centre_accuracy"] = _percent(closed["nearest_centre_accuracy"])
    geometry = _part(analysis, "geometry")
    if geometry:
        overall = geometry["overall"]
        values["intra_angle"] = _degrees(overall["compactness_mean"])
        values["inter_angle_min"] = _degrees(overall["separation_min"])
        values["inter_angle_mean"] = _degrees(overall["separation_mean"])
        values["compactness_ratio"] = overall["ratio"]
    verification = _part(analysis, "verification")
    if verification:
        values["verification_auc"] = verification["auc"]
        values["verification_eer"] = _percent(verification["eer"])
        points = {point["far"]: point["rate"] for point in verification["tar_at_far"]}
        values["tar_at_far"] = _percent(points.get(1e-3))
        values["ten_fold_accuracy"] = _percent(verification["ten_fold"]["mean"])
    retrieval = _part(analysis, "retrieval")
    if retrieval:
        values["precision_at_1"] = _percent(retrieval["precision_at_1"])
        values["map_at_r"] = _percent(retrieval["map_at_r"])
    open_set = _part(analysis, "open_set")
    if open_set:
        values["unseen_detection_auroc"] = open_set["auroc"]
        values["oscr"] = open_set["oscr"]
        unseen = open_set.section("unseen_identification")
        if unseen:
            values["unseen_rank1"] = _percent(unseen["rank1"])
        watch_list = open_set["watch_list"]
        values["watch_list_rank1"] = _percent(watch_list["rank1"])
        points = {p["far"]: p["rate"] for p in watch_list["dir_at_far"]}
        values["watch_list_dir"] = _percent(points.get(WATCH_LIST_FAR))
    noise = _part(analysis, "label_noise")
    if noise and noise["num_flipped"]:
        values["noise_gradient_ratio"] = _ratio(noise)
        values["noise_angle_flipped"] = _degrees(noise["target_angle"]["flipped"]["mean"])
    snapshots = run.read_noise_snapshots()
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

    analysis = _analysis(RunFolder(run_dir))
    closed = _part(analysis, "closed_set")
    verification = _part(analysis, "verification")
    retrieval = _part(analysis, "retrieval")
    open_set = _part(analysis, "open_set")
    unseen = _part(open_set, "unseen_identification")
    watch_list = _part(open_set, "watch_list")

    def count(section: Section | None, key: str) -> int | None:
        return None if section is None else section[key]

    counts: dict[str, int | None] = {
        "test_accuracy": count(closed, "samples"),
        "test_error": count(closed, "samples"),
        "nearest_centre_accuracy": count(closed, "samples"),
        "tar_at_far": count(verification, "num_positive"),
        "ten_fold_accuracy": count(verification, "num_pairs"),
        "precision_at_1": count(retrieval, "num_queries"),
        "unseen_rank1": count(unseen, "num_probes"),
        "watch_list_rank1": count(watch_list, "num_mated_probes"),
        "watch_list_dir": count(watch_list, "num_mated_probes"),
    }
    errors: dict[str, float | None] = dict.fromkeys(values)
    for name, number in counts.items():
        errors[name] = proportion_error(values.get(name), number)
    errors["verification_auc"] = auc_error(
        values.get("verification_auc"),
        count(verification, "num_positive"),
        count(verification, "num_negative"),
    )
    errors["unseen_detection_auroc"] = auc_error(
        values.get("unseen_detection_auroc"),
        count(open_set, "num_known_samples"),
        count(open_set, "num_unknown_samples"),
    )
    return errors
