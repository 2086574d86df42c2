"""marginkit.data.binfile: InsightFace .bin files as real writers make them, read without
running code; hostile and damaged files refused with one line naming the file."""

from __future__ import annotations

import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from marginkit.data import DataError
from marginkit.data.binfile import BinPairs, encode_bin, read_bin

IMAGES = [bytes([index, 255, 0, 216]) * 3 for index in range(4)]
FLAGS = [True, False]


def write(path: Path, content: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    path.write_bytes(pickle.dumps(content, protocol=protocol))
    return path


def test_encode_bin_round_trip_keeps_images_and_flags(tmp_path: Path) -> None:
    shared = IMAGES[0]
    images = [shared, IMAGES[1], IMAGES[2], shared]  # one image in two pairs
    path = tmp_path / "pairs.bin"
    path.write_bytes(encode_bin(images, FLAGS))
    assert read_bin(path) == BinPairs(images, FLAGS)
    # the layout InsightFace's readers unpack: a tuple (list of bytes, list of bool)
    loaded = pickle.loads(path.read_bytes())
    assert isinstance(loaded, tuple) and loaded == (images, FLAGS)
    assert path.read_bytes().count(shared) == 1  # stored once, referred to again


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_what_real_writers_store_is_read_at_every_protocol(tmp_path: Path, protocol: int) -> None:
    """bytes (lfw2pack.py), cv2.imencode's (N, 1) uint8 arrays (cfp2pack.py,
    agedb2pack2.py), numpy booleans as scalars or an array; Python 3 pickles bytes through
    ``_codecs.encode`` at protocols 0-2."""
    arrays = [np.frombuffer(image, np.uint8).reshape(-1, 1).copy() for image in IMAGES]
    contents = [
        (IMAGES, FLAGS),
        [IMAGES, FLAGS],
        (tuple(IMAGES), tuple(FLAGS)),
        (arrays, [np.bool_(flag) for flag in FLAGS]),
        (arrays, np.array(FLAGS)),
    ]
    for number, content in enumerate(contents):
        read = read_bin(write(tmp_path / f"{number}.bin", content, protocol))
        assert read.images == IMAGES and read.same == FLAGS, (protocol, number)
        assert all(type(image) is bytes for image in read.images)
        assert all(type(flag) is bool for flag in read.same)


def test_numpy_1_names_are_read_too(tmp_path: Path) -> None:
    """numpy < 2 pickles name ``numpy.core.multiarray``; numpy 2 ``numpy._core``."""
    arrays = [np.frombuffer(image, np.uint8).copy() for image in IMAGES]
    data = pickle.dumps((arrays, [np.bool_(True), np.bool_(False)]), protocol=2)
    old = data.replace(b"numpy._core.", b"numpy.core.")  # GLOBAL names end at a newline
    assert b"numpy.core.multiarray" in old
    (tmp_path / "old.bin").write_bytes(old)
    assert read_bin(tmp_path / "old.bin") == BinPairs(IMAGES, FLAGS)


def test_a_python_2_pickle_of_str_images_reads_as_bytes(tmp_path: Path) -> None:
    """lfw.bin was written by Python 2 (protocol 2): its images are ``str`` (raw bytes,
    opcode SHORT_BINSTRING), read back as bytes."""
    first, second = b"\xff\xd8\x00\x01", b"\x89PNG\xfe"
    data = (
        b"\x80\x02(]q\x00(U\x04" + first + b"U\x05" + second + b"e]q\x01\x88at."
    )  # PROTO 2, MARK, list [str, str], list [True], TUPLE, STOP
    (tmp_path / "py2.bin").write_bytes(data)
    assert read_bin(tmp_path / "py2.bin") == BinPairs([first, second], [True])


class _SystemCall:
    """Pickles as a call of os.system: the classic hostile pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, (self.code,))


def test_a_malicious_pickle_is_refused_before_its_payload_runs(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    hostile = [
        ([_SystemCall(f"touch {marker}"), IMAGES[1]], [True]),
        _SystemCall(f"touch {marker}"),
        ([IMAGES[0], IMAGES[1]], [_Eval(f"open({str(marker)!r}, 'w')")]),
    ]
    for number, content in enumerate(hostile):
        for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
            path = write(tmp_path / f"evil-{number}-{protocol}.bin", content, protocol)
            with pytest.raises(DataError, match=r"refusing to load the global") as caught:
                read_bin(path)
            assert str(caught.value).startswith(f"{path}: not a verification .bin file")
            assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_stand_ins_cannot_be_altered_by_a_pickle(tmp_path: Path) -> None:
    """A BUILD on the stand-in of numpy.dtype (setting an attribute) is refused, and the
    stand-in still works for the next file."""
    hostile = (
        b"\x80\x02cnumpy\ndtype\nq\x00N}q\x01X\x04\x00\x00\x00codeq\x02X\x02\x00\x00\x00u1s\x86b."
    )
    path = tmp_path / "alter.bin"
    path.write_bytes(hostile)
    with pytest.raises(DataError, match=r"refusing to set an attribute of numpy.dtype"):
        read_bin(path)
    arrays = [np.frombuffer(image, np.uint8).copy() for image in IMAGES]
    assert read_bin(write(tmp_path / "next.bin", (arrays, FLAGS))).images == IMAGES


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"images": IMAGES}, r"expected a pickled pair \(images, flags\), got dict"),
        ((IMAGES, FLAGS, FLAGS), r"got tuple of length 3"),
        ((IMAGES, [True]), r"expected 2 images per flag \(2 for 1 pairs\), got 4"),
        (([], []), r"holds no pairs"),
        ((IMAGES, [True, 1]), r"flag 1: expected a boolean, got int"),
        (
            ([*IMAGES[:3], "text"], FLAGS),
            r"image 3: expected the bytes of an encoded image, got str",
        ),
        (([*IMAGES[:3], 7], FLAGS), r"image 3: expected the bytes of an encoded image, got int"),
        ((IMAGES, "TF"), r"expected a list of same/different flags, got str"),
        ((b"".join(IMAGES), FLAGS), r"expected a list of encoded images, got bytes"),
        (([*IMAGES[:3], np.zeros(4, np.float32)], FLAGS), r"image 3: .*a numpy array of f4"),
        ((IMAGES, [True, np.int64(1)]), r"a numpy scalar that is not a boolean"),
    ],
)
def test_a_foreign_structure_is_refused_naming_the_file(
    tmp_path: Path, content: object, message: str
) -> None:
    path = write(tmp_path / "foreign.bin", content)
    with pytest.raises(DataError, match=message) as caught:
        read_bin(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_damaged_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    whole = encode_bin(IMAGES, FLAGS)
    cases = {
        "truncated.bin": whole[: len(whole) // 2],
        "text.bin": b"1\nAnn_A\t1\t2\n",
        "empty.bin": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=r"not a verification \.bin file") as caught:
            read_bin(tmp_path / name)
        assert str(caught.value).startswith(f"{tmp_path / name}: ")
    with pytest.raises(DataError, match=r"missing.bin: cannot read the .bin file"):
        read_bin(tmp_path / "missing.bin")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # LONG_BINPUT 2**23: the unpickler grew its memo to 2**24 entries (134 MB)
        (b"\x80\x04Nr\x00\x00\x80\x00.", r"memo index 8388608 at byte 3, more entries than"),
        # BINBYTES8 of 2**31 bytes: allocated before reading the 3 there are
        (b"\x80\x04\x8e" + (2**31).to_bytes(8, "little") + b"abc.", r"expected 2147483648 bytes"),
    ],
)
def test_sizes_declared_past_the_end_are_refused_before_allocating(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=message) as caught:
            read_bin(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value).startswith(f"{path}: not a verification .bin file")
    assert "\n" not in str(caught.value)
    assert peak < 4 * 2**20  # bytes, for a file of a dozen


def test_encode_bin_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match=r"images: expected 4 \(2 per flag\), got 3"):
        encode_bin(IMAGES[:3], FLAGS)
    with pytest.raises(ValueError, match=r"images: expected the bytes"):
        encode_bin(["text"] * 4, FLAGS)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"same: expected at least one flag, each a bool"):
        encode_bin(IMAGES, [1, 0])  # type: ignore[list-item]
