"""Data sets for training and evaluating margin heads.

``load_dataset(name, ...)`` returns a :class:`DataBundle`: the training, validation and test
splits as torch Datasets (items ``(float32 input, int label)``, each with ``.tensors()`` for
the whole split at once), the class count, input shape and, for faces, verification pairs.

Where the files come from: ``data_dir``, else ``$MARGINKIT_DATA/<name>`` (a folder of data
sets by name), else a download into the cache.

Importing this package is cheap: scikit-learn, scipy and PIL load only when a data set that
needs them is read.
"""

from __future__ import annotations

from marginkit.data.arrays import ArrayDataset
from marginkit.data.augment import augment_batch
from marginkit.data.bundle import DataBundle, VerificationPairs
from marginkit.data.errors import DataError
from marginkit.data.loader import DATA_ENVIRONMENT_VARIABLE, DATASETS, data_root, load_dataset

__all__ = [
    "DATASETS",
    "DATA_ENVIRONMENT_VARIABLE",
    "ArrayDataset",
    "DataBundle",
    "DataError",
    "VerificationPairs",
    "augment_batch",
    "data_root",
    "load_dataset",
]
