"""report.md and report.html: tables, mean ± std over seeds, claims and verdicts, figures."""

from __future__ import annotations

import re
import statistics

from marginkit.compare import GridResult
from marginkit.compare.measures import run_measures
from marginkit.compare.report import load_grid

TABLES = (
    "Claims of the papers",
    "Summary",
    "Settings",
    "Runs",
    "Accuracy",
    "Compactness and separation",
    "Verification and retrieval",
)


def test_markdown_has_every_table_and_figure(tiny_grid: GridResult) -> None:
    text = tiny_grid.report_md.read_text()
    for title in TABLES:
        assert f"## {title}\n" in text
    assert "## Open set" not in text and "## Label noise" not in text  # neither applies
    for figure in ("features", "similarity", "roc", "learning_curves"):
        assert f"](figures/{figure}.png)" in text
        assert (tiny_grid.out / "figures" / f"{figure}.png").is_file()
    assert "Machine: " in text and "torch threads" in text and "Wall time of the grid" in text
    settings = text.split("## Settings\n")[1].split("\n## ")[0]
    assert "| dataset | digits |" in settings and "| seeds | 0, 1 |" in settings
    # the recipe's lr, the same for both: the MLP has batch normalisation (recipe, cause 2)
    assert "| lr | 0.001 |" in settings


def test_mean_and_std_over_seeds_come_from_the_runs_files(tiny_grid: GridResult) -> None:
    grid = load_grid(tiny_grid.out)
    for loss in ("softmax", "arcface"):
        values = [
            run_measures(tiny_grid.out / "runs" / f"{loss}-seed{seed}")["test_accuracy"]
            for seed in (0, 1)
        ]
        mean, std = grid.stats[loss]["test_accuracy"]
        assert mean == statistics.fmean(values) and std == statistics.stdev(values)
        row = next(line for line in tiny_grid.table.splitlines() if line.startswith(f"| {loss} "))
        assert f"{mean:.2f} ± {std:.2f} %" in row


