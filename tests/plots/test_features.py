"""2-D and 3-D feature pictures: files, labels, drawn data against independent values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.collections import PathCollection
from sklearn.decomposition import PCA

from marginkit.plots import build_features_2d, build_features_3d, features_2d, features_3d


def _clusters(classes: int = 4, per_class: int = 25, dim: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 5
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def _scatter(axes) -> PathCollection:
    (collection,) = [c for c in axes.collections if isinstance(c, PathCollection)]
    return collection


def test_features_2d_writes_png_and_svg(tmp_path):
    embeddings, labels = _clusters()
    paths = features_2d(embeddings, labels, np.eye(4, 2) + 0.1, tmp_path / "f2d", normalized=True)
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_features_2d_legend_titles_labels_and_rays():
    embeddings, labels = _clusters()
    weights = np.array([[2.0, 0.0], [0.0, -3.0], [1.0, 1.0], [-1.0, 0.5]])
    fig = build_features_2d(
        torch.tensor(embeddings),
        torch.tensor(labels),
        torch.tensor(weights),
        normalized=True,
        class_names=["a", "b", "c", "d"],
    )
    raw, circle = fig.axes[:2]
    assert fig.get_suptitle() == "2-D features by class (rays: directions of the class weights W_c)"
    assert raw.get_title() == "Raw features"
    assert circle.get_title() == "Projected onto the unit circle"
    assert "feature 1" in raw.get_xlabel()
    assert "‖x‖" in circle.get_xlabel()
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == ["a", "b", "c", "d", "class-weight direction"]
    for axes in (raw, circle):
        for index, weight in enumerate(weights):
            (ray,) = [line for line in axes.lines if line.get_gid() == f"weight-ray-{index}"]
            tip = np.array([ray.get_xdata()[1], ray.get_ydata()[1]])
            np.testing.assert_allclose(tip / np.linalg.norm(tip), weight / np.hypot(*weight))
            np.testing.assert_allclose([ray.get_xdata()[0], ray.get_ydata()[0]], [0.0, 0.0])


def test_features_2d_draws_every_point_and_the_normalised_ones_on_the_circle():
    embeddings, labels = _clusters()
    fig = build_features_2d(embeddings, labels, None, normalized=True)
    raw, circle = fig.axes[:2]
    raw_points = _scatter(raw).get_offsets()
    order = np.lexsort(raw_points.T)
    np.testing.assert_allclose(raw_points[order], embeddings[np.lexsort(embeddings.T)])
    expected = torch.nn.functional.normalize(torch.tensor(embeddings), dim=1).numpy()
    drawn = _scatter(circle).get_offsets()
    np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(expected, axis=0), atol=1e-12)


def test_features_2d_gives_each_class_one_colour():
    embeddings, labels = _clusters()
    fig = build_features_2d(embeddings, labels)
    collection = _scatter(fig.axes[0])
    points, colours = collection.get_offsets(), collection.get_facecolors()  # (N, 2), (N, 4)
    drawn_labels = np.array(
        [labels[np.flatnonzero((embeddings == point).all(axis=1))[0]] for point in points]
    )
    per_class = {int(k): np.unique(colours[drawn_labels == k], axis=0) for k in range(4)}
    assert all(len(c) == 1 for c in per_class.values())
    assert len({tuple(c[0]) for c in per_class.values()}) == 4
    # the legend marker of each class has that colour
    handles = fig.legends[0].legend_handles
    for k in range(4):
        np.testing.assert_allclose(handles[k].get_color()[:3], per_class[k][0][:3])


def test_features_2d_single_panel_without_normalisation():
    embeddings, labels = _clusters()
    fig = build_features_2d(embeddings, labels)
    assert [a.get_title() for a in fig.axes] == ["Raw features"]


@pytest.mark.parametrize(
    ("embeddings", "labels", "weights", "match"),
    [
        (np.zeros((5, 3)), np.zeros(5, dtype=int), None, "embeddings must have 2 columns"),
        (np.ones((5, 2)), np.zeros(4, dtype=int), None, "labels has 4 entries"),
        (np.ones((5, 2)), np.arange(5), np.ones((3, 2)), r"labels must lie in \[0, 3\)"),
        (np.ones((5, 2)), np.zeros(5, dtype=int), np.ones((3, 4)), "weights must have 2"),
        (np.ones((5, 2)), np.zeros(5, dtype=int), np.zeros((2, 2)), "weights row 0"),
        (np.full((5, 2), np.nan), np.zeros(5, dtype=int), None, "embeddings contains NaN"),
    ],
)
def test_features_2d_bad_input_names_the_argument(embeddings, labels, weights, match):
    with pytest.raises(ValueError, match=match):
        build_features_2d(embeddings, labels, weights)


def test_features_2d_rejects_float_labels():
    with pytest.raises(TypeError, match="labels"):
        build_features_2d(np.ones((3, 2)), np.zeros(3))


def test_features_3d_direct_points_are_the_normalised_embeddings(tmp_path):
    embeddings, labels = _clusters(dim=3)
    fig = build_features_3d(embeddings, labels)
    (axes,) = [a for a in fig.axes if a.name == "3d"]
    drawn = np.stack(_scatter(axes)._offsets3d, axis=1)  # (N, 3)
    expected = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    np.testing.assert_allclose(np.sort(drawn, axis=0), np.sort(expected, axis=0), atol=1e-12)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0", "1", "2", "3"]
    assert axes.get_xlabel() == "axis 1"
    paths = features_3d(embeddings, labels, tmp_path / "f3d")
    assert all(p.stat().st_size > 1000 for p in paths)


def test_features_3d_projects_wide_embeddings_by_pca_onto_the_sphere():
    embeddings, labels = _clusters(classes=5, dim=12, seed=3)
    fig = build_features_3d(embeddings, labels)
    (axes,) = [a for a in fig.axes if a.name == "3d"]
    collection = _scatter(axes)
    drawn = np.stack(collection._offsets3d, axis=1)  # (N, 3) in drawing order
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    reference = PCA(n_components=3).fit(unit)
    projected = reference.transform(unit)
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    order = np.random.default_rng(0).permutation(len(unit))
    for column in range(3):  # principal axes are defined up to sign
        sign = np.sign(drawn[:, column] @ projected[order, column])
        np.testing.assert_allclose(drawn[:, column], sign * projected[order, column], atol=1e-9)
    explained = reference.explained_variance_ratio_.sum()
    assert f"{100 * explained:.0f}% of the variance" in axes.get_title()
    assert axes.get_xlabel() == "PC 1"


def test_features_3d_bad_input():
    with pytest.raises(ValueError, match="at least 3 columns"):
        build_features_3d(np.ones((4, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="labels has 3 entries"):
        build_features_3d(np.ones((4, 3)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="embeddings row 1 has zero norm"):
        build_features_3d(np.array([[1.0, 0, 0], [0, 0, 0]]), np.array([0, 1]))
