"""Shared pytest set-up: every test starts from the same global random state."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Seed torch's global generator, so a test's outcome does not depend on test order."""
    torch.manual_seed(0)