def test_claims_get_verdicts_with_rules(tiny_grid: GridResult) -> None:
    text = tiny_grid.report_md.read_text()
    claims = text.split("## Claims of the papers")[1].split("\n## ")[0]
    rows = [line for line in claims.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| claim | source | paper | ours: difference [interval], seeds")
    by_claim = {row.split(" | ")[0][2:]: row for row in rows[1:]}
    mile = by_claim["ArcFace beats softmax by a mile"]
    # two seeds of a few steps: no 50-point gain, whatever the noise
    assert re.search(r"\| (inconclusive|contradicted) \|", mile) and "by more than 50 %" in mile
    assert re.search(
        r"arcface − softmax: [+-]\d+\.\d\d % \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\], 2 seeds", mile
    )
    assert "| not testable here | no faces in the digits |" in by_claim["needs a face data set"]
    assert "the grid has no finished run 'cosface'" in by_claim["a run that is not in the grid"]
    rule = text.split("## How verdicts are decided\n")[1].split("\n## ")[0]
    assert "95 % interval" in rule and "Student's t over the seeds" in rule


def test_html_is_self_contained(tiny_grid: GridResult) -> None:
    page = tiny_grid.report_html.read_text()
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page
    keys = ("claims", "summary", "comparison", "settings", "runs", "accuracy", "geometry")
    for key in (*keys, "verification"):
        assert f'<table data-table="{key}">' in page
    assert re.search('class="(reproduced|contradicted|inconclusive)"', page)
    assert 'class="not-testable-here"' in page
    assert "<em>Reproduced</em>" in page and "*Reproduced*" not in page  # the rule, emphasised


def test_a_claim_waits_for_its_unfinished_runs(tiny_grid: GridResult, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A grid in progress: a claim whose run has not finished says so (not 'does not
    apply')."""
    import json
    import shutil

    from marginkit.compare.report import write_report

    out = tmp_path / "copy"
    shutil.copytree(tiny_grid.out, out)
    for metrics_file in (out / "runs").glob("arcface-seed*/metrics.json"):
        metrics = json.loads(metrics_file.read_text())
        metrics["final"] = {}  # still training
        metrics_file.write_text(json.dumps(metrics))
    claims = write_report(out)[0].read_text().split("## Claims of the papers")[1].split("\n## ")[0]
    mile = next(line for line in claims.splitlines() if "by a mile" in line)
    assert "| not testable here | run 'arcface' has not finished yet |" in mile


def test_a_claims_note_is_printed_with_its_rule(tiny_grid: GridResult, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A preset can say what is known about an outcome (e.g. why a target is missed)."""
    import shutil

    import yaml

    from marginkit.compare.report import write_report

    out = tmp_path / "copy"
    shutil.copytree(tiny_grid.out, out)
    spec = yaml.safe_load((out / "grid.yaml").read_text())
    spec["claims"][0]["note"] = "it needs a longer run."
    (out / "grid.yaml").write_text(yaml.safe_dump(spec))
    markdown, html = write_report(out)[:2]
    claims = markdown.read_text().split("## Claims of the papers")[1].split("\n## ")[0]
    noted = [line for line in claims.splitlines() if "Note: it needs a longer run." in line]
    assert len(noted) == 1 and spec["claims"][0]["claim"] in noted[0]
    assert "Note: it needs a longer run." in html.read_text()


def test_report_json_holds_every_run_and_every_verdict(tiny_grid: GridResult) -> None:
    """The machine-readable evidence: each run's config, seed and measures; each claim's
    contrasts, intervals and verdict; each comparison with the baseline."""
    import json

    evidence = json.loads((tiny_grid.out / "report.json").read_text())
    assert evidence["format"] == 1 and evidence["baseline"] == "softmax"
    assert evidence["rule"]["confidence"] == 0.95 and "Student's t" in evidence["rule"]["text"]
    runs = {(run["name"], run["seed"]): run for run in evidence["runs"]}
    assert set(runs) == {(loss, seed) for loss in ("softmax", "arcface") for seed in (0, 1)}
    first = runs["arcface", 0]
    assert first["config"]["loss"] == "arcface" and first["config"]["seed"] == 0
    assert (
        first["measures"]["test_accuracy"]
        == run_measures(tiny_grid.out / first["folder"])["test_accuracy"]
    )
    assert first["sampling_errors"]["test_accuracy"] > 0
    mile = evidence["claims"][0]
    contrast = mile["contrasts"]["arcface − softmax"]
    assert mile["verdict"] in ("inconclusive", "contradicted") and contrast["seeds"] == 2
    low, high = contrast["interval"]
    assert low < contrast["difference"] < high
    rows = {row["measure"]: row for row in evidence["comparisons"]}
    assert set(rows) >= {"test_accuracy", "intra_angle", "verification_auc"}
    assert all(row["run"] == "arcface" and row["baseline"] == "softmax" for row in rows.values())
    assert "train_loss" not in rows  # a different function for each loss


def test_the_comparison_table_lists_every_run_against_the_baseline(
    tiny_grid: GridResult,
) -> None:
    text = tiny_grid.report_md.read_text()
    table = text.split("## Every run against softmax\n")[1].split("\n## ")[0]
    assert "| run | measure | difference (run − softmax) | interval | seeds | verdict |" in table
    assert re.search(r"\| arcface \| test accuracy \| [+-]\d+\.\d\d % \| \[", table)


def test_runs_measured_on_their_validation_split_say_so(tiny_grid: GridResult, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A data set without a test split (folder, lfw) is measured on its validation split:
    the report and its evidence name it "validation accuracy", never "test accuracy"."""
    import json
    import shutil

    from marginkit.compare.report import evidence_markdown, write_report

    out = tmp_path / "copy"
    shutil.copytree(tiny_grid.out, out)
    assert "| test accuracy" in (out / "report.md").read_text()
    for eval_file in (out / "runs").glob("*/eval.json"):
        report = json.loads(eval_file.read_text())
        eval_file.write_text(json.dumps({**report, "split": "validation"}))
    markdown = write_report(out)[0].read_text()
    evidence = json.loads((out / "report.json").read_text())
    assert evidence["measured_split"] == "validation"
    for text in (markdown, evidence_markdown(evidence)):
        assert "validation accuracy" in text and "test accuracy" not in text
