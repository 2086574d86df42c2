"""The error raised for data files that are missing, malformed or corrupted."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data file is missing, has the wrong format or size, or fails its checksum.

    The message always names the file (or folder) and what was expected, so that it can be
    shown to a user as a one-line error.
    """
