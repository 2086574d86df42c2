"""RUN/preprocessing.json: written by fit, read back; older runs have none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marginkit.data import DataBundle, DataError
from marginkit.runfolder import PREPROCESSING
from marginkit.train import TrainConfig, fit
from marginkit.train.preprocessing import read_preprocessing


def test_fit_records_the_inputs_normalisation(
    fake_image_bundle: DataBundle, tmp_path: Path
) -> None:
    """The fake bundle has no bundle-level statistics: they come from its training split."""
    config = TrainConfig(
        backbone="mlp", embedding_dim=4, epochs=1, max_steps=1, batch_size=32, out=str(tmp_path)
    )
    fit(config, bundle=fake_image_bundle, progress=False)
    record = json.loads((tmp_path / PREPROCESSING).read_text())
    assert record["input_shape"] == [1, 8, 8] and record["channels"] == "L"
    assert record["mean"] == [0.5] and record["std"] == [0.25]
    found = read_preprocessing(tmp_path)
    assert found is not None and found.input_shape == (1, 8, 8) and found.mean == (0.5,)


def test_a_run_without_the_file_reads_none_and_a_broken_one_is_named(tmp_path: Path) -> None:
    assert read_preprocessing(tmp_path) is None
    (tmp_path / PREPROCESSING).write_text("{not json")
    with pytest.raises(DataError, match=r"preprocessing.json: expected JSON"):
        read_preprocessing(tmp_path)
    record = {"input_shape": [3, 4, 4], "mean": [0.1], "std": [1, 1, 1]}
    (tmp_path / PREPROCESSING).write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"preprocessing.json: .*mean: expected 3 finite values"):
        read_preprocessing(tmp_path)
