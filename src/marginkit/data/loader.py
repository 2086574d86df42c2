"""``load_dataset``: find or download a data set's files, decode them, apply the options."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from marginkit import registry
from marginkit.data.arrays import ArrayDataset, channel_statistics
from marginkit.data.bundle import DataBundle, VerificationPairs
from marginkit.data.errors import DataError
from marginkit.data.fingerprint import data_fingerprint
from marginkit.data.options import (
    check_classes,
    check_fraction,
    check_integer,
    class_mapping,
    derived_generator,
    inject_symmetric_noise,
    stratified_split,
)
from marginkit.data.raw import RawSplits
from marginkit.data.readers import ReadRequest
from marginkit.data.stream import EncodedImages, ImageFileDataset, file_statistics

__all__ = ["DATASETS", "DATA_ENVIRONMENT_VARIABLE", "assemble", "data_root", "load_dataset"]

#: The environment variable naming a folder of data sets by name (see :func:`data_root`).
DATA_ENVIRONMENT_VARIABLE = "MARGINKIT_DATA"

#: Names accepted by :func:`load_dataset` (:data:`marginkit.registry.DATASETS`).
DATASETS: tuple[str, ...] = tuple(registry.DATASETS.names())

#: Data sets with no folder to find or download: shipped with a dependency, or generated.
_BUNDLED = ("digits", "glyphs")


def _check_image_size(image_size: Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        raise DataError(f"image_size: expected (height, width) positive ints, got {image_size!r}")
    return (int(image_size[0]), int(image_size[1]))


def _check_pairs_file(pairs_file: str) -> str:
    if not isinstance(pairs_file, str) or not pairs_file:
        raise DataError(f"pairs_file: expected a file name, got {pairs_file!r}")
    return pairs_file


def _check_classes(classes: Iterable[int] | None, label_noise: float) -> list[int] | None:
    """``classes`` as a list (checked against the data set later, in :func:`assemble`)."""
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise TypeError(f"classes: expected a sequence of ints, got {type(classes).__name__}")
    classes = list(classes)
    if label_noise > 0.0 and len(classes) == 1:
        raise DataError("label_noise: needs at least 2 known classes to flip labels, got 1")
    return classes


def _resolve_directory(
    name: str,
    data_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike | None,
    download: bool,
    progress: bool,
) -> Path | None:
    """The folder to read ``name``'s files from: ``data_dir``, else
    ``$MARGINKIT_DATA/<name>`` when that folder exists, else the cache (downloading into it
    if needed); None for a data set that reads no folder (the digits, the glyphs), which
    refuses a ``data_dir``."""
    if name in _BUNDLED:
        if data_dir is not None:
            raise DataError(f"data_dir: data set {name!r} reads no folder; leave data_dir out")
        return None
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if not directory.is_dir():
            raise DataError(f"data_dir: {directory} is not a folder")
        return directory
    if name == "folder":
        raise DataError("data_dir: the 'folder' data set needs the folder of class sub-folders")
    shared = data_root()
    if shared is not None and (shared / name).is_dir():
        return shared / name
    from marginkit.data.download import REGISTRY, default_cache_dir, ensure_files

    if name not in REGISTRY:
        raise DataError(f"data_dir: data set {name!r} has no download; give the folder to read")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return ensure_files(name, root / name, download=download, progress=progress)


def _read_request(
    name: str,
    image_size: tuple[int, int] | None,
    min_images_per_person: int,
    pairs_file: str,
    workers: int,
) -> ReadRequest:
    """The reader's request for ``name`` (no folder yet), its options checked."""
    return ReadRequest(
        name=name,
        directory=None,
        image_size=image_size,
        min_images_per_person=check_integer("min_images_per_person", min_images_per_person, 1),
        pairs_file=_check_pairs_file(pairs_file),
        progress=False,
        workers=check_integer("workers", workers, 0),
    )


def data_root() -> Path | None:
    """``$MARGINKIT_DATA``: a folder holding data sets by name (``mnist/``, ``lfw/`` ...),
    or None when the variable is unset or empty."""
    configured = os.environ.get(DATA_ENVIRONMENT_VARIABLE, "")
    return Path(configured).expanduser() if configured else None


