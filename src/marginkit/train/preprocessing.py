"""``RUN/preprocessing.json``: the input a run's backbone expects and how images become it.

:func:`marginkit.train.fit` writes it when it opens the run folder, so that a trained run can
embed or be exported (:mod:`marginkit.export`) without its training data: the input shape,
the per-channel mean and standard deviation computed from the training file, and the crop
(:class:`marginkit.data.preprocessing.Preprocessing`). Runs written before it existed have
none; their readers load the run's data instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from marginkit.data.preprocessing import Preprocessing, preprocessing_of
from marginkit.runfolder import OutputError, RunFolder, RunFolderError

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle

__all__ = ["read_preprocessing", "write_preprocessing"]


def write_preprocessing(run_dir: Path, bundle: DataBundle, dataset: str) -> None:
    """Write ``run_dir/preprocessing.json`` for a run trained on ``bundle`` (nothing when
    the bundle has no per-channel statistics, see
    :func:`~marginkit.data.preprocessing.preprocessing_of`).

    Raises:
        OutputError: the file cannot be written (one line naming it).
    """
    found = preprocessing_of(bundle, dataset)
    if found is not None:
        RunFolder(run_dir).write_preprocessing(found.to_dict())


def read_preprocessing(run_dir: Path) -> Preprocessing | None:
    """The preprocessing recorded in ``run_dir``, or None when the run has none.

    Raises:
        marginkit.data.DataError: the file is unreadable or malformed (names it).
        RunFolderError: the run folder is of a newer format.
    """
    from marginkit.data.errors import DataError

    folder = RunFolder(run_dir)
    folder.check_format()
    try:
        data = folder.read_preprocessing()
    except OutputError as error:
        raise DataError(str(error)) from None
    except RunFolderError:
        raise DataError(f"{folder.preprocessing}: expected JSON") from None
    return None if data is None else Preprocessing.from_dict(data, folder.preprocessing)
