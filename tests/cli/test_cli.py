"""The ``marginkit`` command: help, one-line errors (exit 2, nothing left behind), train,
eval and the no-argument comparison on a reduced setting."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from data_writers import write_idx_dataset

import marginkit.cli as cli
import marginkit.train
from children import run_cli
from hang import HANG_LIMIT
from marginkit.cli.flags import flag_name
from marginkit.errors import MarginkitError
from marginkit.registry import BACKBONES, DATASETS, LOSSES
from marginkit.train import TrainConfig
from test_errors import ERROR_CLASSES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_help_answers_without_importing_torch() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "train" in result.stdout and "eval" in result.stdout and "compare" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, marginkit.cli; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )
    assert probe.stdout.strip() == "False"


def test_train_help_documents_loss_arguments(
    in_process: Callable[..., tuple[int, str, str]],
) -> None:
    status, output, _ = in_process("train", "--help")
    assert status == 0
    assert "--loss-arg" in output and "warmup:TARGET:STEPS" in output


def train_actions() -> dict[str, argparse.Action]:
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = commands.choices["train"]
    train.format_help()  # a command's options are added when it is first used
    return {action.dest: action for action in train._actions}


def test_listing_the_commands_imports_no_torch() -> None:
    """The train and compare options come from TrainConfig and the presets, whose packages
    import torch; they load only when those commands are used."""
    code = (
        "import sys, marginkit.cli as cli\n"
        "cli.build_parser().format_help()\n"
        "print('torch' in sys.modules)\n"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_LIMIT, check=True
    )
    assert probe.stdout.strip() == "False"


def test_train_help_shows_every_option_with_help_and_default(
    in_process: Callable[..., tuple[int, str, str]],
) -> None:
    """The 33 flags were copied by hand from TrainConfig, 26 of them without help."""
    actions = train_actions()
    for field in dataclasses.fields(TrainConfig):
        action = actions[field.name]
        assert action.help, field.name
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        if isinstance(default, bool):
            shown = "on" if default else "off"
        else:
            shown = "none" if default in (None, {}) else str(default)
        assert action.help.endswith(f"(default: {shown})"), (field.name, action.help)
    status, output, _ = in_process("train", "--help")
    assert status == 0
    for field in dataclasses.fields(TrainConfig):
        assert flag_name(field.name) in output
    assert output.count("(default:") >= len(dataclasses.fields(TrainConfig))


def test_train_help_comes_from_field_metadata_not_docstrings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rewording or dropping a docstring cannot break ``--help``: the flags, their help and
    the loss-argument table come from the fields' metadata and from data."""
    import marginkit.train.config as config_module

    monkeypatch.setattr(TrainConfig, "__doc__", "")
    monkeypatch.setattr(config_module, "__doc__", "")
    actions = train_actions()
    lr = next(f for f in dataclasses.fields(TrainConfig) if f.name == "lr")
    assert actions["lr"].help == f"{lr.metadata['help']} (default: none)"
    assert actions["loss_args"].option_strings == ["--loss-arg"]
    assert actions["loss_args"].metavar == "NAME=VALUE"
    assert (actions["verify"].metavar, actions["verify"].nargs) == ("FILE", "+")
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    epilog = commands.choices["train"].format_help()
    assert "warmup:TARGET:STEPS|P%[:START]               Warmup" in epilog


def test_help_lists_the_registered_names() -> None:
    actions = train_actions()
    for option, registry in [("dataset", DATASETS), ("backbone", BACKBONES), ("loss", LOSSES)]:
        help_text = actions[option].help
        assert help_text is not None
        assert f"Choices: {', '.join(registry.choices())}." in help_text


def test_flags_parse_as_their_option_types() -> None:
    parse = cli.build_parser().parse_args
    args = parse(["train", "--image-size", "112", "--milestones", "3", "1", "--no-download"])
    assert (args.image_size, args.milestones, args.download) == (112, [3, 1], False)
    args = parse(["train", "--image-size", "112", "96", "--loss-arg", "margin=0.5"])
    assert (args.image_size, args.loss_args) == ([112, 96], ["margin=0.5"])
    assert not hasattr(args, "epochs")  # a flag not given leaves the config file's value