def _canonical_name(name: str) -> str:
    """The registered name of data set ``name``; :class:`DataError` (the argument first, as
    the data package's other messages) when there is none."""
    try:
        return registry.DATASETS.canonical(name)
    except registry.UnknownNameError:
        known = ", ".join(registry.DATASETS.choices())
        raise DataError(f"name: unknown data set {name!r}; expected one of {known}") from None


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    classes: Sequence[int] | None = None,
    label_noise: float = 0.0,
    validation_fraction: float = 0.0,
    augment: bool | None = None,
    seed: int = 0,
    image_size: Sequence[int] | None = None,
    min_images_per_person: int = 10,
    pairs_file: str = "pairsDevTest.txt",
    progress: bool = True,
    workers: int = 0,
) -> DataBundle:
    """Load a data set with the options experiments need.

    Args:
        name: one of :data:`DATASETS` (any case, ``-``/``_`` ignored).
        data_dir: folder holding the data set's files as distributed (IDX files, pickle
            batches, ``.mat`` files, class sub-folders, RecordIO files, the LFW tree). None:
            ``$MARGINKIT_DATA/<name>`` when the environment variable names a folder that
            holds it (e.g. ``MARGINKIT_DATA=~/data`` and ``~/data/mnist``), else the cache
            folder, downloading missing or corrupted files (not for ``digits``, bundled,
            ``glyphs``, generated, or ``folder``, which needs a folder).
        cache_dir: cache root, default ``$MARGINKIT_CACHE`` or ``~/.cache/marginkit``;
            each data set lives in ``cache_dir/<name>``.
        download: allow downloading into the cache.
        classes: known classes for training, an open-set split: train/validation keep only
            these, relabelled ``0..k-1`` in the given order; the test set keeps every class,
            unknown ones labelled ``k, k+1, ...`` in increasing original order. None: all.
        label_noise: symmetric noise rate in [0, 1) applied to training labels only (not the
            validation split); ``train_clean_labels`` keeps the truth.
        validation_fraction: share of the training data held out, stratified, in [0, 1).
        augment: whether the trainer should random-crop + flip training batches; None uses
            the data set default (True for CIFAR-10/100 and SVHN).
        seed: seed for the validation split and the label noise (independent streams).
        image_size: ``(height, width)`` of ``folder``/``lfw``/``rec`` images, default
            ``(112, 96)`` (``rec``: its ``property`` file's size, when it has one).
        min_images_per_person: ``lfw``: keep DevTrain people with at least this many images.
        pairs_file: ``lfw`` (and ``folder``, when present) verification pairs file.
        progress: report download and image-decoding progress (with its ETA) on stderr.
        workers: ``folder``/``lfw``/``rec``: 0 decodes every image into memory; ``N > 0``
            indexes the training images, decoded lazily by ``N`` ``DataLoader`` processes
            (:mod:`marginkit.data.stream`, same items). Tensor data sets stay in memory.

    Returns:
        A :class:`DataBundle`, with the ``fingerprint`` of the files it was read from.

    Raises:
        TypeError: an option of the wrong type (the message names it).
        DataError: an unknown ``name``, an option out of range or not fitting the data set,
            or missing, malformed or corrupted files (the message names the option or file).
    """
    name = _canonical_name(name)
    label_noise = check_fraction("label_noise", label_noise)
    validation_fraction = check_fraction("validation_fraction", validation_fraction)
    check_integer("seed", seed)
    if augment is not None and not isinstance(augment, bool):
        raise TypeError(f"augment: expected True, False or None, got {augment!r}")
    image_size = _check_image_size(image_size)
    classes = _check_classes(classes, label_noise)
    request = _read_request(name, image_size, min_images_per_person, pairs_file, workers)
    directory = _resolve_directory(name, data_dir, cache_dir, download, progress)
    request = replace(request, progress=progress, directory=directory)
    bundle = assemble(
        name,
        registry.DATASETS.get(name)(request),
        classes=classes,
        label_noise=label_noise,
        validation_fraction=validation_fraction,
        augment=augment,
        seed=seed,
        progress=progress,
    )
    return replace(bundle, fingerprint=data_fingerprint(name, request.directory))


