"""The comparison grid: identical starts per seed, resume without retraining, run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from grids import tiny_spec

import marginkit.train
from marginkit.compare import CompareSpec, GridError, GridResult, fresh_folder, run_grid


def test_every_run_has_its_folder_and_files(tiny_grid: GridResult) -> None:
    runs = sorted(path.name for path in (tiny_grid.out / "runs").iterdir())
    assert runs == ["arcface-seed0", "arcface-seed1", "softmax-seed0", "softmax-seed1"]
    for name in runs:
        folder = tiny_grid.out / "runs" / name
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["final"] and metrics["final"]["step"] == 6
        assert (folder / "eval.json").is_file() and (folder / "embeddings.npz").is_file()
    assert sorted(tiny_grid.trained) == runs and tiny_grid.skipped == []
    state = json.loads((tiny_grid.out / "grid.json").read_text())
    assert state["machine"]["torch"] == torch.__version__
    assert state["invocations"][-1]["wall_time"] > 0


def test_same_seed_same_initial_weights_and_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marginkit.train.loop as loop

    starts: dict[tuple[str, int], Any] = {}
    batches: dict[tuple[str, int], list[torch.Tensor]] = {}
    real_build = loop.build_models

    def recording_build(config, bundle):  # type: ignore[no-untyped-def]
        backbone, head = real_build(config, bundle)
        key = (config.loss, config.seed)
        starts[key] = {k: v.clone() for k, v in backbone.state_dict().items()}
        batches[key] = []
        backbone.register_forward_pre_hook(
            lambda module, args: batches[key].append(args[0].clone()) if module.training else None
        )
        return backbone, head

    monkeypatch.setattr(loop, "build_models", recording_build)
    run_grid(tiny_spec("softmax,arcface,virtual"), tmp_path / "report", progress=False)
    for seed in (0, 1):
        reference = starts[("softmax", seed)]
        for loss in ("arcface", "virtual"):
            state = starts[(loss, seed)]
            assert all(torch.equal(reference[k], state[k]) for k in reference)
            assert len(batches[(loss, seed)]) == len(batches[("softmax", seed)]) == 6
            for mine, theirs in zip(batches[(loss, seed)], batches[("softmax", seed)], strict=True):
                assert torch.equal(mine, theirs)
    other = starts[("softmax", 1)]
    assert not all(torch.equal(starts[("softmax", 0)][k], other[k]) for k in other)


def test_a_grid_killed_half_way_resumes_without_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    spec = tiny_spec("softmax,arcface", seeds=1)
    real_fit = marginkit.train.fit

    def killed_in_arcface(config, **kwargs):  # type: ignore[no-untyped-def]
        if config.loss == "arcface":
            callback = kwargs["on_epoch"]

            def stop(row, backbone, head):  # type: ignore[no-untyped-def]
                callback(row, backbone, head)
                raise KeyboardInterrupt

            kwargs["on_epoch"] = stop
        return real_fit(config, **kwargs)

    monkeypatch.setattr(marginkit.train, "fit", killed_in_arcface)
    with pytest.raises(KeyboardInterrupt):
        run_grid(spec, out, progress=False)
    softmax = out / "runs" / "softmax-seed0"
    arcface = out / "runs" / "arcface-seed0"
    assert json.loads((arcface / "metrics.json").read_text())["final"] == {}
    finished_at = (softmax / "metrics.json").stat().st_mtime_ns
    calls: list[tuple[str, bool]] = []

    def counting(config, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((config.loss, kwargs["resume"]))
        return real_fit(config, **kwargs)

    monkeypatch.setattr(marginkit.train, "fit", counting)
    result = run_grid(spec, out, progress=False)
    assert calls == [("arcface", True)]
    assert result.skipped == ["softmax-seed0"] and result.trained == ["arcface-seed0"]
    assert (softmax / "metrics.json").stat().st_mtime_ns == finished_at
    resumed = json.loads((arcface / "metrics.json").read_text())
    assert [row["epoch"] for row in resumed["epochs"]] == [1, 2] and resumed["final"]
    calls.clear()
    again = run_grid(spec, out, progress=False)  # everything finished: nothing trains
    assert calls == [] and sorted(again.skipped) == ["arcface-seed0", "softmax-seed0"]
    assert len(json.loads((out / "grid.json").read_text())["invocations"]) == 2


def test_another_comparison_never_replaces_a_finished_report(tiny_grid: GridResult) -> None:
    other = tiny_spec("softmax", seeds=1)
    with pytest.raises(GridError, match=r"--out .* holds another comparison"):
        run_grid(other, tiny_grid.out, progress=False)
    assert fresh_folder(tiny_grid.out, other) == tiny_grid.out.with_name("report-2")
    assert fresh_folder(tiny_grid.out, tiny_spec()) == tiny_grid.out


def test_label_noise_snapshots_are_taken_during_training(tmp_path: Path) -> None:
    spec = tiny_spec("softmax,camsoftmax", seeds=1, label_noise=0.3)
    result = run_grid(spec, tmp_path / "noise", progress=False)
    for name in ("softmax-seed0", "camsoftmax-seed0"):
        rows = json.loads((result.out / "runs" / name / "noise_snapshots.json").read_text())
        assert [row["epoch"] for row in rows] == [1, 2]
        assert all(row["gradient_ratio"] > 0 for row in rows)
    text = result.report_md.read_text()
    assert "## Label noise" in text and "label_noise_training.png" in text


def test_evaluation_embeds_a_fixed_sample_of_a_large_training_split() -> None:
    from marginkit.compare.grid import evaluation_bundle
    from marginkit.data import load_dataset

    bundle = load_dataset("digits", label_noise=0.3, progress=False)
    small = evaluation_bundle(bundle, limit=100)
    inputs, labels = small.train.tensors()
    assert inputs.shape[0] == labels.shape[0] == len(small.train_labels) == 100
    assert torch.equal(labels, small.train_labels)
    assert torch.equal(small.train.clean_labels, small.train_clean_labels)
    full_inputs, _ = bundle.train.tensors()
    assert any(torch.equal(inputs[0], row) for row in full_inputs[:200])
    again = evaluation_bundle(bundle, limit=100)
    assert torch.equal(again.train_labels, small.train_labels)
    assert evaluation_bundle(bundle, limit=10_000) is bundle


def test_an_a_a_pair_is_inconclusive_on_every_measure(tmp_path: Path) -> None:
    """ArcFace and the combined margin (1, 0.5, 0) are the same function: with paired seeds
    every difference is zero and no verdict may call it a result."""
    spec = tiny_spec("arcface,combined,softmax", seeds=3)
    spec.baseline = "arcface"
    result = run_grid(spec, tmp_path / "aa", progress=False)
    evidence = json.loads((result.out / "report.json").read_text())
    rows = [row for row in evidence["comparisons"] if row["run"] == "combined"]
    assert len(rows) >= 10 and all(row["baseline"] == "arcface" for row in rows)
    assert {row["verdict"] for row in rows} == {"inconclusive"}
    assert all(row["difference"] == 0 and row["seeds"] == 3 for row in rows)


def test_an_lr_grid_chooses_each_runs_rate_on_the_validation_split(tmp_path: Path) -> None:
    spec = tiny_spec("softmax,arcface", seeds=1, validation_fraction=0.2)
    spec.lr_grid = [3e-4, 1e-3]
    result = run_grid(spec, tmp_path / "lr", progress=False)
    selection = json.loads((result.out / "selection.json").read_text())
    assert selection["measure"] == "validation_accuracy" and selection["seed"] == 0
    for loss in ("softmax", "arcface"):
        row = selection["runs"][loss]
        scores = row["validation_accuracy"]
        assert set(scores) == {"0.0003", "0.001"}
        assert scores[f"{row['chosen']:g}"] == max(scores.values())
        trial = result.out / "selection" / f"{loss}-lr0.001"
        assert (trial / "metrics.json").is_file() and not (trial / "eval.json").exists()
        config = (result.out / "runs" / f"{loss}-seed0" / "config.yaml").read_text()
        assert f"lr: {row['chosen']}" in config
    text = result.report_md.read_text()
    assert "## Learning rate, chosen on the validation split" in text
    assert "the learning rate each run chose from the same grid" in text


def test_an_lr_grid_needs_a_validation_split() -> None:
    from marginkit.train import ConfigError

    with pytest.raises(ConfigError, match="lr_grid needs a validation split"):
        CompareSpec.from_dict(
            {"settings": {"dataset": "digits"}, "runs": "softmax", "lr_grid": [1e-3]}
        )
    with pytest.raises(ConfigError, match="baseline must be one of the runs"):
        CompareSpec.from_dict(
            {"settings": {"dataset": "digits"}, "runs": "softmax", "baseline": "x"}
        )


def test_folder_data_without_a_validation_split_fails_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grid on ``--dataset folder`` without ``validation_fraction`` trained its first run
    and only then failed: "the run's data set 'folder' has no test split"."""
    from data_writers import write_image_folder

    write_image_folder(tmp_path / "faces", classes=3, per_class=8, size=(12, 12))
    settings = {"dataset": "folder", "data_dir": str(tmp_path / "faces"), "image_size": [12, 12]}
    trained: list[str] = []
    real_fit = marginkit.train.fit

    def counting(config, **kwargs):  # type: ignore[no-untyped-def]
        trained.append(config.loss)
        return real_fit(config, **kwargs)

    monkeypatch.setattr(marginkit.train, "fit", counting)
    out = tmp_path / "report"
    with pytest.raises(GridError) as caught:
        run_grid(tiny_spec("softmax,arcface", seeds=1, **settings), out, progress=False)
    assert str(caught.value) == (
        "data set 'folder' has no test split to measure the runs on; set validation_fraction "
        "(e.g. 0.2) in the settings to hold out a validation split"
    )
    assert trained == [] and not out.exists()


