"""MXNet image RecordIO without MXNet (``--dataset rec``, ``marginkit pack``): checked
against a small reader and writer written here from the published format (dmlc-core's
``recordio.cc``, MXNet's ``recordio.py``), independent of marginkit's."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from data_writers import write_image, write_image_folder

from marginkit.data import DataError, load_dataset
from marginkit.data.pack import pack_folder
from marginkit.data.rec import RecordImages, scan_records
from marginkit.data.recordio import frame_record, pack_image_record, read_index
from marginkit.data.stream import ImageFileDataset, load_batches

# ------------------------------------------------------------ the format, written out here
MAGIC = 0xCED7230A


def spec_frame(payload: bytes) -> bytes:
    """dmlc-core's ``RecordIOWriter::WriteRecord``: cut at each 4-aligned magic number."""
    out, start = b"", 0
    magic = struct.pack("<I", MAGIC)
    for i in range(0, len(payload) // 4 * 4, 4):
        if payload[i : i + 4] == magic:
            cflag = 1 if start == 0 else 2
            out += magic + struct.pack("<I", cflag << 29 | (i - start)) + payload[start:i]
            start = i + 4
    cflag = 3 if start else 0
    out += magic + struct.pack("<I", cflag << 29 | (len(payload) - start)) + payload[start:]
    return out + b"\0" * (-len(payload) % 4)


def spec_pack(label: float | list[float], key: int, image: bytes) -> bytes:
    """MXNet's ``recordio.pack``: header ``IfQQ``; a list of labels follows it (flag = its
    length, the header's label 0)."""
    if isinstance(label, list):
        floats = np.asarray(label, dtype=np.float32).tobytes()
        return struct.pack("IfQQ", len(label), 0.0, key, 0) + floats + image
    return struct.pack("IfQQ", 0, label, key, 0) + image


def spec_records(data: bytes) -> list[tuple[int, bytes]]:
    """dmlc-core's ``RecordIOReader::NextRecord`` over a whole file: ``(offset, payload)``."""
    records, position = [], 0
    while position < len(data):
        start, payload = position, b""
        while True:
            magic, word = struct.unpack_from("<II", data, position)
            assert magic == MAGIC
            cflag, length = word >> 29, word & ((1 << 29) - 1)
            payload += data[position + 8 : position + 8 + length]
            position += 8 + length + (-length % 4)
            if cflag in (0, 3):
                break
            payload += struct.pack("<I", MAGIC)
        records.append((start, payload))
    return records


def spec_unpack(payload: bytes) -> tuple[list[float], int, bytes]:
    flag, label, key, _ = struct.unpack_from("IfQQ", payload)
    if flag:
        return list(np.frombuffer(payload, np.float32, flag, 24)), key, payload[24 + 4 * flag :]
    return [label], key, payload[24:]


def write_im2rec(
    directory: Path, records: list[tuple[int, float | list[float], bytes]]
) -> list[int]:
    """An im2rec classification file, ``train.rec`` + ``train.idx`` (``key\\toffset``),
    written here; returns each record's offset."""
    directory.mkdir(parents=True, exist_ok=True)
    data, index, offsets = b"", "", []
    for key, labels, image in records:
        offsets.append(len(data))
        index += f"{key}\t{len(data)}\n"
        data += spec_frame(spec_pack(labels, key, image))
    (directory / "train.rec").write_bytes(data)
    (directory / "train.idx").write_text(index)
    return offsets


def png(colour: tuple[int, int, int], size: tuple[int, int] = (6, 5)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size[1], size[0]), colour).save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------ framing
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"abc",
        struct.pack("<I", MAGIC),
        b"abcd" + struct.pack("<I", MAGIC) + b"xy",
        struct.pack("<I", MAGIC) * 2 + b"12345678" + struct.pack("<I", MAGIC),
        b"a" + struct.pack("<I", MAGIC) + b"bcd",  # not 4-aligned: not cut
    ],
)
def test_framing_is_dmlc_cores(payload: bytes) -> None:
    assert frame_record(payload) == spec_frame(payload)
    assert spec_records(frame_record(payload)) == [(0, payload)]


