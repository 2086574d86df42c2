"""The checkpoint format: shard-local checkpoints (each rank's head rows and optimiser state
in its own safetensors files, the class layout in the manifest) read back for any world size
one row range at a time; whole-head checkpoints of format 1 still load; damage to any file is
one line naming it; a newer format is refused in one line. In-process: the ranks' shards are
built directly (no process group is needed to save or read them)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from marginkit.distributed import ShardedHead, shard_bounds
from marginkit.losses import build
from marginkit.train.checkpoint import (
    FORMAT,
    CheckpointError,
    CheckpointFormatError,
    ShardPart,
    find_checkpoint,
    head_rows,
    load_checkpoint,
    load_weights,
    read_optimizer_rows,
    save_checkpoint,
    verify_checkpoint,
    whole_weights,
    write_shard,
    write_tensors,
)
from marginkit.train.distributed import Distribution

NUM_CLASSES, EMBEDDING_DIM, SUBCENTERS = 7, 3, 2


def _backbone() -> nn.Module:
    torch.manual_seed(1)
    return nn.Linear(4, EMBEDDING_DIM)


def _whole() -> nn.Module:
    torch.manual_seed(0)
    return build("subcenter", NUM_CLASSES, EMBEDDING_DIM, subcenters=SUBCENTERS)


def _trained(head: nn.Module) -> torch.optim.Optimizer:
    """An Adam step on ``head``'s parameters (state: step, exp_avg, exp_avg_sq)."""
    optimizer = torch.optim.Adam(head.parameters(), lr=0.1)
    for parameter in head.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    return optimizer


def _state(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "step": 3 * epoch,
        "history": [],
        "generator": torch.zeros(8, dtype=torch.uint8),
    }


def save_sharded(run_dir: Path, world: int, epoch: int = 1) -> tuple[nn.Module, list]:
    """A shard-local checkpoint of ``world`` ranks of the sub-centre head (K = 2 rows a class),
    each rank's Adam state after one step; the whole head, and each rank's (shard, optimiser)."""
    whole = _whole()
    ranks = [ShardedHead(whole, rank, world) for rank in range(world)]
    trained = [(shard, _trained(shard)) for shard in ranks]

    def writer(folder: Path) -> list[dict]:
        return [
            write_shard(
                folder,
                ShardPart(
                    rank=shard.rank,
                    world_size=world,
                    classes=(shard.lo, shard.hi),
                    num_classes=NUM_CLASSES,
                    head_state=shard.state_dict(),
                    optimizer_state=optimizer.state_dict(),
                    torch_rng=torch.get_rng_state(),
                ),
                epoch,
            )
            for shard, optimizer in trained
        ]

    save_checkpoint(run_dir, _backbone(), None, _state(epoch), shards=writer)
    return whole, trained


@pytest.fixture
def sharded(tmp_path: Path) -> tuple[Path, list]:
    run_dir = tmp_path / "run"
    _, trained = save_sharded(run_dir, world=2)
    return run_dir / "checkpoints" / "epoch-0001", trained


