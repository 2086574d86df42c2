"""The sharded head at realistic sizes: per-rank weight and gradient memory, bytes sent per
step, and step time, against the whole head in one process.

Starts ``--world`` CPU processes with gloo on loopback (``torch.multiprocessing`` spawn). Each
rank builds the same whole ArcFace head (C classes, D = 512) from one seed, shards it
(:func:`marginkit.distributed.shard`), and times forward + backward on its own B / world
embeddings (median of ``--repeats``); rank 0 also times the whole head on the whole batch.
Bytes per step are the head's own count of its collectives' tensors
(:attr:`ShardedHead.step_bytes`). "Held" is what autograd keeps from the forward pass to the
backward pass (the tensors saved for backward, each storage once, the head's parameters left
out): the per-rank shard's, and the whole head's on the whole batch (rank 0), with the
classes in blocks of ``--chunk-size`` on both.

    PYTHONPATH=src python benchmarks/sharded_head.py --classes 10000 100000 --world 2
    PYTHONPATH=src python benchmarks/sharded_head.py --heads arcface subcenter --chunk-size 8192
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _timed(head, embeddings, labels, repeats: int) -> float:
    """Median seconds of forward + backward of ``head`` on (B, D) ``embeddings``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        head.zero_grad(set_to_none=True)
        head(embeddings, labels).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _held(head, embeddings, labels) -> int:
    """Bytes autograd holds between one step's forward and backward (parameters left out)."""
    parameters = {parameter.untyped_storage().data_ptr() for parameter in head.parameters()}
    held: dict[int, torch.Tensor] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in parameters:
            held[pointer] = tensor
        return tensor

    head.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = head(embeddings, labels)
    loss.backward()
    return sum(tensor.untyped_storage().nbytes() for tensor in held.values())


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, queue) -> None:
    from marginkit.distributed import shard
    from marginkit.losses import build

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = []
    for name, classes in [(name, classes) for name in args.heads for classes in args.classes]:
        torch.manual_seed(0)
        whole = build(name, num_classes=classes, embedding_dim=args.dim)
        whole.set_chunk_size(args.chunk_size)
        head = shard(whole)
        local = args.batch // world
        generator = torch.Generator().manual_seed(rank)
        embeddings = torch.randn(local, args.dim, generator=generator, requires_grad=True)
        labels = torch.randint(0, classes, (local,), generator=generator)
        sharded = _timed(head, embeddings, labels, args.repeats)
        sent = int(head.step_bytes)
        rows = sum(p.numel() * p.element_size() for p in head.parameters())
        row = {"head": name, "classes": classes, "sharded_step_s": sharded}
        row["bytes_per_step"] = sent
        row["rank_held_bytes"] = _held(head, embeddings, labels)
        row["rank_weight_and_grad_bytes"] = 2 * rows
        if rank == 0:
            batch = torch.randn(args.batch, args.dim, requires_grad=True)
            targets = torch.randint(0, classes, (args.batch,))
            row["whole_step_s"] = _timed(whole, batch, targets, args.repeats)
            row["whole_held_bytes"] = _held(whole, batch, targets)
            row["whole_weight_and_grad_bytes"] = 2 * sum(
                p.numel() * p.element_size() for p in whole.parameters()
            )
        results.append(row)
        dist.barrier()
    if rank == 0:
        queue.put(results)
    dist.destroy_process_group()


def main() -> None:
    from marginkit.distributed import free_port

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--heads", nargs="+", default=["arcface"], help="registered losses")
    parser.add_argument("--chunk-size", type=int, default=None, help="classes per block")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256, help="global batch B")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    port = free_port()
    mp.spawn(_rank, args=(args.world, port, args, queue), nprocs=args.world, join=True)
    results = queue.get()
    print(f"world {args.world}, global batch {args.batch}, D {args.dim}, float32")
    print(
        "| head | C | per-rank weight+grad | whole weight+grad | bytes/step "
        "| held per rank | whole held | sharded | whole |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results:
        print(
            f"| {row['head']} | {row['classes']:,} "
            f"| {row['rank_weight_and_grad_bytes'] / 2**20:.1f} MiB "
            f"| {row['whole_weight_and_grad_bytes'] / 2**20:.1f} MiB "
            f"| {row['bytes_per_step']:,} | {row['rank_held_bytes'] / 2**20:.2f} MiB "
            f"| {row['whole_held_bytes'] / 2**20:.2f} MiB "
            f"| {row['sharded_step_s'] * 1e3:.0f} ms "
            f"| {row['whole_step_s'] * 1e3:.0f} ms |"
        )
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"args": vars(args), "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
