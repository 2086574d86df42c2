"""What the training tests run in child processes: ``marginkit`` on the command line
(:func:`run_cli`), worker ranks' records (:func:`rank_records`), and a backbone module without
batch norm for runs whose processes or micro-batches must not differ in batch-norm statistics
(:data:`LINEAR_BACKBONE_MODULE`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hang import HANG_LIMIT

#: A backbone without batch norm (whose statistics would be per rank or per micro-batch):
#: 64 pixels -> D, as ``--backbone MODULE:linear``.
LINEAR_BACKBONE_MODULE = """
import math
from torch import nn


def linear(input_shape, embedding_dim):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), embedding_dim))
"""


def run_cli(*args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m marginkit.cli ARGS`` with no fault planted but ``fault``
    (``$MARGINKIT_FAULT``, the trainer's fault injection), its output captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINKIT_FAULT")}
    if fault is not None:
        env["MARGINKIT_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "marginkit.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_LIMIT,
    )


def rank_records(processes: list[subprocess.Popen[bytes]], out: Path) -> list[Any]:
    """Wait for worker ranks (HANG_LIMIT s in all) that write ``out/log{rank}.txt`` and, on
    success, ``out/rank{rank}.json``; their records in rank order. A rank that hangs or fails
    fails the test with the tail of every rank's log."""
    world = len(processes)
    deadline = time.monotonic() + HANG_LIMIT
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail(f"the {world} ranks did not finish within {HANG_LIMIT} s")
    logs = "\n".join((out / f"log{rank}.txt").read_text()[-3000:] for rank in range(world))
    assert [process.returncode for process in processes] == [0] * world, logs
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(world)]
