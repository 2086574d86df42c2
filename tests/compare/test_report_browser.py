"""report.html in a real browser: headless Chromium loads every figure and shows every table.

Needs Debian's ``chromium`` (``scripts/test.sh`` installs it where it is missing and apt-get
is available); the screenshot is saved next to the report copy (``report.png``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hang import HANG_LIMIT
from marginkit.compare import GridResult

TABLES = ("claims", "summary", "settings", "runs", "accuracy", "geometry", "verification")
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = "headless Chromium is not installed (scripts/test.sh installs Debian's chromium)"
    if os.environ.get("CI"):  # in CI the browser test must run, not skip
        pytest.fail(message)
    pytest.skip(message)


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), *_FLAGS, f"--user-data-dir={home}", *args],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )


def test_every_figure_loads_and_every_table_is_there(tiny_grid: GridResult, tmp_path: Path) -> None:
    page = tmp_path / "report.html"  # a copy in a folder with nothing else: self-contained
    shutil.copy(tiny_grid.report_html, page)
    dom = _run("--virtual-time-budget=10000", "--dump-dom", page.as_uri(), home=tmp_path / "p")
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    assert loaded is not None, "the report's load script did not run"
    assert int(loaded.group(2)) == 4 and loaded.group(1) == loaded.group(2)
    for key in TABLES:
        assert f'<table data-table="{key}">' in dom.stdout

    screenshot = tmp_path / "report.png"
    shot = _run(
        "--hide-scrollbars",
        "--window-size=1400,3000",
        f"--screenshot={screenshot}",
        page.as_uri(),
        home=tmp_path / "p",
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000
    print(f"screenshot: {screenshot}")
