"""Proof that a head with 2,000,000 classes trains in 24 GB of memory on 2 CPU cores.

    .venv/bin/python benchmarks/two_million_classes.py [--classes 2000000] [--chunk-size 65536]

Builds ``ArcFace(num_classes=C, embedding_dim=512)`` in chunked mode, runs ``--steps``
training steps (forward, backward, SGD step) on a random batch of 256, and prints the loss,
the time of each step and the process's peak RSS next to the size of the weight and its
gradient (the unavoidable part). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from marginkit.losses import build


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--loss", default="arcface")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    head = build(args.loss, num_classes=args.classes, embedding_dim=args.dim)
    head.set_chunk_size(args.chunk_size)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    embeddings = torch.nn.functional.normalize(torch.randn(args.batch, args.dim), dim=1)
    labels = torch.randint(0, args.classes, (args.batch,))
    weight_bytes = head.weight.numel() * head.weight.element_size()
    records = []
    for step in range(args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = head(embeddings, labels)
        loss.backward()
        optimizer.step()
        seconds = time.perf_counter() - start
        records.append({"step": step, "loss": loss.item(), "seconds": seconds})
        print(json.dumps(records[-1]), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    summary = {
        "classes": args.classes,
        "dim": args.dim,
        "batch": args.batch,
        "chunk_size": args.chunk_size,
        "loss": args.loss,
        "weight_GiB": weight_bytes / 2**30,
        "weight_plus_grad_GiB": 2 * weight_bytes / 2**30,
        "peak_rss_GiB": peak / 2**30,
        "finite": all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
        and bool(torch.isfinite(head.weight).all()),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
