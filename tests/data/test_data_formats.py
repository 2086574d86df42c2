"""CIFAR, SVHN, image-folder and LFW loaders on miniature files written in the real formats."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import write_cifar, write_image, write_lfw, write_svhn

from marginkit.data import DataError, load_dataset
from marginkit.data.images import crop_box, decode_image, decode_images


def _pixels(dataset: torch.utils.data.Dataset, mean: tuple, std: tuple) -> np.ndarray:
    """Undo the normalisation: (N, C, H, W) values back to 0..255 integers."""
    inputs, _ = dataset.tensors()
    view = (1, -1, 1, 1)
    values = inputs.double() * torch.tensor(std).view(view) + torch.tensor(mean).view(view)
    return np.round(values.numpy() * 255).astype(np.int64)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar(tmp_path: Path, name: str) -> None:
    train_x, train_y, test_x, test_y = write_cifar(tmp_path, name)
    bundle = load_dataset(name, data_dir=tmp_path)
    assert bundle.input_shape == (3, 32, 32)
    assert bundle.num_classes == (10 if name == "cifar10" else 100)
    assert bundle.class_names[3] == "class3" and bundle.augment is True
    np.testing.assert_array_equal(_pixels(bundle.train, bundle.mean, bundle.std), train_x)
    np.testing.assert_array_equal(_pixels(bundle.test, bundle.mean, bundle.std), test_x)
    assert bundle.train_labels.tolist() == train_y.tolist()
    assert bundle.test_labels.tolist() == test_y.tolist()
    per_channel = train_x.transpose(1, 0, 2, 3).reshape(3, -1) / 255
    np.testing.assert_allclose(bundle.mean, per_channel.mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(bundle.std, per_channel.std(axis=1), atol=1e-12)
    # the batches folder itself is accepted as data_dir too
    folder = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(load_dataset(name, data_dir=folder).train) == len(train_y)


@pytest.mark.parametrize(
    "data", [b"\x80\x04Nr\x00\x00\x00\x08.", b"\x80\x04\x8e\x00\x00\x00\x80\x00\x00\x00\x00."]
)
def test_cifar_sizes_declared_past_the_end_are_refused_before_allocating(
    tmp_path: Path, data: bytes
) -> None:
    """The batch reader shares the .bin reader's bound: a dozen bytes that declare a 2 GB
    memo or a 512 GB byte string are refused in one line, allocating next to nothing."""
    import tracemalloc

    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"data_batch_1: expected a CIFAR python pickle") as e:
            load_dataset("cifar10", data_dir=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(e.value) and peak < 64 * 2**20


def test_cifar_missing_batch_is_listed(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"missing data_batch_3; expected cifar-10-batches-py/"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_wrong_shape(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}))
    with pytest.raises(DataError, match=r"test_batch: expected 'data' as \(N, 3072\) uint8"):
        load_dataset("cifar10", data_dir=tmp_path)


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Payload(), b"labels": []}))
    with pytest.raises(DataError, match=r"data_batch_1: expected a CIFAR python pickle.*builtins"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar_garbage_file(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match=r"data_batch_2: expected a CIFAR python pickle"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_svhn(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = write_svhn(tmp_path)
    bundle = load_dataset("svhn", data_dir=tmp_path)
    assert bundle.input_shape == (3, 32, 32) and bundle.num_classes == 10
    np.testing.assert_array_equal(_pixels(bundle.train, bundle.mean, bundle.std), train_x)
    np.testing.assert_array_equal(_pixels(bundle.test, bundle.mean, bundle.std), test_x)
    assert bundle.train_labels.tolist() == train_y.tolist()  # 10 became 0
    assert bundle.test_labels.tolist() == test_y.tolist()
    assert bundle.augment is True
    assert load_dataset("svhn", data_dir=tmp_path, augment=False).augment is False


def test_svhn_errors(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"missing test_32x32.mat; expected train_32x32.mat"):
        load_dataset("svhn", data_dir=tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB garbage")
    with pytest.raises(DataError, match=r"test_32x32.mat: expected a MATLAB .mat file"):
        load_dataset("svhn", data_dir=tmp_path)


def test_crop_box() -> None:
    # 250x250 LFW image, 112x96 output, 60 % of the height: 150 tall, 150 * 96 / 112 wide
    assert crop_box(250, 250, (112, 96), 0.6) == (61, 50, 189, 200)
    # a wide image is cropped to a centred square for a square output
    assert crop_box(60, 40, (20, 20)) == (10, 0, 50, 40)
    # a tall image, wide output: the crop is narrowed to the width
    assert crop_box(40, 100, (10, 20)) == (0, 40, 40, 60)


def _saved(path: Path, image: object) -> Path:
    image.save(path)  # type: ignore[attr-defined]
    return path


def test_images_of_every_mode_are_read_in_their_real_range(tmp_path: Path) -> None:
    """16-bit, 32-bit integer and float grey, palette, grey-alpha, RGBA and CMYK files come
    out as the colours they hold (PIL's convert("RGB") clipped 16-bit and float values at
    255: a 16-bit image came out nearly white, a float one black)."""
    from PIL import Image

    grey16 = np.array([[0, 256, 257, 32896], [40000, 65000, 65534, 65535]], dtype=np.uint16)
    grey8 = np.array([[0, 1, 1, 128], [156, 253, 255, 255]], dtype=np.uint8)  # round(v / 257)
    unit = np.array([[0.0, 0.5, 1.0, 0.25], [0.1, 0.9, 0.002, 0.998]], dtype=np.float32)
    colours = np.array([[[255, 0, 0], [0, 255, 0]], [[10, 20, 30], [200, 100, 50]]], np.uint8)
    palette = Image.new("P", (2, 2))
    palette.putpalette([255, 0, 0, 0, 255, 0, 10, 20, 30, 200, 100, 50])
    palette.putdata([0, 1, 2, 3])
    grey_alpha = Image.fromarray(np.stack([grey8, grey8[::-1]], axis=-1))  # LA
    rgba = Image.fromarray(np.concatenate([colours, np.zeros((2, 2, 1), np.uint8)], -1))
    cmyk = Image.frombytes("CMYK", (2, 1), bytes([0, 255, 255, 0, 0, 0, 0, 128]))
    as_rgb = np.repeat(grey8[..., None], 3, axis=-1)
    cases = {
        "grey16.png": (Image.fromarray(grey16), as_rgb),  # mode I;16
        "grey16.tif": (Image.fromarray(grey16), as_rgb),
        "grey32.tif": (Image.fromarray(grey16.astype(np.int32)), as_rgb),  # mode I
        "float.tif": (Image.fromarray(unit), np.rint(unit.astype(np.float64) * 255)[..., None]),
        "palette.png": (palette, colours),
        "grey_alpha.png": (grey_alpha, as_rgb),
        "rgba.png": (rgba, colours),  # alpha 0 everywhere: the colours as stored
        "cmyk.tif": (cmyk, np.array([[[255, 0, 0], [127, 127, 127]]])),
    }
    for name, (image, expected) in cases.items():
        path = _saved(tmp_path / name, image)
        size = expected.shape[:2]
        decoded = decode_image(path, size, 1.0, name)  # the whole image at its own size
        np.testing.assert_array_equal(decoded, np.broadcast_to(expected, decoded.shape), name)
    for name, mode in (("grey16.png", "I;16"), ("grey32.tif", "I"), ("float.tif", "F")):
        with Image.open(tmp_path / name) as image:
            assert image.mode == mode


def test_images_outside_their_modes_range_are_refused_in_one_line(tmp_path: Path) -> None:
    from PIL import Image

    wide = np.array([[0, 70000]], dtype=np.int32)
    bright = np.array([[0.0, 2.5]], dtype=np.float32)
    missing = np.array([[0.5, np.nan]], dtype=np.float32)
    cases = [
        (
            wide,
            "wide.tif",
            r"wide.tif: expected 16-bit pixel values 0..65535 in a I image, "
            r"found 0..70000",
        ),
        (
            bright,
            "bright.tif",
            r"bright.tif: expected float pixel values in \[0, 1\] "
            r"\(0 black, 1 white\), found 0..2.5$",
        ),
        (missing, "missing.tif", r"found 0.5..0.5 and 1 NaN or infinite$"),
    ]
    for array, name, message in cases:
        path = _saved(tmp_path / name, Image.fromarray(array))
        with pytest.raises(DataError, match=message):
            decode_images([path], (1, 2), names=[name])


def test_decompression_bombs_are_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    """Over PIL.Image.MAX_IMAGE_PIXELS (lowered here from 89 Mpx): PIL warned (and decoded)
    up to twice the limit and raised DecompressionBombError (a traceback) beyond."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for side in (12, 20):  # 144 pixels: PIL's warning; 400: PIL's error
        path = tmp_path / f"bomb{side}.png"
        write_image(path, np.zeros((side, side, 3), dtype=np.uint8))
        message = (
            rf"{side}.png: refusing a possible decompression bomb: {side * side} pixels, "
            r"over the 100 of PIL.Image.MAX_IMAGE_PIXELS$"
        )
        with pytest.raises(DataError, match=message):
            decode_image(path, (8, 8), 1.0, str(path))
        with pytest.raises(DataError, match=message):
            decode_images([path.read_bytes()], (8, 8), names=[str(path)])  # as a .bin's
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    assert decode_image(tmp_path / "bomb20.png", (8, 8), 1.0, "bomb20.png").shape == (8, 8, 3)


