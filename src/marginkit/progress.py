"""Progress of long work, with an ETA: a bar on a terminal, a line every N steps in a log.

>>> bar = Progress(469, "epoch 1/10")  # doctest: +SKIP
>>> for batch in batches:
...     bar.update(loss=f"{loss:.4f}")
>>> bar.close()

- On a terminal, with tqdm installed (it comes with the ``train`` extra): a tqdm bar with
  the rate, elapsed time and ETA.
- Elsewhere (a log file, CI, no tqdm): one line every ``every`` steps and one at the end,
  e.g. ``decoding images 1,200/3,264 (37 %) 4.1 s, ETA 7.0 s``; with ``every=0`` no line
  of its own (the caller writes its lines, with :meth:`Progress.eta`).
- ``enabled=False`` (``--quiet``): nothing at all.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``4.1 s``, ``2 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _interactive(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


class Progress:
    """A count of steps towards ``total``, shown with its ETA (see the module docstring).

    Args:
        total: the number of steps of the work.
        description: what is being done, the start of every line.
        enabled: False shows nothing.
        stream: where to write (default ``sys.stderr``).
        every: non-interactive output: a line every ``every`` steps and one at the end
            (None: about every 10 % of ``total``; 0: none).
        initial: steps already done (a resumed run).
        unit: the name of a step, for the bar's rate.
    """

    def __init__(
        self,
        total: int,
        description: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        every: int | None = None,
        initial: int = 0,
        unit: str = "it",
    ) -> None:
        self.total = max(0, int(total))
        self.description = description
        self.enabled = enabled and self.total > 0
        self.stream = sys.stderr if stream is None else stream
        self.every = max(1, self.total // 10) if every is None else every
        self.count = self.initial = initial
        self._next = (initial // self.every + 1) * self.every if self.every else 0
        self.start = time.perf_counter()
        self._postfix = ""
        self._bar: Any = None
        if self.enabled and _interactive(self.stream):
            try:
                from tqdm import tqdm
            except ModuleNotFoundError:  # a core install: lines instead of a bar
                pass
            else:
                self._bar = tqdm(
                    total=self.total,
                    initial=initial,
                    desc=description,
                    unit=unit,
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=False,
                )

    @property
    def interactive(self) -> bool:
        """Whether a live bar is shown (a terminal and tqdm), rather than lines."""
        return self._bar is not None

    def update(self, count: int = 1, postfix: str = "") -> None:
        """Count ``count`` more steps; ``postfix`` (e.g. the loss) is shown after the ETA."""
        self.count += count
        self._postfix = postfix
        if not self.enabled:
            return
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(count)
        elif self.every and self._next <= self.count < self.total:
            self._next = (self.count // self.every + 1) * self.every
            self._line()

    def eta(self) -> float | None:
        """Seconds left at the average pace so far, or None before the first step."""
        done = self.count - self.initial
        if done <= 0:
            return None
        elapsed = time.perf_counter() - self.start
        return elapsed / done * max(0, self.total - self.count)

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.start
        eta = self.eta()
        text = (
            f"{self.description} {self.count:,}/{self.total:,} "
            f"({100 * self.count / self.total:.0f} %) {format_seconds(elapsed)}"
        )
        if eta is not None and self.count < self.total:
            text += f", ETA {format_seconds(eta)}"
        if self._postfix:
            text += f", {self._postfix}"
        self.write(text)

    def write(self, text: str) -> None:
        """Print a line of text without breaking the bar (nothing when disabled)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar, or print the end line (non-interactive)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.every and self.count >= self.total:
            self._line()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
