"""One reader per file format, all called alike: the entries of
:data:`marginkit.registry.DATASETS`.

Each reader imports its format's module when called, so a data set's dependencies (scipy,
PIL) load only when it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from marginkit.data.errors import DataError
from marginkit.data.raw import RawSplits

__all__ = [
    "ReadRequest",
    "read_bundled_digits",
    "read_cifar_batches",
    "read_generated_glyphs",
    "read_idx_files",
    "read_image_folder",
    "read_lfw_tree",
    "read_record_folder",
    "read_svhn_files",
]

#: ``(height, width)`` of ``folder`` and ``lfw`` images (and of ``rec`` images without a
#: ``property`` file) when no ``image_size`` is given.
FACE_IMAGE_SIZE = (112, 96)


@dataclass(frozen=True)
class ReadRequest:
    """What a reader is asked to decode.

    Attributes:
        name: the data set's canonical name.
        directory: the folder holding its files (None for the bundled digits and the
            generated glyphs).
        image_size: ``(height, width)`` of ``folder``/``lfw`` images (None: the default).
        min_images_per_person: ``lfw``: smallest class kept.
        pairs_file: ``lfw``/``folder`` verification pairs file.
        progress: report image-decoding progress on stderr.
        workers: ``folder``/``lfw``/``rec``: 0 decodes the training images into memory; more
            indexes them, to be decoded lazily by that many ``DataLoader`` processes
            (:mod:`marginkit.data.stream`).
    """

    name: str
    directory: Path | None
    image_size: tuple[int, int] | None
    min_images_per_person: int
    pairs_file: str
    progress: bool
    workers: int = 0

    def folder(self) -> Path:
        """The folder to read (every data set but the digits and the glyphs has
        one)."""
        if self.directory is None:
            raise DataError(f"data_dir: data set {self.name!r} needs a folder to read")
        return self.directory


def read_bundled_digits(request: ReadRequest) -> RawSplits:
    """scikit-learn's 8x8 digits, bundled with it (no folder)."""
    from marginkit.data.digits import read_digits

    return read_digits()


def read_generated_glyphs(request: ReadRequest) -> RawSplits:
    """The glyphs, drawn by a program from a fixed seed (no folder)."""
    from marginkit.data.glyphs import read_glyphs

    return read_glyphs()


def read_idx_files(request: ReadRequest) -> RawSplits:
    """MNIST, Fashion-MNIST or KMNIST from their IDX files."""
    from marginkit.data.idx import read_idx_dataset

    return read_idx_dataset(request.folder(), request.name)


def read_cifar_batches(request: ReadRequest) -> RawSplits:
    """CIFAR-10 or CIFAR-100 from their pickled batches."""
    from marginkit.data.cifar import read_cifar

    return read_cifar(request.folder(), request.name)


def read_svhn_files(request: ReadRequest) -> RawSplits:
    """SVHN from its ``.mat`` files."""
    from marginkit.data.svhn import read_svhn

    return read_svhn(request.folder())


def read_image_folder(request: ReadRequest) -> RawSplits:
    """Images in one sub-folder per class."""
    from marginkit.data.folder import read_folder

    size = request.image_size or FACE_IMAGE_SIZE
    return read_folder(
        request.folder(),
        size,
        request.pairs_file,
        progress=request.progress,
        workers=request.workers,
    )


def read_lfw_tree(request: ReadRequest) -> RawSplits:
    """LFW's DevTrain identities and the images of its pairs file."""
    from marginkit.data.lfw import read_lfw

    size = request.image_size or FACE_IMAGE_SIZE
    return read_lfw(
        request.folder(),
        size,
        request.min_images_per_person,
        request.pairs_file,
        progress=request.progress,
        workers=request.workers,
    )


def read_record_folder(request: ReadRequest) -> RawSplits:
    """MXNet RecordIO files (``train.rec``, ``train.idx``; InsightFace's or im2rec's)."""
    from marginkit.data.rec import read_rec

    return read_rec(
        request.folder(),
        request.image_size,
        FACE_IMAGE_SIZE,
        progress=request.progress,
        workers=request.workers,
    )
