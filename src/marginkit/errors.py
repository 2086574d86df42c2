"""The one error family: :class:`MarginkitError` is the base of every error marginkit raises
for its user (bad input, bad data, a run folder or output that cannot be used, a run that
cannot go on).

Each error class of the package derives from :class:`MarginkitError` and from the builtin
its kind of error has always had (``ValueError``, ``RuntimeError`` or ``OSError``), so
``except ValueError`` in a user's code keeps working. The command line catches
:class:`MarginkitError` and prints its first line (``marginkit: error: ...``, exit status 2);
any other exception is a bug and keeps its traceback.

This module is the floor of the layers (``docs/architecture.md``): it imports nothing of the
package, so any module may import it.

>>> from marginkit import MarginkitError
>>> from marginkit.train import ConfigError
>>> issubclass(ConfigError, MarginkitError) and issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations

__all__ = ["ConfigError", "MarginkitError", "first_line"]


class MarginkitError(Exception):
    """An error caused by the user's input, data or set-up, not by a bug in marginkit.

    Its message is one line naming the argument, file or folder and what was expected; a
    subclass also derives from the builtin error of its kind (``ValueError``,
    ``RuntimeError``, ``OSError``).
    """


class ConfigError(MarginkitError, ValueError):
    """A bad configuration value or file; the message is one line naming the cause.

    Raised by :class:`marginkit.train.TrainConfig` (which exports it) and by the text form
    of the schedules (:func:`marginkit.schedules.parse_schedule`), a layer below training;
    hence here, on the floor.
    """


def first_line(error: BaseException) -> str:
    """The first line of an error's message (for a one-line message), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
