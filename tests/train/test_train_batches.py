"""Training from streamed files (``workers > 0``): the in-memory run's batches and weights,
and an exact resume."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from data_writers import write_image_folder

from marginkit.data import load_dataset
from marginkit.train import ConfigError, TrainConfig, fit, latest_checkpoint, load_checkpoint, loop
from marginkit.train.batches import BatchSource


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dozen 20x24 JPEGs, three identities."""
    folder = tmp_path_factory.mktemp("faces")
    write_image_folder(folder, classes=3, per_class=4, size=(20, 24), extension="jpg")
    return folder


def _bundle(folder: Path, workers: int) -> object:
    return load_dataset(
        "folder", data_dir=folder, image_size=(16, 16), progress=False, workers=workers
    )


def test_seeded_batches_equal_the_in_memory_ones(faces: Path) -> None:
    memory, streamed = BatchSource(_bundle(faces, 0).train), BatchSource(_bundle(faces, 2).train)
    assert streamed.streamed and not memory.streamed
    generators = [torch.Generator().manual_seed(5) for _ in range(2)]
    for _ in range(2):  # the second epoch's order follows from the first's draws
        pairs = zip(
            memory.epoch(generators[0], 5, 2), streamed.epoch(generators[1], 5, 2), strict=True
        )
        for (x_memory, y_memory), (x_streamed, y_streamed) in pairs:
            assert torch.equal(x_streamed, x_memory) and torch.equal(y_streamed, y_memory)
    assert torch.equal(generators[0].get_state(), generators[1].get_state())
    kept = torch.tensor([7, 2, 9])
    in_order = zip(memory.subset(kept).in_order(2), streamed.subset(kept).in_order(2), strict=True)
    for (x_memory, y_memory), (x_streamed, y_streamed) in in_order:
        assert torch.equal(x_streamed, x_memory) and torch.equal(y_streamed, y_memory)


def _config(folder: Path, out: Path, workers: int) -> TrainConfig:
    return TrainConfig(
        dataset="folder",
        data_dir=str(folder),
        image_size=[16, 16],
        augment=True,  # random crop + flip, drawn from the run's generator
        validation_fraction=0.25,  # evaluated from the streamed split, in batches
        backbone="mlp",
        embedding_dim=8,
        loss="arcface",
        epochs=2,
        batch_size=4,
        lr=0.05,
        threads=1,
        log_every=0,
        workers=workers,
        out=str(out),
    )


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_checkpoint(out)).weights  # type: ignore[arg-type]


def test_a_resumed_streamed_run_ends_with_the_uninterrupted_weights(
    faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = torch.get_num_threads()
    try:
        whole = fit(_config(faces, tmp_path / "whole", 2), progress=False)
        memory = fit(_config(faces, tmp_path / "memory", 0), progress=False)
        original_save = loop.save_checkpoint

        def stop_after_first(run_dir, backbone, head, state):  # type: ignore[no-untyped-def]
            path = original_save(run_dir, backbone, head, state)
            if state["epoch"] == 1:
                raise KeyboardInterrupt  # "killed" right after the epoch-1 checkpoint
            return path

        monkeypatch.setattr(loop, "save_checkpoint", stop_after_first)
        with pytest.raises(KeyboardInterrupt):
            fit(_config(faces, tmp_path / "resumed", 2), progress=False)
        monkeypatch.setattr(loop, "save_checkpoint", original_save)
        resumed = fit(_config(faces, tmp_path / "resumed", 2), resume=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    expected = _weights(tmp_path / "whole")
    for other in ("resumed", "memory"):  # the in-memory run trains on the same batches
        weights = _weights(tmp_path / other)
        assert weights.keys() == expected.keys()
        assert all(torch.equal(weights[key], expected[key]) for key in expected), other
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert resumed.final["validation_accuracy"] == whole.final["validation_accuracy"]
    assert memory.final["validation_accuracy"] == whole.final["validation_accuracy"]


def test_negative_workers_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="workers"):
        TrainConfig(workers=-1)


def test_each_process_reads_only_its_rows_of_every_batch(
    faces: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On 2 processes with --workers 1, each rank's loader is asked for its own rows of each
    step only (step_rows: its part of each micro-batch), and those rows, augmented with the
    whole batch's draws, are bitwise the rows it took of the whole decoded batch before."""
    from marginkit.data import augment_batch
    from marginkit.train import batches as batches_module
    from marginkit.train.accumulation import step_rows
    from marginkit.train.distributed import Distribution

    streamed = BatchSource(_bundle(faces, 1).train)
    asked: list[list[int]] = []
    original = batches_module.load_batches

    def recording(dataset, chunks, workers, pin_memory):  # type: ignore[no-untyped-def]
        for indices in chunks:
            asked.append(list(indices))
            yield from original(dataset, [indices], workers, pin_memory)

    monkeypatch.setattr(batches_module, "load_batches", recording)
    size, count, micro = 5, 2, 3  # steps of 5 (the last of 4) in micro-batches of 3 and 2
    whole = list(streamed.epoch(torch.Generator().manual_seed(5), size, count))
    order = torch.randperm(len(streamed), generator=torch.Generator().manual_seed(5))
    whole_generator = torch.Generator().manual_seed(9)
    whole_augmented = [augment_batch(x, whole_generator) for x, _ in whole]
    for rank in range(2):
        part = Distribution(rank=rank, world=2)
        asked.clear()
        rows = functools.partial(step_rows, batch_size=micro, part=part)
        generator = torch.Generator().manual_seed(9)
        epoch = streamed.epoch(torch.Generator().manual_seed(5), size, count, rows)
        for index, (x, y) in enumerate(epoch):
            total = whole[index][1].numel()
            own = rows(total)
            assert asked[-1] == order[index * size : (index + 1) * size][own].tolist()
            assert len(asked[-1]) < total  # never the whole batch
            assert torch.equal(y, whole[index][1][own])
            augmented = augment_batch(x, generator, rows=own, batch_size=total)
            assert torch.equal(augmented, whole_augmented[index][own])
        assert torch.equal(generator.get_state(), whole_generator.get_state())