def test_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    expected = {}
    for person, count in (("bob", 3), ("alice", 2), ("carol", 4)):
        for k in range(count):
            array = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)  # H 40, W 60
            write_image(tmp_path / person / f"{person}_{k:04d}.png", array)
            expected[(person, k)] = array[:, 10:50]  # the centred 40x40 square
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    bundle = load_dataset("folder", data_dir=tmp_path, image_size=(40, 40))
    assert bundle.class_names == ["alice", "bob", "carol"]  # sorted, 'empty' has no images
    assert bundle.num_classes == 3 and bundle.input_shape == (3, 40, 40)
    assert bundle.test is None and bundle.pairs is None
    assert bundle.train_labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2]
    pixels = _pixels(bundle.train, bundle.mean, bundle.std)
    order = [("alice", 0), ("alice", 1), ("bob", 0), ("bob", 1), ("bob", 2)]
    for index, key in enumerate(order):
        np.testing.assert_array_equal(pixels[index], expected[key].transpose(2, 0, 1))
    held = load_dataset("folder", data_dir=tmp_path, image_size=(40, 40), validation_fraction=0.3)
    assert len(held.train) + len(held.validation) == 9 and len(held.validation) == 3


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data_dir: the 'folder' data set needs"):
        load_dataset("folder")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("text")
    with pytest.raises(DataError, match=r"expected one sub-folder per class holding image"):
        load_dataset("folder", data_dir=tmp_path)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"broken.jpg: expected a readable image file"):
        load_dataset("folder", data_dir=tmp_path)


