"""IDX loaders (MNIST, Fashion-MNIST, KMNIST) on files the tests write, and the shared MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import SHARED_DATA, needs_real, write_idx, write_idx_dataset

from marginkit.data import DataError, load_dataset


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_loader_reads_written_files(tmp_path: Path, name: str, compress: bool) -> None:
    train_x, train_y, test_x, test_y = write_idx_dataset(tmp_path, compress=compress)
    bundle = load_dataset(name, data_dir=tmp_path)
    assert bundle.num_classes == 10 and bundle.input_shape == (1, 28, 28)
    assert len(bundle.train) == 60 and len(bundle.test) == 20
    mean = train_x.astype(np.float64).mean() / 255
    std = (train_x.astype(np.float64) / 255).std()
    assert bundle.mean[0] == pytest.approx(mean, abs=1e-12)
    assert bundle.std[0] == pytest.approx(std, abs=1e-12)
    expected = (train_x[7].astype(np.float64) / 255 - mean) / std
    image, label = bundle.train[7]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-5)
    assert label == int(train_y[7])
    inputs, labels = bundle.test.tensors()
    np.testing.assert_allclose(inputs[:, 0].numpy(), (test_x / 255 - mean) / std, atol=1e-5)
    assert labels.tolist() == test_y.tolist()
    assert bundle.train_labels.tolist() == train_y.tolist()


def test_wrong_magic_number_names_the_file(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    # labels written where images are expected: magic 2049 instead of 2051
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(60, dtype=np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*magic number 2051.*got 2049"):
        load_dataset("mnist", data_dir=tmp_path)


def test_truncated_file_names_expected_size(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: expected 15696 bytes"):
        load_dataset("mnist", data_dir=tmp_path)


def test_truncated_gzip_is_a_data_error(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, compress=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: not a readable gzip"):
        load_dataset("mnist", data_dir=tmp_path)


def test_label_count_must_match_images(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(59, dtype=np.uint8))
    with pytest.raises(
        DataError, match=r"train-labels-idx1-ubyte: expected dimension 0 of size 60"
    ):
        load_dataset("mnist", data_dir=tmp_path)


def test_labels_out_of_range(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(20, 10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: expected labels 0..9"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_files_are_listed(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte.*expected the files"):
        load_dataset("mnist", data_dir=tmp_path)


def test_data_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data_dir: .*nowhere is not a folder"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")


def test_uncompressed_and_gzip_give_identical_data(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "plain")
    write_idx_dataset(tmp_path / "gz", compress=True)
    plain = load_dataset("mnist", data_dir=tmp_path / "plain").train.tensors()
    packed = load_dataset("mnist", data_dir=tmp_path / "gz").train.tensors()
    assert torch.equal(plain[0], packed[0]) and torch.equal(plain[1], packed[1])


MNIST_DIR = SHARED_DATA / "mnist"
# Per-digit counts of the official MNIST files (LeCun et al., 1998).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_real("mnist")
def test_shared_mnist() -> None:
    bundle = load_dataset("mnist", data_dir=MNIST_DIR)
    assert len(bundle.train) == 60000 and len(bundle.test) == 10000
    assert torch.bincount(bundle.train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(bundle.test_labels).tolist() == MNIST_TEST_COUNTS
    assert bundle.train.data.dtype == torch.uint8 and bundle.train.data.shape == (60000, 1, 28, 28)
    # The usual MNIST normalisation constants, recomputed from the pixels.
    assert bundle.mean[0] == pytest.approx(0.1307, abs=1e-4)
    assert bundle.std[0] == pytest.approx(0.3081, abs=1e-4)
    with gzip.open(MNIST_DIR / "t10k-images-idx3-ubyte.gz") as handle:
        raw = np.frombuffer(handle.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    image, _ = bundle.test[1234]
    expected = (raw[1234] / 255 - bundle.mean[0]) / bundle.std[0]
    np.testing.assert_allclose(image[0].numpy(), expected, atol=1e-5)
