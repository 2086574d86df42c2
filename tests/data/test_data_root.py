"""``$MARGINKIT_DATA``: the loader's folder of data sets by name, and where the tests of the
real data sets look."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from data_writers import write_idx_dataset

from hang import HANG_LIMIT
from marginkit.data import DATA_ENVIRONMENT_VARIABLE, DataError, data_root, load_dataset


def test_loader_reads_the_data_set_folder_under_marginkit_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, train_y, _, _ = write_idx_dataset(tmp_path / "mnist")
    monkeypatch.setenv(DATA_ENVIRONMENT_VARIABLE, str(tmp_path))
    assert data_root() == tmp_path
    bundle = load_dataset("mnist", download=False, cache_dir=tmp_path / "cache", progress=False)
    assert torch.equal(bundle.train_labels, torch.from_numpy(train_y).long())
    assert not (tmp_path / "cache").exists()
    # --data-dir wins over the variable
    write_idx_dataset(tmp_path / "other", train_count=30)
    assert len(load_dataset("mnist", data_dir=tmp_path / "other").train) == 30


def test_without_the_data_set_under_marginkit_data_the_cache_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENVIRONMENT_VARIABLE, str(tmp_path / "elsewhere"))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=rf"{cache / 'mnist'}: missing .* and download=False"):
        load_dataset("mnist", download=False, cache_dir=cache, progress=False)
    monkeypatch.setenv(DATA_ENVIRONMENT_VARIABLE, "")
    assert data_root() is None


def test_real_data_tests_take_their_folder_from_marginkit_data(tmp_path: Path) -> None:
    """They used to look only at one folder beside the project, and skipped elsewhere."""
    probe = "import data_writers; print(data_writers.SHARED_DATA)"
    tests_data = str(Path(__file__).parent)
    found = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tests_data,
        env={"MARGINKIT_DATA": str(tmp_path), "PATH": ""},
        timeout=HANG_LIMIT,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(tmp_path)


def test_ci_exports_marginkit_data() -> None:
    script = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "export MARGINKIT_DATA=" in script
