"""marginkit ijb end to end: the designed miniature IJB-C written as crops and meta files,
a run (and its safetensors export) whose backbone reads each face's planted direction back,
and the report's figures: the known answers, equal to the naive implementation fed with the
faces' pixels."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ijb_naive
import numpy as np
import pytest
from data_writers import write_image
from ijb_files import KNOWN, STUB_MODULE, IJBSet, write_ijb, write_images

from marginkit.cli import main
from marginkit.data import DataError
from marginkit.ijb import evaluate_ijb, summarize_ijb
from marginkit.runfolder import RunFolderError


@dataclass
class Setting:
    """The set, its faces' red channels, the run and the backbone spec it needs."""

    root: Path
    design: IJBSet
    faces: dict[str, np.ndarray]
    run: Path
    spec: str


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setting]:
    from marginkit.train import TrainConfig, fit

    root = tmp_path_factory.mktemp("ijb")
    design = write_ijb(root, images=False)
    faces = write_images(root, design)
    name = f"ijb_stub_{uuid.uuid4().hex[:8]}"
    (root / "site").mkdir()
    (root / "site" / f"{name}.py").write_text(STUB_MODULE)
    rng = np.random.default_rng(0)
    for index in range(4):
        pixels = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        write_image(root / "train" / f"c{index % 2}" / f"{index}.png", pixels)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root / "site"))
        config = TrainConfig(
            dataset="folder",
            data_dir=str(root / "train"),
            image_size=[112, 112],
            backbone=f"{name}:build",
            embedding_dim=8,
            loss="softmax",
            epochs=1,
            batch_size=4,
            threads=1,
            out=str(root / "run"),
        )
        fit(config, progress=False)
        yield Setting(root, design, faces, root / "run", f"{name}:build")


def _naive_embeddings(setting: Setting) -> np.ndarray:
    """Each face's embedding as the stub computes it, from the pixels written: the red
    channel's band means less their mean (the normalisation only scales it)."""
    rows = []
    for image in setting.design.images:
        bands = setting.faces[image.name].astype(np.float64).reshape(8, -1).mean(axis=1)
        rows.append(bands - bands.mean())
    return np.stack(rows)


def _check_against_naive(entry: dict, setting: Setting, weighting: bool) -> None:
    design = setting.design
    scores = np.array([image.score for image in design.images]) if weighting else None
    templates = np.array([image.template for image in design.images])
    medias = np.array([image.media for image in design.images])
    pooled = ijb_naive.templates(_naive_embeddings(setting), templates, medias, scores)
    pair_scores = [float(pooled[a] @ pooled[b]) for a, b, _ in design.pairs]
    same = [bool(label) for _, _, label in design.pairs]
    for point in entry["verification"]["tar_at_far"]:
        expected = ijb_naive.tar_at_far(pair_scores, same, point["far"])
        assert point["tar"] == (None if expected is None else pytest.approx(expected, abs=1e-12))
    for name, gallery in design.galleries.items():
        ranks, tpirs = ijb_naive.identification(
            pooled, gallery, design.probes, (1, 5, 10), (0.01, 0.1)
        )
        figures = entry["identification"]["galleries"][name]
        assert figures["rank"] == {str(k): pytest.approx(v, abs=1e-12) for k, v in ranks.items()}
        assert [p["tpir"] for p in figures["tpir_at_fpir"]] == pytest.approx(tpirs, abs=1e-12)


def _check_known(entry: dict) -> None:
    (point,) = [p for p in entry["verification"]["tar_at_far"] if p["far"] == 0.1]
    assert point["tar"] == pytest.approx(KNOWN["tar_at_far_0.1"], abs=1e-12)
    identification = entry["identification"]
    for name in ("G1", "G2", "mean"):
        figures = identification["mean"] if name == "mean" else identification["galleries"][name]
        assert figures["rank"]["1"] == pytest.approx(KNOWN["rank1"][name], abs=1e-12)
        tpir = figures["tpir_at_fpir"][1]["tpir"]
        assert tpir == pytest.approx(KNOWN["tpir_at_fpir_0.1"][name], abs=1e-12)


def _figures(entry: dict) -> list[float | None]:
    """The rates of an entry: TAR at each FAR, each gallery's ranks and TPIRs."""
    rates = [point["tar"] for point in entry["verification"]["tar_at_far"]]
    for figures in entry["identification"]["galleries"].values():
        rates += [*figures["rank"].values(), *(p["tpir"] for p in figures["tpir_at_fpir"])]
    return rates


def test_a_run_gives_the_known_answers_and_the_naive_ones(setting: Setting) -> None:
    entry, out = evaluate_ijb(setting.run, setting.root, "IJBC", backbone=setting.spec)
    assert out == setting.run / "ijb.json"
    _check_known(entry)
    _check_against_naive(entry, setting, weighting=False)
    assert entry["kind"] == "run" and entry["checkpoint"].endswith("epoch-0001")
    assert (entry["flip"], entry["score_weighting"]) == (True, False)
    stored = json.loads(out.read_text())
    assert stored["format_version"] == 1 and stored["sets"]["IJBC"] == json.loads(json.dumps(entry))


def test_workers_no_flip_and_score_weighting(setting: Setting, tmp_path: Path) -> None:
    """Two worker processes read the same faces; the stub is blind to a mirror, so the
    figures without flip are the same; weighting by detector score gives the naive ones."""
    first, _ = evaluate_ijb(
        setting.run, setting.root, "IJBC", out=tmp_path / "a.json", backbone=setting.spec
    )
    second, _ = evaluate_ijb(
        setting.run,
        setting.root,
        "IJBC",
        out=tmp_path / "b.json",
        backbone=setting.spec,
        workers=2,
        batch_size=5,
        flip=False,
    )
    assert second["flip"] is False
    assert _figures(second) == _figures(first)
    assert second["verification"]["auc"] == pytest.approx(first["verification"]["auc"], abs=1e-12)
    weighted, _ = evaluate_ijb(
        setting.run,
        setting.root,
        "IJBC",
        out=tmp_path / "c.json",
        backbone=setting.spec,
        score_weighting=True,
    )
    assert weighted["score_weighting"] is True
    _check_against_naive(weighted, setting, weighting=True)


