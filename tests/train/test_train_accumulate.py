"""``--accumulate N``: N micro-batches of ``--batch-size B`` per optimiser step train the run of
``--batch-size N*B`` (every head without statistics of the batch, on one process and on two);
the heads with such statistics follow the documented rule (each micro-batch's, folded in one
after another); a run killed in an accumulating epoch resumes to the same weights; ``N < 1``
is refused with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import marginkit.cli as cli
from children import LINEAR_BACKBONE_MODULE, run_cli
from hang import HANG_LIMIT
from marginkit.data import DataBundle
from marginkit.train import (
    TrainConfig,
    TrainResult,
    build_models,
    fit,
    latest_checkpoint,
    load_checkpoint,
    save_config,
)
from marginkit.train.accumulation import micro_batch_sizes, micro_batches, step_rows
from marginkit.train.distributed import Distribution

#: The backbone module, and a count of the DDP gradient all-reduces each rank made, written
#: at exit (one file per rank): marginkit's communication hook wrapped before DDP takes it.
PROBE_MODULE = (
    LINEAR_BACKBONE_MODULE
    + """
import atexit
import os

import marginkit.train.distributed as distributed

calls = []
hook = distributed._sum_gradients


def counted(state, bucket):
    calls.append(1)
    return hook(state, bucket)


counted.__annotations__.update(hook.__annotations__)
distributed._sum_gradients = counted


@atexit.register
def report_calls():
    rank = os.environ.get("RANK", "-")
    with open(os.path.join(os.path.dirname(__file__), f"all-reduces-rank-{rank}.txt"), "w") as f:
        f.write(str(len(calls)))
