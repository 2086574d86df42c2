"""marginkit.ijb.protocol: the release's meta files read as written by the test, and every
bad file refused with one line naming it (and the line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ijb_files import TEMPLATE, write_ijb

from marginkit.data import DataError
from marginkit.ijb import ijb_report, load_protocol
from marginkit.ijb.protocol import meta_files


def _refused(root: Path, pattern: str, set_name: str = "IJBC") -> None:
    with pytest.raises(DataError, match=pattern) as caught:
        load_protocol(root, set_name)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("set_name", ["IJBB", "IJBC"])
def test_the_release_layout_is_read(tmp_path: Path, set_name: str) -> None:
    design = write_ijb(tmp_path, set_name, images=False)
    for root in (tmp_path, tmp_path / set_name):  # IJB_release/ or the set's own folder
        protocol = load_protocol(root, set_name.lower())
        assert protocol.name == set_name and protocol.files.folder == tmp_path / set_name
        assert protocol.files.images == tmp_path / set_name / "loose_crop"
        assert protocol.names == [image.name for image in design.images]
        assert protocol.templates.tolist() == [image.template for image in design.images]
        assert protocol.medias.tolist() == [image.media for image in design.images]
        np.testing.assert_allclose(protocol.landmarks[0], TEMPLATE, atol=5e-5)
        np.testing.assert_allclose(protocol.landmarks[1], TEMPLATE + np.array([23, 9]), atol=5e-5)
        assert protocol.scores.tolist() == [image.score for image in design.images]
        assert protocol.pairs.tolist() == [list(pair) for pair in design.pairs]
        names = ("S1", "S2") if set_name == "IJBB" else ("G1", "G2")
        assert list(protocol.galleries) == list(names)
        for name in names:
            gallery = protocol.galleries[name]
            rows = zip(gallery.templates.tolist(), gallery.subjects.tolist(), strict=True)
            assert list(rows) == sorted(design.galleries[name])
        assert protocol.probes is not None
        assert protocol.probes.templates.tolist() == [t for t, _ in design.probes]
        assert protocol.probes.file.name == f"{set_name.lower()}_1N_probe_mixed.csv"


def test_without_1n_files_only_1to1_is_measured(tmp_path: Path) -> None:
    design = write_ijb(tmp_path, images=False)
    files = meta_files(tmp_path, "IJBC")
    for path in files.identification_files():
        path.unlink()
    protocol = load_protocol(tmp_path, "IJBC")
    assert protocol.probes is None and protocol.galleries == {}
    report = ijb_report(protocol, design.embeddings())
    assert report["identification"] is None and report["verification"]["num_pairs"] == 80


def test_one_1n_file_missing_is_named(tmp_path: Path) -> None:
    write_ijb(tmp_path, images=False)
    meta_files(tmp_path, "IJBC").galleries["G2"].unlink()
    _refused(tmp_path, r"ijbc_1N_gallery_G2.csv: no such file; the 1:N evaluation needs both")


@pytest.mark.parametrize(
    "name", ["ijbc_face_tid_mid.txt", "ijbc_name_5pts_score.txt", "ijbc_template_pair_label.txt"]
)
def test_a_missing_meta_file_is_named(tmp_path: Path, name: str) -> None:
    write_ijb(tmp_path, images=False)
    (tmp_path / "IJBC" / "meta" / name).unlink()
    _refused(tmp_path, rf"meta/{name}: no such file")


def test_a_root_without_the_release_and_a_bad_set_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path, r"root: .* holds neither meta/ nor IJBC/meta/")
    with pytest.raises(DataError, match=r"set: expected one of IJBB, IJBC, got 'IJBA'"):
        load_protocol(tmp_path, "IJBA")


def _edit(path: Path, line: int, text: str | None) -> None:
    """Replace line ``line`` (from 1) of ``path`` by ``text`` (None: delete it)."""
    lines = path.read_text().splitlines(keepends=True)
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text + "\n"
    path.write_text("".join(lines))


BAD_LINES = [
    ("ijbc_face_tid_mid.txt", 3, "3.png 101", r"face_tid_mid.txt line 3: expected 'IMAGE"),
    ("ijbc_face_tid_mid.txt", 5, "5.png x 601", r"face_tid_mid.txt line 5: expected 'IMAGE"),
    ("ijbc_name_5pts_score.txt", 2, "2.png 1 2 3 4 5 6 7 8 9 nan 0.8", r"score.txt line 2:"),
    ("ijbc_name_5pts_score.txt", 2, "2.png 1 2 3 4 5 6 7 8 9 10 -1", r"score.txt line 2: exp"),
    ("ijbc_name_5pts_score.txt", 3, "3.png 1 2 3 4 5 6 7 8 9 10", r"score.txt line 3: exp"),
    (
        "ijbc_name_5pts_score.txt",
        4,
        "999.png 1 2 3 4 5 6 7 8 9 10 0.5",
        r"score.txt line 4: image '999.png', where the face list has '4.png' on its row 4",
    ),
    ("ijbc_name_5pts_score.txt", 88, None, r"score.txt: 87 images, where the face list has 88"),
    ("ijbc_template_pair_label.txt", 7, "101 207 2", r"pair_label.txt line 7: expected 'TEMP"),
    ("ijbc_template_pair_label.txt", 9, "101 207", r"pair_label.txt line 9: expected 'TEMP"),
    ("ijbc_template_pair_label.txt", 9, "101 2.5 1", r"pair_label.txt line 9: expected 'TEMP"),
    (
        "ijbc_template_pair_label.txt",
        11,
        "101 999 0",
        r"pair_label.txt line 11: template 999 has no image in the face list",
    ),
    ("ijbc_1N_gallery_G1.csv", 1, "A,B,C", r"G1.csv line 1: expected a header naming TEMP"),
    ("ijbc_1N_gallery_G1.csv", 3, "101,x,1.png", r"G1.csv line 3: expected whole numbers as"),
    (
        "ijbc_1N_gallery_G1.csv",
        3,
        "101,7009,2.png",
        r"G1.csv line 3: template 101 of subject 7009, where an earlier row gives it subject",
    ),
    (
        "ijbc_1N_probe_mixed.csv",
        2,
        "999,7001,1.png",
        r"probe_mixed.csv: template 999 has no image in the face list",
    ),
]


@pytest.mark.parametrize(("name", "line", "text", "pattern"), BAD_LINES)
def test_a_bad_line_is_named_with_its_number(
    tmp_path: Path, name: str, line: int, text: str | None, pattern: str
) -> None:
    write_ijb(tmp_path, images=False)
    _edit(tmp_path / "IJBC" / "meta" / name, line, text)
    _refused(tmp_path, pattern)


def test_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    write_ijb(tmp_path, images=False)
    pairs = tmp_path / "IJBC" / "meta" / "ijbc_template_pair_label.txt"
    text = pairs.read_text()
    assert text.splitlines()[13] == "102 204 0"  # line 14; line 16 after two blank lines
    for bad in ("102 204 x", "102 204 2"):  # numpy's error, then the label check
        pairs.write_text("\n  \n" + text.replace("102 204 0\n", bad + "\n", 1))
        _refused(tmp_path, rf"pair_label.txt line 16: expected .*, got '{bad}'")


def test_pairs_of_one_kind_are_refused(tmp_path: Path) -> None:
    write_ijb(tmp_path, images=False)
    pairs = tmp_path / "IJBC" / "meta" / "ijbc_template_pair_label.txt"
    pairs.write_text(
        "".join(line for line in pairs.read_text().splitlines(True) if line[-2] == "0")
    )
    _refused(tmp_path, r"pair_label.txt: no same-subject pair \(label 1\); a ROC needs pairs")
    pairs.write_text("")
    _refused(tmp_path, r"pair_label.txt: expected one line per pair of templates, found none")


def test_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    write_ijb(tmp_path, images=False)
    (tmp_path / "IJBC" / "meta" / "ijbc_face_tid_mid.txt").write_bytes(b"\xff\xfe\x00bad")
    _refused(tmp_path, r"face_tid_mid.txt: expected a text file")
