"""Run folders that cannot lose work: resume that finds the newest
intact checkpoint and deletes nothing finished, verified checkpoints, one-line OS errors,
the run lock, the umask, and a ``state.pt`` that cannot run code."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import marginkit.cli as cli
import marginkit.runfolder as runfolder
import marginkit.train.loop as loop
from marginkit.evaluation import evaluate_run
from marginkit.runfolder import FORMAT_VERSION, RunFolder
from marginkit.train import (
    CheckpointError,
    OutputError,
    RunFolderError,
    TrainConfig,
    fit,
    latest_checkpoint,
    load_checkpoint,
)
from marginkit.train.checkpoint import MANIFEST, STATE, WEIGHTS


def config(out: Path | None, **changes: object) -> TrainConfig:
    values: dict[str, object] = {
        "dataset": "digits",
        "backbone": "mlp",
        "embedding_dim": 8,
        "loss": "cosface",
        "epochs": 3,
        "batch_size": 128,
        "lr": 0.05,
        "log_every": 0,
        "threads": 1,
        "out": None if out is None else str(out),
    }
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


def stop_after(epoch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``fit`` stop ("get killed") right after the checkpoint of ``epoch``."""
    original = loop.save_checkpoint

    def save_then_stop(run_dir, backbone, head, state):  # type: ignore[no-untyped-def]
        path = original(run_dir, backbone, head, state)
        if state["epoch"] == epoch:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)