def test_a_shard_local_checkpoint_lists_every_file_and_the_class_layout(sharded) -> None:
    folder, _ = sharded
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == FORMAT == 2
    assert manifest["layout"] == {
        "num_classes": 7, "rows_per_class": 2, "world_size": 2,
        "shards": [
            {"rank": 0, "classes": [0, 4], "head": "head-rank-00000-of-00002.safetensors",
             "optimizer": "optimizer-rank-00000-of-00002.safetensors"},
            {"rank": 1, "classes": [4, 7], "head": "head-rank-00001-of-00002.safetensors",
             "optimizer": "optimizer-rank-00001-of-00002.safetensors"},
        ],
    }  # fmt: skip
    assert sorted(manifest["files"]) == sorted(
        p.name for p in folder.iterdir() if p.name != "manifest.json"
    )
    checkpoint = load_checkpoint(folder)
    assert sorted(checkpoint.weights) == ["backbone.bias", "backbone.weight"]  # no head
    assert [entry["optimizer"]["param_groups"][0]["lr"] for entry in checkpoint.state["ranks"]] == [
        0.1,
        0.1,
    ]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rows_read_for_any_world_size_are_the_saved_rows(sharded, world: int) -> None:
    """Every rank of ``world`` reads its classes' rows of the 2-rank checkpoint: the weight
    (K rows a class), the counts (one row a class) and Adam's moments, equal to the saved
    ranks' rows; the replicated step counter and Adam's step as saved."""
    folder, trained = sharded
    checkpoint = load_checkpoint(folder)
    saved = {
        key: torch.cat([shard.state_dict()[key] for shard, _ in trained])
        for key in ("head.weight", "head.subcenter_counts")
    }
    moments = {
        name: torch.cat([optimizer.state_dict()["state"][0][name] for _, optimizer in trained])
        for name in ("exp_avg", "exp_avg_sq")
    }
    for rank in range(world):
        lo, hi = shard_bounds(NUM_CLASSES, world, rank)
        rows = head_rows(checkpoint, (lo, hi))
        assert torch.equal(rows["head.weight"], saved["head.weight"][2 * lo : 2 * hi])
        assert torch.equal(rows["head.subcenter_counts"], saved["head.subcenter_counts"][lo:hi])
        assert torch.equal(rows["head.step"], trained[0][0].state_dict()["head.step"])
        state = read_optimizer_rows(checkpoint, (lo, hi), {0}, 0)
        for name, value in moments.items():
            assert torch.equal(state["state"][0][name], value[2 * lo : 2 * hi])
        assert float(state["state"][0]["step"]) == 1.0


def test_a_rank_of_another_world_size_resumes_its_rows_into_its_shard_and_optimiser(
    sharded,
) -> None:
    """``Distribution.load_networks`` and ``own_state`` (what a resumed rank runs) put rank 1 of
    3's rows into its shard and its Adam state into its optimiser."""
    folder, trained = sharded
    checkpoint = load_checkpoint(folder)
    part = Distribution(rank=1, world=3)
    shard = ShardedHead(_whole(), 1, 3)  # classes [3, 5): saved by both ranks
    optimizer = torch.optim.Adam(shard.parameters(), lr=0.1)
    part.load_networks(checkpoint, _backbone(), shard)
    whole = torch.cat([s.state_dict()["head.weight"] for s, _ in trained])
    assert torch.equal(shard.head.weight.detach(), whole[6:10])
    state, rng = part.own_state(checkpoint, optimizer, shard)
    optimizer.load_state_dict(state)
    moments = torch.cat([o.state_dict()["state"][0]["exp_avg"] for _, o in trained])
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], moments[6:10])
    assert torch.equal(rng, checkpoint.state["ranks"][0]["torch_rng"])


def test_one_process_assembles_a_small_head_from_the_shards(sharded) -> None:
    folder, trained = sharded
    head = _whole()
    load_weights(load_checkpoint(folder), _backbone(), head)  # marginkit eval's load
    whole = torch.cat([s.state_dict()["head.weight"] for s, _ in trained])
    assert torch.equal(head.weight.detach(), whole)
    assert whole_weights(load_checkpoint(folder))["head.weight"].shape == (14, 3)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (_flip, "checksum mismatch"),
        (lambda path: path.write_bytes(path.read_bytes()[:-5]), r"\d+ bytes, \d+ expected"),
        (Path.unlink, "missing"),
    ],
    ids=["flipped", "truncated", "missing"],
)
def test_a_damaged_shard_file_is_one_line_naming_it(sharded, damage, what: str) -> None:
    folder, _ = sharded
    name = "optimizer-rank-00001-of-00002.safetensors"
    damage(folder / name)
    expected = rf"checkpoint epoch-0001 is damaged \({re.escape(name)}: {what}\)$"
    with pytest.raises(CheckpointError, match=expected):
        verify_checkpoint(folder)
    checkpoint = load_checkpoint(folder)  # the backbone and state are intact
    read_optimizer_rows(checkpoint, (0, 4), {0}, 0)  # rank 0's rows: its file alone
    with pytest.raises(CheckpointError, match=expected):
        read_optimizer_rows(checkpoint, (3, 5), {0}, 0)  # rows in the damaged file too
    assert re.match(expected, find_checkpoint(folder.parent.parent).damaged[0])


