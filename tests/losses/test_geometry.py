"""The geometry object: one set of rules per geometry, shared by both paths of every head."""

from __future__ import annotations

import pytest
import torch

from marginkit.losses import available, build
from marginkit.losses.geometry import GEOMETRIES

from .runs import RUN_STEPS

EXPECTED = {
    "softmax": "unnormalized",
    "lsoftmax": "unnormalized",
    "sphereface": "weight_normalized",
    "normface": "normalized",
    "cosface": "normalized",
    "arcface": "normalized",
    "combined": "normalized",
    "virtual": "unnormalized",
    "camsoftmax": "normalized",
    "adacos": "normalized",
    "curricularface": "normalized",
    "subcenter": "normalized",
    "magface": "normalized",
    "adaface": "normalized",
}


@pytest.mark.parametrize("name", available())
def test_every_head_names_its_geometry(name: str) -> None:
    head = build(name, num_classes=5, embedding_dim=3)
    assert head.geometry == EXPECTED[name]
    assert head.margin_geometry is GEOMETRIES[EXPECTED[name]]


def test_camsoftmax_geometry_follows_normalize() -> None:
    assert build("camsoftmax", 5, 3, normalize=False).geometry == "unnormalized"
    assert build("camsoftmax", 5, 3, normalize=True).geometry == "normalized"


def test_rows_and_radial_factor_of_each_geometry() -> None:
    embeddings = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)  # norms 5 and 0
    target_weight = torch.tensor([[0.0, 2.0], [1.0, 0.0]], dtype=torch.float64)  # norms 2, 1
    expected_radial = {
        "normalized": [10.0, 0.0],  # s, 0 without a direction
        "weight_normalized": [5.0, 0.0],  # ||x||
        "unnormalized": [10.0, 0.0],  # ||W_y|| ||x||
    }
    for name, geometry in GEOMETRIES.items():
        rows = geometry.rows(embeddings, 10.0 if geometry.normalized_embeddings else None)
        cosine, radial = geometry.target_cosine_and_radial(rows, target_weight)
        torch.testing.assert_close(cosine, torch.tensor([0.8, 0.0], dtype=torch.float64))
        torch.testing.assert_close(radial, torch.tensor(expected_radial[name], dtype=radial.dtype))


@pytest.mark.parametrize("name", available())
def test_radial_factor_is_the_scale_or_the_norm(name: str) -> None:
    head = build(name, num_classes=5, embedding_dim=3).set_total_steps(RUN_STEPS)
    expected = head.hyperparameters()["scale"] if head.geometry == "normalized" else 7.0
    assert head.radial_factor(7.0) == expected
