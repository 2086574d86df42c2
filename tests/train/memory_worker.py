"""One rank of the checkpoint memory test: ``python memory_worker.py OUT`` under the
environment of rank ``RANK`` of ``WORLD_SIZE`` (``MASTER_ADDR``, ``MASTER_PORT``).

It trains a head of :data:`NUM_CLASSES` x :data:`EMBEDDING_DIM` (float32: 128 MiB whole,
64 MiB a rank) on a few samples, sharded over 2 gloo ranks, with an address-space limit
(``RLIMIT_AS``) set by its backbone once the first training step is done (every rank's
head was built from the seed, as every run builds it, and sharded before): the process's
``VmSize`` then plus ``$MEMORY_BUDGET`` bytes, which admits the steps but neither the whole
head nor its gathered copy (every rank's rows all-gathered). Under that limit it finishes
the epoch (evaluation, shard-local checkpoint), then resumes (another epoch, the same
processes), then reads the rows of the checkpoint's classes that each rank of 3 processes
would, and records in ``OUT/rank<RANK>.json`` what it found. ``$MEMORY_BUDGET`` unset: no
limit, the process's peak ``VmSize`` and its ``VmSize`` at the limit's point recorded
instead (to size the budget).

The backbone is this module's :func:`linear` (``--backbone memory_worker:linear``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import sys
from pathlib import Path

import torch
from torch import nn

NUM_CLASSES = 65_536
EMBEDDING_DIM = 512
#: The forward pass of the backbone (in training mode) at which the limit is set: the
#: second step's, once the first step has made the optimiser's momentum.
LIMIT_AT = 2


def _status(field: str) -> int:
    """A ``/proc/self/status`` size in bytes (``VmSize``, ``VmHWM``, ``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _set_limit(limit: int | None) -> None:
    """The address-space limit (soft: the hard one stays, to lift it again); None: lifted."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (hard if limit is None else limit, hard))


class _Limited(nn.Module):
    """A linear backbone that sets the process's address-space limit at its
    :data:`LIMIT_AT`-th training forward pass (counted from :meth:`restart`); without
    ``$MEMORY_BUDGET`` it records the resident size there instead and starts counting its
    peak (``VmHWM``) afresh."""

    calls = 0
    limited_at: int | None = None

    def __init__(self, features: int, embedding_dim: int) -> None:
        super().__init__()
        self.flatten, self.linear = nn.Flatten(), nn.Linear(features, embedding_dim)

    @classmethod
    def restart(cls) -> None:
        _set_limit(None)
        cls.calls, cls.limited_at = 0, None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.training:
            _Limited.calls += 1
            if _Limited.calls == LIMIT_AT:
                budget = os.environ.get("MEMORY_BUDGET")
                if budget:
                    _Limited.limited_at = _status("VmSize")
                    _set_limit(_Limited.limited_at + int(budget))
                else:
                    Path("/proc/self/clear_refs").write_text("5")
                    _Limited.limited_at = _status("VmRSS")
        return self.linear(self.flatten(inputs))


def linear(input_shape: tuple[int, ...], embedding_dim: int) -> nn.Module:
    return _Limited(math.prod(input_shape), embedding_dim)


def bundle():
    """16 training samples of 4 features, their labels spread over every rank's classes;
    the test split: the first 8 of them."""
    from marginkit.data import ArrayDataset, DataBundle

    generator = torch.Generator().manual_seed(5)
    data = torch.randint(0, 256, (16, 1, 2, 2), generator=generator, dtype=torch.uint8)
    labels = torch.arange(16) * (NUM_CLASSES // 16) + 3
    train = ArrayDataset(data, labels, mean=[0.5], std=[0.25])
    test = ArrayDataset(data[:8], labels[:8], mean=[0.5], std=[0.25])
    return DataBundle(
        name="wide",
        train=train,
        validation=None,
        test=test,
        num_classes=NUM_CLASSES,
        input_shape=(1, 2, 2),
        class_names=[str(c) for c in range(NUM_CLASSES)],
        train_labels=labels,
        train_clean_labels=labels,
        test_labels=labels[:8],
        pairs=None,
    )


def _refused(size: int) -> bool:
    """Whether allocating ``size`` float32 numbers fails (the limit refuses it)."""
    try:
        torch.empty(size, dtype=torch.float32).fill_(1.0)
    except RuntimeError:
        return True
    return False


class _StoppedError(Exception):
    """Ends the first run after its first epoch."""


def _digest(rows: torch.Tensor) -> str:
    """SHA-256 of a (N, D) tensor's bytes, a block of rows at a time (no copy of it all)."""
    import hashlib

    digest = hashlib.sha256()
    for block in rows.detach().split(1024):
        digest.update(block.contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    import memory_worker  # the backbone's module (this file run as __main__ is another)

    from marginkit.train import TrainConfig, fit, load_checkpoint
    from marginkit.train.distributed import process_group

    limited = memory_worker._Limited
    out = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    run_dir = out / "run"
    options = dict(
        backbone="memory_worker:linear", embedding_dim=EMBEDDING_DIM, loss="arcface",
        optimizer="sgd", momentum=0.9, weight_decay=0.0, lr=0.1, batch_size=8,
        eval_batch_size=4, threads=1, out=str(run_dir), seed=3,
    )  # fmt: skip
    found: dict = {"rank": rank}
    with process_group(timeout=600.0) as part:
        data = bundle()

        # epoch 1 under the limit: steps, evaluation, the shard-local checkpoint; then the
        # run stops (as if killed) after the epoch's callback
        def stop_after_epoch_1(row: dict, backbone: nn.Module, head: nn.Module) -> None:
            found["limited_at"] = limited.limited_at
            found["peak_after_limit"] = _status("VmHWM")
            found["whole_head_refused"] = _refused(NUM_CLASSES * EMBEDDING_DIM)
            found["test_accuracy"] = row["test_accuracy"]
            found["epoch_1_rows"] = _digest(head.head.weight)
            raise _StoppedError

        config = TrainConfig(**options, epochs=2)
        with contextlib.suppress(_StoppedError):
            fit(config, bundle=data, progress=False, on_epoch=stop_after_epoch_1)
        # resumed (set-up without the limit: it builds the whole head from the seed, as
        # every run does), epoch 2 under it again
        limited.restart()
        resumed = fit(config, bundle=data, resume=True, progress=False)
        found["epochs"] = [row["epoch"] for row in resumed.history]
        found["resumed_limited_at"] = limited.limited_at
        # under the limit: this rank resumes epoch 1's checkpoint into its shard and a fresh
        # optimiser (the same world size), then reads the rows of each rank of 3
        from marginkit.distributed import shard_bounds
        from marginkit.train.checkpoint import head_rows

        head, backbone = resumed.head, resumed.backbone
        del resumed
        checkpoint = load_checkpoint(run_dir / "checkpoints" / "epoch-0001")
        part.load_networks(checkpoint, backbone, head)
        from marginkit.train.loop import _optimizer

        optimizer = _optimizer(config, [*backbone.parameters(), *head.parameters()])
        optimizer.load_state_dict(part.own_state(checkpoint, optimizer, head)[0])
        found["resumed_rows"] = _digest(head.head.weight)
        found["resumed_momentum_rows"] = len(optimizer.state[head.head.weight]["momentum_buffer"])
        lo, hi = head.lo, head.hi
        agree = []
        for new_rank in range(3):
            start, stop = shard_bounds(NUM_CLASSES, 3, new_rank)
            rows = head_rows(checkpoint, (start, stop))["head.weight"]
            first_class, last_class = max(lo, start), min(hi, stop)
            if first_class < last_class:  # this rank's rows among them
                mine = head.head.weight.detach()[first_class - lo : last_class - lo]
                agree.append(torch.equal(rows[first_class - start : last_class - start], mine))
            del rows
        found["resharded_rows_agree"] = agree
        part.total(0)  # both ranks done before the group ends
    (out / f"rank{rank}.json").write_text(json.dumps(found))


if __name__ == "__main__":
    main()
