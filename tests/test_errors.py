"""marginkit.errors: one error family, MarginkitError, the base of every error the package
raises for its user; each keeps the builtin base its kind always had."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import marginkit
from marginkit.errors import MarginkitError, first_line

#: The builtin base each error class has always had (``except ValueError`` keeps working).
BUILTIN_BASES = {
    "BackboneError": ValueError,
    "CheckpointError": ValueError,
    "ConfigError": ValueError,
    "DataError": ValueError,
    "DistributedError": RuntimeError,
    "EvaluationError": ValueError,
    "ExportError": ValueError,
    "GridError": ValueError,
    "NonFiniteLossError": RuntimeError,
    "OutputError": OSError,
    "RunFolderError": ValueError,
    "UnknownNameError": ValueError,
}


def package_error_classes() -> list[type[Exception]]:
    """Every error class defined in a module of the package, found by importing each module
    (``__main__`` modules, which run the command, excepted): the ``Exception`` subclasses,
    warnings and interruptions (a ``KeyboardInterrupt``'s, not an ``Exception``) aside."""
    found: dict[str, type[Exception]] = {}
    names = [marginkit.__name__] + [
        module.name
        for module in pkgutil.walk_packages(marginkit.__path__, f"{marginkit.__name__}.")
        if not module.name.endswith(".__main__")
    ]
    for name in names:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and not issubclass(value, Warning)
                and value.__module__ == name
            ):
                found[f"{name}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


ERROR_CLASSES = package_error_classes()


def test_the_walk_finds_the_packages_errors() -> None:
    names = {error.__name__ for error in ERROR_CLASSES}
    assert set(BUILTIN_BASES) <= names
    assert {"MarginkitError", "_UsageError"} <= names


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda error: error.__qualname__)
def test_every_error_of_the_package_is_a_marginkit_error(error: type[Exception]) -> None:
    assert issubclass(error, MarginkitError)
    builtin = BUILTIN_BASES.get(error.__name__)
    assert builtin is None or issubclass(error, builtin)


def test_marginkit_error_is_exported_at_the_top_level() -> None:
    assert marginkit.MarginkitError is MarginkitError
    assert "MarginkitError" in marginkit.__all__


@pytest.mark.parametrize(
    ("message", "line"),
    [("one\ntwo", "one"), ("\n  first\nsecond", "first"), ("", "MarginkitError")],
)
def test_first_line(message: str, line: str) -> None:
    assert first_line(MarginkitError(message)) == line
