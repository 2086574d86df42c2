"""Processes killed mid-epoch and mid-checkpoint (SIGKILL via MARGINKIT_FAULT) resume to
exactly the weights of an uninterrupted run.

The killed run is a ``marginkit train`` process of its own (it kills itself); its resumption
is ``marginkit train --resume`` in this process (``cli.main``: no second interpreter start),
like the uninterrupted run."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import marginkit.cli as cli
from children import run_cli
from marginkit.train import TrainConfig, fit, latest_checkpoint, load_checkpoint, save_config

CONFIG = {
    "dataset": "digits",
    "backbone": "mlp",
    "embedding_dim": 8,
    "loss": "arcface",
    "loss_args": {"scale": 16.0, "margin": "warmup:0.5:40"},
    "epochs": 3,
    "batch_size": 64,  # 22 steps per epoch on the 1,347 training digits
    "lr": 0.05,
    "threads": 1,
    "log_every": 0,
}


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """Training sets torch's thread count process-wide (``threads: 1``): put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    threads = torch.get_num_threads()
    try:
        out = tmp_path_factory.mktemp("whole") / "run"
        fit(TrainConfig(**CONFIG, out=str(out)), progress=False)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(threads)
    return load_checkpoint(latest_checkpoint(out)).weights  # type: ignore[arg-type]


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    save_config(TrainConfig(**CONFIG), path)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(
    ("fault", "completed"),
    [("step:30", "epoch-0001"), ("checkpoint:2", "epoch-0001")],
    ids=["mid-epoch", "mid-checkpoint"],
)
@pytest.mark.usefixtures("keep_threads")
def test_killed_run_resumes_to_identical_weights(
    tmp_path: Path, uninterrupted: dict[str, torch.Tensor], fault: str, completed: str
) -> None:
    out = tmp_path / "run"
    killed = run_cli(
        "train", "--config", str(config_file(tmp_path)), "--out", str(out), "--quiet", fault=fault
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert latest_checkpoint(out).name == completed  # type: ignore[union-attr]
    if fault.startswith("checkpoint"):
        # the half-written checkpoint is a temporary folder that `latest` never names
        leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
        assert leftovers and all(name.startswith(".epoch-0002.") for name in leftovers)
    assert cli.main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    folder = latest_checkpoint(out)
    assert folder is not None and folder.name == "epoch-0003"
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["epoch-0002", "epoch-0003", "latest"]  # the newest two are kept
    weights = load_checkpoint(folder).weights
    assert weights.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(weights[key], value), key
