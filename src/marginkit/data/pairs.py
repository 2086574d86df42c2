"""LFW protocol files: people lists and verification pairs (Huang et al., UMass TR 07-49).

``peopleDevTrain.txt``: a count N, then N lines ``Name  n_images``. ``people.txt`` (View 2):
a number of folds, then per fold a count and that many ``Name  n_images`` lines.

Pairs: View 1 (``pairsDevTrain.txt``, ``pairsDevTest.txt``) start with one number N, then N
matched lines ``Name  i  j`` and N mismatched lines ``Name1  i  Name2  j``; View 2
(``pairs.txt``) starts with ``folds  N`` and repeats that block per fold. Image ``i`` of
``Name`` is the file ``Name/Name_iiii.jpg`` (four digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from marginkit.data.errors import DataError

__all__ = ["PairList", "image_name", "read_pairs", "read_people"]


def image_name(person: str, number: int, extension: str = ".jpg") -> str:
    """Relative file name of image ``number`` of ``person``: ``Person/Person_0001.jpg``."""
    return f"{person}/{person}_{number:04d}{extension}"


def _lines(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: missing protocol file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: expected a text file ({error})") from error
    return [line.split() for line in text.splitlines() if line.strip()]


def _integer(path: Path, line: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}: line {line}: expected an integer, got {text!r}") from None


def read_people(path: Path) -> list[tuple[str, int]]:
    """``(name, image count)`` for every person in a people file (View 1 or View 2).

    Raises:
        DataError: the counts do not match the lines; names the file and line.
    """
    rows = _lines(path)
    if not rows:
        raise DataError(f"{path}: expected a people count on the first line, file is empty")
    people: list[tuple[str, int]] = []
    if len(rows[0]) != 1:
        raise DataError(f"{path}: line 1: expected a single count, got {' '.join(rows[0])!r}")
    first = _integer(path, 1, rows[0][0])
    # View 2 starts with the fold count, then a count per fold; View 1 with one count.
    view_two = len(rows) > 1 and len(rows[1]) == 1
    blocks = first if view_two else 1
    position = 1 if view_two else 0
    for _ in range(blocks):
        if position >= len(rows) or len(rows[position]) != 1:
            raise DataError(f"{path}: line {position + 1}: expected a people count")
        count = _integer(path, position + 1, rows[position][0])
        position += 1
        for offset in range(count):
            line = position + offset
            if line >= len(rows) or len(rows[line]) != 2:
                raise DataError(f"{path}: line {line + 1}: expected 'Name count'")
            people.append((rows[line][0], _integer(path, line + 1, rows[line][1])))
        position += count
    if position != len(rows):
        raise DataError(f"{path}: expected {position} lines from its counts, found {len(rows)}")
    return people


@dataclass
class PairList:
    """Pairs as file names: ``first[k]``, ``second[k]`` index ``names``."""

    names: list[str]
    first: Tensor
    second: Tensor
    same: Tensor
    fold: Tensor


def read_pairs(path: Path) -> PairList:
    """Parse a View 1 or View 2 pairs file into image names and pair indices.

    Raises:
        DataError: a malformed header or line, or a line count that disagrees with the
            header; names the file and line.
    """
    rows = _lines(path)
    if not rows:
        raise DataError(f"{path}: expected a header line, file is empty")
    header = [_integer(path, 1, value) for value in rows[0]]
    if len(header) == 1:
        folds, per_side = 1, header[0]
    elif len(header) == 2:
        folds, per_side = header
    else:
        raise DataError(f"{path}: line 1: expected 'N' or 'folds N', got {' '.join(rows[0])!r}")
    expected = folds * 2 * per_side
    if len(rows) - 1 != expected:
        raise DataError(
            f"{path}: header promises {folds} x (2 x {per_side}) = {expected} pairs, "
            f"found {len(rows) - 1} lines"
        )
    names: list[str] = []
    index: dict[str, int] = {}

    def lookup(person: str, number: int) -> int:
        name = image_name(person, number)
        if name not in index:
            index[name] = len(names)
            names.append(name)
        return index[name]

    first, second, same, fold = [], [], [], []
    for row_number, row in enumerate(rows[1:], start=2):
        block = (row_number - 2) // (2 * per_side)
        matched = (row_number - 2) % (2 * per_side) < per_side
        if matched and len(row) == 3:
            a = lookup(row[0], _integer(path, row_number, row[1]))
            b = lookup(row[0], _integer(path, row_number, row[2]))
        elif not matched and len(row) == 4:
            a = lookup(row[0], _integer(path, row_number, row[1]))
            b = lookup(row[2], _integer(path, row_number, row[3]))
        else:
            wanted = "'Name i j' (matched)" if matched else "'Name1 i Name2 j' (mismatched)"
            raise DataError(f"{path}: line {row_number}: expected {wanted}, got {' '.join(row)!r}")
        first.append(a)
        second.append(b)
        same.append(matched)
        fold.append(block)
    return PairList(
        names=names,
        first=torch.tensor(first, dtype=torch.long),
        second=torch.tensor(second, dtype=torch.long),
        same=torch.tensor(same, dtype=torch.bool),
        fold=torch.tensor(fold, dtype=torch.long),
    )