class KilledError(Exception):
    """The grid's process killed (not a KeyboardInterrupt, which would stop pytest)."""


def test_a_grid_resumed_on_other_data_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KilledError after its first run, a grid rerun with ``--data-dir B`` adopted that run
    (trained on A) and trained the others on B."""
    from data_writers import write_idx_dataset

    write_idx_dataset(tmp_path / "a")
    write_idx_dataset(tmp_path / "b", seed=1)
    shutil.copytree(tmp_path / "a", tmp_path / "moved")
    out = tmp_path / "report"
    mnist = {"dataset": "mnist", "download": False, "train_fraction": 1.0}
    real_fit = marginkit.train.fit
    calls: list[str] = []
    killed = {"arcface"}

    def killed_in_arcface(config, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(config.loss)
        if config.loss in killed:
            raise KilledError
        return real_fit(config, **kwargs)

    monkeypatch.setattr(marginkit.train, "fit", killed_in_arcface)
    with pytest.raises(KilledError):
        run_grid(tiny_spec(seeds=1, data_dir=str(tmp_path / "a"), **mnist), out, progress=False)
    calls.clear()
    with pytest.raises(GridError) as caught:
        run_grid(tiny_spec(seeds=1, data_dir=str(tmp_path / "b"), **mnist), out, progress=False)
    assert str(caught.value) == (
        f"run folder {out / 'runs' / 'softmax-seed0'} holds a run on other data (data_dir: "
        f"{tmp_path / 'a'} there, {tmp_path / 'b'} now; changed: t10k-images-idx3-ubyte, "
        "train-images-idx3-ubyte); give the grid its data again or choose another --out "
        "(finished work is never replaced)"
    )
    assert calls == []
    killed.clear()
    result = run_grid(
        tiny_spec(seeds=1, data_dir=str(tmp_path / "moved"), **mnist), out, progress=False
    )  # the same files, moved
    assert calls == ["arcface"] and result.skipped == ["softmax-seed0"]


def test_the_data_cache_key_is_the_whole_data_group() -> None:
    """The key under which a grid keeps loaded data is derived from the config's ``data``
    group, so a data option added later is in it without being listed (once a hand-written
    list, which a new data option could miss: a run would reuse the wrong cached data)."""
    from dataclasses import dataclass, field

    from marginkit.compare.grid import _data_key
    from marginkit.train.config import TrainConfig, _about, group_options

    @dataclass
    class WithNewDataOption(TrainConfig):
        new_data_option: int = field(default=0, metadata=_about("data", "a data option."))

    assert "new_data_option" in group_options("data", WithNewDataOption)
    assert _data_key(WithNewDataOption(new_data_option=1)) != _data_key(WithNewDataOption())
    for option, value in [("classes", "0-3"), ("augment", True), ("pairs_file", "pairs.txt")]:
        assert _data_key(TrainConfig(**{option: value})) != _data_key(TrainConfig()), option
    assert _data_key(TrainConfig(lr=0.5, epochs=3)) == _data_key(TrainConfig())  # not data
