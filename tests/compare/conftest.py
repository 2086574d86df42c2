"""A tiny comparison grid on the digits (a few steps per run), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from grids import tiny_spec

from marginkit.compare import GridResult, run_grid


@pytest.fixture(scope="session")
def tiny_grid(tmp_path_factory: pytest.TempPathFactory) -> GridResult:
    import torch

    threads = torch.get_num_threads()
    out: Path = tmp_path_factory.mktemp("grid") / "report"
    try:
        return run_grid(tiny_spec(), out, progress=False)
    finally:
        torch.set_num_threads(threads)
