"""The IJB-B and IJB-C releases as their public evaluation reads them: the meta files.

The layout is that of InsightFace's ``recognition/_evaluation_/ijb`` (``ijb_11.py``,
``ijb_1n.py``), which reads the crops and the meta files derived from the NIST release
(IJB-B: Whitelam et al., CVPRW 2017; IJB-C: Maze et al., ICB 2018)::

    IJBC/                                   (IJBB/ alike, files named ijbb_*)
      loose_crop/1.jpg ...                  the face crops, one per line of the lists below
      meta/ijbc_face_tid_mid.txt            IMAGE TEMPLATE_ID MEDIA_ID, one line per image
      meta/ijbc_name_5pts_score.txt         IMAGE x1 y1 ... x5 y5 SCORE, row for row with it
      meta/ijbc_template_pair_label.txt     TEMPLATE_ID TEMPLATE_ID LABEL (1: same subject)
      meta/ijbc_1N_gallery_G1.csv           1:N gallery 1 (IJB-B: ijbb_1N_gallery_S1.csv)
      meta/ijbc_1N_gallery_G2.csv           1:N gallery 2 (IJB-B: ijbb_1N_gallery_S2.csv)
      meta/ijbc_1N_probe_mixed.csv          1:N probes (still images and video frames)

The text files are split on white space; the five landmarks are (x, y) pixels of the left
eye, right eye, nose tip and left and right mouth corners, and the score is the face
detector's confidence. The CSV files have a header naming ``TEMPLATE_ID`` and
``SUBJECT_ID`` (the release's columns; the others, ``FILENAME``, ``SIGHTING_ID``, the face
box, ..., are not needed), one row per image of a template. Which images make a template,
and of which media (a photo, or a video whose frames are pooled first), the face list says.

Every file is checked as it is read: a missing file, a malformed line, a template the face
list lacks, a template with two subjects, a pairs file without both kinds of pairs, each
gives one line naming the file (and the line).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marginkit.data.errors import DataError

__all__ = [
    "SETS",
    "Enrolment",
    "MetaFiles",
    "Protocol",
    "load_protocol",
    "meta_files",
    "read_enrolment",
    "read_face_list",
    "read_landmarks",
    "read_template_pairs",
]

#: The sets, as ``--set`` names them.
SETS = ("IJBB", "IJBC")
#: The two 1:N galleries of each set, as its release names them.
GALLERIES = {"IJBB": ("S1", "S2"), "IJBC": ("G1", "G2")}
#: The folder of the face crops inside a set's folder.
IMAGES = "loose_crop"
#: The folder of the meta files inside a set's folder.
META = "meta"


@dataclass(frozen=True)
class MetaFiles:
    """Where a set's files are.

    Attributes:
        folder: the set's folder (holding ``loose_crop/`` and ``meta/``).
        images: the face crops' folder.
        face_list: ``*_face_tid_mid.txt``.
        landmarks: ``*_name_5pts_score.txt``.
        pairs: ``*_template_pair_label.txt``.
        galleries: the two 1:N galleries, ``{"G1": path, "G2": path}`` (IJB-B: S1, S2).
        probes: ``*_1N_probe_mixed.csv``.
    """

    folder: Path
    images: Path
    face_list: Path
    landmarks: Path
    pairs: Path
    galleries: dict[str, Path]
    probes: Path

    def identification_files(self) -> list[Path]:
        """The three 1:N files."""
        return [*self.galleries.values(), self.probes]


def set_name(name: str) -> str:
    """``name`` as one of :data:`SETS` (case ignored).

    Raises:
        DataError: another name.
    """
    upper = str(name).strip().upper().replace("-", "")
    if upper not in SETS:
        raise DataError(f"set: expected one of {', '.join(SETS)}, got {name!r}")
    return upper


def meta_files(root: str | Path, name: str) -> MetaFiles:
    """The files of set ``name`` under ``root``: the set's folder itself (``IJBC/``) or the
    folder holding it (InsightFace's ``IJB_release/``).

    Raises:
        DataError: neither ``root/meta`` nor ``root/<SET>/meta`` is a folder.
    """
    name = set_name(name)
    root = Path(root)
    folder = root
    if not (root / META).is_dir() and (root / name / META).is_dir():
        folder = root / name
    if not (folder / META).is_dir():
        raise DataError(
            f"root: {root} holds neither {META}/ nor {name}/{META}/; expected the {name} "
            f"release as InsightFace's evaluation reads it ({name}/{IMAGES}/, {name}/{META}/)"
        )
    meta = folder / META
    prefix = name.lower()
    return MetaFiles(
        folder=folder,
        images=folder / IMAGES,
        face_list=meta / f"{prefix}_face_tid_mid.txt",
        landmarks=meta / f"{prefix}_name_5pts_score.txt",
        pairs=meta / f"{prefix}_template_pair_label.txt",
        galleries={
            gallery: meta / f"{prefix}_1N_gallery_{gallery}.csv" for gallery in GALLERIES[name]
        },
        probes=meta / f"{prefix}_1N_probe_mixed.csv",
    )


# ----------------------------------------------------------------------------- text files
def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of each line of ``path`` that is not blank.

    Raises:
        DataError: the file is missing, unreadable or not text.
    """
    try:
        with path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                fields = line.split()
                if fields:
                    yield number, fields
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (a meta file of the release)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: expected a text file, found bytes that are not UTF-8") from None
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None


def _bad_line(path: Path, number: int, expected: str, fields: list[str]) -> DataError:
    text = " ".join(fields)
    shown = text if len(text) <= 60 else text[:57] + "..."
    return DataError(f"{path} line {number}: expected {expected}, got {shown!r}")


def _whole(text: str) -> int:
    """A whole number written in a meta file (``int`` refuses ``1.5`` and ``x``)."""
    return int(text)


def read_face_list(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``*_face_tid_mid.txt``: each image's template and media.

    Returns:
        ``(names, templates, medias)``: N image names (relative to ``loose_crop/``), and
        ``(N,)`` int64 template and media ids.

    Raises:
        DataError: missing, empty, or a line that is not ``IMAGE TEMPLATE_ID MEDIA_ID``.
    """
    names: list[str] = []
    ids: list[tuple[int, int]] = []
    expected = "'IMAGE TEMPLATE_ID MEDIA_ID' (the ids whole numbers)"
    for number, fields in _lines(path):
        try:
            if len(fields) != 3:
                raise ValueError
            ids.append((_whole(fields[1]), _whole(fields[2])))
        except ValueError:
            raise _bad_line(path, number, expected, fields) from None
        names.append(fields[0])
    if not names:
        raise DataError(f"{path}: expected one line per image, found none")
    table = np.array(ids, dtype=np.int64).reshape(-1, 2)
    return names, table[:, 0].copy(), table[:, 1].copy()


def read_landmarks(path: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``*_name_5pts_score.txt``: each image's five landmarks and detector score, row for
    row with the face list's ``names`` (read by :func:`marginkit.data.align.read_landmarks`,
    whose format it is).

    Returns:
        ``(landmarks, scores)``: ``(N, 5, 2)`` float64 (x, y) pixels and ``(N,)`` float64.

    Raises:
        DataError: the reader's (a line that is not a path and 10 finite numbers, with a
            score or not), a line without a score or with a negative one, an image other
            than the face list's on that row, or another number of lines.
    """
    from marginkit.data.align import read_landmarks as read_faces

    if not path.is_file():
        raise DataError(f"{path}: no such file (a meta file of the release)")
    faces = read_faces(path)
    for row, face in enumerate(faces):
        if face.score is None or face.score < 0:
            raise DataError(
                f"{path} line {face.line}: expected a detector score >= 0 after the ten "
                f"coordinates, got {face.score}"
            )
        if row >= len(names) or face.name != names[row]:
            listed = f"{names[row]!r}" if row < len(names) else "no image"
            raise DataError(
                f"{path} line {face.line}: image {face.name!r}, where the face list has "
                f"{listed} on its row {row + 1}; the two files must list the same images "
                "in the same order"
            )
    if len(faces) != len(names):
        raise DataError(
            f"{path}: {len(faces)} images, where the face list has {len(names)}; the two "
            "files must list the same images in the same order"
        )
    landmarks = np.stack([face.points for face in faces]).astype(np.float64)  # (N, 5, 2)
    return landmarks, np.array([face.score for face in faces], dtype=np.float64)


def _line_of_row(path: Path, row: int) -> tuple[int, list[str]]:
    """The line number and fields of the ``row``-th non-blank line (from 0) of ``path``."""
    for index, (number, fields) in enumerate(_lines(path)):
        if index == row:
            return number, fields
    raise AssertionError(f"{path} has no row {row}")  # the caller counted it


def read_template_pairs(path: Path, templates: np.ndarray) -> np.ndarray:
    """``*_template_pair_label.txt``: the 1:1 comparisons.

    The file is read with numpy (IJB-C has 15.7 million lines); a line it cannot read is
    then looked for, to be named.

    Args:
        path: the pairs file.
        templates: ``(N,)`` the face list's template of each image.

    Returns:
        ``(P, 3)`` int64: first template, second template, label (1 same subject, 0 not).

    Raises:
        DataError: a line that is not three whole numbers with a label of 0 or 1, a template
            without images in the face list, or no pair of one kind.
    """
    expected = "'TEMPLATE_ID TEMPLATE_ID LABEL' (whole numbers, the label 0 or 1)"
    try:
        with warnings.catch_warnings():  # an empty file: refused below, not warned about
            warnings.simplefilter("ignore", UserWarning)
            pairs = np.loadtxt(path, dtype=np.int64, ndmin=2, comments=None, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (a meta file of the release)") from None
    except (ValueError, UnicodeDecodeError):
        for number, fields in _lines(path):
            try:
                if len(fields) != 3:
                    raise ValueError
                [_whole(field) for field in fields]
            except ValueError:
                raise _bad_line(path, number, expected, fields) from None
        raise DataError(f"{path}: expected lines of {expected}") from None
    if pairs.shape[0] == 0:
        raise DataError(f"{path}: expected one line per pair of templates, found none")
    if pairs.shape[1] != 3:
        number, fields = _line_of_row(path, 0)
        raise _bad_line(path, number, expected, fields)
    bad = np.flatnonzero((pairs[:, 2] != 0) & (pairs[:, 2] != 1))
    if bad.size:
        number, fields = _line_of_row(path, int(bad[0]))
        raise _bad_line(path, number, expected, fields)
    known = np.isin(pairs[:, :2], templates).all(axis=1)
    if not bool(known.all()):
        row = int(np.flatnonzero(~known)[0])
        number, _ = _line_of_row(path, row)
        template = next(int(t) for t in pairs[row, :2] if not np.isin(t, templates))
        raise DataError(f"{path} line {number}: template {template} has no image in the face list")
    for label, kind in ((1, "same-subject"), (0, "different-subject")):
        if not bool((pairs[:, 2] == label).any()):
            raise DataError(
                f"{path}: no {kind} pair (label {label}); a ROC needs pairs of both kinds"
            )
    return pairs


# ------------------------------------------------------------------------------ 1:N files
@dataclass(frozen=True)
class Enrolment:
    """The templates of a 1:N gallery or probe set, one subject each.

    Attributes:
        file: the CSV file they were read from.
        templates: ``(T,)`` int64 template ids, ascending, each once.
        subjects: ``(T,)`` int64 the subject of each template.
    """

    file: Path
    templates: np.ndarray
    subjects: np.ndarray


def _columns(path: Path, header: list[str]) -> tuple[int, int]:
    names = [name.strip().upper() for name in header]
    if "TEMPLATE_ID" not in names or "SUBJECT_ID" not in names:
        raise DataError(
            f"{path} line 1: expected a header naming TEMPLATE_ID and SUBJECT_ID, got "
            f"{','.join(header)[:60]!r}"
        )
    return names.index("TEMPLATE_ID"), names.index("SUBJECT_ID")


def read_enrolment(path: Path, templates: np.ndarray) -> Enrolment:
    """A 1:N gallery or probe CSV: its templates and their subjects.

    Args:
        path: the CSV file.
        templates: ``(N,)`` the face list's template of each image.

    Raises:
        DataError: missing, no header with ``TEMPLATE_ID`` and ``SUBJECT_ID``, a row
            without whole numbers there, a template with two subjects or without images in
            the face list, or no row.
    """
    subject_of: dict[int, int] = {}
    try:
        with path.open(encoding="utf-8", newline="") as file:
            rows = csv.reader(file)
            header = next(rows, None)
            if header is None:
                raise DataError(f"{path}: expected a header and one row per image, found none")
            template_column, subject_column = _columns(path, header)
            for number, row in enumerate(rows, start=2):
                if not row or not "".join(row).strip():
                    continue
                _enrol(path, number, row, template_column, subject_column, subject_of)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (a 1:N meta file of the release)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: expected a text file, found bytes that are not UTF-8") from None
    if not subject_of:
        raise DataError(f"{path}: expected one row per image of a template, found none")
    ids = np.array(sorted(subject_of), dtype=np.int64)
    missing = ids[~np.isin(ids, templates)]
    if missing.size:
        raise DataError(f"{path}: template {int(missing[0])} has no image in the face list")
    subjects = np.array([subject_of[int(t)] for t in ids], dtype=np.int64)
    return Enrolment(path, ids, subjects)


def _enrol(
    path: Path,
    number: int,
    row: list[str],
    template_column: int,
    subject_column: int,
    subject_of: dict[int, int],
) -> None:
    """Record one CSV row's template and subject in ``subject_of``."""
    try:
        template = _whole(row[template_column])
        subject = _whole(row[subject_column])
    except (ValueError, IndexError):
        raise _bad_line(
            path, number, "whole numbers as TEMPLATE_ID and SUBJECT_ID", [",".join(row)]
        ) from None
    if subject_of.setdefault(template, subject) != subject:
        raise DataError(
            f"{path} line {number}: template {template} of subject {subject}, where an "
            f"earlier row gives it subject {subject_of[template]}"
        )


# ------------------------------------------------------------------------------ the whole
@dataclass(frozen=True)
class Protocol:
    """Everything the evaluation of one set reads, checked.

    Attributes:
        name: ``"IJBB"`` or ``"IJBC"``.
        files: where the files are.
        names: N image names, relative to ``files.images``.
        templates: ``(N,)`` int64 each image's template.
        medias: ``(N,)`` int64 each image's media.
        landmarks: ``(N, 5, 2)`` float64 each image's five landmarks, (x, y) pixels.
        scores: ``(N,)`` float64 each image's detector score.
        pairs: ``(P, 3)`` int64 the 1:1 comparisons (template, template, label).
        galleries: ``{"G1": Enrolment, "G2": Enrolment}`` (IJB-B: S1, S2); empty when the
            set's folder has none of the 1:N files.
        probes: the 1:N probes, or None with no 1:N file.
    """

    name: str
    files: MetaFiles
    names: list[str]
    templates: np.ndarray
    medias: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray
    pairs: np.ndarray
    galleries: dict[str, Enrolment]
    probes: Enrolment | None

    def reads(self) -> list[Path]:
        """The meta files read (an output must not replace one)."""
        files = self.files
        return [files.face_list, files.landmarks, files.pairs, *files.identification_files()]


def load_protocol(root: str | Path, name: str) -> Protocol:
    """Read and check every meta file of set ``name`` under ``root`` (see the module).

    The 1:N files are all read, or none when none exists (the 1:1 files alone are what
    some copies of the release hold); one or two of the three is refused.

    Raises:
        DataError: a file missing or malformed (named, with its line).
    """
    files = meta_files(root, name)
    names, templates, medias = read_face_list(files.face_list)
    landmarks, scores = read_landmarks(files.landmarks, names)
    pairs = read_template_pairs(files.pairs, templates)
    present = [path.is_file() for path in files.identification_files()]
    galleries: dict[str, Enrolment] = {}
    probes = None
    if any(present):
        listed = zip(files.identification_files(), present, strict=True)
        missing = [path for path, here in listed if not here]
        if missing:
            raise DataError(
                f"{missing[0]}: no such file; the 1:N evaluation needs both galleries and "
                "the probes (or none of the three, for 1:1 alone)"
            )
        galleries = {g: read_enrolment(p, templates) for g, p in files.galleries.items()}
        probes = read_enrolment(files.probes, templates)
    return Protocol(
        name=set_name(name),
        files=files,
        names=names,
        templates=templates,
        medias=medias,
        landmarks=landmarks,
        scores=scores,
        pairs=pairs,
        galleries=galleries,
        probes=probes,
    )
