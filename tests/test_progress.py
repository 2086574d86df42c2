"""Progress with an ETA: a bar on a terminal, lines in a log, nothing when quiet."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from marginkit.progress import Progress, format_seconds


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_n_steps_with_the_eta() -> None:
    stream = io.StringIO()
    with Progress(100, "decoding images", stream=stream, every=25) as bar:
        for _ in range(100):
            bar.update(postfix="ok")
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["25/100", "50/100", "75/100", "100/100"]
    assert all("ETA" in line for line in lines[:-1]) and "ETA" not in lines[-1]
    assert lines[0].startswith("decoding images 25/100 (25 %) ") and lines[0].endswith(", ok")


def test_batches_that_skip_the_multiples_still_report() -> None:
    stream = io.StringIO()
    with Progress(1000, "embedding test", stream=stream) as bar:
        for start in range(0, 1000, 64):
            bar.update(min(64, 1000 - start))
    lines = stream.getvalue().splitlines()
    assert 8 <= len(lines) <= 11 and lines[-1].startswith("embedding test 1,000/1,000")


def test_a_terminal_gets_a_bar_and_quiet_gets_nothing() -> None:
    pytest.importorskip("tqdm")
    terminal = Terminal()
    with Progress(50, "training", stream=terminal, every=10) as bar:
        assert bar.interactive
        for _ in range(50):
            bar.update()
        bar.write("epoch 1/1 done")
    shown = terminal.getvalue()
    assert "training" in shown and "50/50" in shown and "epoch 1/1 done" in shown
    quiet = io.StringIO()
    with Progress(50, "training", stream=quiet, enabled=False) as bar:
        for _ in range(50):
            bar.update()
        bar.write("epoch 1/1 done")
    assert quiet.getvalue() == ""


def test_eta_and_seconds() -> None:
    bar = Progress(10, "x", enabled=False)
    assert bar.eta() is None
    bar.update(5)
    assert bar.eta() is not None and bar.eta() >= 0.0  # type: ignore[operator]
    assert format_seconds(4.06) == "4.1 s"
    assert format_seconds(125) == "2 min 05 s"
    assert format_seconds(3725) == "1 h 02 min"


def test_image_decoding_reports_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Folder decoding printed nothing until the end."""
    pytest.importorskip("PIL")
    from PIL import Image

    from marginkit.data.images import decode_images

    paths = []
    for index in range(20):
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.full((8, 8, 3), index, dtype=np.uint8)).save(path)
        paths.append(path)
    decode_images(paths, (4, 4), progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("decoding images 20/20 (100 %)")
    decode_images(paths, (4, 4))
    assert capsys.readouterr().err == ""


def test_the_train_extra_installs_tqdm_and_a_tensorboard_extra_exists() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(project.read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("tqdm") for requirement in extras["train"])
    assert any(requirement.startswith("tensorboard") for requirement in extras["tensorboard"])
    readme = (project.parent / "README.md").read_text()
    assert 'pip install "marginkit[tensorboard]"' in readme