"""
)

#: The heads whose loss, gradients and buffers depend on no statistic of the batch: their
#: accumulated run is the large batch's (Cam-softmax's adaptive c and sub-centre ArcFace's
#: counts included, see marginkit.train.accumulation).
WITHOUT_STATISTICS = (
    "softmax",
    "lsoftmax",
    "sphereface",
    "normface",
    "cosface",
    "arcface",
    "combined",
    "virtual",
    "camsoftmax",
    "subcenter",
    "magface",
)
#: The heads with statistics of the batch, and the buffers that hold them.
STATISTICS = {
    "adacos": ("adaptive_scale",),
    "adaface": ("batch_mean", "batch_std"),
    "curricularface": ("t",),
}

#: 1,347 training digits in steps of 3 x 50 = 150: 9 steps an epoch, the last of 147 samples
#: (3 micro-batches of 49).
OPTIONS = {
    "dataset": "digits",
    "embedding_dim": 8,
    "epochs": 1,
    "optimizer": "sgd",
    "lr": 0.05,
    "threads": 1,
    "log_every": 0,
}


@pytest.fixture(scope="module")
def backbones(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding the test backbones' modules, on ``sys.path``."""
    folder = tmp_path_factory.mktemp("modules")
    (folder / "accumulate_backbones.py").write_text(LINEAR_BACKBONE_MODULE)
    (folder / "accumulate_probe.py").write_text(PROBE_MODULE)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def state(result: TrainResult) -> dict[str, torch.Tensor]:
    """The backbone's and the head's state (parameters and buffers) of a ``fit`` result."""
    backbone, head = result.backbone, result.head
    return {
        **{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
        **{f"head.{k}": v for k, v in head.state_dict().items()},
    }


def train(
    bundle: DataBundle, loss: str, batch_size: int, accumulate: int, **more: object
) -> TrainResult:
    config = TrainConfig(
        **OPTIONS,  # type: ignore[arg-type]
        backbone="accumulate_backbones:linear",
        loss=loss,
        batch_size=batch_size,
        accumulate=accumulate,
        **more,  # type: ignore[arg-type]
    )
    return fit(config, bundle=bundle, progress=False)


# ------------------------------------------------------------------- micro-batches
def test_a_step_is_cut_into_micro_batches_of_the_batch_size() -> None:
    assert micro_batch_sizes(150, 50) == [50, 50, 50]  # a full step of 3
    assert micro_batch_sizes(147, 50) == [49, 49, 49]  # an epoch's last step: even parts
    assert micro_batch_sizes(67, 64) == [34, 33]  # none larger than the batch size
    assert micro_batch_sizes(30, 50) == [30]  # fewer samples than a micro-batch
    assert micro_batch_sizes(3, 2) == [3]  # a part of one row would stop batch norm
    assert micro_batch_sizes(9, 4, world=2) == [5, 4]  # each part >= 2 rows a process


def test_each_process_takes_its_rows_of_each_micro_batch() -> None:
    rank_one = Distribution(rank=1, world=2)
    rows = step_rows(20, 10, rank_one)  # rank 1's rows of two micro-batches of 10
    assert rows.tolist() == [5, 6, 7, 8, 9, 15, 16, 17, 18, 19]
    inputs, labels = rows.float().unsqueeze(1), rows  # (10, 1), (10,): the rows it reads
    parts = micro_batches(inputs, labels, 20, 10, rank_one)
    assert [part.labels.tolist() for part in parts] == [[5, 6, 7, 8, 9], [15, 16, 17, 18, 19]]
    assert [part.share for part in parts] == [0.5, 0.5]  # of the step's 20 samples
    assert step_rows(147, 50, Distribution(rank=0, world=3)).tolist() == [
        *range(0, 17), *range(49, 66), *range(98, 115)
    ]  # fmt: skip
    whole_inputs, whole_labels = torch.arange(20.0).unsqueeze(1), torch.arange(20)
    (whole,) = micro_batches(whole_inputs, whole_labels, 20, 20, Distribution())
    assert whole.share is None and torch.equal(whole.inputs, whole_inputs)  # the loss as it is


# ---------------------------------------------------------------- the large batch
@pytest.mark.parametrize("loss", WITHOUT_STATISTICS)
@pytest.mark.usefixtures("backbones")
def test_accumulated_micro_batches_train_the_large_batch(digits: DataBundle, loss: str) -> None:
    accumulated = train(digits, loss, 50, 3)
    large = train(digits, loss, 150, 1)
    assert accumulated.history[-1]["step"] == large.history[-1]["step"] == 9
    first, second = state(accumulated), state(large)
    assert first.keys() == second.keys()
    for key, value in first.items():
        if value.is_floating_point():  # float32 sums in another order: a few ulps a step
            torch.testing.assert_close(value, second[key], rtol=1e-5, atol=1e-5, msg=key)
        else:  # the step counter (one per optimiser step), sub-centre counts
            assert torch.equal(value, second[key]), key
    # not the run of the micro-batches' size: the equality above means something
    small = state(train(digits, loss, 50, 1))
    assert max((small[k] - second[k]).abs().max().item() for k in small if "weight" in k) > 0.01


# -------------------------------------------------------------- batch statistics
@pytest.mark.parametrize("loss", sorted(STATISTICS))
@pytest.mark.usefixtures("backbones")
def test_statistics_of_the_batch_are_each_micro_batchs_in_turn(
    digits: DataBundle, loss: str
) -> None:
    """The documented rule (docs/single-runs.md): in an optimiser step of 2 micro-batches the
    head folds the first micro-batch's statistics into its running values, then the second's,
    as two training forward passes of the initial head would; it counts one step."""
    result = train(digits, loss, 64, 2, max_steps=1)
    head = result.head
    assert int(head.step) == 1
    # the first step's two micro-batches, by the initial networks (the same seed)
    assert result.config is not None
    backbone, reference = build_models(result.config, digits)
    reference.set_total_steps(1).train()
    inputs, labels = digits.train.tensors()  # type: ignore[union-attr]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for rows in (order[:64], order[64:128]):
            reference.loss_and_correct(backbone(inputs[rows]), labels[rows])
    large = train(digits, loss, 128, 1, max_steps=1).head
    for name in STATISTICS[loss]:
        assert torch.equal(getattr(head, name), getattr(reference, name)), name
        assert not torch.equal(getattr(head, name), getattr(large, name)), name


# ------------------------------------------------------------------------ resume
CONFIG = {
    **OPTIONS,
    "backbone": "mlp",
    "loss": "arcface",
    "loss_args": {"scale": 16.0, "margin": "warmup:0.5:10"},
    "epochs": 2,
    "batch_size": 64,
    "accumulate": 2,  # 11 steps an epoch, the last of 67 samples (2 micro-batches)
}


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``cli.main`` in this process: its exit status and what it wrote on stderr."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exited:  # argparse's way out, for some refusals
        status = int(exited.code or 0)
    return status, capsys.readouterr().err


def test_a_run_killed_in_an_accumulating_epoch_resumes_to_the_same_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = tmp_path / "whole"
    fit(TrainConfig(**CONFIG, out=str(whole)), progress=False)  # type: ignore[arg-type]
    out, config = tmp_path / "run", tmp_path / "config.yaml"
    save_config(TrainConfig(**CONFIG), config)  # type: ignore[arg-type]
    killed = run_cli(
        "train", "--config", str(config), "--out", str(out), "--quiet", fault="step:15"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert latest_checkpoint(out).name == "epoch-0001"  # type: ignore[union-attr]
    assert "accumulate: 2" in (out / "config.yaml").read_text()
    # another number of micro-batches is another run
    status, error = main(capsys, "train", "--out", str(out), "--resume", "--accumulate", "3")
    assert status == 2 and error.endswith("holds a different run: accumulate (2 there, 3 now)\n")
    assert main(capsys, "train", "--out", str(out), "--resume", "--quiet") == (0, "")
    weights = load_checkpoint(latest_checkpoint(out)).weights  # type: ignore[arg-type]
    expected = load_checkpoint(latest_checkpoint(whole)).weights  # type: ignore[arg-type]
    assert weights.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(weights[key], value), key


# ------------------------------------------------------------------ bad values
@pytest.mark.parametrize("value", ["0", "-2"])
def test_fewer_than_one_micro_batch_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    out = tmp_path / "run"
    status, error = main(capsys, "train", f"--accumulate={value}", "--out", str(out))
    assert status == 2
    assert error == f"marginkit: error: accumulate must be an integer >= 1; got {value}\n"
    assert not out.exists()


# ------------------------------------------------------------------ two processes
def test_two_processes_accumulate_without_summing_each_micro_batch(
    backbones: Path, tmp_path: Path
) -> None:
    """``--nproc 2 --accumulate 2 --batch-size 100`` trains the one-process run of batch 200,
    and DDP sums the gradients over the ranks once a step (``no_sync`` before the last
    micro-batch): 7 all-reduces of the linear backbone's one bucket on each rank."""
    source = Path(__file__).resolve().parents[2] / "src"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINKIT_FAULT")}
    env.update(PYTHONPATH=os.pathsep.join([str(source), str(backbones)]), OMP_NUM_THREADS="1")
    options = ["--dataset", "digits", "--embedding-dim", "8", "--loss", "arcface", "--epochs"]
    options += ["1", "--optimizer", "sgd", "--lr", "0.05", "--threads", "1", "--quiet"]
    runs = {
        "two": ["--nproc", "2", "--batch-size", "100", "--accumulate", "2"],
        "one": ["--batch-size", "200"],
    }
    for name, args in runs.items():
        command = [sys.executable, "-m", "marginkit.cli", "train", *options, *args]
        command += ["--backbone", "accumulate_probe:linear", "--out", str(tmp_path / name)]
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=HANG_LIMIT
        )
        assert result.returncode == 0, result.stderr
    for rank in (0, 1):
        assert (backbones / f"all-reduces-rank-{rank}.txt").read_text() == "7"
    from marginkit.train.checkpoint import whole_weights

    # the 2-process checkpoint is shard-local: its head assembled from the ranks' files
    two = whole_weights(load_checkpoint(latest_checkpoint(tmp_path / "two")))  # type: ignore[arg-type]
    one = load_checkpoint(latest_checkpoint(tmp_path / "one")).weights  # type: ignore[arg-type]
    assert two.keys() == one.keys()
    for key in one:  # float32 sums in another order, as in test_train_distributed
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
