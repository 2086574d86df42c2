"""The run folder (:mod:`marginkit.runfolder`): every file read and written through
:class:`RunFolder`, the format version, older layouts upgraded in one place, and no run-file
name anywhere else in the package."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

import marginkit
from marginkit.runfolder import (
    ACCURACY_UNIT,
    FORMAT_VERSION,
    RUN_FILES,
    EvalReport,
    Metrics,
    RunFolder,
    RunFolderError,
    metrics_in_fractions,
    percent,
    rows_in_fractions,
)

#: A digits run folder written by marginkit before the format version existed (commit
#: 8dd861d: ``marginkit train --dataset digits --backbone mlp --embedding-dim 8 --epochs 2``
#: and ``marginkit eval --no-plots``; ``eval.json``'s long lists cut to 8 entries).
PREVIOUS_LAYOUT = Path(__file__).parent / "fixtures" / "run-v1-digits"


# ------------------------------------------------------------------------- numbers
def test_percent_files_without_a_unit_are_converted() -> None:
    old = {
        "epochs": [{"epoch": 1, "train_accuracy": 90.0, "test_accuracy": 95.5, "lr": 0.1}],
        "final": {"test_accuracy": 95.5, "validation_accuracy": None, "train_loss": 0.3},
    }
    new = metrics_in_fractions(old)
    assert new["accuracy_unit"] == ACCURACY_UNIT == "fraction"
    assert new["epochs"][0] == {
        "epoch": 1,
        "train_accuracy": 0.9,
        "test_accuracy": 0.955,
        "lr": 0.1,
    }
    assert new["final"] == {"test_accuracy": 0.955, "validation_accuracy": None, "train_loss": 0.3}
    assert old["epochs"][0]["test_accuracy"] == 95.5  # not changed in place


def test_fraction_files_are_read_as_they_are() -> None:
    metrics = {"accuracy_unit": "fraction", "epochs": [{"test_accuracy": 0.5}], "final": {}}
    assert metrics_in_fractions(metrics) == metrics
    assert rows_in_fractions([{"test_accuracy": 0.5}], "fraction") == [{"test_accuracy": 0.5}]


def test_percent_for_printing() -> None:
    assert percent(0.9533) == pytest.approx(95.33)
    assert percent(None) is None


# -------------------------------------------------------------------------- the files
def test_each_file_round_trips(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    assert run.read_metrics() is None and run.read_eval() is None and run.read_verify() is None
    assert run.read_data_record() is None and run.read_preprocessing() is None
    assert run.read_noise_snapshots() == [] and run.read_init_from() is None
    assert not run.holds_run() and run.format_version == 1  # nothing written yet

    run.write_format()
    metrics = Metrics(
        config={"dataset": "digits", "label_noise": 0.0},
        epochs=[{"epoch": 1, "step": 14, "test_accuracy": 0.5, "train_loss": float("nan")}],
        final={"epoch": 1, "test_accuracy": 0.5},
    )
    run.write_metrics(metrics)
    report = {
        "split": "test",
        "accuracy": 0.25,
        "accuracy_unit": ACCURACY_UNIT,
        "auc": float("inf"),
    }
    run.write_eval(report)
    run.write_verify({"run": "x", "sets": [{"num_pairs": 2}]})
    fingerprint = {"data_dir": "/data", "entries": {"a.gz": [1, "ab"]}}
    run.write_data_record(fingerprint)
    run.write_preprocessing({"input_shape": [1, 8, 8], "mean": [0.5]})
    run.write_noise_snapshots([{"epoch": 1, "gradient_ratio": 0.5}])
    source = {"init_from": "runs/a", "kind": "run", "sha256": "ab" * 32, "bytes": 8}
    run.write_init_from(source)
    run.write_log("epoch,step\n1,14\n")
    run.config.write_text("dataset: digits\nepochs: 2\n")

    fresh = RunFolder(run.path)  # nothing cached
    assert fresh.format_version == FORMAT_VERSION and fresh.holds_run()
    assert json.loads(fresh.format_file.read_text()) == {"format_version": FORMAT_VERSION}
    read = fresh.read_metrics()
    assert read is not None and read.finished
    assert read.config == metrics.config and read.final == metrics.final
    assert read.epochs[0]["train_loss"] is None  # no NaN in a file
    evaluated = fresh.read_eval()
    assert evaluated is not None and evaluated["accuracy"] == 0.25 and evaluated["auc"] is None
    verified = fresh.read_verify()
    assert verified is not None and verified["sets"] == [{"num_pairs": 2}]
    assert fresh.read_data_record() == fingerprint
    assert fresh.read_preprocessing() == {"input_shape": [1, 8, 8], "mean": [0.5]}
    assert fresh.read_noise_snapshots() == [{"epoch": 1, "gradient_ratio": 0.5}]
    assert fresh.read_init_from() == source and fresh.init_from.read_text().endswith("}\n")
    assert fresh.log.read_text() == "epoch,step\n1,14\n"
    assert fresh.read_config_values() == {"dataset": "digits", "epochs": 2}
    for path in (fresh.metrics, fresh.eval, fresh.verify, fresh.data, fresh.preprocessing):
        assert path.read_text().endswith("}\n") and "NaN" not in path.read_text()
    written = {path.name for path in run.path.iterdir()}
    assert written <= RUN_FILES


def test_every_path_is_a_file_the_run_folder_names(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    paths = [
        run.format_file,
        run.config,
        run.data,
        run.init_from,
        run.preprocessing,
        run.metrics,
        run.log,
        run.steps,
        run.checkpoints,
        run.tensorboard,
        run.eval,
        run.plots,
        run.embeddings,
        run.verify,
        run.ijb,
        run.noise_snapshots,
    ]
    assert {path.name for path in paths} == RUN_FILES
    assert all(path.parent == tmp_path for path in [*paths, run.lock])


# ------------------------------------------------------------------- older layouts
def test_a_run_of_the_previous_layout_is_read_as_version_1() -> None:
    from marginkit.train.config import load_config

    run = RunFolder(PREVIOUS_LAYOUT)
    assert not run.format_file.exists() and run.format_version == 1 and run.holds_run()
    metrics = run.read_metrics()
    assert metrics is not None and metrics.finished and len(metrics.epochs) == 2
    assert metrics.final["test_accuracy"] == pytest.approx(0.8822, abs=1e-4)
    report = run.read_eval()
    assert report is not None and report["accuracy"] == pytest.approx(0.8822, abs=1e-4)
    analysis = report.analysis()
    assert analysis is not None
    assert analysis["closed_set"]["samples"] == 450
    verification = analysis.section("verification")
    assert verification is not None and 0.5 < verification["auc"] <= 1.0
    assert analysis.section("open_set") is None  # not measured: every class was trained
    config = load_config(run.config)
    assert (config.dataset, config.backbone, config.embedding_dim) == ("digits", "mlp", 8)


def test_an_earlier_versions_percentages_and_section_names_are_upgraded(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    metrics = json.loads((PREVIOUS_LAYOUT / "metrics.json").read_text())
    del metrics["accuracy_unit"]  # the layout before fractions: percent, no unit
    metrics["final"]["test_accuracy"] = 88.0
    run.metrics.write_text(json.dumps(metrics))
    run.eval.write_text(
        json.dumps(
            {
                "split": "test",
                "accuracy": 88.0,
                "analysis": {"open_set": {"auroc": 0.9, "identification": {"rank1": 0.5}}},
            }
        )
    )
    read = run.read_metrics()
    assert read is not None and read.final["test_accuracy"] == pytest.approx(0.88)
    report = run.read_eval()
    assert report is not None and report["accuracy"] == pytest.approx(0.88)
    open_set = report.analysis()["open_set"]  # type: ignore[index]
    assert open_set["watch_list"]["rank1"] == 0.5  # the section's earlier name
    assert open_set.section("unseen_identification") is None  # not measured before 0.2


# ------------------------------------------------------------------ a newer format
def test_a_run_of_a_newer_format_is_refused_with_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(PREVIOUS_LAYOUT, run_dir)
    (run_dir / "format.json").write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    run = RunFolder(run_dir)
    for read in (run.holds_run, run.read_metrics, run.read_eval, run.read_config_values):
        with pytest.raises(RunFolderError) as refused:
            read()
        message = str(refused.value)
        assert len(message.splitlines()) == 1
        assert str(run_dir) in message
        assert f"version {FORMAT_VERSION + 1}" in message and f"up to {FORMAT_VERSION}" in message


@pytest.mark.parametrize(
    "text", ["{not json", '{"format_version": "2"}', "[2]", '{"format_version": 0}']
)
def test_a_damaged_format_file_is_named(tmp_path: Path, text: str) -> None:
    RunFolder(tmp_path).format_file.write_text(text)
    with pytest.raises(RunFolderError, match=r"format\.json: expected"):
        RunFolder(tmp_path).read_metrics()


@pytest.mark.parametrize("text", ["{not json", "[1]", '{"sha256": 5}'])
def test_a_damaged_record_of_the_initial_weights_is_named(tmp_path: Path, text: str) -> None:
    RunFolder(tmp_path).init_from.write_text(text)
    with pytest.raises(RunFolderError, match=r"init_from\.json: expected"):
        RunFolder(tmp_path).read_init_from()


# ------------------------------------------------------------------ eval.json by key
def test_a_figure_missing_from_a_measured_section_is_an_error_not_a_blank() -> None:
    report = EvalReport(
        {"split": "test", "analysis": {"verification": {"eer": 0.1}}}, "RUN/eval.json"
    )
    analysis = report.analysis()
    assert analysis is not None
    verification = analysis.section("verification")
    assert verification is not None and verification["eer"] == 0.1
    where = r"RUN/eval\.json: analysis\.verification"
    with pytest.raises(RunFolderError, match=where + r" has no 'auc'"):
        verification["auc"]
    assert analysis.section("retrieval") is None  # absent: not measured


def test_a_section_of_an_unknown_name_is_refused() -> None:
    report = EvalReport({"analysis": {"verifcation": {"auc": 0.9}}}, "RUN/eval.json")
    with pytest.raises(RunFolderError, match=r"unknown sections \(verifcation\)"):
        report.analysis()


# --------------------------------------------------------------- one owner of the names
def _code_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings, with their lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_run_file_is_named_outside_the_run_folder_module() -> None:
    """Every run file's name is written once, in :mod:`marginkit.runfolder`; elsewhere the
    files are reached through :class:`RunFolder` (prose may name them: docstrings, help and
    messages)."""
    package = Path(marginkit.__file__).parent
    names = {name for name in RUN_FILES if "." in name}  # the folders' names are plain words
    found = [
        f"{path.relative_to(package)}:{line}: {text!r}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "runfolder.py" or path.parent != package
        for line, text in _code_strings(path)
        if any(text == name or text.endswith(f"/{name}") for name in names)
    ]
    assert found == []
