"""The training loop: run folder, resume equivalence, refusals, non-finite stop, evaluate."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data_writers import write_image_folder

import marginkit.train.loop as loop
from marginkit.evaluation import embed, evaluate_run, load_run
from marginkit.train import (
    NonFiniteLossError,
    RunFolderError,
    TrainConfig,
    fit,
    latest_checkpoint,
    load_checkpoint,
)


def digits_config(out: Path | None, **changes: object) -> TrainConfig:
    values: dict[str, object] = {
        "dataset": "digits",
        "backbone": "mlp",
        "embedding_dim": 16,
        "loss": "camsoftmax",  # adaptive c: a schedule with running statistics
        "loss_args": {"c": "adaptive:1.5707963:0.8:0.9:0.5:0.01"},
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.05,
        "lr_schedule": "cosine",
        "log_every": 0,
        "threads": 1,
        "out": None if out is None else str(out),
    }
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


def state(result: loop.TrainResult) -> dict[str, torch.Tensor]:
    return {
        **{f"backbone.{k}": v for k, v in result.backbone.state_dict().items()},
        **{f"head.{k}": v for k, v in result.head.state_dict().items()},
    }


def assert_bitwise_equal(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]) or (
            first[key].isnan().all() and second[key].isnan().all()
        ), key


def test_run_folder_contents(tmp_path: Path, digits: object) -> None:
    out = tmp_path / "run"
    result = fit(digits_config(out), bundle=digits, progress=False)
    assert (out / "config.yaml").is_file()
    assert yaml.safe_load((out / "config.yaml").read_text())["loss"] == "camsoftmax"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    for key in ("train_loss", "train_accuracy", "test_accuracy", "images_per_second"):
        assert isinstance(metrics["final"][key], float)
    assert metrics["final"]["wall_time"] >= metrics["epochs"][0]["wall_time"] > 0
    assert set(metrics["final"]["hyperparameters"]) == {"scale", "c"}
    with open(out / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["c"]) == pytest.approx(metrics["final"]["hyperparameters"]["c"])
    folder = latest_checkpoint(out)
    assert folder is not None and folder.name == "epoch-0002"
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["epoch-0001", "epoch-0002", "latest"]  # the newest two are kept
    # the checkpoint holds exactly the trained weights, schedule state included
    checkpoint = load_checkpoint(folder)
    assert_bitwise_equal(checkpoint.weights, state(result))
    assert "head.schedules.c.running_quantile" in checkpoint.weights
    # test accuracy recomputed independently from the returned networks
    inputs, labels = digits.test.tensors()  # type: ignore[attr-defined]
    with torch.no_grad():
        predicted = result.head.logits(result.backbone(inputs)).argmax(1)
    expected = float((predicted == labels).double().mean())
    assert metrics["final"]["test_accuracy"] == pytest.approx(expected)


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path: Path, digits: object) -> None:
    whole = fit(digits_config(tmp_path / "whole"), bundle=digits, progress=False)
    again = fit(digits_config(None), bundle=digits, progress=False)
    assert_bitwise_equal(state(again), state(whole))  # deterministic from the seed
    config = digits_config(tmp_path / "b")
    original_save = loop.save_checkpoint

    def stop_after_first(run_dir, backbone, head, saved_state):  # type: ignore[no-untyped-def]
        path = original_save(run_dir, backbone, head, saved_state)
        if saved_state["epoch"] == 1:
            raise KeyboardInterrupt  # "killed" right after the epoch-1 checkpoint
        return path

    loop.save_checkpoint = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(config, bundle=digits, progress=False)
    finally:
        loop.save_checkpoint = original_save
    assert latest_checkpoint(tmp_path / "b").name == "epoch-0001"  # type: ignore[union-attr]
    resumed = fit(config, bundle=digits, resume=True, progress=False)
    assert_bitwise_equal(state(resumed), state(whole))
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert metrics["final"]["test_accuracy"] == whole.final["test_accuracy"]


def test_resume_from_a_percent_checkpoint_keeps_every_accuracy_a_fraction(
    tmp_path: Path, digits: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint written by an earlier version holds its history in percent and no unit:
    the resumed run's files hold fractions only."""
    whole = fit(digits_config(None), bundle=digits, progress=False)
    config = digits_config(tmp_path / "old")
    original_save = loop.save_checkpoint

    def save_as_before(run_dir, backbone, head, saved_state):  # type: ignore[no-untyped-def]
        old = {key: value for key, value in saved_state.items() if key != "accuracy_unit"}
        old["history"] = [
            {k: 100 * v if k.endswith("accuracy") and v is not None else v for k, v in row.items()}
            for row in saved_state["history"]
        ]
        original_save(run_dir, backbone, head, old)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save_as_before)
    with pytest.raises(KeyboardInterrupt):
        fit(config, bundle=digits, progress=False)
    monkeypatch.undo()
    fit(config, bundle=digits, resume=True, progress=False)
    metrics = json.loads((tmp_path / "old" / "metrics.json").read_text())
    assert metrics["accuracy_unit"] == "fraction"
    for row, expected in zip(metrics["epochs"], whole.history, strict=True):
        assert row["test_accuracy"] == pytest.approx(expected["test_accuracy"])
        assert 0 <= row["train_accuracy"] <= 1


