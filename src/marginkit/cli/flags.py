"""Command-line flags generated from :class:`~marginkit.train.config.TrainConfig`.

One flag per option: ``--<option-name>`` (``--loss-arg`` for ``loss_args``), its kind from
the option's type, its help from the class's docstring, the registered names for a data set,
backbone or loss, and its default. Imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from marginkit.registry import BACKBONES, DATASETS, LOSSES, Registry
from marginkit.train import config as config_module
from marginkit.train.config import TrainConfig, option_choices, option_help

__all__ = ["add_config_flags", "flag_name", "loss_argument_help", "plain_text"]

#: Options whose flag is not ``--<option-name>``.
_FLAG_NAMES = {"loss_args": "--loss-arg"}
#: Options whose flag may be repeated (``--verify a.bin --verify b.bin``), each adding files.
_REPEATABLE = {"verify": "FILE"}
#: Options that name a registered thing: their help lists the names.
_REGISTRIES: dict[str, Registry[Any]] = {
    "dataset": DATASETS,
    "backbone": BACKBONES,
    "loss": LOSSES,
}
#: Sphinx roles (``:class:`~a.b.C```) and literals (````text````) of the docstrings.
_ROLE = re.compile(r":\w+:`(~?)([\w.]+)`")
_LITERAL = re.compile(r"``(.*?)``")
NONE = type(None)


class _OneOrMore(argparse.Action):
    """Store the values given, or the only one when one is given (``--image-size 112``)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, list)
        setattr(namespace, self.dest, values[0] if len(values) == 1 else values)


def flag_name(option: str) -> str:
    """The flag of a :class:`TrainConfig` option (``max_steps`` -> ``--max-steps``)."""
    return _FLAG_NAMES.get(option, "--" + option.replace("_", "-"))


def plain_text(text: str) -> str:
    """Docstring text without its markup: ``:class:`~a.B``` -> ``B``, ````x```` -> ``x``."""
    text = _ROLE.sub(lambda role: role[2].rsplit(".", 1)[-1] if role[1] else role[2], text)
    return _LITERAL.sub(r"\1", text)


def add_config_flags(
    parser: argparse.ArgumentParser,
    options: Iterable[str] | None = None,
    *,
    default_text: str | None = None,
) -> None:
    """Add a flag to ``parser`` for each :class:`TrainConfig` option.

    Args:
        parser: the (sub)command's parser.
        options: the options to add (default: all of them, in the class's order).
        default_text: None: a flag not given leaves no attribute (so a config file's value
            stands) and the help shows the option's default; else a flag not given is None
            and the help shows this text as the default (``"the preset's"``).
    """
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    descriptions = option_help()
    choices = {name: words for name, (words, _) in option_choices().items()}
    for name in fields if options is None else options:
        field = fields[name]
        shown = _shown(_default(field)) if default_text is None else default_text
        parser.add_argument(
            flag_name(name),
            dest=name,
            default=argparse.SUPPRESS if default_text is None else None,
            help=_help(name, descriptions[name], shown),
            **_kind(hints[name], choices.get(name), _REPEATABLE.get(name)),
        )


def loss_argument_help() -> str:
    """The loss-argument language of ``--loss-arg``, from :mod:`marginkit.train.config`'s
    docstring (its table of schedules included), as plain text."""
    lines = (config_module.__doc__ or "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Loss arguments"))
    end = next(i for i, line in enumerate(lines) if line.startswith("The config"))
    rules = [i for i in range(start, end) if lines[i].lstrip().startswith("=")]
    split = lines[rules[0]].index(" =", lines[rules[0]].index("=")) + 1  # second column
    rendered = []
    for index in range(start, end):
        line = lines[index]
        if rules[0] < index < rules[-1]:
            left, right = plain_text(line[:split]).rstrip(), plain_text(line[split:]).strip()
            rendered.append(f"{left:<46} {right}".rstrip())
        elif index not in rules:
            rendered.append(plain_text(line))
    return "\n".join(rendered).strip()


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _shown(value: Any) -> str:
    """A default as the help shows it."""
    if value is None or value == {}:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _help(name: str, description: str, shown: str) -> str:
    text = plain_text(description)
    registry = _REGISTRIES.get(name)
    if registry is not None:
        text += f" Choices: {', '.join(registry.choices())}."
    return f"{text} (default: {shown})".replace("%", "%%")


def _kind(hint: Any, choices: tuple[str, ...] | None, repeated: str | None) -> dict[str, Any]:
    """The ``add_argument`` keywords for an option of type ``hint`` (``repeated``: the
    metavar of a list option whose flag may be given again, adding values)."""
    if choices is not None:
        return {"choices": choices}
    if repeated is not None:
        return {"action": "extend", "nargs": "+", "metavar": repeated}
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = [kind for kind in (typing.get_args(hint) if union else (hint,)) if kind is not NONE]
    first = kinds[0]
    if first is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(first) is dict:
        return {"action": "append", "metavar": "NAME=VALUE"}
    if typing.get_origin(first) is list:
        return {"type": typing.get_args(first)[0], "nargs": "+"}
    if types.GenericAlias(list, (first,)) in kinds:  # list[first], which mypy reads as a type
        return {"type": first, "nargs": "+", "action": _OneOrMore}
    return {"type": first}