def assemble(
    name: str,
    raw: RawSplits,
    *,
    classes: Sequence[int] | None = None,
    label_noise: float = 0.0,
    validation_fraction: float = 0.0,
    augment: bool | None = None,
    seed: int = 0,
    progress: bool = False,
) -> DataBundle:
    """Apply the class subset, validation split and label noise to decoded splits.

    Normalisation statistics come from the whole training file (before any option), so they
    do not change with the options. Order: class subset, then the stratified validation split,
    then noise on what remains for training. Training images held as an index (files, records)
    (:class:`~marginkit.data.stream.EncodedImages`) give streamed splits, read lazily.
    """
    chosen = check_classes(classes, len(raw.class_names))
    if isinstance(raw.train_data, EncodedImages):
        mean, std = file_statistics(raw.train_data, raw.value_scale, progress=progress)
    else:
        mean, std = channel_statistics(raw.train_data, raw.value_scale)

    def dataset(
        data: torch.Tensor | EncodedImages,
        labels: torch.Tensor,
        clean_labels: torch.Tensor | None = None,
    ) -> ArrayDataset | ImageFileDataset:
        if isinstance(data, EncodedImages):
            return ImageFileDataset(data, labels, mean, std, raw.value_scale, clean_labels)
        return ArrayDataset(data, labels, mean, std, raw.value_scale, clean_labels)

    subset = _select_classes(raw, chosen)
    train_data, train_labels = subset.train_data, subset.train_labels
    validation = None
    validation_labels = None
    if validation_fraction > 0.0:
        kept, held = stratified_split(
            train_labels, validation_fraction, derived_generator(seed, "validation_split")
        )
        validation_labels = train_labels[held]
        validation = dataset(train_data[held], validation_labels)
        train_data, train_labels = train_data[kept], train_labels[kept]
    noisy_labels = train_labels
    if label_noise > 0.0:
        noisy_labels = inject_symmetric_noise(
            train_labels, label_noise, subset.num_classes, derived_generator(seed, "label_noise")
        )
    train = dataset(train_data, noisy_labels, clean_labels=train_labels)
    test = None
    if raw.test_data is not None and subset.test_labels is not None:
        test = dataset(raw.test_data, subset.test_labels)
    return DataBundle(
        name=name,
        train=train,
        validation=validation,
        test=test,
        num_classes=subset.num_classes,
        input_shape=tuple(raw.train_data.shape[1:]),
        class_names=subset.class_names,
        train_labels=noisy_labels,
        train_clean_labels=train_labels,
        test_labels=subset.test_labels,
        pairs=_verification_pairs(raw, dataset),
        augment=raw.augment if augment is None else augment,
        test_class_names=subset.test_class_names if test is not None else None,
        validation_labels=validation_labels,
        mean=tuple(mean),
        std=tuple(std),
    )


@dataclass(frozen=True)
class _ClassSubset:
    """The training samples of the known classes and the relabelled test labels.

    Attributes:
        train_data: ``(N, ...)`` codes of the known classes' training samples.
        train_labels: ``(N,)`` long labels in ``0..num_classes-1``.
        test_labels: ``(M,)`` long relabelled test labels, or None.
        num_classes: the number of known classes.
        class_names: the known classes' names, by new label.
        test_class_names: every class's name, by new label.
    """

    train_data: torch.Tensor | EncodedImages
    train_labels: torch.Tensor
    test_labels: torch.Tensor | None
    num_classes: int
    class_names: list[str]
    test_class_names: list[str]


def _select_classes(raw: RawSplits, chosen: list[int] | None) -> _ClassSubset:
    """Keep the training samples of the ``chosen`` classes, relabelled ``0..k-1`` in the
    given order; the test labels keep every class, the others numbered ``k, k+1, ...`` in
    increasing original order. None: every class, labels unchanged."""
    train_labels = raw.train_labels.long()
    test_labels = None if raw.test_labels is None else raw.test_labels.long()
    if chosen is None:
        names = list(raw.class_names)
        return _ClassSubset(
            raw.train_data, train_labels, test_labels, len(names), names, list(names)
        )
    mapping = class_mapping(chosen, len(raw.class_names))  # (total_classes,)
    keep = torch.nonzero(torch.isin(train_labels, torch.tensor(chosen))).flatten()
    test_class_names = [raw.class_names[k] for k in torch.argsort(mapping).tolist()]
    return _ClassSubset(
        train_data=raw.train_data[keep],
        train_labels=mapping[train_labels[keep]],
        test_labels=None if test_labels is None else mapping[test_labels],
        num_classes=len(chosen),
        class_names=test_class_names[: len(chosen)],
        test_class_names=test_class_names,
    )


def _verification_pairs(
    raw: RawSplits,
    dataset: Callable[[torch.Tensor, torch.Tensor], ArrayDataset | ImageFileDataset],
) -> VerificationPairs | None:
    """The pairs of ``raw`` with their images as a data set (labelled -1), or None."""
    if raw.pairs is None:
        return None
    unlabelled = torch.full((raw.pairs.data.shape[0],), -1, dtype=torch.long)
    return VerificationPairs(
        images=dataset(raw.pairs.data, unlabelled),
        first=raw.pairs.first,
        second=raw.pairs.second,
        same=raw.pairs.same,
        fold=raw.pairs.fold,
        image_names=list(raw.pairs.image_names),
    )