def test_resume_with_augmentation_and_step_schedule(
    tmp_path: Path, fake_image_bundle: object
) -> None:
    bundle = fake_image_bundle
    config = TrainConfig(
        dataset="fake",
        backbone="lenetpp",
        embedding_dim=4,
        loss="arcface",
        loss_args={"margin": "warmup:0.5:5", "scale": 16.0},
        epochs=3,
        batch_size=32,
        lr=0.01,
        milestones=[2],
        log_every=0,
        threads=1,
        out=str(tmp_path / "whole"),
    )
    whole = fit(config, bundle=bundle, progress=False)
    assert whole.head.hyperparameters()["margin"] == 0.5
    parts = dataclasses.replace(config, out=str(tmp_path / "parts"))
    original_save = loop.save_checkpoint

    def stop_after_second(run_dir, backbone, head, saved_state):  # type: ignore[no-untyped-def]
        path = original_save(run_dir, backbone, head, saved_state)
        if saved_state["epoch"] == 2:
            raise KeyboardInterrupt
        return path

    loop.save_checkpoint = stop_after_second
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(parts, bundle=bundle, progress=False)
    finally:
        loop.save_checkpoint = original_save
    resumed = fit(parts, bundle=bundle, resume=True, progress=False)
    assert_bitwise_equal(state(resumed), state(whole))


def test_occupied_out_folder_is_refused(tmp_path: Path, digits: object) -> None:
    out = tmp_path / "run"
    fit(digits_config(out, epochs=1), bundle=digits, progress=False)
    before = (out / "metrics.json").read_text()
    with pytest.raises(RunFolderError, match="already holds a run; pass --resume"):
        fit(digits_config(out, epochs=1), bundle=digits, progress=False)
    with pytest.raises(RunFolderError, match=r"holds a different run: loss \('camsoftmax'"):
        fit(
            digits_config(out, epochs=1, loss="arcface", loss_args={}),
            bundle=digits,
            resume=True,
            progress=False,
        )
    assert (out / "metrics.json").read_text() == before
    # resuming a finished run changes nothing; overwrite starts again
    again = fit(digits_config(out, epochs=1), bundle=digits, resume=True, progress=False)
    assert len(again.history) == 1
    fit(
        digits_config(out, epochs=1, loss="softmax", loss_args={}),
        bundle=digits,
        overwrite=True,
        progress=False,
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["loss"] == "softmax"


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path: Path, digits: object) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(RunFolderError, match="holds no run"):
        fit(digits_config(tmp_path), bundle=digits, overwrite=True, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_bad_data_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"classes: \[10, 11, 12\] absent"):
        fit(digits_config(out, classes="0-12"), progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="unknown loss 'arcfaces'"):
        fit(digits_config(out, loss="arcfaces"), progress=False)
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        fit(digits_config(out, backbone="vgg"), progress=False)
    with pytest.raises(ValueError, match=r"loss 'softmax': .*margin"):
        fit(digits_config(out, loss="softmax", loss_args={"margin": 0.5}), progress=False)
    assert not out.exists()


