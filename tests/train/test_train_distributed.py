"""``marginkit train --nproc 2``: two gloo processes on loopback train what one process trains
at the same global batch, write shard-local checkpoints (each rank its rows), resume after
being killed, reshard a checkpoint for another number of processes reading only each rank's
rows, stop at once when a rank dies and within ``--timeout`` when one hangs, end their
process group's threads before they exit, and are stopped with their launcher."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from children import LINEAR_BACKBONE_MODULE
from hang import HANG_LIMIT
from marginkit.train import latest_checkpoint, load_checkpoint
from marginkit.train.checkpoint import whole_weights
from marginkit.train.distributed import (
    Distribution,
    _collective_failure,
    _watch,
    reshard_optimizer_state,
)

#: The backbone module, and a report at exit of the threads each rank still runs then.
PROBE_MODULE = (
    LINEAR_BACKBONE_MODULE
    + """
import atexit
import os


@atexit.register
def report_threads():
    tasks = os.listdir("/proc/self/task")
    names = sorted(open(f"/proc/self/task/{task}/comm").read().strip() for task in tasks)
    rank = os.environ.get("RANK", "-")
    # a file per process: lines of two ranks on one stderr pipe can interleave
    report = os.path.join(os.path.dirname(__file__), f"threads-at-exit-rank-{rank}.txt")
    with open(report, "w") as file:
        file.write(" ".join(names))
"""
)

#: The backbone module, and a record of the class rows each rank reads of a checkpoint's
#: shard files (``checkpoint._take_rows``), in ``$READ_LOG/reads-rank-R.txt``.
READ_PROBE_MODULE = (
    LINEAR_BACKBONE_MODULE
    + """
import os

from marginkit.train import checkpoint

_take = checkpoint._take_rows


def _recorded(file, reader, key, start, stop):
    folder = os.environ.get("READ_LOG")
    if folder:
        rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
        with open(os.path.join(folder, f"reads-rank-{rank}-of-{world}.txt"), "a") as log:
            log.write(f"{file.name} {start} {stop}\\n")
    return _take(file, reader, key, start, stop)


checkpoint._take_rows = _recorded
"""
)

#: 1,347 training digits, batch 200: 7 steps an epoch, the last one of 147 (uneven parts).
OPTIONS = (
    "--dataset", "digits", "--backbone", "tiny_backbones:linear", "--embedding-dim", "8",
    "--loss", "arcface", "--loss-arg", "scale=16", "--loss-arg", "margin=warmup:0.5:50%",
    "--optimizer", "sgd", "--lr", "0.05", "--batch-size", "200", "--threads", "1",
    "--log-every", "0", "--quiet",
)  # fmt: skip


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The children's environment: the test backbone importable, no inherited fault."""
    folder = tmp_path_factory.mktemp("modules")
    (folder / "tiny_backbones.py").write_text(LINEAR_BACKBONE_MODULE)
    (folder / "exit_probe.py").write_text(PROBE_MODULE)
    (folder / "read_probe.py").write_text(READ_PROBE_MODULE)
    source = Path(__file__).resolve().parents[2] / "src"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINKIT_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join([str(source), str(folder)])
    env["OMP_NUM_THREADS"] = "1"
    return env


def train(
    environment: dict[str, str], out: Path, *args: str, **fault: str
) -> subprocess.CompletedProcess[str]:
    env = dict(environment)
    env.update(
        {f"MARGINKIT_FAULT{'_' + k.upper() if k != 'at' else ''}": v for k, v in fault.items()}
    )
    command = [sys.executable, "-m", "marginkit.cli", "train", *OPTIONS, "--out", str(out), *args]
    # a session of its own: a launcher that hangs is killed with its ranks, none left behind
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    ) as launcher:  # fmt: skip
        try:
            stdout, stderr = launcher.communicate(timeout=HANG_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
            pytest.fail(f"marginkit train {' '.join(args)} hung (over {HANG_LIMIT:g} s)")
    return subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr)


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    """The newest checkpoint's backbone and whole head (a shard-local one's assembled)."""
    return whole_weights(load_checkpoint(latest_checkpoint(out)))  # type: ignore[arg-type]


