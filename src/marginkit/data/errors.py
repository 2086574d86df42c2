"""The error raised when a data set cannot be loaded as asked."""

from __future__ import annotations

from marginkit.errors import MarginkitError

__all__ = ["DataError"]


class DataError(MarginkitError, ValueError):
    """A data file is missing, has the wrong format or size, or fails its checksum; or a
    loading option is out of range or does not fit the data set (a class it lacks).

    The message always names the file, folder or option and what was expected, so that it
    can be shown to a user as a one-line error.
    """
