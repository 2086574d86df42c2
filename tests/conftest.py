"""Shared pytest set-up: every test starts from the same global random state."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Seed torch's global generator, so a test's outcome does not depend on test order."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader reads ``$MARGINKIT_DATA`` (which ``.ci/run`` exports for the real-data
    tests, through ``data_writers.SHARED_DATA``); every test starts without it, so what it
    reads does not depend on the environment. Tests of the variable set it themselves."""
    monkeypatch.delenv("MARGINKIT_DATA", raising=False)
