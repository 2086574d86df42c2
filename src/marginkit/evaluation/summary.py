"""A few readable lines of an evaluation report: the headline figures, rates in percent."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["summarize"]


def summarize(report: dict[str, Any]) -> str:
    """A few readable lines of an :func:`~marginkit.evaluation.evaluate_run` report: the
    headline figures, every accuracy and rate in percent (the report holds fractions)."""

    def percent(value: Any) -> str:
        return "n/a" if value is None else f"{100 * value:.2f} %"

    lines = [
        f"{report['run']}, epoch {report.get('epoch')} (checkpoint {report.get('checkpoint')}): "
        f"{report['loss']} on {report['dataset']} ({report['split']}), "
        f"accuracy {percent(report.get('accuracy'))}"
    ]
    analysis = report.get("analysis") or {}
    closed = analysis.get("closed_set")
    if closed:
        lines.append(f"  nearest class centre: {percent(closed['nearest_centre_accuracy'])}")
    geometry = analysis.get("geometry")
    if geometry:
        overall = geometry["overall"]
        lines.append(
            "  geometry: angle to class centre "
            f"{math.degrees(overall['compactness_mean']):.1f} deg (mean), min angle between "
            f"centres {math.degrees(overall['separation_min']):.1f} deg"
        )
    retrieval = analysis.get("retrieval")
    if retrieval:
        lines.append(
            f"  retrieval: P@1 {percent(retrieval['precision_at_1'])}, "
            f"R-precision {percent(retrieval['r_precision'])}, "
            f"MAP@R {percent(retrieval['map_at_r'])}"
        )
    verification = analysis.get("verification")
    if verification:
        fold = verification["ten_fold"]
        tars = ", ".join(
            f"TAR@FAR={point['far']:g} "
            + ("n/a" if point["rate"] is None else f"{100 * point['rate']:.2f} %")
            for point in verification["tar_at_far"]
        )
        lines.append(
            f"  verification ({verification['num_pairs']} pairs, {verification['pairs_source']}): "
            f"10-fold accuracy {100 * fold['mean']:.2f} +- {100 * fold['std']:.2f} %, "
            f"AUC {verification['auc']:.4f}, EER {percent(verification['eer'])}; {tars}"
        )
    open_set = analysis.get("open_set")
    if open_set:
        unseen = open_set["unseen_identification"]
        lines.append(
            f"  open set: seen-vs-unseen AUROC {open_set['auroc']:.4f}, OSCR "
            f"{open_set['oscr']:.4f}; unseen-identity rank-1 {percent(unseen['rank1'])} "
            f"(chance {percent(unseen['chance'])}); watch-list rank-1 "
            f"{percent(open_set['watch_list']['rank1'])}"
        )
    noise = analysis.get("label_noise")
    if noise:
        angle, gradient = noise["target_angle"], noise["gradient_norm"]
        lines.append(
            f"  label noise ({noise['num_flipped']} flipped): mean target angle clean "
            f"{angle['clean']['mean']:.3f} / flipped {angle['flipped']['mean']:.3f} rad, mean "
            f"gradient norm clean {gradient['clean']['mean']:.4g} / flipped "
            f"{gradient['flipped']['mean']:.4g}"
        )
    if analysis.get("plots"):
        lines.append(f"  {len(analysis['plots'])} picture files in {report['run']}/plots")
    return "\n".join(lines)
