"""What the training tests run in child processes: ``marginkit`` on the command line
(:func:`run_cli`), and a backbone module without batch norm for runs whose processes or
micro-batches must not differ in batch-norm statistics (:data:`LINEAR_BACKBONE_MODULE`)."""

from __future__ import annotations

import os
import subprocess
import sys

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
