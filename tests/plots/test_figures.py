"""Saving figures and class colours."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from marginkit.plots import save_figure
from marginkit.plots.figures import MAX_LEGEND_CLASSES, add_class_key, class_palette

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figure() -> Figure:
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_save_figure_writes_png_and_svg(tmp_path):
    paths = save_figure(_figure(), tmp_path / "sub" / "curve")
    assert paths == [tmp_path / "sub" / "curve.png", tmp_path / "sub" / "curve.svg"]
    assert paths[0].read_bytes().startswith(PNG_SIGNATURE)
    assert b"<svg" in paths[1].read_bytes()[:2000]


def test_save_figure_drops_an_image_suffix_but_keeps_other_dots(tmp_path):
    assert save_figure(_figure(), tmp_path / "roc.png")[1] == tmp_path / "roc.svg"
    assert save_figure(_figure(), tmp_path / "run.v2")[0] == tmp_path / "run.v2.png"


def test_save_figure_rejects_what_is_not_a_figure(tmp_path):
    with pytest.raises(TypeError, match="fig"):
        save_figure(object(), tmp_path / "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path"):
        save_figure(_figure(), 3)  # type: ignore[arg-type]


def test_palette_gives_distinct_colours_and_a_legend_up_to_twenty_classes():
    palette = class_palette(np.arange(MAX_LEGEND_CLASSES))
    assert palette.legend
    assert len({tuple(color) for color in palette.colors}) == MAX_LEGEND_CLASSES
    np.testing.assert_array_equal(palette.colors_of(np.array([3, 0, 3])), palette.colors[[3, 0, 3]])


def test_palette_beyond_twenty_classes_uses_a_colorbar_not_a_legend():
    palette = class_palette(np.arange(MAX_LEGEND_CLASSES + 1))
    assert not palette.legend
    fig = Figure(layout="constrained")
    axes = fig.subplots()
    add_class_key(fig, axes, palette)
    assert not fig.legends
    colorbar_axes = [a for a in fig.axes if a is not axes]
    assert len(colorbar_axes) == 1
    assert "21 classes" in colorbar_axes[0].get_xlabel()


def test_palette_names_come_from_class_names_and_must_cover_every_class():
    assert class_palette(np.array([1, 2]), ["zero", "one", "two"]).names == ("one", "two")
    with pytest.raises(ValueError, match="class_names"):
        class_palette(np.array([0, 5]), ["a", "b"])


def test_importing_the_plots_package_does_not_import_matplotlib():
    code = "import sys, marginkit.plots; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