def test_the_command_and_an_exported_file(
    setting: Setting, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from marginkit.export import export_run

    exported = export_run(
        setting.run, "safetensors", tmp_path / "face.safetensors", backbone=setting.spec
    )
    base = ["ijb", str(exported), "--root", str(setting.root), "--backbone", setting.spec]
    assert main([*base, "--set", "IJBC", "--quiet"]) == 0
    printed = capsys.readouterr().out
    report = tmp_path / "face.safetensors.ijb.json"
    entry = json.loads(report.read_text())["sets"]["IJBC"]
    assert printed == f"{summarize_ijb(entry)}\nfull report: {report}\n"
    lines = printed.splitlines()
    assert lines[0].startswith(f"IJBC: {exported}; 88 images, 44 media, 24 templates; flip")
    assert lines[1].startswith("  1:1 80 pairs (20 same subject): TAR@FAR 1e-06 n/a, 1e-05 n/a")
    assert lines[1].endswith(
        ", 0.01 n/a, 0.1 35.00 %; AUC " + f"{entry['verification']['auc']:.4f}"
    )
    assert lines[2].startswith(
        "  1:N G1 (2 gallery templates, 10 mated and 10 non-mated probes): rank-1 80.00 %"
    )
    assert lines[4] == (
        "  1:N mean: rank-1 75.00 %, rank-5 100.00 %, rank-10 100.00 %; "
        "TPIR@FPIR=0.01 n/a, TPIR@FPIR=0.1 30.00 %"
    )
    # IJB-B beside it in the same report (the same files, under IJB-B's names)
    ijbb = tmp_path / "release"
    design = write_ijb(ijbb, "IJBB", images=False)
    shutil.copytree(setting.root / "IJBC" / "loose_crop", ijbb / "IJBB" / "loose_crop")
    assert design.galleries.keys() == {"S1", "S2"}
    assert (
        main(
            [
                "ijb",
                str(exported),
                "--root",
                str(ijbb / "IJBB"),
                "--set",
                "IJBB",
                "--quiet",
                "--backbone",
                setting.spec,
            ]
        )
        == 0
    )
    assert "1:N S1 (" in capsys.readouterr().out
    sets = json.loads(report.read_text())["sets"]
    assert list(sets) == ["IJBC", "IJBB"]
    assert sets["IJBB"]["verification"] == sets["IJBC"]["verification"]
    _check_known(sets["IJBC"])


def test_a_report_of_another_source_is_kept_unless_forced(
    setting: Setting, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ijb.json"
    out.write_text(json.dumps({"format_version": 1, "sets": {"IJBC": {"source": "other.onnx"}}}))
    base = ["ijb", str(setting.run), "--root", str(setting.root), "--set", "IJBC", "--quiet"]
    base += ["--backbone", setting.spec, "--out", str(out)]
    with pytest.raises(SystemExit) as exit_status:
        main(base)
    assert exit_status.value.code == 2
    error = capsys.readouterr().err
    assert error == (
        f"marginkit: error: out: {out} holds the IJB report of other.onnx, not of "
        f"{setting.run}; choose another path, or pass --force to replace it\n"
    )
    assert "other.onnx" in out.read_text()
    assert main([*base, "--force"]) == 0
    assert list(json.loads(out.read_text())["sets"]) == ["IJBC"]
    assert "other.onnx" not in out.read_text()


def test_bad_input_fails_before_any_image_is_read(setting: Setting, tmp_path: Path) -> None:
    meta = setting.root / "IJBC" / "meta" / "ijbc_face_tid_mid.txt"
    with pytest.raises(RunFolderError, match="is a file this command reads"):
        evaluate_ijb(setting.run, setting.root, "IJBC", out=meta, backbone=setting.spec)
    with pytest.raises(DataError, match=r"root: .* holds neither meta/"):
        evaluate_ijb(setting.run, tmp_path, "IJBC", backbone=setting.spec)
    with pytest.raises(RunFolderError, match="exists and is not an IJB report"):
        (tmp_path / "notes.json").write_text("my notes")
        evaluate_ijb(
            setting.run, setting.root, "IJBC", out=tmp_path / "notes.json", backbone=setting.spec
        )


def test_an_unreadable_crop_is_named(setting: Setting, tmp_path: Path) -> None:
    design = write_ijb(tmp_path, images=False)
    shutil.copytree(setting.root / "IJBC" / "loose_crop", tmp_path / "IJBC" / "loose_crop")
    (tmp_path / "IJBC" / "loose_crop" / "7.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"loose_crop/7.png: expected a readable image file"):
        evaluate_ijb(setting.run, tmp_path, "IJBC", out=tmp_path / "r.json", backbone=setting.spec)
    assert not (tmp_path / "r.json").exists()
    (tmp_path / "IJBC" / "loose_crop" / "7.png").unlink()
    for workers in (0, 2):
        with pytest.raises(DataError, match=r"loose_crop/7.png: expected a readable image file"):
            evaluate_ijb(
                setting.run,
                tmp_path,
                "IJBC",
                out=tmp_path / "r.json",
                backbone=setting.spec,
                workers=workers,
            )
    assert design.images[6].name == "7.png"
