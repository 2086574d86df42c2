"""``RUN/steps.csv``: the loss, learning rate and hyper-parameters of every training step.

``log.csv`` and ``metrics.json`` hold one row per epoch; this file holds one per optimiser
step, appended as training goes and flushed to disk before each checkpoint. A resumed run
first drops the rows after its checkpoint's step (they are trained again), so the file always
reads as one uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from types import TracebackType
from typing import Any

from marginkit.runfolder import OutputError, RunFolder, atomic_write_text

__all__ = ["StepLog"]

_FIELDS = ["step", "epoch", "loss", "lr"]


class StepLog:
    """The per-step log of a run folder (nothing for an in-memory run).

    Args:
        run_dir: the run folder, or None.
        names: the head's hyper-parameter names (extra columns).
        resumed_step: the checkpoint's step; rows after it are dropped.
        extra: more columns after those, filled only on some steps (the verification
            figures, :mod:`marginkit.train.verification`), empty elsewhere.

    Raises:
        OutputError: the file cannot be written.
    """

    def __init__(
        self,
        run_dir: Path | None,
        names: list[str],
        resumed_step: int,
        extra: list[str] | None = None,
    ) -> None:
        self.extra = list(extra or [])
        self.names = list(names) + self.extra
        self.path = None if run_dir is None else RunFolder(run_dir).steps
        self._handle: Any = None
        if self.path is None:
            return
        kept = self._rows_up_to(resumed_step)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_FIELDS + self.names)
        writer.writerows(kept)
        atomic_write_text(self.path, buffer.getvalue())
        try:
            self._handle = open(self.path, "a", newline="")  # noqa: SIM115 (closed in close)
        except OSError as error:
            raise OutputError("write", self.path, error) from None
        self._writer = csv.writer(self._handle, lineterminator="\n")

    def _rows_up_to(self, step: int) -> list[list[str]]:
        assert self.path is not None
        if step == 0 or not self.path.is_file():
            return []
        try:
            with open(self.path, newline="") as handle:
                rows = list(csv.reader(handle))
        except OSError as error:
            raise OutputError("read", self.path, error) from None
        if not rows or rows[0] != _FIELDS + self.names:
            return []  # another layout: start the file afresh
        return [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) <= step]

    def add(
        self,
        step: int,
        epoch: int,
        loss: float,
        lr: float,
        hyperparameters: dict[str, float],
        extra: dict[str, float] | None = None,
    ) -> None:
        """Append the row of one step (buffered; see :meth:`flush`); ``extra``: values of
        some of the ``extra`` columns at this step."""
        if self._handle is None:
            return
        values = [step, epoch, f"{loss:.6g}", f"{lr:.6g}"]
        given = extra or {}
        for name in self.names:
            if name in self.extra:
                values.append(f"{given[name]:.6g}" if name in given else "")
            else:
                values.append(f"{hyperparameters.get(name, float('nan')):.6g}")
        self._writer.writerow(values)

    def flush(self) -> None:
        """Write the buffered rows to the file."""
        if self._handle is None:
            return
        try:
            self._handle.flush()
        except OSError as error:
            assert self.path is not None  # a handle is open on it
            raise OutputError("write", self.path, error) from None

    def close(self) -> None:
        """Flush and close (idempotent); an error while closing is not raised again."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            with contextlib.suppress(OSError):
                handle.close()

    def __enter__(self) -> StepLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