@pytest.mark.parametrize("bug", [ValueError, RuntimeError])
def test_a_bug_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bug: type[Exception]
) -> None:
    """A plain builtin error (not a MarginkitError) is a bug: it keeps its traceback (once,
    any ValueError, bugs included, became a one-line exit 2)."""

    def buggy_fit(*args: object, **kwargs: object) -> None:
        raise bug("an internal bug")

    monkeypatch.setattr(marginkit.train, "fit", buggy_fit)
    with pytest.raises(bug, match="an internal bug"):
        cli.main(["train", "--quiet", "--out", str(tmp_path / "run")])


class _NewError(MarginkitError, RuntimeError):
    """An error class the command line was never told about."""


def _instance(error: type[Exception]) -> tuple[Exception, str]:
    """An instance of ``error`` with a two-line message, and the line the command prints."""
    if error.__name__ == "OutputError":  # (action, path, the OSError)
        return error("write", "out/x", OSError(errno.ENOSPC, "full")), (
            "cannot write out/x: no space left on the device"
        )
    return error(f"{error.__name__}: what was wrong\nmore detail"), (
        f"{error.__name__}: what was wrong"
    )


@pytest.mark.parametrize("error", [*ERROR_CLASSES, _NewError], ids=lambda error: error.__qualname__)
def test_every_marginkit_error_is_one_line_with_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: type[Exception],
) -> None:
    """The command catches the one base class, so an error class added later (or a
    user's subclass) needs no list to be kept up to date."""
    instance, line = _instance(error)

    def refusing_fit(*args: object, **kwargs: object) -> None:
        raise instance

    monkeypatch.setattr(marginkit.train, "fit", refusing_fit)
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--quiet", "--out", str(tmp_path / "run")])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"marginkit: error: {line}\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--verify", "pairs.txt"], "pairs.txt: no such pairs file")],
    ids=["missing-verify-file"],
)
def test_several_processes_refuse_what_they_cannot_do_before_starting_any(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        cli.main([*BASE, "--nproc", "2", "--out", str(out), *extra])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"marginkit: error: {message}") and error.count("\n") == 1
    assert not out.exists()


def assert_one_line_error(
    result: subprocess.CompletedProcess[str] | tuple[int, str, str], *fragments: str
) -> None:
    """Exit status 2 and one line on stderr holding every fragment; ``result`` is a process's
    (:func:`run`) or ``(status, stdout, stderr)`` of ``cli.main`` in this process (the
    ``in_process`` fixture: no interpreter start-up, which the checks of a refusal do not
    need; :func:`run` covers the real process once, in ``test_missing_out_is_an_error``)."""
    if isinstance(result, subprocess.CompletedProcess):
        status, stderr = result.returncode, result.stderr
    else:
        status, _, stderr = result
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("marginkit: error: ")
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


BASE = ["train", "--dataset", "digits", "--epochs", "1", "--quiet", "--threads", "1"]


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--dataset", "imagenet"], ["imagenet"]),
        (["--backbone", "vgg"], ["unknown backbone 'vgg'"]),
        (["--loss", "arcfaces"], ["unknown loss 'arcfaces'"]),
        (["--classes", "0-12"], ["classes", "absent"]),
        (["--label-noise", "1.0"], ["label_noise must be a rate in [0, 1)"]),
        (["--label-noise", "-0.5"], ["label_noise"]),
        (["--loss-arg", "margin"], ["--loss-arg must look like NAME=VALUE"]),
        (["--loss", "arcface", "--loss-arg", "margin=4"], ["margin must lie in"]),
        (["--lr", "nan"], ["lr must be a finite number"]),
        (["--momentum", "nan"], ["momentum must be a finite number"]),
        (["--weight-decay", "inf"], ["weight_decay must be a finite number"]),
        (
            ["--loss", "cosface", "--loss-arg", "margin=pi/0"],
            ["loss argument margin: 'pi/0' divides by zero"],
        ),
    ],
    ids=[
        "dataset",
        "backbone",
        "loss",
        "classes",
        "noise-high",
        "noise-low",
        "loss-arg",
        "loss-range",
        "lr-nan",
        "momentum-nan",
        "weight-decay-inf",
        "loss-arg-pi-over-0",
    ],
)
def test_bad_input_is_one_line_and_leaves_no_folder(
    tmp_path: Path,
    extra: list[str],
    fragments: list[str],
    in_process: Callable[..., tuple[int, str, str]],
) -> None:
    out = tmp_path / "run"
    assert_one_line_error(in_process(*BASE, "--out", str(out), *extra), *fragments)
    assert not out.exists()