def _write_protocol(directory: Path) -> dict[str, np.ndarray]:
    people = {"Ann_A": 3, "Ben_B": 1, "Cid_C": 2, "Dee_D": 2, "Eve_E": 1}
    colours = write_lfw(directory, people)
    (directory / "peopleDevTrain.txt").write_text("3\nAnn_A\t3\nBen_B\t1\nCid_C\t2\n")
    (directory / "pairsDevTest.txt").write_text("1\nDee_D\t1\t2\nDee_D\t1\tEve_E\t1\n")
    (directory / "pairs.txt").write_text(
        "2\t1\nAnn_A\t1\t2\nBen_B\t1\tCid_C\t2\nDee_D\t2\t1\nEve_E\t1\tAnn_A\t3\n"
    )
    return colours


def _colours(dataset: torch.utils.data.Dataset, mean: tuple, std: tuple) -> list[list[int]]:
    pixels = _pixels(dataset, mean, std)  # (N, 3, H, W), flat colours
    assert (pixels == pixels[:, :, :1, :1]).all()
    return pixels[:, :, 0, 0].tolist()


def test_lfw_miniature(tmp_path: Path) -> None:
    colours = _write_protocol(tmp_path)
    bundle = load_dataset("lfw", data_dir=tmp_path, min_images_per_person=2)
    assert bundle.class_names == ["Ann_A", "Cid_C"]  # Ben_B has one image
    assert bundle.input_shape == (3, 112, 96) and bundle.test is None
    assert bundle.train_labels.tolist() == [0, 0, 0, 1, 1]
    names = ["Ann_A/Ann_A_0001", "Ann_A/Ann_A_0002", "Ann_A/Ann_A_0003"]
    names += ["Cid_C/Cid_C_0001", "Cid_C/Cid_C_0002"]
    wanted = [colours[f"{n}.jpg"].tolist() for n in names]
    assert _colours(bundle.train, bundle.mean, bundle.std) == wanted
    pairs = bundle.pairs
    assert (
        len(pairs) == 2 and pairs.same.tolist() == [True, False] and pairs.fold.tolist() == [0, 0]
    )
    assert pairs.image_names == [
        "Dee_D/Dee_D_0001.jpg",
        "Dee_D/Dee_D_0002.jpg",
        "Eve_E/Eve_E_0001.jpg",
    ]
    assert pairs.first.tolist() == [0, 0] and pairs.second.tolist() == [1, 2]
    image, label = pairs.images[2]
    assert label == -1 and image.shape == (3, 112, 96)
    assert (
        _colours(pairs.images, bundle.mean, bundle.std)[2]
        == colours["Eve_E/Eve_E_0001.jpg"].tolist()
    )