@pytest.fixture
def interrupted(tmp_path: Path, digits: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A 3-epoch run stopped after its epoch-2 checkpoint (epoch-0001 and epoch-0002 kept)."""
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        stop_after(2, patch)
        with pytest.raises(KeyboardInterrupt):
            fit(config(out), bundle=digits, progress=False)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0001",
        "epoch-0002",
        "latest",
    ]
    yield out


def resume(out: Path, digits: object) -> tuple[loop.TrainResult, str]:
    stream = io.StringIO()
    result = fit(config(out), bundle=digits, resume=True, stream=stream)
    return result, stream.getvalue()


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marginkit: error: "), lines
    return lines[0]


# -------------------------------------------------------------------------- resume
@pytest.mark.parametrize("pointer", ["missing", "garbage", "names-an-older-one"])
def test_resume_without_a_good_latest_continues_from_the_newest_epoch(
    interrupted: Path, digits: object, pointer: str
) -> None:
    """Without ``latest`` a resume restarted at epoch 1 and deleted ``epoch-0005``."""
    latest = interrupted / "checkpoints" / "latest"
    if pointer == "missing":
        latest.unlink()
    elif pointer == "garbage":
        latest.write_bytes(b"\x00\xff epoch-9")
    else:
        latest.write_text("epoch-0001\n")
    result, said = resume(interrupted, digits)
    assert "resuming" in said and "after epoch 2" in said
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert sorted(p.name for p in (interrupted / "checkpoints").iterdir()) == [
        "epoch-0002",
        "epoch-0003",
        "latest",
    ]


def test_resume_of_a_folder_without_a_run_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--resume --out <typo>`` trained a default digits run and exited 0."""
    typo = tmp_path / "runz"
    with pytest.raises(RunFolderError, match="holds no run"):
        fit(config(typo), resume=True, progress=False)
    assert not typo.exists()
    line = one_line_error(capsys, ["train", "--out", str(typo), "--resume", "--quiet"])
    assert "--resume" in line and str(typo) in line and "holds no run" in line
    assert not typo.exists()


def test_resume_on_other_data_is_refused_naming_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A resumed run accepted other data (``--data-dir`` elsewhere) with no check."""
    from data_writers import write_idx_dataset

    write_idx_dataset(tmp_path / "a")
    write_idx_dataset(tmp_path / "b", seed=1)  # same names and sizes, other pixels
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    out = tmp_path / "run"
    mnist = {"dataset": "mnist", "epochs": 2, "download": False}
    with pytest.MonkeyPatch.context() as patch:
        stop_after(1, patch)
        with pytest.raises(KeyboardInterrupt):
            fit(config(out, data_dir=str(tmp_path / "a"), **mnist), progress=False)
    assert json.loads((out / "data.json").read_text())["source"] == str(tmp_path / "a")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError) as caught:
        fit(config(out, data_dir=str(tmp_path / "b"), **mnist), resume=True, progress=False)
    assert str(caught.value) == (
        f"--resume: the data differ from the run's in {out} (data_dir: {tmp_path / 'a'} there, "
        f"{tmp_path / 'b'} now; changed: t10k-images-idx3-ubyte, train-images-idx3-ubyte); "
        "resume it on its own data or start a new run"
    )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    argv = ["train", "--out", str(out), "--resume", "--data-dir", str(tmp_path / "b"), "--quiet"]
    assert "--resume: the data differ from the run's" in one_line_error(capsys, argv)
    # the same files, moved: resumed
    stream = io.StringIO()
    moved = config(out, data_dir=str(tmp_path / "moved"), **mnist)
    result = fit(moved, resume=True, stream=stream)
    assert "resuming" in stream.getvalue() and len(result.history) == 2


def test_a_run_without_a_data_record_resumes_and_says_it_is_unchecked(
    interrupted: Path, digits: object
) -> None:
    """An older run (no data.json) resumes with a warning, then records its data."""
    (interrupted / "data.json").unlink()
    result, said = resume(interrupted, digits)
    assert "records no fingerprint of its data (no data.json: an older run)" in said
    assert len(result.history) == 3 and (interrupted / "data.json").is_file()


def test_a_run_of_the_previous_layout_resumes_and_is_then_of_this_format(
    interrupted: Path, digits: object
) -> None:
    """A run written before the format version (no format.json: version 1) resumes."""
    assert RunFolder(interrupted).format_version == FORMAT_VERSION  # recorded at the start
    RunFolder(interrupted).format_file.unlink()
    assert RunFolder(interrupted).format_version == 1
    result, said = resume(interrupted, digits)
    assert "resuming" in said and len(result.history) == 3
    assert RunFolder(interrupted).format_version == FORMAT_VERSION


def test_a_run_of_a_newer_format_is_neither_resumed_nor_measured(
    interrupted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    RunFolder(interrupted).format_file.write_text('{"format_version": 99}\n')
    before = {path: path.stat().st_mtime_ns for path in interrupted.rglob("*")}
    for argv in (
        ["train", "--dataset", "digits", "--out", str(interrupted), "--resume"],
        ["eval", str(interrupted)],
        ["verify", str(interrupted), "--pairs", "lfw.bin"],
    ):
        line = one_line_error(capsys, argv)
        assert f"run folder {interrupted} is of format version 99" in line, argv
        assert f"versions up to {FORMAT_VERSION}" in line
    assert {path: path.stat().st_mtime_ns for path in interrupted.rglob("*")} == before


# --------------------------------------------------------------- damaged checkpoints
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_bits(path: Path, count: int = 2000) -> None:
    data = bytearray(path.read_bytes())
    generator = torch.Generator().manual_seed(0)
    positions = torch.randint(0, len(data) * 8, (count,), generator=generator).tolist()
    for position in positions:
        data[position // 8] ^= 1 << (position % 8)
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated-state": (STATE, truncate, "bytes,"),
    "truncated-weights": (WEIGHTS, truncate, "bytes,"),
    "flipped-weights": (WEIGHTS, flip_bits, "checksum mismatch"),
    "no-manifest": (MANIFEST, lambda path: path.unlink(), "missing"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_checkpoint_is_named_in_eval(
    interrupted: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated file gave a traceback; 2,000 flipped bits gave "34 %" and exit 0."""
    file, spoil, what = DAMAGE[damage]
    spoil(interrupted / "checkpoints" / "epoch-0002" / file)
    expected = f"checkpoint epoch-0002 is damaged ({file}: "
    with pytest.raises(CheckpointError) as caught:
        evaluate_run(interrupted, analysis=False)
    message = str(caught.value)
    assert message.startswith(expected) and what in message
    assert "the newest intact one is epoch-0001 (--checkpoint epoch-0001)" in message
    line = one_line_error(capsys, ["eval", str(interrupted), "--no-analysis", "--quiet"])
    assert expected in line
    report = evaluate_run(interrupted, analysis=False, checkpoint="epoch-0001")
    assert report["epoch"] == 1 and report["checkpoint"].endswith("epoch-0001")


def test_resume_skips_a_damaged_checkpoint_and_keeps_it_aside(
    interrupted: Path, digits: object
) -> None:
    flip_bits(interrupted / "checkpoints" / "epoch-0002" / WEIGHTS)
    result, said = resume(interrupted, digits)
    assert (
        "checkpoint epoch-0002 is damaged (weights.safetensors: checksum mismatch); "
        "the newest intact one is epoch-0001"
    ) in said
    assert "after epoch 1" in said
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    names = sorted(p.name for p in (interrupted / "checkpoints").iterdir())
    assert names == ["damaged-epoch-0002", "epoch-0002", "epoch-0003", "latest"]


def test_state_is_loaded_without_running_code(interrupted: Path, tmp_path: Path) -> None:
    """``torch.load(weights_only=False)`` ran pickled code from a run folder."""
    witness = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {witness}",))

    folder = interrupted / "checkpoints" / "epoch-0002"
    state = torch.load(folder / STATE, weights_only=True)
    state["history"].append(Payload())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    (folder / STATE).write_bytes(buffer.getvalue())
    manifest = json.loads((folder / MANIFEST).read_text())  # a consistent, hostile folder
    import hashlib

    manifest["files"][STATE] = {
        "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        "bytes": len(buffer.getvalue()),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"checkpoint epoch-0002 is damaged \(state.pt: "):
        load_checkpoint(folder)
    assert not witness.exists()


def replace_state(folder: Path, state: object) -> None:
    """Write ``state`` as the checkpoint's ``state.pt``, with a manifest that matches it."""
    import hashlib

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    (folder / STATE).write_bytes(data)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][STATE] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / MANIFEST).write_text(json.dumps(manifest))


WRONG_STATES = {
    "a-list": (lambda state: [1, 2, 3], "not a training state: a list, not a mapping"),
    "no-step": (lambda state: {"epoch": 2, "foo": 2}, "not a training state: no step"),
    "text-epoch": (lambda state: {**state, "epoch": "2"}, "epoch is a str, not a count"),
    "no-optimizer": (
        lambda state: {k: v for k, v in state.items() if k != "optimizer"},
        "not a training state: no optimizer state",
    ),
    "optimizer-of-another-run": (
        lambda state: {**state, "optimizer": {"state": {}, "param_groups": []}},
        "its optimizer state does not fit the run, loaded state dict has a different number",
    ),
    "short-generator": (
        lambda state: {**state, "generator": torch.zeros(7, dtype=torch.uint8)},
        "a malformed generator state, Expected a CPUGeneratorImplState of size",
    ),
}


@pytest.mark.parametrize("wrong", WRONG_STATES)
def test_a_state_of_the_wrong_structure_is_one_line(
    interrupted: Path, digits: object, wrong: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid pickle of the wrong structure as ``state.pt`` (its manifest matching): a
    KeyError or AttributeError traceback on ``train --resume``."""
    folder = interrupted / "checkpoints" / "epoch-0002"
    change, why = WRONG_STATES[wrong]
    replace_state(folder, change(torch.load(folder / STATE, weights_only=True)))
    before = sorted(p.relative_to(interrupted) for p in interrupted.rglob("*"))
    expected = "checkpoint epoch-0002 is damaged (state.pt: "
    with pytest.raises(CheckpointError) as caught:
        fit(config(interrupted), bundle=digits, resume=True, progress=False)
    assert str(caught.value).startswith(expected) and why in str(caught.value)
    argv = ["train", "--dataset", "digits", "--backbone", "mlp", "--embedding-dim", "8"]
    argv += ["--loss", "cosface", "--epochs", "3", "--batch-size", "128", "--lr", "0.05"]
    argv += ["--log-every", "0", "--threads", "1", "--quiet", "--out", str(interrupted)]
    line = one_line_error(capsys, [*argv, "--resume"])
    assert line.startswith(f"marginkit: error: {expected}") and why in line
    assert sorted(p.relative_to(interrupted) for p in interrupted.rglob("*")) == before


# ---------------------------------------------------------------- OS errors, one line
def fail_writes_from_epoch(epoch: int, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file write fails with ``code`` once the checkpoint of ``epoch`` begins."""
    original_save, original_write = loop.save_checkpoint, runfolder._write_all
    failing = {"on": False}

    def save(run_dir, backbone, head, state):  # type: ignore[no-untyped-def]
        failing["on"] = failing["on"] or state["epoch"] >= epoch
        return original_save(run_dir, backbone, head, state)

    def write(descriptor: int, data: bytes) -> None:
        if failing["on"]:
            raise OSError(code, os.strerror(code))
        original_write(descriptor, data)

    monkeypatch.setattr(loop, "save_checkpoint", save)
    monkeypatch.setattr(runfolder, "_write_all", write)


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
    ],
    ids=["full-disk", "read-only", "permission"],
)
def test_write_errors_are_one_line_and_keep_the_previous_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    cause: str,
) -> None:
    """A full disk gave SafetensorError / "basic_ios::clear: iostream error" tracebacks."""
    out = tmp_path / "run"
    fail_writes_from_epoch(2, code, monkeypatch)
    argv = ["train", "--dataset", "digits", "--backbone", "mlp", "--embedding-dim", "8"]
    argv += ["--epochs", "3", "--threads", "1", "--quiet", "--out", str(out)]
    line = one_line_error(capsys, argv)
    assert line.startswith(f"marginkit: error: cannot write {out / 'checkpoints'}")
    assert line.endswith(f": {cause}")
    monkeypatch.undo()
    assert latest_checkpoint(out).name == "epoch-0001"  # type: ignore[union-attr]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001", "latest"]
    assert not (out / runfolder.LOCK).exists()  # released on the way out