def test_image_records_are_mxnets_pack() -> None:
    assert pack_image_record([3.0], 7, b"img") == spec_pack(3.0, 7, b"img")
    assert pack_image_record([1.0, 2.5], 9, b"") == spec_pack([1.0, 2.5], 9, b"")


# ------------------------------------------------------------ marginkit pack, read back
def test_a_packed_folder_round_trips_every_image_byte_and_label(tmp_path: Path) -> None:
    names = write_image_folder(tmp_path / "faces", classes=3, per_class=4, extension="jpg")
    write_image(tmp_path / "faces" / "c1" / "9.jpg", np.zeros((20, 24, 3), np.uint8))
    names = sorted([*names, "c1/9.jpg"])
    done = pack_folder(tmp_path / "faces", tmp_path / "rec")
    assert (done.images, done.identities, done.height, done.width) == (13, 3, 20, 24)
    assert (tmp_path / "rec" / "property").read_text() == "3,20,24\n"
    # the file, read by the reader written here: InsightFace's layout, every byte
    records = spec_records((tmp_path / "rec" / "train.rec").read_bytes())
    index = [line.split("\t") for line in (tmp_path / "rec" / "train.idx").read_text().splitlines()]
    assert [(int(key), int(offset)) for key, offset in index] == [
        (key, offset) for key, (offset, _) in enumerate(records)
    ]
    unpacked = [spec_unpack(payload) for _, payload in records]
    assert unpacked[0] == ([14.0, 17.0], 0, b"")  # images 1..13, identities 14..16
    for key, name in enumerate(names, 1):
        labels, record_key, image = unpacked[key]
        assert labels == [float(name[1])] and record_key == key
        assert image == (tmp_path / "faces" / name).read_bytes()
    assert [labels for labels, _, _ in unpacked[14:]] == [[1, 5], [5, 10], [10, 14]]
    # and by marginkit's reader
    found = scan_records(tmp_path / "rec")
    assert found.layout == "insightface" and found.identity_records == 3
    assert found.labels.tolist() == [int(name[1]) for name in names]
    images = RecordImages(found.reader, found.offsets, (20, 24))
    assert [images.encoded(i)[0] for i in range(13)] == [
        (tmp_path / "faces" / name).read_bytes() for name in names
    ]


def test_rec_items_equal_the_folders_they_were_packed_from(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "faces", classes=3, per_class=4, extension="png")
    pack_folder(tmp_path / "faces", tmp_path / "rec")
    options = {"image_size": (16, 12), "progress": False, "validation_fraction": 0.25}
    folder = load_dataset("folder", data_dir=tmp_path / "faces", **options)
    for workers in (0, 2):
        rec = load_dataset("rec", data_dir=tmp_path / "rec", workers=workers, **options)
        assert (rec.mean, rec.std, rec.num_classes) == (folder.mean, folder.std, 3)
        assert rec.class_names == ["0", "1", "2"]
        for split in ("train", "validation"):
            inputs, labels = getattr(folder, split).tensors()
            assert torch.equal(getattr(rec, split).tensors()[0], inputs)
            assert torch.equal(getattr(rec, split).tensors()[1], labels)
    assert isinstance(rec.train, ImageFileDataset)
    assert isinstance(rec.train.files, RecordImages)


def test_the_size_defaults_to_propertys(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "faces", classes=2, per_class=2, size=(10, 6))
    pack_folder(tmp_path / "faces", tmp_path / "rec")
    assert load_dataset("rec", data_dir=tmp_path / "rec", progress=False).input_shape == (3, 10, 6)


