"""Verification during training (``--verify``): the sets are read once, scored without
changing what training computes, logged per step and per epoch, and the best checkpoint kept;
bad files fail before training with one line naming them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import marginkit.cli as cli
import marginkit.pairs.files as pair_files
from marginkit.data import ArrayDataset, DataBundle, DataError
from marginkit.data.binfile import encode_bin
from marginkit.evaluation import load_run_backbone
from marginkit.plots.runs import build_learning_curves
from marginkit.train import ConfigError, TrainConfig, fit, loop
from marginkit.verify import evaluate_pairs, verify_run

SIZE = 16


def rgb_bundle() -> DataBundle:
    """12 random 3x16x16 images of 3 classes, normalised per channel (4 steps of 3)."""
    generator = torch.Generator().manual_seed(7)
    data = torch.randint(0, 256, (12, 3, SIZE, SIZE), generator=generator, dtype=torch.uint8)
    labels = torch.arange(12) % 3
    mean, std = [0.5, 0.45, 0.4], [0.25, 0.25, 0.3]
    train = ArrayDataset(data, labels, mean=mean, std=std)
    return DataBundle(
        name="folder",
        train=train,
        validation=None,
        test=None,
        num_classes=3,
        input_shape=(3, SIZE, SIZE),
        class_names=["a", "b", "c"],
        train_labels=labels,
        train_clean_labels=labels,
        test_labels=None,
        pairs=None,
        augment=False,
        mean=tuple(mean),
        std=tuple(std),
    )


def write_pairs_bin(path: Path, pairs: int = 10, seed: int = 0) -> Path:
    """A ``.bin`` of random 16x16 PNG pairs, matched and mismatched in turn."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(2 * pairs):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    path.write_bytes(encode_bin(images, [index % 2 == 0 for index in range(pairs)]))
    return path


def config(out: Path, **options: object) -> TrainConfig:
    """A 2-epoch ResNet-20 (batch norm) CosFace run, 4 steps per epoch."""
    values: dict[str, object] = {
        "dataset": "folder",
        "backbone": "resnet20",
        "embedding_dim": 8,
        "loss": "cosface",
        "epochs": 2,
        "batch_size": 3,
        "threads": 1,
        "log_every": 0,
        "out": str(out),
    }
    return TrainConfig(**{**values, **options})


def weights(result: object) -> dict[str, torch.Tensor]:
    backbone, head = result.backbone, result.head  # type: ignore[attr-defined]
    return {
        **{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
        **{f"head.{k}": v for k, v in head.state_dict().items()},
    }


def test_verification_changes_nothing_is_logged_and_keeps_the_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_pairs_bin(tmp_path / "first.bin", seed=1)
    second = write_pairs_bin(tmp_path / "second.bin", seed=2)
    reads: list[Path] = []
    original = pair_files.load_pair_set

    def counted(path: Path, *args: object, **kwargs: object) -> object:
        reads.append(Path(path))
        return original(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pair_files, "load_pair_set", counted)
    plain = fit(config(tmp_path / "plain"), bundle=rgb_bundle(), progress=False)
    options = {"verify": [str(first), str(second)], "verify_every": 3, "verify_best": "second"}
    run_dir = tmp_path / "verified"
    verified = fit(config(run_dir, **options), bundle=rgb_bundle(), progress=False)
    # bitwise the same weights and batch-norm statistics as without verification
    expected, got = weights(plain), weights(verified)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert reads == [first, second]  # each file read once, for 4 verifications
    # metrics.json: at each epoch's end, and within it every 3 steps (step 3; 6 and 8 end)
    history = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    assert [row["verification"]["step"] for row in history] == [4, 8]
    assert [[r["step"] for r in row["verification_steps"]] for row in history] == [[3], [6]]
    records = [r for row in history for r in (*row["verification_steps"], row["verification"])]
    assert all(set(r["sets"]) == {"first", "second"} for r in records)
    # log.csv: the epoch-end figures; steps.csv: every verification, empty elsewhere
    rows = list(csv.DictReader((run_dir / "log.csv").open()))
    assert [float(r["verify_second_accuracy"]) for r in rows] == [
        row["verification"]["sets"]["second"]["accuracy"] for row in history
    ]
    assert "verify_first_auc" in rows[0]
    steps = list(csv.DictReader((run_dir / "steps.csv").open()))
    filled = [int(r["step"]) for r in steps if r["verify_first_accuracy"]]
    assert filled == [3, 4, 6, 8]
    # the best checkpoint: the first highest accuracy on the chosen set, named by `best`
    accuracies = [r["sets"]["second"]["accuracy"] for r in records]
    top = records[accuracies.index(max(accuracies))]
    best = verified.final["verification_best"]
    assert (best["set"], best["step"], best["accuracy"]) == ("second", top["step"], max(accuracies))
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "best").read_text().strip() == best["checkpoint"]
    assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == sorted(
        ["epoch-0001", "epoch-0002", best["checkpoint"]]
    )
    # its weights give the recorded figure again, read without the training data
    source = load_run_backbone(run_dir, checkpoint="best")
    pairs = original(second, (SIZE, SIZE), source.preprocessing.mean, source.preprocessing.std)
    assert evaluate_pairs(source.backbone, pairs)["ten_fold"]["mean"] == best["accuracy"]
    assert (source.state["epoch"], source.state["step"]) == (best["epoch"], best["step"])
    report = verify_run(run_dir, [str(second)], checkpoint="best", progress=False)
    assert (report["epoch"], report["step"]) == (best["epoch"], best["step"])
    # and the learning-curve figure draws each set
    figure = build_learning_curves(run_dir)
    labels = [line.get_label() for line in figure.axes[1].lines]
    assert "verification first (10-fold, flip)" in labels
    assert "verification second (10-fold, flip)" in labels