def test_out_under_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = one_line_error(
        capsys, ["train", "--epochs", "1", "--quiet", "--out", str(blocker / "run")]
    )
    assert line == (
        f"marginkit: error: cannot create folder {blocker / 'run'}: "
        "a part of the path is a file, not a folder"
    )
    line = one_line_error(capsys, ["train", "--epochs", "1", "--quiet", "--out", str(blocker)])
    assert line == f"marginkit: error: out folder {blocker} exists and is not a folder"


def test_out_on_a_read_only_file_system_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    out = tmp_path / "run"
    line = one_line_error(capsys, ["train", "--epochs", "1", "--quiet", "--out", str(out)])
    assert line == f"marginkit: error: cannot create folder {out}: read-only file system"


def test_save_embeddings_under_a_file_is_one_line(
    interrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    target = blocker / "emb.npz"
    argv = ["eval", str(interrupted), "--no-analysis", "--quiet", "--save-embeddings", str(target)]
    line = one_line_error(capsys, argv)
    assert line == (
        f"marginkit: error: cannot create folder {blocker}: it exists and is not a folder"
    )
    with pytest.raises(OutputError):
        evaluate_run(interrupted, analysis=False, save_embeddings=target)


# -------------------------------------------------------------------------- the lock
HOLD = """
import sys
from pathlib import Path
from marginkit.runfolder import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # held until the test kills it, however long the test takes
"""


def test_a_second_training_into_a_held_folder_is_refused_and_a_stale_lock_taken_over(
    tmp_path: Path, digits: object
) -> None:
    """Two trainings into one folder: one crashed, the other overwrote it."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=rf"in use by another training \(PID {holder.pid}"):
            fit(config(out, epochs=1), bundle=digits, progress=False)
        with pytest.raises(RunFolderError, match=rf"PID {holder.pid}"):
            fit(config(out, epochs=1), bundle=digits, resume=True, progress=False)
        assert [p.name for p in out.iterdir()] == [runfolder.LOCK]
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, stale
        holder.communicate()  # waits, and closes its pipes
    assert (out / runfolder.LOCK).read_text().strip() == str(holder.pid)
    result = fit(config(out, epochs=1), bundle=digits, progress=False)
    assert result.history and latest_checkpoint(out) is not None
    assert not (out / runfolder.LOCK).exists()


def test_the_lock_is_held_while_training(tmp_path: Path, digits: object) -> None:
    out = tmp_path / "run"
    seen = []
    original = loop.save_checkpoint

    def save(run_dir, backbone, head, state):  # type: ignore[no-untyped-def]
        seen.append(runfolder.lock_holder(run_dir))
        return original(run_dir, backbone, head, state)

    loop.save_checkpoint = save
    try:
        fit(config(out, epochs=1), bundle=digits, progress=False)
    finally:
        loop.save_checkpoint = original
    assert seen == [str(os.getpid())]


# ------------------------------------------------------------------------- the umask
@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def test_files_respect_the_umask(tmp_path: Path, digits: object, umask: None) -> None:
    """Every file was written mode 0600 through mkstemp, whatever the umask."""
    out = tmp_path / "run"
    fit(config(out, epochs=1), bundle=digits, progress=False)
    evaluate_run(out, analysis=False, save_embeddings=out / "embeddings.npz")
    paths = [out, *out.rglob("*")]
    assert {p.name for p in paths} >= {"config.yaml", "metrics.json", WEIGHTS, "eval.json"}
    for path in paths:
        expected = 0o750 if path.is_dir() else 0o640
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_lock_file_of_a_finished_run_is_gone(tmp_path: Path, digits: object) -> None:
    out = tmp_path / "run"
    fit(config(out, epochs=1), bundle=digits, progress=False)
    assert runfolder.lock_holder(out) is None
    assert not (out / runfolder.LOCK).exists()


# ------------------------------------------------- --overwrite and folders of no run
def test_overwrite_refuses_a_run_folder_holding_the_users_files(
    tmp_path: Path, digits: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """``echo x > RUN/notes.txt; mkdir RUN/analysis; train --overwrite --out RUN`` deleted
    them with the run."""
    out = tmp_path / "run"
    fit(config(out, epochs=1), bundle=digits, progress=False)
    (out / "notes.txt").write_text("x\n")
    (out / "analysis").mkdir()
    (out / "analysis" / "table.csv").write_text("a,b\n")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    argv = ["train", "--dataset", "digits", "--backbone", "mlp", "--embedding-dim", "8"]
    argv += ["--threads", "1", "--quiet", "--overwrite", "--out", str(out)]
    line = one_line_error(capsys, argv)
    assert line == (
        f"marginkit: error: --overwrite: out folder {out} holds files marginkit did not write "
        "(analysis/, notes.txt) besides its run; move them away or choose another folder"
    )
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    # without --overwrite, the hint says what --overwrite would need
    refused = one_line_error(capsys, [*argv[:-3], "--out", str(out)])
    assert "already holds a run; pass --resume" in refused
    assert "--overwrite to replace it once analysis/, notes.txt (not marginkit's)" in refused
    # moved away: --overwrite replaces the run, an interrupted write's temporary file too
    (out / "notes.txt").unlink()
    (out / "analysis" / "table.csv").unlink()
    (out / "analysis").rmdir()
    (out / ".metrics.json.0123456789ab").write_text("{")
    fit(config(out, epochs=1), bundle=digits, overwrite=True, progress=False)
    assert not (out / ".metrics.json.0123456789ab").exists()


def test_a_folder_of_no_run_is_refused_with_and_without_overwrite_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mkdir d; touch d/x; train --out d`` said to use --overwrite, which was then refused."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "x").touch()
    argv = ["train", "--dataset", "digits", "--threads", "1", "--quiet", "--out", str(folder)]
    expected = (
        f"out folder {folder} holds files marginkit did not write (x) and holds no run "
        "(no config.yaml); choose another folder"
    )
    assert one_line_error(capsys, argv) == f"marginkit: error: {expected}"
    assert one_line_error(capsys, [*argv, "--overwrite"]) == (
        f"marginkit: error: --overwrite: {expected}"
    )
    assert [p.name for p in folder.iterdir()] == ["x"]


def test_a_run_that_never_started_is_replaced_only_with_overwrite(
    tmp_path: Path, digits: object
) -> None:
    """Only marginkit's files and no config.yaml: "already holds a run" was wrong."""
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    with pytest.raises(RunFolderError, match=r"holds no run \(no config.yaml\), only files of one"):
        fit(config(out, epochs=1), bundle=digits, progress=False)
    fit(config(out, epochs=1), bundle=digits, overwrite=True, progress=False)
    assert (out / "config.yaml").is_file()


def test_a_trained_and_evaluated_run_holds_only_marginkits_files(
    tmp_path: Path, digits: object
) -> None:
    out = tmp_path / "run"
    fit(config(out, epochs=1), bundle=digits, progress=False)
    evaluate_run(out, analysis=False, save_embeddings=out / "embeddings.npz")
    assert runfolder.foreign_entries(runfolder.run_entries(out)) == []