def test_lfw_view_two_pairs(tmp_path: Path) -> None:
    _write_protocol(tmp_path)
    bundle = load_dataset(
        "lfw",
        data_dir=tmp_path,
        pairs_file="pairs.txt",
        image_size=(56, 48),
        min_images_per_person=1,
    )
    assert bundle.num_classes == 3 and bundle.input_shape == (3, 56, 48)
    pairs = bundle.pairs
    assert pairs.same.tolist() == [True, False, True, False]
    assert pairs.fold.tolist() == [0, 0, 1, 1]
    named = [
        (pairs.image_names[a], pairs.image_names[b])
        for a, b in zip(pairs.first, pairs.second, strict=True)
    ]
    assert named[1] == ("Ben_B/Ben_B_0001.jpg", "Cid_C/Cid_C_0002.jpg")
    assert named[2] == ("Dee_D/Dee_D_0002.jpg", "Dee_D/Dee_D_0001.jpg")


def test_lfw_errors(tmp_path: Path) -> None:
    _write_protocol(tmp_path)
    (tmp_path / "pairsDevTest.txt").write_text("1\nDee_D\t1\t7\nDee_D\t1\tZed_Z\t1\n")
    with pytest.raises(
        DataError, match=r"do not exist .*line 2: Dee_D/Dee_D_0007.jpg, line 3: Zed_Z/Zed_Z_0001"
    ):
        load_dataset("lfw", data_dir=tmp_path, min_images_per_person=1)
    (tmp_path / "pairsDevTest.txt").write_text("2\nDee_D\t1\t2\nDee_D\t1\tEve_E\t1\n")
    with pytest.raises(
        DataError, match=r"pairsDevTest.txt: header promises 1 x \(2 x 2\) = 4 pairs"
    ):
        load_dataset("lfw", data_dir=tmp_path, min_images_per_person=1)
    (tmp_path / "pairsDevTest.txt").write_text("1\nDee_D\t1\tEve_E\t1\nDee_D\t1\t2\n")
    with pytest.raises(DataError, match=r"line 2: expected 'Name i j' \(matched\)"):
        load_dataset("lfw", data_dir=tmp_path, min_images_per_person=1)
    with pytest.raises(DataError, match=r"no person has >= 4 images"):
        load_dataset("lfw", data_dir=tmp_path, min_images_per_person=4)
    (tmp_path / "peopleDevTrain.txt").write_text("1\nAnn_A\t5\n")
    with pytest.raises(DataError, match=r"Ann_A_0004.jpg: missing; peopleDevTrain.txt lists 5"):
        load_dataset("lfw", data_dir=tmp_path, min_images_per_person=1)
    (tmp_path / "peopleDevTrain.txt").write_text("2\nAnn_A\t3\n")
    with pytest.raises(DataError, match=r"peopleDevTrain.txt: line 3: expected 'Name count'"):
        load_dataset("lfw", data_dir=tmp_path, min_images_per_person=1)
    (tmp_path / "lfw-deepfunneled").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"expected an LFW image folder \(lfw-deepfunneled"):
        load_dataset("lfw", data_dir=tmp_path, min_images_per_person=1)
