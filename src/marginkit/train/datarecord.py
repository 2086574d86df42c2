"""``RUN/data.json``: the fingerprint of the data a run trains on (the files' names, sizes
and a hash of a sample of their contents, :func:`marginkit.data.fingerprint.data_fingerprint`),
written when the run starts and checked before it is resumed, by ``train --resume`` and by a
comparison grid before it adopts or resumes a run. The data may move (``data_dir`` may
change); other data are refused, naming what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from marginkit.data.fingerprint import fingerprint_difference
from marginkit.runfolder import RunFolder

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle

__all__ = ["data_difference", "unchecked_data", "write_data_record"]


def write_data_record(run_dir: Path, bundle: DataBundle) -> None:
    """Record the fingerprint of ``bundle`` in ``run_dir`` (nothing for a bundle without one:
    not read from files by :func:`marginkit.data.load_dataset`).

    Raises:
        OutputError: the file cannot be written (one line naming it).
    """
    fingerprint = getattr(bundle, "fingerprint", None)
    if fingerprint is not None:
        RunFolder(run_dir).write_data_record(fingerprint)


def unchecked_data(run_dir: Path, bundle: DataBundle) -> str | None:
    """Why the data of the run in ``run_dir`` cannot be checked against ``bundle``, or None:
    a bundle not read from files has none, a run of an older marginkit records none, a
    damaged record cannot be read."""
    if getattr(bundle, "fingerprint", None) is None:
        return f"the data given for {run_dir} were not read from files and have no fingerprint"
    folder = RunFolder(run_dir)
    recorded = folder.read_data_record()
    if recorded is None:
        return f"{run_dir} records no fingerprint of its data (no {folder.data.name}: an older run)"
    if not recorded:
        return f"{folder.data}, the record of the run's data, is malformed"
    return None


def data_difference(run_dir: Path, bundle: DataBundle) -> str | None:
    """How the data of ``bundle`` differ from those the run in ``run_dir`` recorded, e.g.
    ``"data_dir: /a there, /b now; changed: train-images-idx3-ubyte.gz"``; None when they
    are the same files, or cannot be checked (:func:`unchecked_data`)."""
    if unchecked_data(run_dir, bundle) is not None:
        return None
    recorded = RunFolder(run_dir).read_data_record()
    if recorded is None or bundle.fingerprint is None:  # never: unchecked_data said why
        return None
    return fingerprint_difference(recorded, bundle.fingerprint)