def test_non_finite_loss_names_epoch_step_and_checkpoint(
    tmp_path: Path, digits: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    config = digits_config(out, loss="softmax", loss_args={}, epochs=3, lr_schedule="constant")
    steps_per_epoch = 22  # 1347 digits in batches of 64
    original = loop.learning_rate_at

    def exploding(cfg, step, per_epoch):  # type: ignore[no-untyped-def]
        assert per_epoch == steps_per_epoch
        return 1e30 if step >= per_epoch else original(cfg, step, per_epoch)

    monkeypatch.setattr(loop, "learning_rate_at", exploding)
    with pytest.raises(NonFiniteLossError) as caught:
        fit(config, bundle=digits, progress=False)
    message = str(caught.value)
    assert "became non-finite at epoch 2, step 2" in message
    assert f"last finite checkpoint: {out / 'checkpoints' / 'epoch-0001'}" in message
    assert "\n" not in message
    assert latest_checkpoint(out).name == "epoch-0001"  # type: ignore[union-attr]


def test_non_finite_in_first_epoch_says_no_checkpoint(digits: object) -> None:
    config = digits_config(None, loss="softmax", loss_args={}, lr=1e30, lr_schedule="constant")
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, .*no epoch finished"):
        fit(config, bundle=digits, progress=False)


def test_progress_line_shows_loss_accuracy_schedule_and_speed(digits: object) -> None:
    import io

    stream = io.StringIO()
    config = digits_config(
        None, epochs=1, loss="arcface", loss_args={"margin": "warmup:0.5:10"}, log_every=5
    )
    fit(config, bundle=digits, stream=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/1 step 5/22 loss ")
    assert "margin=0.25" in lines[0] and "scale=64" in lines[0] and "img/s" in lines[0]
    assert ", ETA " in lines[0]  # the line every log_every steps used to have no ETA
    assert "test acc" in lines[-1] and "margin=0.5" in lines[-1]


def test_a_loss_without_hyperparameters_prints_no_empty_field(digits: object) -> None:
    """ "test acc 97.56%, , 111 img/s" was printed for a loss without hyper-parameters."""
    import io

    stream = io.StringIO()
    fit(digits_config(None, epochs=1, loss="softmax", loss_args={}, log_every=5), bundle=digits,
        stream=stream)  # fmt: skip
    text = stream.getvalue()
    assert "done: " in text and ", ," not in text and "  " not in text


def test_quiet_prints_nothing(digits: object) -> None:
    import io

    stream = io.StringIO()
    fit(digits_config(None, epochs=1, log_every=1), bundle=digits, stream=stream, progress=False)
    assert stream.getvalue() == ""


def test_steps_csv_logs_every_step_and_survives_a_resume(
    tmp_path: Path, digits: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-step loss and learning rate used to be nowhere in the run folder."""
    whole = tmp_path / "whole"
    fit(digits_config(whole), bundle=digits, progress=False)
    with open(whole / "steps.csv") as handle:
        rows = list(csv.DictReader(handle))
    steps_per_epoch = 22  # 1,347 digits in batches of 64
    assert [int(row["step"]) for row in rows] == list(range(1, 2 * steps_per_epoch + 1))
    assert list(rows[0]) == ["step", "epoch", "loss", "lr", "scale", "c"]
    assert all(float(row["loss"]) > 0 for row in rows)
    assert float(rows[0]["lr"]) == pytest.approx(0.05) and float(rows[-1]["lr"]) < 0.001
    # interrupted mid-epoch 2, after its rows were logged: resumed, the file reads as one run
    interrupted = tmp_path / "interrupted"
    original = loop.StepLog.add

    def add_then_stop(self, step, *args):  # type: ignore[no-untyped-def]
        original(self, step, *args)
        if step == steps_per_epoch + 5:
            self.flush()
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.StepLog, "add", add_then_stop)
    with pytest.raises(KeyboardInterrupt):
        fit(digits_config(interrupted), bundle=digits, progress=False)
    monkeypatch.undo()
    fit(digits_config(interrupted), bundle=digits, resume=True, progress=False)
    assert (interrupted / "steps.csv").read_text() == (whole / "steps.csv").read_text()


def test_evaluate_run_and_embeddings(tmp_path: Path, digits: object) -> None:
    out = tmp_path / "run"
    result = fit(digits_config(out, epochs=1), bundle=digits, progress=False)
    report = evaluate_run(out, save_embeddings=tmp_path / "test_embeddings")
    assert report["accuracy"] == pytest.approx(result.final["test_accuracy"])
    assert json.loads((out / "eval.json").read_text())["accuracy"] == report["accuracy"]
    saved = np.load(tmp_path / "test_embeddings.npz")
    inputs, labels = digits.test.tensors()  # type: ignore[attr-defined]
    with torch.no_grad():
        direct = result.backbone(inputs)
    np.testing.assert_array_equal(saved["labels"], labels.numpy())
    np.testing.assert_allclose(saved["embeddings"], direct.numpy(), rtol=1e-5, atol=1e-6)
    config, backbone, _, bundle = load_run(out)
    assert config.loss == "camsoftmax" and bundle.num_classes == 10
    embeddings, embedded_labels = embed(backbone, bundle.train, batch_size=100)
    assert embeddings.shape == (1347, 16) and embedded_labels.shape == (1347,)
    with pytest.raises(ValueError, match="no validation split"):
        evaluate_run(out, split="validation")
    with pytest.raises(FileNotFoundError, match=r"no config\.yaml"):
        load_run(tmp_path)


@pytest.mark.parametrize(("image_size", "shape"), [(12, (3, 12, 12)), ([12, 10], (3, 12, 10))])
def test_load_bundle_reads_one_image_size_as_a_square(
    tmp_path: Path, image_size: int | list[int], shape: tuple[int, ...]
) -> None:
    # --image-size 112 (one value, as docs/verification.md gives it) is stored as an int
    write_image_folder(tmp_path, size=(20, 24))
    config = TrainConfig(
        dataset="folder", data_dir=str(tmp_path), image_size=image_size, min_images_per_person=1
    )
    assert loop.load_bundle(config, progress=False).input_shape == shape