def test_a_newer_format_is_refused_in_one_line_and_never_taken_for_damage(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    save_sharded(run_dir, world=2, epoch=1)
    save_sharded(run_dir, world=2, epoch=2)
    folder = run_dir / "checkpoints" / "epoch-0002"
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format": FORMAT + 1}))
    expected = (
        f"checkpoint {folder} is of format {FORMAT + 1}; this marginkit reads checkpoint "
        f"formats up to {FORMAT}: upgrade marginkit to use it"
    )
    for read in (load_checkpoint, verify_checkpoint, lambda _: find_checkpoint(run_dir)):
        with pytest.raises(CheckpointFormatError) as error:
            read(folder)
        assert str(error.value) == expected


def test_a_whole_head_checkpoint_of_format_1_still_loads_and_reshards(tmp_path: Path) -> None:
    """A checkpoint as marginkit wrote them before shard-local ones (format 1, no "format"
    in the manifest; the whole head in weights.safetensors, the optimiser in state.pt)."""
    import hashlib

    from safetensors.torch import save

    backbone, whole = _backbone(), _whole()
    optimizer = _trained(whole)
    folder = tmp_path / "run" / "checkpoints" / "epoch-0001"
    folder.mkdir(parents=True)
    weights = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    weights.update({f"head.{k}": v.contiguous() for k, v in whole.state_dict().items()})
    buffer = io.BytesIO()
    state = {**_state(1), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    torch.save(state, buffer)
    files = {"weights.safetensors": save(weights), "state.pt": buffer.getvalue()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    listed = {
        n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in files.items()
    }
    (folder / "manifest.json").write_text(json.dumps({"epoch": 1, "files": listed}))
    checkpoint = load_checkpoint(folder)
    assert checkpoint.layout is None
    head = _whole()
    with torch.no_grad():
        head.weight.zero_()
    load_weights(checkpoint, _backbone(), head)
    assert torch.equal(head.weight, whole.weight)
    shard = ShardedHead(_whole(), 1, 2)  # a run resumed on 2 processes: rank 1's rows
    part = Distribution(rank=1, world=2)
    part.load_networks(checkpoint, _backbone(), shard)
    assert torch.equal(shard.head.weight, whole.weight[8:])
    optimizer_state, _ = part.own_state(checkpoint, torch.optim.Adam(shard.parameters()), shard)
    assert torch.equal(
        optimizer_state["state"][0]["exp_avg"], optimizer.state[whole.weight]["exp_avg"][8:]
    )


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        torch.float64,
        torch.bfloat16,
        torch.float16,
        torch.int64,
        torch.uint8,
        torch.bool,
    ],
)
def test_streamed_safetensors_files_are_what_safetensors_reads(tmp_path: Path, dtype) -> None:
    import hashlib

    from safetensors import safe_open
    from safetensors.torch import load_file

    generator = torch.Generator().manual_seed(0)
    tensors = {
        "rows": (torch.randn(5, 3, generator=generator) * 9).to(dtype),
        "scalar": torch.tensor(3).to(dtype),
        "empty": torch.zeros(0, 4, dtype=dtype),
        "columns": (torch.randn(4, 6, generator=generator) * 9).to(dtype).t(),  # not contiguous
    }
    path = tmp_path / "file.safetensors"
    entry = write_tensors(path, tensors, {"classes": "0,5"})
    data = path.read_bytes()
    assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    loaded = load_file(path)
    for key, value in tensors.items():
        assert loaded[key].dtype == dtype and torch.equal(loaded[key], value), key
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"classes": "0,5"}
        assert torch.equal(handle.get_slice("rows")[1:3], tensors["rows"][1:3])
