"""Labeled Faces in the Wild (Huang et al., UMass TR 07-49, 2007), deep-funneled images.

Layout under the data folder: ``lfw-deepfunneled/<Person>/<Person>_NNNN.jpg`` (250x250 RGB;
``lfw-funneled/`` or ``lfw/`` are accepted too) and the protocol files ``peopleDevTrain.txt``,
``pairsDevTest.txt``, ``pairs.txt``, ...

Training identities are the people of ``peopleDevTrain.txt`` with at least
``min_images_per_person`` images; verification uses the pairs of ``pairs_file``
(``pairsDevTest.txt`` by default, whose people are disjoint from DevTrain's).

Crop: the face sits in the middle of each funneled 250x250 image (the detector's box was
enlarged 2.2 times), so every image is cropped to a centred box :data:`LFW_CROP_FRACTION`
(60 %) of the image height tall with the output's aspect ratio (150x128 pixels for the
default 112x96 output: the face and a little hair and chin) and resized bilinearly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from marginkit.data.errors import DataError
from marginkit.data.images import IMAGE_EXTENSIONS, decode_images
from marginkit.data.pairs import PairList, image_name, read_pairs, read_people
from marginkit.data.raw import RawPairs, RawSplits
from marginkit.data.stream import ImageFiles

__all__ = [
    "LFW_CROP_FRACTION",
    "LFW_IMAGE_FOLDERS",
    "pair_image_paths",
    "read_lfw",
    "read_pair_images",
    "resolve_image",
]

#: Height of the centre crop as a share of the image height (150 of 250 pixels).
LFW_CROP_FRACTION = 0.6
#: Image folder names tried in order.
LFW_IMAGE_FOLDERS = ("lfw-deepfunneled", "lfw-funneled", "lfw_funneled", "lfw")
_TRAIN_PEOPLE = "peopleDevTrain.txt"


def resolve_image(root: Path, name: str) -> Path | None:
    """``root/name``, or the same file with another image extension, or None."""
    path = root / name
    if path.is_file():
        return path
    for extension in IMAGE_EXTENSIONS:
        candidate = path.with_suffix(extension)
        if candidate.is_file():
            return candidate
    return None


def pair_image_paths(root: Path, pairs_path: Path) -> tuple[PairList, list[Path]]:
    """Parse ``pairs_path`` and find every image it names (once each) under ``root``.

    Returns:
        The pairs, and the file of each of their ``names`` (another image extension than
        the protocol's ``.jpg`` is accepted, see :func:`resolve_image`).

    Raises:
        DataError: the file is malformed, or names an image that does not exist; names the
            line of the first pair naming each missing image (at most five shown).
    """
    pair_list = read_pairs(pairs_path)
    paths = [resolve_image(root, name) for name in pair_list.names]
    if all(path is not None for path in paths):
        return pair_list, [path for path in paths if path is not None]
    first_line: dict[int, int] = {}  # image index -> line of the first pair naming it
    pairs = zip(pair_list.first.tolist(), pair_list.second.tolist(), strict=True)
    for pair, images in enumerate(pairs):
        for image in images:
            first_line.setdefault(image, pair + 2)  # line 1 is the header
    missing = sorted(
        (first_line[index], name)
        for index, (name, path) in enumerate(zip(pair_list.names, paths, strict=True))
        if path is None
    )
    shown = ", ".join(f"line {line}: {name}" for line, name in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    raise DataError(f"{pairs_path}: names images that do not exist under {root}: {shown}{more}")


def read_pair_images(
    root: Path,
    pairs_path: Path,
    size: tuple[int, int],
    height_fraction: float,
    *,
    progress: bool = False,
) -> RawPairs:
    """Parse ``pairs_path`` and decode every image it names (once) from ``root``.

    Raises:
        DataError: the file is malformed, or names a person or image that does not exist
            (the message gives the line).
    """
    pair_list, paths = pair_image_paths(root, pairs_path)
    return RawPairs(
        data=decode_images(paths, size, height_fraction, progress=progress),
        first=pair_list.first,
        second=pair_list.second,
        same=pair_list.same,
        fold=pair_list.fold,
        image_names=pair_list.names,
    )


def _image_root(directory: Path) -> Path:
    for folder in LFW_IMAGE_FOLDERS:
        if (directory / folder).is_dir():
            return directory / folder
    raise DataError(
        f"{directory}: expected an LFW image folder ({', '.join(LFW_IMAGE_FOLDERS)}) "
        f"next to the protocol files {_TRAIN_PEOPLE}, pairsDevTest.txt, pairs.txt"
    )


def read_lfw(
    directory: Path,
    size: tuple[int, int],
    min_images_per_person: int,
    pairs_file: str,
    *,
    progress: bool = False,
    workers: int = 0,
) -> RawSplits:
    """Decode LFW's DevTrain identities and the images of a pairs file.

    With ``workers > 0`` the training images are only indexed
    (:class:`marginkit.data.stream.ImageFiles`), to be decoded lazily; the pairs' images
    (a fixed evaluation set) are decoded either way.

    Returns:
        Splits with the training identities (no test split) and ``pairs``.

    Raises:
        DataError: a protocol file or image is missing or malformed, or no person has
            enough images; names it.
    """
    root = _image_root(directory)
    people = [
        (name, count)
        for name, count in read_people(directory / _TRAIN_PEOPLE)
        if count >= min_images_per_person
    ]
    if not people:
        raise DataError(
            f"{directory / _TRAIN_PEOPLE}: no person has >= {min_images_per_person} images "
            "(min_images_per_person)"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, (person, count) in enumerate(people):
        for number in range(1, count + 1):
            path = resolve_image(root, image_name(person, number))
            if path is None:
                raise DataError(
                    f"{root / image_name(person, number)}: missing; {_TRAIN_PEOPLE} lists "
                    f"{count} images of {person}"
                )
            paths.append(path)
            labels.append(label)
    pairs = read_pair_images(
        root, directory / pairs_file, size, LFW_CROP_FRACTION, progress=progress
    )
    return RawSplits(
        train_data=(
            ImageFiles(paths, size, LFW_CROP_FRACTION, workers)
            if workers > 0
            else decode_images(paths, size, LFW_CROP_FRACTION, progress=progress)
        ),
        train_labels=torch.tensor(labels, dtype=torch.long),
        test_data=None,
        test_labels=None,
        class_names=[person for person, _ in people],
        pairs=pairs,
    )
