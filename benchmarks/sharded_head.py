"""The sharded head at realistic sizes, every head: per-rank peak memory, bytes sent per step
and CPU time per step, against the whole fused head on the same global batch.

For each head and each C, in this order, each in fresh processes (so that a process's peak
resident memory, ``ru_maxrss``, is that configuration's alone):

1. the whole fused head in one process, forward + backward on the whole global batch (B, D);
2. for each W of ``--worlds``: W CPU processes with gloo on loopback (``torch.multiprocessing``
   spawn); rank r builds only its shard (below) and runs forward + backward on its rows
   ``shard_bounds(B, W, r)`` of the same global batch.

No rank builds the whole head: the head is constructed with its weight left unallocated
(``torch.empty``, never written: no resident page) and replaced by a zero-stride view before
:class:`~marginkit.distributed.ShardedHead` cuts the rank's rows, which are then filled in
place. The weight is the benchmark's "seeded rows" (blocks of 8192 rows, block b uniform in
nn.Linear's bound from seed ``--seed`` + b), the same in the whole head, so the shards are the whole
head's rows and every rank's loss equals the whole head's (checked: ``loss_relative_difference``).

Each process runs with one torch thread and reports, per step (median of ``--repeats``):
wall seconds (not a speed figure when processes share cores), CPU seconds of the process
(``time.process_time``, every thread: gloo's included) and of its main thread
(``time.thread_time``); bytes sent (the head's count of its collectives' tensors,
:attr:`ShardedHead.step_bytes`); "held" (what autograd keeps from forward to backward: the
tensors saved for backward, each storage once, the parameters left out); and at the end its
peak resident memory (``ru_maxrss``) and its resident memory (VmRSS) just before the head was
built, after one step of the same head at 64 classes (so that lazy set-ups, imports and
kernels, fall before this baseline, and "peak over baseline" is the head's step).

    PYTHONPATH=src python benchmarks/sharded_head.py --classes 100000 --worlds 2 3 \\
        --chunk-size 8192 --out benchmarks/results/sharded_head_c1e5.json
    PYTHONPATH=src python benchmarks/sharded_head.py \\
        --table benchmarks/results/sharded_head_c1e5.json   # the tables again, from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

HEADS = [
    *("softmax", "lsoftmax", "sphereface", "normface", "cosface", "arcface", "combined"),
    *("virtual", "camsoftmax", "adacos", "curricularface", "subcenter", "magface", "adaface"),
]
#: Rows per seeded block of the benchmark's weight.
BLOCK_ROWS = 8192
#: The largest relative difference between a rank's loss and the whole head's (float32).
LOSS_TOLERANCE = 1e-4
MIB = 2**20
#: Classes of the small head each process runs once before its baseline (lazy set-ups).
WARM_UP_CLASSES = 64


# --------------------------------------------------------------------- weights and batch
def _fill_seeded_rows(weight: torch.Tensor, first: int, seed: int) -> None:
    """Write rows ``first .. first + len(weight)`` of the benchmark's (C K, D) weight into
    ``weight`` in place: block b of BLOCK_ROWS rows uniform in [-1/sqrt(D), 1/sqrt(D)]
    (nn.Linear's bound) from ``torch.Generator().manual_seed(seed + b)``."""
    bound = weight.shape[1] ** -0.5
    done = 0
    with torch.no_grad():
        while done < weight.shape[0]:
            block, offset = divmod(first + done, BLOCK_ROWS)
            generator = torch.Generator().manual_seed(seed + block)
            values = torch.rand(BLOCK_ROWS, weight.shape[1], generator=generator)
            values = values[offset : offset + weight.shape[0] - done].mul_(2 * bound).sub_(bound)
            weight[done : done + values.shape[0]] = values
            done += values.shape[0]


def _global_batch(classes: int, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's (B, D) embeddings and (B,) labels, the same in every process."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    embeddings = torch.randn(args.batch, args.dim, generator=generator)
    return embeddings, torch.randint(0, classes, (args.batch,), generator=generator)


def _built_uninitialised(name: str, classes: int, args: argparse.Namespace) -> nn.Module:
    """``build(name, ...)`` with its weight left as allocated (``torch.empty``: no page
    written, none resident) instead of nn.Linear's initialisation; the rest as built."""
    from marginkit.losses import build
    from marginkit.losses.head import MarginHead

    with mock.patch.object(MarginHead, "reset_parameters", lambda self: None):
        return build(name, num_classes=classes, embedding_dim=args.dim)


def _whole_head(name: str, classes: int, args: argparse.Namespace) -> nn.Module:
    """The whole head with the seeded weight, in blocks of ``--chunk-size`` classes."""
    head = _built_uninitialised(name, classes, args)
    _fill_seeded_rows(head.weight.data, 0, args.seed)
    return head.set_chunk_size(args.chunk_size).set_total_steps(1000)


def _rank_shard(name: str, classes: int, args: argparse.Namespace, rank: int, world: int):
    """Rank ``rank``'s ShardedHead of the whole head of :func:`_whole_head`, built without
    the whole weight ever being resident (see the module docstring)."""
    from marginkit.distributed import ShardedHead

    whole = _built_uninitialised(name, classes, args)
    whole.weight = nn.Parameter(whole.weight.new_zeros(1, args.dim).expand(whole.weight.shape))
    whole.set_chunk_size(args.chunk_size).set_total_steps(1000)
    shard = ShardedHead(whole, rank, world)  # the rows are cloned: contiguous, resident
    rows_per_class = shard.rows_per_class
    _fill_seeded_rows(shard.head.weight.data, shard.lo * rows_per_class, args.seed)
    return shard


# --------------------------------------------------------------------------- measurement
def _resident_bytes() -> int:
    """The process's resident memory now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _step(head: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """One forward + backward: loss, times, and the bytes autograd held between the two."""
    parameters = {parameter.untyped_storage().data_ptr() for parameter in head.parameters()}
    held: dict[int, torch.Tensor] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in parameters:
            held[pointer] = tensor
        return tensor

    head.zero_grad(set_to_none=True)
    embeddings.grad = None
    wall, process, thread = time.perf_counter(), time.process_time(), time.thread_time()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = head(embeddings, labels)
    loss.backward()
    return {
        "loss": float(loss.detach()),
        "wall_s": time.perf_counter() - wall,
        "process_cpu_s": time.process_time() - process,
        "thread_cpu_s": time.thread_time() - thread,
        "held_bytes": sum(tensor.untyped_storage().nbytes() for tensor in held.values()),
    }


def _measure(head, embeddings, labels, repeats: int, baseline: int) -> dict[str, Any]:
    """``repeats`` steps: the first step's loss, the medians, weight + gradient, peaks."""
    steps = [_step(head, embeddings, labels) for _ in range(repeats)]
    result: dict[str, Any] = {"loss": steps[0]["loss"], "held_bytes": steps[0]["held_bytes"]}
    for key in ("wall_s", "process_cpu_s", "thread_cpu_s"):
        result[key] = statistics.median(step[key] for step in steps)
    result["steps_process_cpu_s"] = [step["process_cpu_s"] for step in steps]
    result["weight_and_grad_bytes"] = 2 * sum(
        parameter.numel() * parameter.element_size() for parameter in head.parameters()
    )
    result["baseline_rss_bytes"] = baseline
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def _whole(name: str, classes: int, args: argparse.Namespace, queue) -> None:
    """The whole fused head on the whole batch, in this (fresh) process."""
    torch.set_num_threads(1)
    embeddings, labels = _global_batch(classes, args)
    embeddings.requires_grad_(True)
    _step(_whole_head(name, WARM_UP_CLASSES, args), embeddings, labels % WARM_UP_CLASSES)
    baseline = _resident_bytes()
    head = _whole_head(name, classes, args)
    queue.put(_measure(head, embeddings, labels, args.repeats, baseline))


def _rank(rank: int, world: int, port: int, name: str, classes: int, args, queue) -> None:
    """Rank ``rank`` of ``world``: its shard, on its rows of the global batch."""
    from marginkit.distributed import shard_bounds

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    embeddings, labels = _global_batch(classes, args)
    lo, hi = shard_bounds(args.batch, world, rank)
    embeddings = embeddings[lo:hi].clone().requires_grad_(True)
    labels = labels[lo:hi].clone()
    warm_up = _rank_shard(name, WARM_UP_CLASSES, args, rank, world)
    _step(warm_up, embeddings, labels % WARM_UP_CLASSES)
    del warm_up
    dist.barrier()
    baseline = _resident_bytes()
    head = _rank_shard(name, classes, args, rank, world)
    result = _measure(head, embeddings, labels, args.repeats, baseline)
    result["bytes_per_step"] = int(head.step_bytes)
    result["rank"] = rank
    queue.put(result)
    dist.barrier()
    dist.destroy_process_group()


# ------------------------------------------------------------------------- orchestration
def _configuration(name: str, classes: int, args: argparse.Namespace) -> dict[str, Any]:
    """The whole head's figures and every world size's per-rank figures for one head and C."""
    from marginkit.distributed import free_port

    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    process = context.Process(target=_whole, args=(name, classes, args, queue))
    process.start()
    row: dict[str, Any] = {"head": name, "classes": classes, "whole": queue.get()}
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the whole {name} head at C = {classes} failed")
    for world in args.worlds:
        port = free_port()
        mp.spawn(_rank, args=(world, port, name, classes, args, queue), nprocs=world, join=True)
        ranks = sorted((queue.get() for _ in range(world)), key=lambda rank: rank["rank"])
        whole_loss = row["whole"]["loss"]
        difference = max(abs(rank["loss"] - whole_loss) / abs(whole_loss) for rank in ranks)
        if not difference <= LOSS_TOLERANCE:
            raise RuntimeError(f"{name}, C = {classes}, W = {world}: loss differs by {difference}")
        row[f"w{world}"] = {"ranks": ranks, "loss_relative_difference": difference}
    return row


def _mib(value: float) -> str:
    return f"{value / MIB:,.1f}"


def _tables(rows: list[dict[str, Any]], worlds: list[int]) -> str:
    """The markdown tables of docs/performance.md section 7 for ``rows``."""
    memory = [
        "| head | C | whole: weight+grad / peak RSS over baseline / held (MiB) | "
        + " | ".join(
            f"W = {w}: per-rank weight+grad / peak RSS over baseline (max rank) / held (MiB) "
            f"| W = {w}: bytes sent per step per rank"
            for w in worlds
        )
        + " |",
        "|---|---|---|" + "---|---|" * len(worlds),
    ]
    speed = [
        "| head | C | whole: CPU s per step | "
        + " | ".join(f"W = {w}: sum over ranks CPU s (ratio to whole)" for w in worlds)
        + " | wall s whole / "
        + " / ".join(f"W = {w}" for w in worlds)
        + " (not a speed figure) |",
        "|---|---|---|" + "---|" * len(worlds) + "---|",
    ]
    for row in rows:
        whole = row["whole"]
        cells = [
            f"{row['head']} | {row['classes']:,} | {_mib(whole['weight_and_grad_bytes'])} / "
            f"{_mib(whole['peak_rss_bytes'] - whole['baseline_rss_bytes'])} / "
            f"{whole['held_bytes'] / MIB:.2f}"
        ]
        times = [f"{row['head']} | {row['classes']:,} | {whole['process_cpu_s']:.2f}"]
        walls = [f"{whole['wall_s']:.1f}"]
        for world in worlds:
            ranks = row[f"w{world}"]["ranks"]
            peak = max(rank["peak_rss_bytes"] - rank["baseline_rss_bytes"] for rank in ranks)
            sent = sorted({rank["bytes_per_step"] for rank in ranks})
            cells.append(
                f"{_mib(max(rank['weight_and_grad_bytes'] for rank in ranks))} / {_mib(peak)} / "
                f"{max(rank['held_bytes'] for rank in ranks) / MIB:.2f} | "
                + ", ".join(f"{value:,}" for value in sent)
            )
            cpu = sum(rank["process_cpu_s"] for rank in ranks)
            times.append(f"{cpu:.2f} ({cpu / whole['process_cpu_s']:.2f}x)")
            walls.append(f"{max(rank['wall_s'] for rank in ranks):.1f}")
        memory.append("| " + " | ".join(cells) + " |")
        speed.append("| " + " | ".join(times) + " | " + " / ".join(walls) + " |")
    return "\n".join(memory) + "\n\n" + "\n".join(speed)


def main() -> None:
    from marginkit.runfolder import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--heads", nargs="+", default=HEADS, help="registered losses")
    parser.add_argument("--chunk-size", type=int, default=8192, help="classes per block")
    parser.add_argument("--worlds", type=int, nargs="+", default=[2, 3], help="world sizes W")
    parser.add_argument("--batch", type=int, default=256, help="global batch B")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="steps per process (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the figures here (JSON)")
    parser.add_argument("--table", type=Path, nargs="+", help="print the tables of these JSONs")
    args = parser.parse_args()
    if args.table:
        loaded = [json.loads(path.read_text()) for path in args.table]
        rows = [row for figures in loaded for row in figures["results"]]
        order = {name: index for index, name in enumerate(HEADS)}  # each head's C together
        rows.sort(key=lambda row: (order.get(row["head"], len(HEADS)), row["classes"]))
        print(_tables(rows, loaded[0]["args"]["worlds"]))
        return
    rows = []
    setting = {
        key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()
    }
    for classes in args.classes:
        for name in args.heads:
            started = time.perf_counter()
            rows.append(_configuration(name, classes, args))
            print(f"{name} C={classes:,}: {time.perf_counter() - started:.0f} s", flush=True)
            if args.out:
                figures = {"args": setting, "torch": torch.__version__, "results": rows}
                atomic_write_text(args.out, json.dumps(figures, indent=2) + "\n")
    print(f"global batch {args.batch}, D {args.dim}, float32, chunk size {args.chunk_size}")
    print(_tables(rows, args.worlds))


if __name__ == "__main__":
    main()