# ------------------------------------------------------------ im2rec's classification files
def test_an_im2rec_file_reads_its_first_label_as_the_class(tmp_path: Path) -> None:
    magic = struct.pack("<I", MAGIC)
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (90, 90, 90)]
    images = [png(colour) for colour in colours]
    # image 2 carries the magic number (twice, 4-aligned in the payload: 24 + 12 bytes of
    # header and labels) after the end of its PNG, so its record is cut into three parts
    trailer = b"\0" * (-len(images[2]) % 4) + magic + b"1234" + magic + b"z"
    images[2] += trailer
    records = [(0, [2.0, 0.5, -1.0], images[0]), (5, [0.0, 3.0, 3.0], images[1])]
    records += [(3, [2.0, 9.0, 9.0], images[2]), (4, [7.0, 0.0, 0.0], images[3])]
    offsets = write_im2rec(tmp_path, records)
    data = (tmp_path / "train.rec").read_bytes()
    assert data.count(magic) == 4 + 2  # one per part: the cut record has three
    found = scan_records(tmp_path)
    assert found.layout == "im2rec" and found.property is None
    assert found.offsets.tolist() == offsets and found.labels.tolist() == [2, 0, 2, 7]
    reread = RecordImages(found.reader, found.offsets, (6, 5))
    assert [reread.encoded(i)[0] for i in range(4)] == images  # the magic numbers put back
    bundle = load_dataset("rec", data_dir=tmp_path, image_size=(6, 5), progress=False)
    assert bundle.class_names == ["0", "2", "7"] and bundle.train_labels.tolist() == [1, 0, 1, 2]
    codes = (bundle.train.tensors()[0] * torch.tensor(bundle.std).view(3, 1, 1)) + torch.tensor(
        bundle.mean
    ).view(3, 1, 1)
    pixels = (codes * 255).round().to(torch.uint8)[:, :, 0, 0]  # (4, 3): each a flat colour
    assert pixels.tolist() == [list(colour) for colour in colours]


def test_a_multi_label_record_zero_is_an_image_not_a_header(tmp_path: Path) -> None:
    write_im2rec(tmp_path, [(0, [1.0, 2.0], png((1, 2, 3))), (1, [0.0, 5.0], png((4, 5, 6)))])
    found = scan_records(tmp_path)
    assert found.layout == "im2rec" and found.labels.tolist() == [1, 0]


def test_labels_that_are_no_class_are_refused(tmp_path: Path) -> None:
    offsets = write_im2rec(tmp_path, [(0, 1.0, png((1, 2, 3))), (1, 2.5, png((1, 2, 3)))])
    with pytest.raises(DataError, match=rf"train.rec: byte {offsets[1]}: expected a class label"):
        scan_records(tmp_path)


# ------------------------------------------------------------ damage: one line, file and offset
def one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def _packed(tmp_path: Path) -> Path:
    write_image_folder(tmp_path / "faces", classes=2, per_class=3, size=(8, 8), extension="jpg")
    pack_folder(tmp_path / "faces", tmp_path / "rec")
    return tmp_path / "rec"


def test_a_truncated_file_names_the_byte_offset(tmp_path: Path) -> None:
    rec = _packed(tmp_path)
    offsets = [int(line.split()[1]) for line in (rec / "train.idx").read_text().splitlines()]
    data = (rec / "train.rec").read_bytes()
    (rec / "train.rec").write_bytes(data[: offsets[4] + 20])  # inside image 4's record
    with pytest.raises(DataError) as raised:
        load_dataset("rec", data_dir=rec, progress=False)
    assert one_line(raised).startswith(f"{rec / 'train.rec'}: byte {offsets[4]}: a record part")
    assert "runs past the end of the file" in str(raised.value)
    (rec / "train.rec").write_bytes(data[: offsets[6] + 3])  # inside image 6's part header
    with pytest.raises(DataError) as raised:
        load_dataset("rec", data_dir=rec, progress=False)
    assert one_line(raised).startswith(f"{rec / 'train.rec'}: byte {offsets[6]}: expected a record")
    (rec / "train.rec").write_bytes(data[: offsets[-1] + 12])  # the last identity record
    with pytest.raises(DataError, match=rf"train.rec: byte {offsets[-1]}: a record part of 32 "):
        scan_records(rec)


