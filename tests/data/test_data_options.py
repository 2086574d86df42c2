"""Class subsets, symmetric label noise, validation splits and argument checking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import SHARED_DATA, needs_real, write_idx

from marginkit.data import DATASETS, load_dataset
from marginkit.data.options import derived_generator, inject_symmetric_noise


def _write_labelled(directory: Path, train_labels: np.ndarray, test_labels: np.ndarray) -> None:
    """An IDX data set of 2x2 images whose first pixel encodes the sample index mod 256."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, labels in (("train", train_labels), ("t10k", test_labels)):
        images = np.zeros((len(labels), 2, 2), dtype=np.uint8)
        images[:, 0, 0] = np.arange(len(labels)) % 256
        images[:, 1, 1] = labels * 20  # the class is visible in the pixels too
        write_idx(directory / f"{prefix}-images-idx3-ubyte", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    _write_labelled(tmp_path, rng.integers(0, 10, 3000), rng.integers(0, 10, 500))
    return tmp_path


def _class_pixel(dataset: torch.utils.data.Dataset) -> torch.Tensor:
    """The original class of each sample, read back from its pixels."""
    return torch.round(dataset.data[:, 0, 1, 1].double() / 20).long()


def test_noise_rate_and_targets() -> None:
    labels = torch.arange(200_000) % 10
    noisy = inject_symmetric_noise(labels, 0.3, 10, derived_generator(0, "label_noise"))
    flipped = noisy != labels
    assert float(flipped.double().mean()) == pytest.approx(0.3, abs=0.005)
    # a flip goes to each of the 9 other classes equally often: offset 1..9 uniform
    offsets = ((noisy - labels) % 10)[flipped]
    shares = torch.bincount(offsets, minlength=10)[1:].double() / offsets.numel()
    assert torch.allclose(shares, torch.full((9,), 1 / 9, dtype=torch.float64), atol=0.005)
    # and every class receives flipped labels in equal measure
    received = torch.bincount(noisy[flipped], minlength=10).double() / flipped.sum()
    assert torch.allclose(received, torch.full((10,), 0.1, dtype=torch.float64), atol=0.005)


def test_label_noise_in_bundle(labelled: Path) -> None:
    clean = load_dataset("mnist", data_dir=labelled)
    noisy = load_dataset("mnist", data_dir=labelled, label_noise=0.4, seed=7)
    assert torch.equal(noisy.train_clean_labels, clean.train_labels)
    assert torch.equal(noisy.train_clean_labels, _class_pixel(noisy.train))
    rate = float(noisy.noisy_mask.double().mean())
    assert rate == pytest.approx(0.4, abs=0.04)  # 3000 labels: 4.5 standard deviations
    assert not bool(
        (noisy.train_labels[noisy.noisy_mask] == noisy.train_clean_labels[noisy.noisy_mask]).any()
    )
    # items and tensors() carry the noisy labels; the test set is untouched
    assert [noisy.train[k][1] for k in range(50)] == noisy.train_labels[:50].tolist()
    assert torch.equal(noisy.train.tensors()[1], noisy.train_labels)
    assert torch.equal(noisy.test_labels, clean.test_labels)
    again = load_dataset("mnist", data_dir=labelled, label_noise=0.4, seed=7)
    other = load_dataset("mnist", data_dir=labelled, label_noise=0.4, seed=8)
    assert torch.equal(again.train_labels, noisy.train_labels)
    assert not torch.equal(other.train_labels, noisy.train_labels)


def test_noise_applies_to_training_part_only(labelled: Path) -> None:
    bundle = load_dataset(
        "mnist", data_dir=labelled, label_noise=0.5, validation_fraction=0.2, seed=1
    )
    assert torch.equal(bundle.validation_labels, _class_pixel(bundle.validation))
    assert torch.equal(bundle.train_clean_labels, _class_pixel(bundle.train))
    assert float(bundle.noisy_mask.double().mean()) == pytest.approx(0.5, abs=0.05)


def test_class_subset(labelled: Path) -> None:
    full = load_dataset("mnist", data_dir=labelled)
    subset = load_dataset("mnist", data_dir=labelled, classes=[3, 1, 7])
    assert subset.num_classes == 3 and subset.class_names == ["3", "1", "7"]
    original_train = _class_pixel(subset.train)
    assert set(original_train.tolist()) == {1, 3, 7}
    mapping = {3: 0, 1: 1, 7: 2}
    assert subset.train_labels.tolist() == [mapping[c] for c in original_train.tolist()]
    assert len(subset.train) == int(torch.isin(full.train_labels, torch.tensor([1, 3, 7])).sum())
    # the test set keeps every class: unknown ones numbered 3.. in increasing original order
    unknown = {c: 3 + k for k, c in enumerate([0, 2, 4, 5, 6, 8, 9])}
    expected = [{**mapping, **unknown}[c] for c in full.test_labels.tolist()]
    assert subset.test_labels.tolist() == expected
    assert len(subset.test) == len(full.test)
    assert subset.test_class_names == ["3", "1", "7", "0", "2", "4", "5", "6", "8", "9"]
    assert int((subset.test_labels < subset.num_classes).sum()) == int(
        torch.isin(full.test_labels, torch.tensor([1, 3, 7])).sum()
    )


def test_class_subset_errors(labelled: Path) -> None:
    with pytest.raises(
        ValueError, match=r"classes: \[10, 12\] absent; this data set has classes 0..9"
    ):
        load_dataset("mnist", data_dir=labelled, classes=[0, 10, 12])
    with pytest.raises(ValueError, match=r"classes: expected distinct classes, \[2\] appear"):
        load_dataset("mnist", data_dir=labelled, classes=[2, 3, 2])
    with pytest.raises(ValueError, match=r"classes: expected at least one class"):
        load_dataset("mnist", data_dir=labelled, classes=[])
    with pytest.raises(TypeError, match=r"classes: expected ints"):
        load_dataset("mnist", data_dir=labelled, classes=[1.5])
    with pytest.raises(ValueError, match=r"classes: .*absent"):
        load_dataset("mnist", data_dir=labelled, classes=[-1])


def test_validation_split(labelled: Path) -> None:
    full = load_dataset("mnist", data_dir=labelled)
    bundle = load_dataset("mnist", data_dir=labelled, validation_fraction=0.25, seed=4)
    assert len(bundle.train) + len(bundle.validation) == len(full.train)
    assert len(bundle.validation) == round(0.25 * len(full.train))

    # disjoint and together the original set: the first pixel + class identify a sample
    def keys(dataset: torch.utils.data.Dataset) -> list[tuple[int, int]]:
        return list(
            zip(dataset.data[:, 0, 0, 0].tolist(), _class_pixel(dataset).tolist(), strict=True)
        )

    assert sorted(keys(bundle.train) + keys(bundle.validation)) == sorted(keys(full.train))
    # stratified: every class holds floor or ceil of its 25 % share
    counts = torch.bincount(full.train_labels, minlength=10).double()
    held = torch.bincount(bundle.validation_labels, minlength=10).double()
    assert bool(((held - counts * 0.25).abs() < 1).all())
    assert torch.equal(bundle.validation_labels, _class_pixel(bundle.validation))
    same = load_dataset("mnist", data_dir=labelled, validation_fraction=0.25, seed=4)
    other = load_dataset("mnist", data_dir=labelled, validation_fraction=0.25, seed=5)
    assert torch.equal(same.validation.data, bundle.validation.data)
    assert not torch.equal(other.validation.data, bundle.validation.data)


def test_validation_keeps_a_training_sample_per_class(tmp_path: Path) -> None:
    _write_labelled(tmp_path, np.array([0, 1, 1, 1]), np.array([0]))
    bundle = load_dataset("mnist", data_dir=tmp_path, validation_fraction=0.9)
    assert sorted(bundle.train_labels.tolist()) == [0, 1]


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, float("nan")])
def test_label_noise_range(labelled: Path, value: float) -> None:
    with pytest.raises(ValueError, match=r"label_noise: expected a number in \[0, 1\)"):
        load_dataset("mnist", data_dir=labelled, label_noise=value)