def assert_close(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    """Float32 sums in another order (the batch split over two ranks, the head's normaliser
    combined by all-reduce): equal to a few ulps per step, after 14 steps within 1e-4."""
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.fixture(scope="module")
def one_process(environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    result = train(environment, out, "--epochs", "2")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def two_processes(environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-process run; its backbone (``exit_probe:linear``: the same linear layer, the
    same initial weights) reports the threads each rank still runs at exit."""
    out = tmp_path_factory.mktemp("two") / "run"
    result = train(
        environment, out, "--epochs", "2", "--nproc", "2", "--backbone", "exit_probe:linear"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1  # only rank 0 reports
    return out


def test_two_processes_train_the_one_process_run(
    one_process: Path, two_processes: Path, environment: dict[str, str], monkeypatch
) -> None:
    assert_close(final_weights(one_process), final_weights(two_processes))
    # the epoch's test accuracy (the distributed arg-max) is the whole head's: marginkit eval
    # of the last checkpoint (one process: the head assembled from the shard files)
    import json

    from marginkit.evaluation import evaluate_run

    monkeypatch.syspath_prepend(environment["PYTHONPATH"].split(os.pathsep)[1])
    report = evaluate_run(two_processes, analysis=False, plots=False, backbone="exit_probe:linear")
    metrics = json.loads((two_processes / "metrics.json").read_text())
    assert report["accuracy"] == metrics["final"]["test_accuracy"]
    checkpoint = load_checkpoint(latest_checkpoint(two_processes))  # type: ignore[arg-type]
    state, folder = checkpoint.state, checkpoint.path
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    # shard-local: the backbone alone in weights.safetensors, each rank's rows in its files
    assert not [key for key in checkpoint.weights if key.startswith("head.")]
    assert checkpoint.layout == {
        "num_classes": 10, "rows_per_class": 1, "world_size": 2,
        "shards": [
            {"rank": rank, "classes": classes,
             "head": f"head-rank-0000{rank}-of-00002.safetensors",
             "optimizer": f"optimizer-rank-0000{rank}-of-00002.safetensors"}
            for rank, classes in ((0, [0, 5]), (1, [5, 10]))
        ],
    }  # fmt: skip
    from safetensors.torch import load_file

    for rank in (0, 1):
        head = load_file(folder / f"head-rank-0000{rank}-of-00002.safetensors")
        momenta = load_file(folder / f"optimizer-rank-0000{rank}-of-00002.safetensors")
        assert head["head.weight"].shape == (5, 8)  # 5 of the 10 digits' rows, D = 8
        # SGD momentum: the backbone's (64 -> 8 linear) and the rank's class rows
        assert sorted(tuple(value.shape) for value in momenta.values()) == [(5, 8), (8,), (8, 64)]
    assert (folder / "manifest.json").stat().st_mtime_ns >= max(
        file.stat().st_mtime_ns for file in folder.iterdir()
    )  # the manifest written last


@pytest.fixture(scope="module")
def killed_run(
    environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A 2-process run whose rank 1 is killed (SIGKILL) while the second epoch's checkpoint is
    written, once its own files are, before rank 0's manifest; the launcher stops rank 0.
    Its --timeout is the tests' hang limit: a rank 0 left waiting for the dead rank would
    make ``train`` exceed that limit, and fail, rather than time out."""
    out = tmp_path_factory.mktemp("killed") / "run"
    result = train(
        environment, out, "--epochs", "2", "--nproc", "2", "--timeout", str(HANG_LIMIT),
        "--backbone", "read_probe:linear", at="checkpoint:2", rank="1",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert latest_checkpoint(out).name == "epoch-0001"  # type: ignore[union-attr]
    return out, result


@pytest.fixture
def killed(killed_run: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    """The killed run's folder."""
    return killed_run[0]


def test_a_rank_killed_while_writing_its_shard_leaves_the_finished_checkpoints_intact(
    killed: Path,
) -> None:
    """Epoch 1's checkpoint stays the newest, intact; epoch 2's was never finished: no
    folder of that name, only (unless rank 0, stopped, removed it) its temporary folder
    without a manifest, which a resumed run removes."""
    from marginkit.train.checkpoint import verify_checkpoint

    root = killed / "checkpoints"
    assert verify_checkpoint(root / "epoch-0001")["layout"]["world_size"] == 2
    assert sorted(path.name for path in root.glob("epoch-*")) == ["epoch-0001"]
    assert not [path for path in root.glob(".epoch-0002.*") if (path / "manifest.json").exists()]


def test_a_dead_rank_stops_the_others_at_once(
    killed_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    last = killed_run[1].stderr.strip().splitlines()[-1]
    assert last == (
        "marginkit: error: rank 1 of 2 failed (killed by SIGKILL); the other ranks were stopped"
    )


class _Exited:
    """A stand-in for a child process already exited with ``status`` (None: running)."""

    def __init__(self, status: int | None) -> None:
        self.status = status

    def poll(self) -> int | None:
        return self.status


@pytest.mark.parametrize(
    ("statuses", "named"),
    [
        ((1, -signal.SIGKILL), (1, -signal.SIGKILL)),  # rank 0 failed because rank 1 was killed
        ((-signal.SIGKILL, 1), (0, -signal.SIGKILL)),
        ((None, 3), (1, 3)),
        ((2, 1), (0, 2)),  # no signal: the lowest rank
        ((-signal.SIGTERM, -signal.SIGKILL), (0, -signal.SIGTERM)),
    ],
)
def test_the_watcher_names_the_killed_rank_when_several_are_found_dead(
    statuses: tuple[int | None, ...], named: tuple[int, int]
) -> None:
    children = [_Exited(status) for status in statuses]
    assert _watch(children, poll=0.0, stop=[]) == named  # type: ignore[arg-type]


def test_the_watcher_reports_nothing_when_every_rank_succeeds() -> None:
    assert _watch([_Exited(0), _Exited(0)], poll=0.0, stop=[]) is None  # type: ignore[list-item]


def rows_read(log: Path, world: int) -> dict[int, dict[str, list[tuple[int, int]]]]:
    """The classes each rank of ``world`` read of the 2-process checkpoint's head and
    optimiser files (READ_PROBE_MODULE's log), by rank and kind, merged into ranges."""
    from marginkit.distributed import shard_bounds

    found: dict[int, dict[str, list[tuple[int, int]]]] = {}
    for rank in range(world):
        kinds: dict[str, set[int]] = {"head": set(), "optimizer": set()}
        for line in (log / f"reads-rank-{rank}-of-{world}.txt").read_text().split("\n")[:-1]:
            name, start, stop = line.split()
            kind, saved = name.split("-rank-")[0], int(name.split("-")[-3])
            lo = shard_bounds(10, 2, saved)[0]  # the file's first class; one row a class
            kinds[kind].update(range(lo + int(start), lo + int(stop)))
        found[rank] = {kind: _ranges(sorted(classes)) for kind, classes in kinds.items()}
    return found


def _ranges(classes: list[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for value in classes:
        if ranges and ranges[-1][1] == value:
            ranges[-1] = (ranges[-1][0], value + 1)
        else:
            ranges.append((value, value + 1))
    return ranges


def resume(
    environment: dict[str, str], killed: Path, out: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Resume a copy of the killed run in ``out``, each rank's reads logged in ``out/..``."""
    shutil.copytree(killed, out)  # its lock file may be stale: the stopped rank 0 held it
    log = out.parent / "reads"
    log.mkdir()
    options = ("--resume", "--backbone", "read_probe:linear", *args)  # the killed run's
    return train(dict(environment, READ_LOG=str(log)), out, *options), log


def test_killed_two_process_run_resumes_to_the_same_weights(
    environment: dict[str, str], two_processes: Path, killed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    resumed, log = resume(environment, killed, out)  # the saved config says --nproc 2
    assert resumed.returncode == 0, resumed.stderr
    # the same two processes taking the same steps: bitwise the uninterrupted run
    torch.testing.assert_close(final_weights(two_processes), final_weights(out), rtol=0, atol=0)
    assert not list((out / "checkpoints").glob(".epoch-*"))  # the unfinished one removed
    # each rank read its own classes' rows, weights and momenta, and nothing else
    own = {"head": [(0, 5)], "optimizer": [(0, 5)]}
    assert rows_read(log, 2) == {0: own, 1: {kind: [(5, 10)] for kind in own}}


@pytest.mark.parametrize(
    ("nproc", "classes"),
    [("1", [[(0, 10)]]), ("3", [[(0, 4)], [(4, 7)], [(7, 10)]])],
)
def test_a_checkpoint_of_two_processes_reshards_reading_only_each_ranks_rows(
    environment: dict[str, str],
    one_process: Path,
    killed: Path,
    tmp_path: Path,
    nproc: str,
    classes: list[list[tuple[int, int]]],
) -> None:
    """Resumed on 1 and on 3 processes (resharded: 2 -> 1, 2 -> 3), the run ends with the
    uninterrupted one's weights to float32 tolerance (:func:`assert_close`: the same steps,
    the batch and the normaliser summed in another order), each rank having read only the
    rows of its own classes (3 ranks of 10 classes: 4, 3, 3)."""
    out = tmp_path / "run"
    resumed, log = resume(environment, killed, out, "--nproc", nproc)
    assert resumed.returncode == 0, resumed.stderr
    assert_close(final_weights(one_process), final_weights(out))
    expected = {rank: {"head": own, "optimizer": own} for rank, own in enumerate(classes)}
    assert rows_read(log, int(nproc)) == expected


def test_a_hung_rank_stops_the_run_after_the_timeout(
    environment: dict[str, str], tmp_path: Path
) -> None:
    """Rank 1 hangs at step 3: rank 0 waits --timeout in a collective, then stops naming
    itself and the timeout. 10 s, not less: the same timeout governs the start-up's
    rendezvous, where a busy machine can keep one rank seconds behind the other."""
    result = train(
        environment, tmp_path / "run", "--epochs", "2", "--nproc", "2", "--timeout", "10",
        at="step:3:hang", rank="1",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "rank 0 of 2 stopped" in result.stderr and "--timeout 10 s" in result.stderr
    assert last.startswith("marginkit: error: rank 0 of 2 failed (exit status 2)")


def test_a_closed_pair_after_a_timeout_is_a_collective_failure() -> None:
    # gloo's words for a collective that another rank's timeout cut: one line, exit status 2
    assert _collective_failure(RuntimeError("Application timeout caused pair closure"))
    assert not _collective_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_ranks_end_their_process_group_threads_before_they_exit(
    environment: dict[str, str], two_processes: Path
) -> None:
    """gloo's threads that outlive the process group run into the interpreter's teardown,
    where a rank of a finished run could abort (SIGABRT) now and then: none may be left.
    (The 2-process run's backbone, ``exit_probe``, reported them; only that run uses it.)"""
    folder = Path(environment["PYTHONPATH"].split(os.pathsep)[1])  # where exit_probe.py is
    reports = {path.stem[-1]: path.read_text() for path in folder.glob("threads-at-exit-rank-*")}
    assert sorted(rank for rank in reports if rank != "-") == ["0", "1"]
    left = {
        rank: names for rank, names in reports.items() if "gloo" in names or "tcpstore" in names
    }
    assert not left


def _processes(parent: int) -> list[int]:
    """The PIDs of ``parent``'s child processes (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_a_terminated_launcher_stops_its_ranks_and_removes_its_folder(
    environment: dict[str, str], tmp_path: Path
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    out, log = tmp_path / "run", tmp_path / "launcher.log"
    env = {**environment, "TMPDIR": str(temporary)}
    command = [
        sys.executable, "-m", "marginkit.cli", "train", *OPTIONS, "--epochs", "1000",
        "--nproc", "2", "--out", str(out),
    ]  # fmt: skip
    ranks: list[int] = []
    with log.open("w") as output:
        launcher = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + HANG_LIMIT  # a backstop: the loop waits for events
        # up: both ranks started, the group joined (rank 0 wrote the run's config.yaml)
        while len(ranks) < 2 or not (out / "config.yaml").exists():
            assert launcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the ranks did not start within {HANG_LIMIT} s"
            time.sleep(0.2)
            ranks = _processes(launcher.pid)
        assert list(temporary.glob("marginkit-launch-*"))  # the launcher's folder, in use
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=HANG_LIMIT)
        # the launcher joined its ranks before it exited: none may still run (a rank not yet
        # reaped by init can linger a moment as a zombie, which _running does not count)
        deadline = time.monotonic() + HANG_LIMIT
        while any(_running(pid) for pid in ranks) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = [pid for pid in ranks if _running(pid)]
    finally:
        for pid in [launcher.pid, *ranks]:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=HANG_LIMIT)
    assert not survivors, log.read_text()
    assert not list(temporary.glob("marginkit-launch-*"))
    assert launcher.returncode == 128 + signal.SIGTERM
    last = log.read_text().strip().splitlines()[-1]
    assert last == "marginkit: stopped by SIGTERM; the ranks were stopped"


def test_ranks_take_contiguous_parts_of_a_batch() -> None:
    parts = [Distribution(rank, 3).rows(8) for rank in range(3)]
    assert [(p.start, p.stop) for p in parts] == [(0, 3), (3, 6), (6, 8)]
    assert [Distribution(rank, 3).rows(2) for rank in range(3)][2] == slice(2, 2)


def test_optimizer_state_reshards_by_class_rows() -> None:
    backbone = torch.arange(4.0)  # parameter 0: the same on every rank
    rows = torch.arange(10.0).reshape(5, 2)  # parameter 1: the class rows, 3 + 2
    old = [
        {"state": {0: {"momentum_buffer": backbone}, 1: {"momentum_buffer": rows[:3]}},
         "param_groups": [{"params": [0, 1]}]},
        {"state": {0: {"momentum_buffer": backbone}, 1: {"momentum_buffer": rows[3:]}},
         "param_groups": [{"params": [0, 1]}]},
    ]  # fmt: skip
    new = reshard_optimizer_state(old, {1}, slice(1, 4))
    assert torch.equal(new["state"][1]["momentum_buffer"], rows[1:4])
    assert new["state"][0]["momentum_buffer"] is backbone


def test_a_subcenter_shards_optimizer_rows_are_its_classes_k_rows() -> None:
    from marginkit.distributed import ShardedHead
    from marginkit.losses import build
    from marginkit.train.distributed import _class_rows

    subcenter = ShardedHead(build("subcenter", 10, 4, subcenters=3), rank=1, world_size=3)
    assert _class_rows(subcenter) == slice(12, 21)  # classes [4, 7), 3 rows each
    arcface = ShardedHead(build("arcface", 10, 4), rank=1, world_size=3)
    assert _class_rows(arcface) == slice(4, 7)


def test_a_last_batch_too_small_to_split_is_dropped_and_a_tiny_batch_refused() -> None:
    from marginkit.train import ConfigError, TrainConfig
    from marginkit.train.loop import _epoch_length

    config = TrainConfig(batch_size=4)
    # one process: only a lone last sample is dropped (batch norm), as always
    assert _epoch_length(config, 9) == (4, 2)
    assert _epoch_length(config, 10) == (4, 3)
    # two processes: a last batch giving a process fewer than 2 rows is dropped
    assert _epoch_length(config, 10, world=2) == (4, 2)  # last 2: parts of 1 and 1
    assert _epoch_length(config, 11, world=2) == (4, 2)  # last 3: parts of 2 and 1
    assert _epoch_length(config, 12, world=2) == (4, 3)
    assert _epoch_length(config, 13, world=2) == (4, 3)  # last 1: a part of none
    with pytest.raises(ConfigError, match="batch_size: 4 rows cannot give each of 3"):
        _epoch_length(config, 100, world=3)


# ------------------------------------------------------------ streamed data (--workers)
@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 small JPEGs of three identities (a streamed ``folder`` data set)."""
    from data_writers import write_image_folder

    folder = tmp_path_factory.mktemp("faces")
    write_image_folder(folder, classes=3, per_class=8, size=(20, 24), extension="jpg")
    return folder


#: The backbone module, and a record of every image a data set's workers decode, by rank.
DECODE_PROBE_MODULE = (
    LINEAR_BACKBONE_MODULE
    + """
import os

from marginkit.data import stream

_decode = stream.ImageFileDataset.__getitem__


def _recorded(self, index):
    rank = os.environ.get("RANK", "-")
    with open(os.path.join(os.path.dirname(__file__), f"decoded-rank-{rank}.txt"), "a") as file:
        file.write(f"{index}\\n")
    return _decode(self, index)


stream.ImageFileDataset.__getitem__ = _recorded
"""
)


def test_two_processes_decoding_their_own_rows_train_the_in_memory_run(
    environment: dict[str, str], faces: Path, tmp_path: Path
) -> None:
    """A 2-process run with --workers 1 decodes each training image once an epoch over both
    ranks (each rank only its rows of each step, augmented with the whole step's draws) and
    ends with bitwise the weights of the same run with the images in memory (each rank
    taking its rows of the whole batch, as every run did before)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "decode_probe.py").write_text(DECODE_PROBE_MODULE)
    probed = dict(environment, PYTHONPATH=os.pathsep.join([str(probe), environment["PYTHONPATH"]]))
    streamed_options = (
        "--dataset", "folder", "--data-dir", str(faces), "--image-size", "12", "12",
        "--augment", "--batch-size", "6", "--accumulate", "2", "--epochs", "2", "--nproc", "2",
    )  # fmt: skip
    runs = {}
    for workers, backbone in (("0", "tiny_backbones:linear"), ("1", "decode_probe:linear")):
        out = tmp_path / f"workers-{workers}"
        options = (*streamed_options, "--workers", workers, "--backbone", backbone)
        result = train(probed, out, *options)
        assert result.returncode == 0, result.stderr
        runs[workers] = final_weights(out)
    assert runs["0"].keys() == runs["1"].keys()
    for key, value in runs["0"].items():
        assert torch.equal(value, runs["1"][key]), key
    # 24 images (no held-out split), 2 epochs: each rank decoded its half of every step
    decoded = [(probe / f"decoded-rank-{rank}.txt").read_text().split() for rank in (0, 1)]
    assert [len(indices) for indices in decoded] == [24, 24]
    assert sorted(decoded[0] + decoded[1]) == sorted([str(index) for index in range(24)] * 2)


# ------------------------------------------------------- verification (--verify)
def _pairs_bin(path: Path, pairs: int, size: int) -> Path:
    """A ``.bin`` of random ``size`` x ``size`` PNG pairs, matched and mismatched in turn."""
    import io

    import numpy as np
    from PIL import Image

    from marginkit.data.binfile import encode_bin

    rng = np.random.default_rng(3)
    images = []
    for _ in range(2 * pairs):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, "PNG")
        images.append(buffer.getvalue())
    path.write_bytes(encode_bin(images, [index % 2 == 0 for index in range(pairs)]))
    return path


def test_two_processes_verify_as_one_process_scores_their_checkpoints(
    environment: dict[str, str], faces: Path, tmp_path: Path
) -> None:
    """--verify under --nproc 2: each rank embeds its share of the pair images and rank 0
    scores them; the last epoch's figures equal marginkit verify's (one process) on its
    checkpoint, and the best checkpoint holds the whole head and gives its figure again. The
    MLP's batch norm: every rank embeds with rank 0's running statistics, the checkpoint's."""
    import json

    from marginkit.verify import verify_run

    pairs = _pairs_bin(tmp_path / "pairs.bin", pairs=11, size=12)  # 22 images: 11 a rank
    out = tmp_path / "run"
    result = train(
        environment, out, "--dataset", "folder", "--data-dir", str(faces),
        "--image-size", "12", "12", "--batch-size", "8", "--epochs", "3", "--nproc", "2",
        "--verify", str(pairs), "--verify-every", "2", "--backbone", "mlp",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    last = metrics["epochs"][-1]
    report = verify_run(out, [str(pairs)], progress=False)  # the last epoch's checkpoint
    assert report["step"] == last["verification"]["step"] == 9
    scored = report["sets"][0]["flip"]
    assert last["verification"]["sets"]["pairs"] == {
        "accuracy": scored["ten_fold"]["mean"],
        "accuracy_std": scored["ten_fold"]["std"],
        "auc": scored["auc"],
    }
    best = metrics["final"]["verification_best"]
    report = verify_run(out, [str(pairs)], checkpoint="best", progress=False)
    assert report["step"] == best["step"]
    assert report["sets"][0]["flip"]["ten_fold"]["mean"] == best["accuracy"]
    best_checkpoint = load_checkpoint(out / "checkpoints" / best["checkpoint"])
    assert best_checkpoint.layout is not None  # shard-local: each rank wrote its rows
    whole = whole_weights(best_checkpoint)
    assert whole["head.weight"].shape == (3, 8)  # every class row, from both ranks' files
