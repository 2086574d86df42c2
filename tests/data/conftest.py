"""Fixtures for the data set tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_writers import write_idx_dataset


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A folder holding a miniature gzip-compressed MNIST-format data set."""
    write_idx_dataset(tmp_path / "idx", compress=True)
    return tmp_path / "idx"