def test_bad_verification_files_fail_before_training(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(b"\x80\x04not a pickle at all")
    cases = [
        (str(tmp_path / "nowhere.bin"), f"{tmp_path / 'nowhere.bin'}: no such pairs file"),
        (str(damaged), f"{damaged}: not a verification .bin file"),
    ]
    for file, message in cases:
        with pytest.raises(DataError) as raised:
            fit(config(tmp_path / "run", verify=[file]), bundle=rgb_bundle(), progress=False)
        assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
        assert not (tmp_path / "run").exists()  # nothing written, nothing trained


def test_the_command_line_names_a_missing_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--dataset", "digits", "--out", str(tmp_path / "run"), "--quiet"]
    argv += ["--verify", "a.bin", "--verify", str(tmp_path / "missing.bin")]
    try:
        status = cli.main(argv)
    except SystemExit as exited:
        status = int(exited.code or 0)
    error = capsys.readouterr().err
    assert status == 2
    assert (
        error.startswith("marginkit: error: a.bin: no such pairs file") and error.count("\n") == 1
    )
    assert not (tmp_path / "run").exists()


def test_the_options_are_checked_and_the_flag_repeats() -> None:
    parsed = cli.build_parser().parse_args(
        ["train", "--verify", "a.bin", "--verify", "b/c.bin", "pairs.txt", "--verify-every", "5"]
    )
    assert parsed.verify == ["a.bin", "b/c.bin", "pairs.txt"] and parsed.verify_every == 5
    assert TrainConfig(verify="lfw.bin").verify == ["lfw.bin"]  # one file in YAML
    with pytest.raises(ConfigError, match=r"^verify_best must be one of the verify files"):
        TrainConfig(verify=["lfw.bin"], verify_best="agedb_30")
    with pytest.raises(ConfigError, match=r"^verify_best must be one of the verify files"):
        TrainConfig(verify_best="lfw")
    with pytest.raises(ConfigError, match=r"the name of \['a/lfw.bin', 'b/lfw.bin'\] is 'lfw'"):
        TrainConfig(verify=["a/lfw.bin", "b/lfw.bin"])
    with pytest.raises(ConfigError, match=r"^verify_every must be an integer >= 0"):
        TrainConfig(verify_every=-1)
    assert TrainConfig(verify=["x/lfw.bin", "cfp_fp.bin"], verify_best="x/lfw.bin").verify_best


def test_a_resumed_run_keeps_its_best_and_its_verifications(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"verify": [str(write_pairs_bin(tmp_path / "set.bin"))], "verify_every": 3}
    whole = fit(config(tmp_path / "whole", **options), bundle=rgb_bundle(), progress=False)
    original = loop.save_checkpoint

    def stop_after_first(run_dir, backbone, head, state):  # type: ignore[no-untyped-def]
        path = original(run_dir, backbone, head, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt  # "killed" right after the epoch-1 checkpoint
        return path

    monkeypatch.setattr(loop, "save_checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        fit(config(tmp_path / "b", **options), bundle=rgb_bundle(), progress=False)
    monkeypatch.setattr(loop, "save_checkpoint", original)
    resumed = fit(
        config(tmp_path / "b", **options), bundle=rgb_bundle(), resume=True, progress=False
    )
    assert resumed.final["verification_best"] == whole.final["verification_best"]
    for key in ("verification", "verification_steps"):
        assert [row[key] for row in resumed.history] == [row[key] for row in whole.history]
    best = (tmp_path / "b" / "checkpoints" / "best").read_text().strip()
    assert best == whole.final["verification_best"]["checkpoint"]
    assert (tmp_path / "b" / "checkpoints" / best / "manifest.json").is_file()


def test_the_same_step_saved_again_as_best_gets_a_new_folder(tmp_path: Path) -> None:
    from marginkit.train.verification import BEST, save_best_checkpoint

    backbone, head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)
    root = tmp_path / "checkpoints"
    first = save_best_checkpoint(tmp_path, backbone, head, {"epoch": 1, "step": 5})
    assert (root / BEST).read_text().strip() == first.name == "best-0000005"
    # a resumed run scoring step 5 again: the pointer never names a folder being replaced
    second = save_best_checkpoint(tmp_path, backbone, head, {"epoch": 1, "step": 5})
    assert (root / BEST).read_text().strip() == second.name == "best-0000005-2"
    assert (second / "manifest.json").is_file() and not first.exists()
    third = save_best_checkpoint(tmp_path, backbone, head, {"epoch": 2, "step": 9})
    assert (root / BEST).read_text().strip() == third.name == "best-0000009"
    assert sorted(p.name for p in root.iterdir()) == [BEST, "best-0000009"]
