"""Rows on the unit sphere (marginkit.metrics.sphere.normalize_rows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marginkit.metrics.sphere import normalize_rows


def test_rows_come_back_unit_in_the_type_given() -> None:
    rows = np.array([[3.0, 4.0], [0.0, -2.0]], dtype=np.float32)
    unit = normalize_rows(rows)
    assert isinstance(unit, np.ndarray) and unit.dtype == np.float32
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, -1.0]])
    tensor = normalize_rows(torch.tensor([[1e-30, 0.0]], dtype=torch.float64))
    assert torch.equal(tensor, torch.tensor([[1.0, 0.0]], dtype=torch.float64))


def test_a_zero_row_is_refused_or_kept() -> None:
    rows = np.array([[1.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="embeddings row 1 has zero norm"):
        normalize_rows(rows, "embeddings")
    kept = normalize_rows(rows, "embeddings", keep_zero=True)
    np.testing.assert_allclose(kept, [[2**-0.5, 2**-0.5], [0.0, 0.0]])