def test_an_offset_that_is_not_a_record_or_bad_magic_names_the_byte(tmp_path: Path) -> None:
    rec = _packed(tmp_path)
    lines = (rec / "train.idx").read_text().splitlines()
    key, offset = lines[3].split("\t")
    lines[3] = f"{key}\t{int(offset) + 4}"
    (rec / "train.idx").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as raised:
        load_dataset("rec", data_dir=rec, progress=False)
    assert one_line(raised).startswith(
        f"{rec / 'train.rec'}: byte {int(offset) + 4}: expected a record starting with the "
        "magic number 0xced7230a, found 0x"
    )
    lines[3] = f"{key}\t{offset}"
    (rec / "train.idx").write_text("\n".join(lines) + "\n")
    data = bytearray((rec / "train.rec").read_bytes())
    data[int(offset)] ^= 0xFF
    (rec / "train.rec").write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"train.rec: byte {offset}: expected a record starting"):
        load_dataset("rec", data_dir=rec, progress=False)


def test_a_damaged_index_names_its_line(tmp_path: Path) -> None:
    rec = _packed(tmp_path)
    text = (rec / "train.idx").read_text()
    (rec / "train.idx").write_text(text.replace("\n", "\nfive\tsix\n", 1))
    with pytest.raises(DataError, match=r"train.idx: line 2: expected 'key<TAB>offset'"):
        read_index(rec / "train.idx")
    (rec / "train.idx").write_text(text + text.splitlines()[2] + "\n")
    with pytest.raises(DataError, match=r"train.idx: key 2 is listed more than once"):
        read_index(rec / "train.idx")
    (rec / "train.idx").write_text("".join(text.splitlines(keepends=True)[:4]))
    with pytest.raises(DataError, match=r"train.idx: expected record 4 \(an image, by the header"):
        load_dataset("rec", data_dir=rec, progress=False)


def test_a_damaged_image_is_named_by_file_and_offset_when_its_batch_is_read(
    tmp_path: Path,
) -> None:
    rec = _packed(tmp_path)
    bundle = load_dataset("rec", data_dir=rec, workers=2, progress=False)
    offset = int(bundle.train.files.offsets[3])
    data = bytearray((rec / "train.rec").read_bytes())
    data[offset + 8 + 24 : offset + 8 + 24 + 16] = bytes(16)  # the JPEG's start, zeroed
    (rec / "train.rec").write_bytes(bytes(data))
    batches = load_batches(bundle.train, [[0, 1], [2, 3]], workers=2)
    assert next(batches)[1].tolist() == [0, 0]
    with pytest.raises(DataError) as raised:
        next(batches)
    assert one_line(raised).startswith(
        f"{rec / 'train.rec'}: byte {offset} (record 4): expected a readable image file"
    )


def test_missing_files_and_a_bad_property_are_one_line(tmp_path: Path) -> None:
    rec = _packed(tmp_path)
    (rec / "property").write_text("2,8\n")
    with pytest.raises(DataError, match=r"property: expected 'classes,height,width'"):
        load_dataset("rec", data_dir=rec, progress=False)
    (rec / "property").write_text("1,8,8\n")
    with pytest.raises(DataError, match=r"label 1 is not below the 1 classes of .*property$"):
        load_dataset("rec", data_dir=rec, progress=False)
    (rec / "train.idx").unlink()
    with pytest.raises(DataError, match=r"expected train.rec and train.idx .* missing train.idx"):
        load_dataset("rec", data_dir=rec, progress=False)


# ------------------------------------------------------------ memory: the index only
def test_the_index_holds_an_offset_per_image_not_the_images(tmp_path: Path) -> None:
    held = {}
    for side, per_class in ((8, 3), (96, 3), (8, 30)):
        folder = tmp_path / f"{side:03d}-{per_class:02d}"
        write_image_folder(folder / "faces", classes=2, per_class=per_class, size=(side, side))
        pack_folder(folder / "faces", folder / "rec")
        files = load_dataset("rec", data_dir=folder / "rec", workers=1, progress=False).train.files
        assert isinstance(files, RecordImages) and files.offsets.dtype == np.int64
        held[side, per_class] = len(pickle.dumps(files))
    # 144x the pixels: a few bytes more (the file's size, a larger int); 10x the images:
    # 8 bytes (one offset) per image more
    assert abs(held[96, 3] - held[8, 3]) <= 8
    assert held[8, 30] - held[8, 3] <= 8 * 54 + 8
