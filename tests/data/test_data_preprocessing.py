"""marginkit.data.preprocessing: image files become exactly the inputs a run trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import write_image, write_image_folder

from marginkit.data import DataError, load_dataset
from marginkit.data.preprocessing import Preprocessing, preprocessing_of


def test_a_folder_runs_preprocessing_reproduces_its_training_inputs(tmp_path: Path) -> None:
    names = write_image_folder(tmp_path, size=(20, 30))  # cropped to a square, resized
    bundle = load_dataset("folder", data_dir=tmp_path, image_size=(12, 12), progress=False)
    found = preprocessing_of(bundle, "folder")
    assert found is not None and found.input_shape == (3, 12, 12)
    assert found.mean == bundle.mean and found.std == bundle.std
    assert found.crop_height_fraction == 1.0 and found.channels == "RGB"
    inputs, _ = bundle.train.tensors()
    loaded = found.load_images([tmp_path / name for name in names])
    torch.testing.assert_close(loaded, inputs, rtol=0, atol=1e-6)


def test_lfw_keeps_its_crop() -> None:
    from types import SimpleNamespace

    from marginkit.data.lfw import LFW_CROP_FRACTION

    bundle = SimpleNamespace(mean=(0.5,) * 3, std=(0.2,) * 3, input_shape=(3, 8, 8), train=None)
    found = preprocessing_of(bundle, "LFW")
    assert found is not None and found.crop_height_fraction == LFW_CROP_FRACTION == 0.6


def test_grey_inputs_convert_as_pil_does(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    colour = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    write_image(tmp_path / "colour.png", colour)
    grey = Preprocessing(input_shape=(1, 6, 6), mean=(0.25,), std=(0.5,))
    assert grey.channels == "L"
    expected = np.asarray(Image.fromarray(colour).convert("L"), dtype=np.float32)
    loaded = grey.load_images([tmp_path / "colour.png"])  # (1, 1, 6, 6)
    np.testing.assert_allclose(loaded[0, 0].numpy(), (expected / 255 - 0.25) / 0.5, atol=1e-6)
    # a grey image keeps its values exactly (the luma weights sum to one)
    level = torch.full((1, 3, 2, 2), 77, dtype=torch.uint8)
    expected_level = torch.full((1, 1, 2, 2), (77 / 255 - 0.25) / 0.5)
    torch.testing.assert_close(grey.normalise(level), expected_level, rtol=0, atol=1e-6)


def test_the_record_round_trips_and_bad_values_are_named() -> None:
    prep = Preprocessing(input_shape=(3, 4, 5), mean=(0.1, 0.2, 0.3), std=(1, 2, 3))
    assert Preprocessing.from_dict(prep.to_dict(), "x.json") == prep
    with pytest.raises(DataError, match=r"^x.json: expected a preprocessing record, missing"):
        Preprocessing.from_dict({"mean": [0.1]}, "x.json")
    with pytest.raises(DataError, match=r"std: expected 3 finite values"):
        Preprocessing(input_shape=(3, 4, 5), mean=(0, 0, 0), std=(1, 1))
    with pytest.raises(DataError, match=r"std: expected positive values"):
        Preprocessing(input_shape=(1, 4, 5), mean=(0,), std=(0,))
    with pytest.raises(DataError, match=r"input_shape: image files need a \(1 or 3, H, W\)"):
        Preprocessing(input_shape=(2, 4, 5), mean=(0, 0), std=(1, 1)).load_images([])