def test_argument_errors(labelled: Path) -> None:
    with pytest.raises(TypeError, match=r"label_noise: expected a number in \[0, 1\), got str"):
        load_dataset("mnist", data_dir=labelled, label_noise="0.2")
    with pytest.raises(ValueError, match=r"validation_fraction: expected a number in \[0, 1\)"):
        load_dataset("mnist", data_dir=labelled, validation_fraction=1.0)
    with pytest.raises(
        ValueError, match=r"name: unknown data set 'imagenet'; expected one of digits"
    ):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"image_size: expected \(height, width\)"):
        load_dataset("folder", data_dir=labelled, image_size=(0, 5))
    with pytest.raises(ValueError, match=r"min_images_per_person: expected an int >= 1"):
        load_dataset("lfw", data_dir=labelled, min_images_per_person=0)
    with pytest.raises(TypeError, match=r"seed: expected an int"):
        load_dataset("digits", seed=1.5)
    with pytest.raises(ValueError, match=r"label_noise: needs at least 2 known classes"):
        load_dataset("mnist", data_dir=labelled, classes=[4], label_noise=0.1)
    assert "digits" in DATASETS and "rec" in DATASETS and len(DATASETS) == 11


@needs_real("mnist")
def test_noise_rate_on_shared_mnist() -> None:
    bundle = load_dataset("mnist", data_dir=SHARED_DATA / "mnist", label_noise=0.2, seed=3)
    assert float(bundle.noisy_mask.double().mean()) == pytest.approx(0.2, abs=0.008)
    assert torch.bincount(bundle.train_clean_labels).tolist()[1] == 6742


def test_classes_accept_numpy_and_tensor_integers(labelled: Path) -> None:
    expected = load_dataset("mnist", data_dir=labelled, classes=[2, 5]).train_labels
    for classes in (np.array([2, 5]), torch.tensor([2, 5]), (2, 5)):
        assert torch.equal(
            load_dataset("mnist", data_dir=labelled, classes=classes).train_labels, expected
        )
    with pytest.raises(TypeError, match=r"classes: expected a sequence of ints, got str"):
        load_dataset("mnist", data_dir=labelled, classes="0-6")
