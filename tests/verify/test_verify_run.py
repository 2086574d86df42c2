"""``marginkit verify`` on a tiny trained face run: both flip settings per file in
verify.json and on stdout, equal to the library's figures; bad files named in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_writers import write_image

import marginkit.cli as cli
import marginkit.train
from hang import HANG_LIMIT
from marginkit.data.lfw import LFW_CROP_FRACTION
from marginkit.evaluation import load_run
from marginkit.train import TrainConfig, fit
from marginkit.verify import VERIFY_FILE, evaluate_both, load_pair_set, verify_run, write_bin

TRAIN_PEOPLE = {"Ann_A": 3, "Ben_B": 3, "Cid_C": 2}
TEST_PEOPLE = {"Dee_D": 3, "Eve_E": 2, "Fay_F": 2}
#: View 1: 3 matched pairs, then 3 mismatched ones.
DEV_TEST = "3\nDee_D\t1\t2\nDee_D\t2\t3\nFay_F\t1\t2\nDee_D\t1\tEve_E\t1\nEve_E\t2\tFay_F\t1\n"
DEV_TEST += "Dee_D\t3\tFay_F\t2\n"


@pytest.fixture(scope="module")
def face_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A one-epoch CosFace run on a miniature LFW of textured 40x32 images, input 16x16;
    yields ``(run folder, LFW folder)``."""
    directory = tmp_path_factory.mktemp("verify")
    lfw = directory / "lfw"
    rng = np.random.default_rng(0)
    for person, count in {**TRAIN_PEOPLE, **TEST_PEOPLE}.items():
        for number in range(1, count + 1):
            pixels = rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)
            write_image(lfw / "lfw-deepfunneled" / person / f"{person}_{number:04d}.jpg", pixels)
    (lfw / "peopleDevTrain.txt").write_text("3\nAnn_A\t3\nBen_B\t3\nCid_C\t2\n")
    (lfw / "pairsDevTest.txt").write_text(DEV_TEST)
    threads = torch.get_num_threads()
    config = TrainConfig(
        dataset="lfw",
        data_dir=str(lfw),
        image_size=[16, 16],
        min_images_per_person=2,
        backbone="mlp",
        embedding_dim=8,
        loss="cosface",
        epochs=1,
        batch_size=4,
        threads=1,
        log_every=0,
        out=str(directory / "run"),
    )
    fit(config, progress=False)
    yield directory / "run", lfw
    torch.set_num_threads(threads)


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = cli.main(["verify", *argv, "--quiet"])
    except SystemExit as exited:
        status = int(exited.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_verify_reports_both_flip_settings_per_file(
    face_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, lfw = face_run
    crops = write_bin(
        lfw / "pairsDevTest.txt",
        lfw / "lfw-deepfunneled",
        tmp_path / "dev.bin",
        image_size=(16, 16),
        height_fraction=LFW_CROP_FRACTION,
    )
    # a bare name: found in the run's data folder, as `marginkit eval` finds LFW
    status, out, error = verify(
        capsys, str(run), "--pairs", str(crops), "--pairs", "pairsDevTest.txt"
    )
    assert (status, error) == (0, "")
    report = json.loads((run / VERIFY_FILE).read_text())
    assert [entry["file"] for entry in report["sets"]] == [
        str(crops),
        str(lfw / "pairsDevTest.txt"),
    ]
    assert [entry["format"] for entry in report["sets"]] == ["bin", "pairs"]
    # the crop each file's images were read with, said: the .bin's whole height, LFW's crop
    assert [entry["crop_height_fraction"] for entry in report["sets"]] == [1.0, LFW_CROP_FRACTION]
    assert f"(6 pairs, 7 images, centre crop {100 * LFW_CROP_FRACTION:.0f} % of the height)" in out
    assert "(6 pairs, 7 images)" in out  # the .bin: nothing cropped
    assert report["epoch"] == 1 and report["input_shape"] == [3, 16, 16]
    _, backbone, _, bundle = load_run(run)
    for entry in report["sets"]:
        pairs = load_pair_set(entry["file"], (16, 16), bundle.mean, bundle.std)
        expected = evaluate_both(backbone, pairs, batch_size=256)  # as the command does
        for key in ("flip", "no_flip"):
            assert entry[key]["flip"] is (key == "flip")
            for figure in ("auc", "eer", "num_positive", "num_negative"):
                assert entry[key][figure] == expected[key][figure]
            assert entry[key]["ten_fold"]["accuracies"] == expected[key]["ten_fold"]["accuracies"]
            assert entry[key]["ten_fold"]["fold_source"] == expected[key]["ten_fold"]["fold_source"]
        assert entry["num_pairs"] == 6 and entry["num_images"] == 7
    # the same pairs, from the .bin and from the text file: the same folds and accuracy
    from_bin, from_text = (entry["flip"]["ten_fold"] for entry in report["sets"])
    assert from_bin["accuracies"] == from_text["accuracies"]
    assert from_bin["fold_source"] == from_text["fold_source"]
    assert out.count("with flip:    10-fold accuracy") == 2
    assert out.count("without flip: 10-fold accuracy") == 2
    assert f"full report: {run / VERIFY_FILE}" in out


def test_no_flip_reports_the_plain_figures_only(
    face_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, lfw = face_run
    status, out, _ = verify(capsys, str(run), "--pairs", str(lfw / "pairsDevTest.txt"), "--no-flip")
    assert status == 0 and "with flip:" not in out and "without flip:" in out
    entry = json.loads((run / VERIFY_FILE).read_text())["sets"][0]
    assert entry["flip"] is None and entry["no_flip"]["flip"] is False


def test_bad_files_are_named_in_one_line_and_nothing_is_written(
    face_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, lfw = face_run
    (run / VERIFY_FILE).unlink(missing_ok=True)
    missing = tmp_path / "pairs.txt"
    missing.write_text(DEV_TEST.replace("Fay_F\t1\t2", "Fay_F\t1\t9"))
    (tmp_path / "lfw-deepfunneled").symlink_to(lfw / "lfw-deepfunneled")
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(b"\x80\x04not a pickle at all")
    cases = [
        (["--pairs", str(missing)], f"{missing}: names images that do not exist under "),
        (["--pairs", str(damaged)], f"{damaged}: not a verification .bin file"),
        (["--pairs", "nowhere.bin"], "nowhere.bin: no such pairs file (also looked in "),
        (["--pairs", str(damaged), "--crop", "2"], "crop: expected a share of the image"),
    ]
    for arguments, message in cases:
        status, _, error = verify(capsys, str(run), *arguments)
        assert status == 2 and error.startswith(f"marginkit: error: {message}"), error
        assert error.count("\n") == 1
    assert "line 4: Fay_F/Fay_F_0009.jpg" in verify(capsys, str(run), "--pairs", str(missing))[2]
    assert not (run / VERIFY_FILE).exists()


def test_a_run_not_trained_on_rgb_images_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    config = TrainConfig(
        dataset="digits", embedding_dim=2, max_steps=1, threads=1, log_every=0, out=str(tmp_path)
    )
    fit(config, progress=False)
    torch.set_num_threads(threads)
    (tmp_path / "x.bin").write_bytes(b"")
    status, _, error = verify(capsys, str(tmp_path), "--pairs", str(tmp_path / "x.bin"))
    assert status == 2
    assert "verification needs a run trained on RGB images, input shape (3, H, W); this " in error


def test_verify_help_lists_its_options_without_importing_torch() -> None:
    code = (
        "import sys, marginkit.cli as cli\n"
        "try:\n"
        "    cli.main(['verify', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_LIMIT, check=True
    )
    assert probe.stdout.endswith("False\n")  # torch loads only when a run is verified
    for option in ("--pairs FILE", "--no-flip", "--batch-size", "--data-dir", "--crop"):
        assert option in probe.stdout
    parsed = cli.build_parser().parse_args(["verify", "RUN", "--pairs", "a.bin", "--pairs", "b"])
    assert parsed.pairs == ["a.bin", "b"] and parsed.flip is True  # flip on by default


def test_verify_reads_the_recorded_preprocessing_not_the_data(
    face_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, lfw = face_run
    pairs = str(lfw / "pairsDevTest.txt")
    expected = verify_run(run, [pairs])["sets"]
    older = tmp_path / "older"
    shutil.copytree(run, older)
    (older / "preprocessing.json").unlink()
    # an older run (no preprocessing.json) loads its data once for the statistics: same figures
    assert verify_run(older, [pairs])["sets"] == expected

    def no_data(*_: object, **__: object) -> None:
        raise AssertionError("the training data was loaded")

    monkeypatch.setattr(marginkit.train, "load_bundle", no_data)
    assert verify_run(run, [pairs])["sets"] == expected  # the recorded one: no data read
    with pytest.raises(AssertionError, match="the training data was loaded"):
        verify_run(older, [pairs])


def _copy_run(run: Path, to: Path, **changes: object) -> Path:
    """A copy of ``run`` at ``to`` whose config.yaml has ``changes``."""
    shutil.copytree(run, to)
    config = yaml.safe_load((to / "config.yaml").read_text())
    (to / "config.yaml").write_text(yaml.safe_dump({**config, **changes}))
    return to


def test_a_recorded_import_spec_is_imported_only_when_confirmed(
    face_run: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    foreign_backbone: tuple[str, Path],
) -> None:
    """Someone else's run names a module:callable backbone: verify neither imports nor
    calls it until the user names the same spec."""
    (run, lfw), (module, imported) = face_run, foreign_backbone
    spec = f"{module}:mlp"
    theirs = _copy_run(run, tmp_path / "theirs", backbone=spec)
    pairs = str(lfw / "pairsDevTest.txt")
    status, _, error = verify(capsys, str(theirs), "--pairs", pairs)
    assert (status, error) == (
        2,
        f"marginkit: error: {theirs / 'config.yaml'}: backbone '{spec}' would import module "
        f"'{module}' and run its code; only if you trust it, confirm with --backbone {spec}\n",
    )
    assert not imported.exists() and module not in sys.modules
    status, _, error = verify(capsys, str(theirs), "--pairs", pairs, "--backbone", "os:system")
    assert status == 2 and f"records backbone '{spec}', not 'os:system'" in error
    assert not imported.exists()
    status, out, error = verify(capsys, str(theirs), "--pairs", pairs, "--backbone", spec)
    assert (status, error) == (0, "") and imported.exists()
    assert "without flip: 10-fold accuracy" in out


def test_a_checkpoint_path_into_another_run_is_refused(
    face_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--checkpoint ../../OTHER/checkpoints/epoch-0001`` once scored this run's checkpoint
    of that name and reported the other one; a checkpoint is named, not a path."""
    run, lfw = face_run
    pairs = str(lfw / "pairsDevTest.txt")
    mine = _copy_run(run, tmp_path / "mine")
    _copy_run(run, tmp_path / "other")
    (mine / VERIFY_FILE).unlink(missing_ok=True)
    elsewhere = "../../other/checkpoints/epoch-0001"
    status, _, error = verify(capsys, str(mine), "--pairs", pairs, "--checkpoint", elsewhere)
    assert (status, error) == (
        2,
        f"marginkit: error: checkpoint: expected the name of a checkpoint of run {mine} "
        f"(epoch-0029, or best), not a path: '{elsewhere}'\n",
    )
    (mine / "checkpoints" / "best").write_text(elsewhere + "\n")  # a best that points away
    status, _, error = verify(capsys, str(mine), "--pairs", pairs, "--checkpoint", "best")
    assert status == 2 and error.startswith(f"marginkit: error: {mine / 'checkpoints' / 'best'}")
    assert not (mine / VERIFY_FILE).exists()
    status, out, _ = verify(capsys, str(mine), "--pairs", pairs, "--checkpoint", "epoch-0001")
    assert status == 0 and f"(checkpoint {mine / 'checkpoints' / 'epoch-0001'})" in out


def test_weights_that_do_not_fit_the_recorded_config_are_one_line(
    face_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, lfw = face_run
    edited = _copy_run(run, tmp_path / "edited", embedding_dim=16)
    status, _, error = verify(capsys, str(edited), "--pairs", str(lfw / "pairsDevTest.txt"))
    assert (status, error) == (
        2,
        f"marginkit: error: checkpoint {edited / 'checkpoints' / 'epoch-0001'}: its backbone "
        "weights do not fit the backbone that the run's config.yaml describes (layers.7.weight "
        "is (8, 256) saved, (16, 256) in the MLP built (and 1 more of another shape))\n",
    )
