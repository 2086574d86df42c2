"""``RUN/preprocessing.json``: the input a run's backbone expects and how images become it.

:func:`marginkit.train.fit` writes it when it opens the run folder, so that a trained run can
embed or be exported (:mod:`marginkit.export`) without its training data: the input shape,
the per-channel mean and standard deviation computed from the training file, and the crop
(:class:`marginkit.data.preprocessing.Preprocessing`). Runs written before it existed have
none; their readers load the run's data instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marginkit.data.preprocessing import Preprocessing, preprocessing_of
from marginkit.train.runfolder import atomic_write_text

__all__ = ["PREPROCESSING_FILE", "read_preprocessing", "write_preprocessing"]

#: The file's name in a run folder.
PREPROCESSING_FILE = "preprocessing.json"


def write_preprocessing(run_dir: Path, bundle: Any, dataset: str) -> None:
    """Write ``run_dir/preprocessing.json`` for a run trained on ``bundle`` (nothing when
    the bundle has no per-channel statistics, see
    :func:`~marginkit.data.preprocessing.preprocessing_of`).

    Raises:
        OutputError: the file cannot be written (one line naming it).
    """
    found = preprocessing_of(bundle, dataset)
    if found is not None:
        text = json.dumps(found.to_dict(), indent=2) + "\n"
        atomic_write_text(run_dir / PREPROCESSING_FILE, text)


def read_preprocessing(run_dir: Path) -> Preprocessing | None:
    """The preprocessing recorded in ``run_dir``, or None when the run has none.

    Raises:
        marginkit.data.DataError: the file is unreadable or malformed (names it).
    """
    from marginkit.data.errors import DataError

    path = Path(run_dir) / PREPROCESSING_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DataError(f"{path}: unreadable ({error.strerror})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise DataError(f"{path}: expected JSON") from None
    return Preprocessing.from_dict(data, path)