def test_data_dir_without_the_files(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    out = tmp_path / "run"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = in_process(
        *BASE,
        "--dataset",
        "mnist",
        "--data-dir",
        str(empty),
        "--out",
        str(out),
        "--backbone",
        "lenetpp",
    )
    assert_one_line_error(result, "missing train-images-idx3-ubyte")
    assert not out.exists()


def test_yaml_unknown_key(tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("dataset: digits\nepochz: 3\n")
    result = in_process("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "unknown key 'epochz'")
    assert not (tmp_path / "run").exists()


def test_a_config_file_that_is_not_utf8(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    """``printf '\\xff\\xfe' > b.yaml; marginkit train --config b.yaml`` was a traceback."""
    config = tmp_path / "b.yaml"
    config.write_bytes(b"\xff\xfe")
    result = in_process("train", "--config", str(config), "--out", str(tmp_path / "y"))
    assert_one_line_error(result, f"config file {config} is not UTF-8 text (byte 0xff")
    assert not (tmp_path / "y").exists()


def test_resume_imports_a_recorded_spec_only_when_confirmed(
    tmp_path: Path,
    foreign_backbone: tuple[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train --resume`` of a run whose config.yaml names a module:callable backbone (maybe
    someone else's folder) imports nothing until --backbone names the same spec."""
    import yaml

    module, imported = foreign_backbone
    out = tmp_path / "run"
    base = ["train", "--dataset", "digits", "--backbone", "mlp", "--embedding-dim", "8"]
    base += ["--epochs", "1", "--max-steps", "2", "--threads", "1", "--quiet", "--out", str(out)]
    assert cli.main(base) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    (out / "config.yaml").write_text(yaml.safe_dump({**config, "backbone": f"{module}:mlp"}))
    resume = ["train", "--out", str(out), "--resume", "--quiet"]
    with pytest.raises(SystemExit) as exited:
        cli.main(resume)
    assert exited.value.code == 2 and not imported.exists()
    error = capsys.readouterr().err
    assert error.endswith(f"confirm with --backbone {module}:mlp\n") and error.count("\n") == 1
    assert cli.main([*resume, "--backbone", f"{module}:mlp"]) == 0 and imported.exists()


def test_missing_out_is_an_error(tmp_path: Path) -> None:
    assert_one_line_error(run_cli(*BASE), "--out")


def test_train_eval_and_occupied_folder(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    """Train and eval as processes of their own; the refusals in this process."""
    out = tmp_path / "run"
    args = [
        *BASE,
        "--out",
        str(out),
        "--loss",
        "cosface",
        "--loss-arg",
        "margin=warmup:0.35:10",
        "--embedding-dim",
        "8",
        "--batch-size",
        "128",
    ]
    trained = run_cli(*args)
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["loss_args"] == {"margin": "warmup:0.35:10"}
    assert metrics["final"]["hyperparameters"]["margin"] == pytest.approx(0.35)
    before = sorted(p.name for p in out.iterdir())
    refused = in_process(*args)
    assert_one_line_error(refused, "already holds a run", "--resume", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == before
    different = in_process(*args[:-2], "--batch-size", "64", "--resume")
    assert_one_line_error(different, "holds a different run", "batch_size")
    evaluated = run_cli("eval", str(out), "--save-embeddings", str(tmp_path / "emb.npz"))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((out / "eval.json").read_text())
    assert report["accuracy"] == pytest.approx(metrics["final"]["test_accuracy"])
    assert (tmp_path / "emb.npz").is_file()
    assert "verification" in evaluated.stdout and "retrieval" in evaluated.stdout
    assert set(report["analysis"]) >= {"closed_set", "geometry", "retrieval", "verification"}
    assert (out / "plots" / "features_3d.png").is_file()
    assert (out / "plots" / "learning_curves.svg").is_file()
    missing = in_process("eval", str(tmp_path / "nothing"))
    assert_one_line_error(missing, "not a run folder")


def test_compare_writes_a_report_and_prints_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "report"
    try:
        status = cli.main(
            ["compare", "--losses", "softmax,arcface,virtual", "--epochs", "1", "--max-steps", "3",
             "--seeds", "1", "--out", str(out), "--quiet"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | test accuracy |")
    assert [line.split(" | ")[0][2:] for line in lines[2:5]] == ["softmax", "arcface", "virtual"]
    assert lines[-1].startswith(f"report: {out / 'report.html'}")
    assert (out / "report.md").is_file() and (out / "runs" / "virtual-seed0").is_dir()


def test_no_arguments_runs_the_digits_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_compare(args):  # type: ignore[no-untyped-def]
        seen.update(vars(args))
        return 0

    monkeypatch.setattr(cli, "_compare", fake_compare)
    assert cli.main([]) == 0
    assert seen["command"] == "compare" and seen["preset"] is None and seen["losses"] is None


def test_list_presets_names_every_preset(in_process: Callable[..., tuple[int, str, str]]) -> None:
    status, output, _ = in_process("compare", "--list-presets")
    assert status == 0
    names = [line.split()[0] for line in output.strip().splitlines()]
    assert "digits" in names


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--losses", "softmax,nope"], ["--losses", "unknown loss 'nope'"]),
        (["--losses", "softmax,,arcface"], ["--losses", "empty name"]),
        (["--preset", "nope"], ["--preset", "unknown preset 'nope'", "digits"]),
        (["--label-noise", "1.5"], ["--label-noise", "rates in [0, 1)"]),
        (["--seeds", "0"], ["--seeds must be an integer >= 1"]),
        (["--epochs", "0"], ["epochs must be an integer >= 1"]),
        (["--dataset", "nope"], ["nope"]),
    ],
)
def test_compare_bad_input_is_a_one_line_error(
    args: list[str],
    fragments: list[str],
    tmp_path: Path,
    in_process: Callable[..., tuple[int, str, str]],
) -> None:
    result = in_process("compare", *args, "--out", str(tmp_path / "r"), "--quiet")
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "r").exists()


# -------------------------------------------------------------- configs that work anywhere
def test_shipped_configs_name_no_folder_outside_the_project() -> None:
    """They used to point at a data folder outside the project, which no user has."""
    from marginkit.train import load_config

    paths = sorted(CONFIGS.glob("*.yaml"))
    assert paths
    for path in paths:
        config = load_config(path)
        assert config.data_dir is None, path
        assert config.cache_dir is None, path
        assert config.out is None or ".." not in Path(config.out).parts, path


def test_readme_config_example_runs_with_data_dir_or_marginkit_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    write_idx_dataset(tmp_path / "data" / "mnist")
    config = str(CONFIGS / "mnist_lenetpp_cosface.yaml")
    quick = ["--epochs", "1", "--quiet"]
    status, _, error = in_process(
        "train", "--config", config, "--data-dir", str(tmp_path / "data" / "mnist"),
        "--out", str(tmp_path / "a"), *quick,
    )  # fmt: skip
    assert status == 0, error
    monkeypatch.setenv("MARGINKIT_DATA", str(tmp_path / "data"))
    status, output, error = in_process(
        "train", "--config", config, "--out", str(tmp_path / "b"), *quick
    )
    assert status == 0, error
    assert "test accuracy" in output


def test_out_in_the_config_counts(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    """The CLI demanded --out although the YAML had out:."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"dataset: digits\nembedding_dim: 8\nepochs: 1\nthreads: 1\nout: {tmp_path / 'run'}\n"
    )
    status, output, error = in_process("train", "--config", str(config), "--quiet")
    assert status == 0, error
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert f"{tmp_path / 'run'}: test accuracy" in output
    # rounded (was "train loss 17.678959150610833"), and --quiet prints nothing else
    assert re.fullmatch(r".*: test accuracy \d+\.\d\d%, train loss \d+\.\d{4}\n", output)
    assert error == ""


def test_eval_data_dir_reads_data_that_moved(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    write_idx_dataset(tmp_path / "mnist")
    out = tmp_path / "run"
    status, _, error = in_process(
        "train", "--dataset", "mnist", "--data-dir", str(tmp_path / "mnist"), "--backbone",
        "mlp", "--embedding-dim", "4", "--epochs", "1", "--threads", "1", "--quiet",
        "--out", str(out),
    )  # fmt: skip
    assert status == 0, error
    (tmp_path / "mnist").rename(tmp_path / "moved")
    status, _, error = in_process("eval", str(out), "--no-analysis", "--quiet")
    assert status == 2 and error.startswith("marginkit: error: ") and "is not a folder" in error
    status, output, error = in_process(
        "eval", str(out), "--no-analysis", "--quiet", "--data-dir", str(tmp_path / "moved")
    )
    assert status == 0, error
    assert f"{out}, epoch 1 (checkpoint {out / 'checkpoints' / 'epoch-0001'})" in output


# --------------------------------------------------------------------- missing extras
@pytest.mark.parametrize("module", ["sklearn", "yaml", "safetensors", "tqdm"])
def test_a_missing_extra_names_what_to_install(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A core-only install died with a bare ``ModuleNotFoundError: sklearn``."""
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--epochs", "1", "--quiet", "--out", str(out)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error == (
        f"marginkit: error: this command needs the {module} package, an optional dependency: "
        'pip install "marginkit[train]"\n'
    )
    assert not out.exists()


def test_eval_without_matplotlib_names_the_plots_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit):
        cli.main(["eval", str(tmp_path)])
    assert 'pip install "marginkit[plots]" (or pass --no-plots)' in capsys.readouterr().err


def test_compare_without_matplotlib_names_the_plots_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exited:
        cli.main(["compare", "--out", str(tmp_path / "r"), "--quiet"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "marginkit: error: compare: the report's figures need matplotlib, an optional "
        'dependency: pip install "marginkit[plots]"\n'
    )
    assert not (tmp_path / "r").exists()


def test_eval_refusals_are_one_line(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    """A split the run's data set lacks, or a batch size below 1, is the user's error."""
    run = str(tmp_path / "run")
    status, _, _ = in_process("train", "--epochs", "1", "--quiet", "--out", run)
    assert status == 0
    status, _, error = in_process("eval", run, "--split", "validation", "--quiet")
    assert status == 2
    assert error == "marginkit: error: the run's data set 'digits' has no validation split\n"
    status, _, error = in_process("eval", run, "--batch-size", "0", "--quiet")
    assert status == 2
    assert error.splitlines()[-1] == (
        "marginkit eval: error: argument --batch-size: expected an int >= 1, got '0'"
    )


def test_marginkit_warnings_are_one_line_and_others_as_python_shows_them() -> None:
    from marginkit.cli import _format_warning
    from marginkit.losses.sanity import MarginWarning

    text = "ArcFace: margin 0.5 leaves no room between 10 classes in 2 dimensions"
    shown = _format_warning(MarginWarning(text), MarginWarning, "registry.py", 48, "line")
    assert shown == f"marginkit: warning: {text}\n"
    other = _format_warning(UserWarning("x"), UserWarning, "a.py", 3, "code")
    assert other.startswith("a.py:3: UserWarning: x")


def test_ijb_refusals_are_one_line(
    tmp_path: Path, in_process: Callable[..., tuple[int, str, str]]
) -> None:
    """A root without the release's meta folder, a meta file missing (named before the
    source is looked at), workers below 0, a set that is not IJB-B or IJB-C."""
    base = ("ijb", str(tmp_path / "no-run"), "--root", str(tmp_path), "--quiet")
    status, _, error = in_process(*base, "--set", "IJBC")
    assert status == 2
    assert error == (
        f"marginkit: error: root: {tmp_path} holds neither meta/ nor IJBC/meta/; expected the "
        "IJBC release as InsightFace's evaluation reads it (IJBC/loose_crop/, IJBC/meta/)\n"
    )
    (tmp_path / "IJBB" / "meta").mkdir(parents=True)
    status, _, error = in_process(*base, "--set", "IJBB")
    assert status == 2
    assert error == (
        f"marginkit: error: {tmp_path}/IJBB/meta/ijbb_face_tid_mid.txt: no such file (a meta "
        "file of the release)\n"
    )
    status, _, error = in_process(*base, "--set", "IJBB", "--workers", "-1")
    assert status == 2
    assert error.splitlines()[-1] == (
        "marginkit ijb: error: argument --workers: expected an int >= 0, got '-1'"
    )
    status, _, error = in_process(*base, "--set", "IJBA")
    assert status == 2 and "argument --set: invalid choice: 'IJBA'" in error
