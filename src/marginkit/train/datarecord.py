"""``RUN/data.json``: the fingerprint of the data a run trains on (the files' names, sizes
and a hash of a sample of their contents, :func:`marginkit.data.fingerprint.data_fingerprint`),
written when the run starts and checked before it is resumed, by ``train --resume`` and by a
comparison grid before it adopts or resumes a run. The data may move (``data_dir`` may
change); other data are refused, naming what differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marginkit.data.fingerprint import fingerprint_difference
from marginkit.train.runfolder import atomic_write_text

__all__ = ["DATA_FILE", "data_difference", "unchecked_data", "write_data_record"]

#: The record's name in a run folder.
DATA_FILE = "data.json"


def write_data_record(run_dir: Path, bundle: Any) -> None:
    """Record the fingerprint of ``bundle`` in ``run_dir`` (nothing for a bundle without one:
    not read from files by :func:`marginkit.data.load_dataset`).

    Raises:
        OutputError: the file cannot be written (one line naming it).
    """
    fingerprint = getattr(bundle, "fingerprint", None)
    if fingerprint is not None:
        atomic_write_text(run_dir / DATA_FILE, json.dumps(fingerprint, indent=2) + "\n")


def _recorded(run_dir: Path) -> Any:
    """The fingerprint ``run_dir`` records: None when there is none, ``{}`` when the record
    cannot be read or is not a fingerprint."""
    path = run_dir / DATA_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    valid = isinstance(recorded, dict) and isinstance(recorded.get("entries"), dict)
    return recorded if valid else {}


def unchecked_data(run_dir: Path, bundle: Any) -> str | None:
    """Why the data of the run in ``run_dir`` cannot be checked against ``bundle``, or None:
    a bundle not read from files has none, a run of an older marginkit records none, a
    damaged record cannot be read."""
    if getattr(bundle, "fingerprint", None) is None:
        return f"the data given for {run_dir} were not read from files and have no fingerprint"
    recorded = _recorded(run_dir)
    if recorded is None:
        return f"{run_dir} records no fingerprint of its data (no {DATA_FILE}: an older run)"
    if not recorded:
        return f"{run_dir / DATA_FILE}, the record of the run's data, is malformed"
    return None


def data_difference(run_dir: Path, bundle: Any) -> str | None:
    """How the data of ``bundle`` differ from those the run in ``run_dir`` recorded, e.g.
    ``"data_dir: /a there, /b now; changed: train-images-idx3-ubyte.gz"``; None when they
    are the same files, or cannot be checked (:func:`unchecked_data`)."""
    if unchecked_data(run_dir, bundle) is not None:
        return None
    return fingerprint_difference(_recorded(run_dir), bundle.fingerprint)
