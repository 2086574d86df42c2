"""A progress bar with an ETA over a whole comparison grid.

The bar counts optimiser steps over every run of the grid (runs found finished count at
once), so the ETA covers the whole grid. It is a ``tqdm`` bar when ``tqdm`` is installed and
the stream is a terminal; otherwise a plain line per epoch and per run.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

__all__ = ["LINE_INTERVAL", "GridProgress", "format_duration"]

#: Without a bar, per-epoch lines are printed at most this often (seconds); run lines always.
LINE_INTERVAL = 10.0


def format_duration(seconds: float) -> str:
    """``75.3`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class GridProgress:
    """Steps done over the grid's total, with an ETA from the steps trained so far.

    Args:
        total_steps: optimiser steps of every run of the grid.
        runs: number of runs.
        enabled: False: print nothing.
        stream: where to write (default ``sys.stderr``).
    """

    def __init__(
        self, total_steps: int, runs: int, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.total = max(1, total_steps)
        self.runs = runs
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.done = 0
        self.trained = 0  # steps actually trained in this process (for the rate)
        self.run_index = 0
        self.run_name = ""
        self.start = time.perf_counter()
        self.last_line = -math.inf
        self.bar: Any = None
        if enabled and self.stream.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.total, unit="step", file=self.stream, dynamic_ncols=True)

    def eta(self) -> float | None:
        """Seconds left, from the rate of the steps trained so far (None before any)."""
        if self.trained == 0:
            return None
        rate = self.trained / (time.perf_counter() - self.start)
        return (self.total - self.done) / rate

    def _say(self, text: str) -> None:
        if not self.enabled:
            return
        self.last_line = time.perf_counter()
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _status(self) -> str:
        eta = self.eta()
        shown = "?" if eta is None else format_duration(eta)
        return f"grid {100 * self.done / self.total:.0f} %, ETA {shown}"

    def begin_run(self, name: str) -> None:
        """A run starts (or is looked at)."""
        self.run_index += 1
        self.run_name = name
        if self.bar is not None:
            self.bar.set_description(f"[{self.run_index}/{self.runs}] {name}")

    def advance(self, steps: int, trained: bool, note: str = "") -> None:
        """``steps`` more steps are done (``trained``: by training them here)."""
        steps = max(0, min(steps, self.total - self.done))
        self.done += steps
        if trained:
            self.trained += steps
        if self.bar is not None:
            self.bar.update(steps)
        elif note and time.perf_counter() - self.last_line >= LINE_INTERVAL:
            self._say(f"[{self.run_index}/{self.runs}] {self.run_name}: {note} ({self._status()})")

    def message(self, text: str) -> None:
        """A line about the current run, with the grid's progress."""
        self._say(f"[{self.run_index}/{self.runs}] {self.run_name}: {text} ({self._status()})")

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()
