"""Command-line flags generated from :class:`~marginkit.train.config.TrainConfig`.

One flag per option, made from its field: ``--<option-name>`` (or the ``flag`` of the field's
metadata: ``--loss-arg`` for ``loss_args``), its kind from the option's type, its help from
the metadata's ``help`` (with the registered names of its ``names`` registry: data sets,
backbones, losses), and its default. Imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from marginkit.schedules import SCHEDULE_FORMS
from marginkit.train.config import LOSS_ARGUMENTS, TrainConfig, option_choices

__all__ = ["add_config_flags", "flag_name", "loss_argument_help"]

NONE = type(None)
#: Widths of the two columns of the schedules' table in the help (form, what it makes).
_FORM_WIDTH, _MEANING_WIDTH = 44, 40


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
    """The flag of a :class:`TrainConfig` option (``max_steps`` -> ``--max-steps``; the
    field's ``metadata["flag"]`` where it has one)."""
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    return str(fields[option].metadata.get("flag", "--" + option.replace("_", "-")))


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
    choices = {name: words for name, (words, _) in option_choices().items()}
    for name in fields if options is None else options:
        field = fields[name]
        shown = _shown(_default(field)) if default_text is None else default_text
        parser.add_argument(
            flag_name(name),
            dest=name,
            default=argparse.SUPPRESS if default_text is None else None,
            help=_help(field, shown),
            **_kind(hints[name], choices.get(name), field.metadata),
        )


def loss_argument_help() -> str:
    """The loss-argument language of ``--loss-arg`` as plain text:
    :data:`~marginkit.train.config.LOSS_ARGUMENTS` with the table of the schedules' forms
    (:data:`~marginkit.schedules.SCHEDULE_FORMS`)."""
    rows = []
    for form, meaning in SCHEDULE_FORMS:
        left = textwrap.wrap(form, _FORM_WIDTH, break_on_hyphens=False)
        right = textwrap.wrap(meaning, _MEANING_WIDTH, break_on_hyphens=False)
        for index in range(max(len(left), len(right))):
            cells = [part[index] if index < len(part) else "" for part in (left, right)]
            rows.append(f"  {cells[0]:<{_FORM_WIDTH}} {cells[1]}".rstrip())
    return LOSS_ARGUMENTS.format(schedules="\n".join(rows))


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


def _help(field: dataclasses.Field[Any], shown: str) -> str:
    text = field.metadata["help"]
    registry = field.metadata.get("names")
    if registry is not None:
        text += f" Choices: {', '.join(registry.choices())}."
    return f"{text} (default: {shown})".replace("%", "%%")


def _kind(
    hint: Any, choices: tuple[str, ...] | None, metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``add_argument`` keywords for an option of type ``hint`` and field ``metadata``
    (its ``repeat``: a list option whose flag may be given again, adding values; its
    ``metavar``)."""
    if choices is not None:
        return {"choices": choices}
    if metadata.get("repeat"):
        return {"action": "extend", "nargs": "+", "metavar": metadata["metavar"]}
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = [kind for kind in (typing.get_args(hint) if union else (hint,)) if kind is not NONE]
    first = kinds[0]
    if first is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(first) is dict:
        return {"action": "append", "metavar": metadata["metavar"]}
    if typing.get_origin(first) is list:
        return {"type": typing.get_args(first)[0], "nargs": "+"}
    if types.GenericAlias(list, (first,)) in kinds:  # list[first], which mypy reads as a type
        return {"type": first, "nargs": "+", "action": _OneOrMore}
    return {"type": first, **({"metavar": metadata["metavar"]} if "metavar" in metadata else {})}
