"""The package as a user gets it: a wheel installed in a fresh virtual environment, away
from the repository, runs ``marginkit``.

Slow (it builds a venv and installs torch and the ``train`` extra from the configured package
index); ``.ci/run`` runs it. ``MARGINKIT_TORCH`` picks the torch requirement as in
``scripts/setup.sh``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hang import HANG_LIMIT

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=HANG_LIMIT,
    )


def checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_marginkit(tmp_path: Path) -> None:
    away = tmp_path / "away"  # nowhere near the repository
    away.mkdir()
    checked(run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist",
                ROOT, cwd=away))  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("marginkit-*.whl")
    base = getattr(sys, "_base_executable", sys.executable)
    checked(run(base, "-m", "venv", tmp_path / "venv", cwd=away))
    python = tmp_path / "venv" / "bin" / "python"
    marginkit = tmp_path / "venv" / "bin" / "marginkit"
    pip = [python, "-m", "pip", "install", "-q"]
    checked(run(*pip, os.environ.get("MARGINKIT_TORCH", "torch==2.13.0"), cwd=away))
    checked(run(*pip, wheel, cwd=away))
    where = checked(run(python, "-c", "import marginkit; print(marginkit.__file__)", cwd=away))
    assert str(tmp_path / "venv") in where.stdout and str(ROOT) not in where.stdout
    assert "train" in checked(run(marginkit, "--help", cwd=away)).stdout
    # the core alone: the losses work, and the command says which extra it needs
    checked(run(python, "-c", "import torch, marginkit.losses as L; "
                "L.build('arcface', num_classes=3, embedding_dim=2)(torch.randn(2, 2), "
                "torch.tensor([0, 1])).backward()", cwd=away))  # fmt: skip
    core = run(marginkit, "train", "--epochs", "1", "--out", away / "run", cwd=away)
    assert core.returncode == 2 and "Traceback" not in core.stderr
    assert 'pip install "marginkit[train]"' in core.stderr
    assert not (away / "run").exists()
    # with the train extra: the main command trains, writes a run and evaluates it
    checked(run(*pip, f"{wheel}[train]", cwd=away))
    trained = checked(run(marginkit, "train", "--epochs", "1", "--threads", "1", "--out",
                          away / "run", cwd=away))  # fmt: skip
    assert "test accuracy" in trained.stdout
    evaluated = checked(run(marginkit, "eval", away / "run", "--no-plots", "--quiet", cwd=away))
    assert "epoch 1" in evaluated.stdout
