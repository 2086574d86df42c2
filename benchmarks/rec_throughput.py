"""The ``.rec`` data path (``--dataset rec``) against the same JPEGs read from their folder
(``--dataset folder``), with the same ``--workers``: images/s and the index's memory.

One command (not part of the test suite)::

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/rec_throughput.py \\
        --images ../shared/data/lfw/lfw-deepfunneled --cache /tmp/marginkit-rec \\
        --out benchmarks/results/rec_throughput.json

1. **Packing.** ``marginkit pack`` (:func:`marginkit.data.pack.pack_folder`) writes the
   folder of identity sub-folders (LFW's 13,233 JPEGs of 5,749 people by default) as
   ``train.rec``/``train.idx``/``property`` under ``--cache`` (timed), and a tenth of it
   (the first identities, linked into a folder of their own) for the memory comparison.
2. **Rate.** Both feeds are the trainer's own streamed path, differing only in where an
   image's bytes come from: ``load_dataset("folder" | "rec", workers=N, image_size=(112,
   112))`` and :class:`marginkit.train.batches.BatchSource` (``epoch``: randperm from a
   generator; the workers decode, crop, resize and normalise; default collate). Timed per
   trial from the third batch (``benchmarks/streaming.py``'s ``trial``): the pure data rate
   (``--data-batches`` batches of ``--batch-size``), and ``--backbone`` (IResNet-50) training
   steps at a small batch (forward, ``nn.Linear`` + cross-entropy over the identities,
   backward, SGD; ``--step-batches`` of ``--step-batch-size``). The feeds alternate,
   folder then rec, then rec then folder (so a drift of the machine's load cancels),
   ``--repeats`` (``--step-repeats``) trials each, every pair on the same batches; the ratio
   of the medians and the median of the pairs' ratios come from this one run, so both feeds
   saw the same machine. Each trial also records how long the trainer waited for its
   batches (a feed that keeps up with the step makes it wait about nothing).
3. **Memory.** The index a ``rec`` split keeps (an int64 offset per record, and its int64
   label), and, in a fresh process per pack, the peak summed RSS (and PSS) of the main
   process and its workers over ``load_dataset`` and one data-only epoch
   (``benchmarks/streaming.py``'s ``memory``), for the tenth and for the whole.

Where the machine is shared, run it niced; the figures go to ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from streaming import marginkit_feed, memory, no_step, training_step, trial

from marginkit.data.pack import pack_folder
from marginkit.data.rec import scan_records


# ------------------------------------------------------------------------ packing
def packed(folder: Path, out: Path) -> dict[str, Any]:
    """``folder`` packed into ``out`` once (reused when its ``train.idx`` exists)."""
    if (out / "train.idx").is_file():
        return {"out": str(out), "seconds": None}
    start = time.perf_counter()
    done = pack_folder(folder, out)
    return {
        "out": str(out),
        "seconds": time.perf_counter() - start,
        "images": done.images,
        "identities": done.identities,
        "rec_bytes": done.rec_bytes,
    }


def tenth(folder: Path, cache: Path) -> Path:
    """The first identities of ``folder`` holding about a tenth of its images, linked into
    a folder of their own under ``cache``."""
    small = cache / "tenth"
    if small.is_dir():
        return small
    identities = sorted(path for path in folder.iterdir() if path.is_dir())
    counts = [sum(1 for _ in identity.iterdir()) for identity in identities]
    wanted, held = sum(counts) / 10, 0
    small.mkdir(parents=True)
    for identity, count in zip(identities, counts, strict=True):
        if held >= wanted:
            break
        (small / identity.name).symlink_to(identity.resolve(), target_is_directory=True)
        held += count
    return small


# ------------------------------------------------------------------------ the rates
def rates(args: argparse.Namespace, folder: Path, rec: Path) -> dict[str, Any]:
    feeds = {
        "folder": marginkit_feed(folder, args.workers, "folder"),
        "rec": marginkit_feed(rec, args.workers, "rec"),
    }
    assert feeds["folder"][1].mean == feeds["rec"][1].mean  # the same images, decoded alike
    classes = feeds["folder"][1].num_classes
    train_step = training_step(args.backbone, 512, classes, args.seed)
    figures: dict[str, Any] = {}
    for name, step, batch_size, count, repeats in (
        ("data_only", no_step, args.batch_size, args.data_batches, args.repeats),
        (args.backbone, train_step, args.step_batch_size, args.step_batches, args.step_repeats),
    ):
        measured: dict[str, list[float]] = {"folder": [], "rec": []}
        waits: dict[str, list[float]] = {"folder": [], "rec": []}
        for repeat in range(repeats):
            order = ("folder", "rec") if repeat % 2 == 0 else ("rec", "folder")  # drift cancels
            for feed_name in order:
                source = feeds[feed_name][0]
                rate = trial(source, batch_size, count, args.seed + repeat, step, waits[feed_name])
                measured[feed_name].append(rate)
                waited = 1000 * waits[feed_name][-1] / count
                print(
                    f"{name} {feed_name} trial {repeat + 1}: {rate:.1f} img/s, "
                    f"{waited:.1f} ms per batch waiting for it",
                    flush=True,
                )
        medians = {key: statistics.median(values) for key, values in measured.items()}
        paired = [r / f for r, f in zip(measured["rec"], measured["folder"], strict=True)]
        figures[name] = {
            "batch_size": batch_size,
            "images_per_second": measured,
            "median": medians,
            "ratio_rec_to_folder": medians["rec"] / medians["folder"],
            "paired_ratios": paired,  # each repeat's two trials: the same batches, adjacent
            "median_paired_ratio": statistics.median(paired),
            "median_wait_ms_per_batch": {
                key: 1000 * statistics.median(values) / count for key, values in waits.items()
            },
        }
    return figures


# ------------------------------------------------------------------------ memory
def index_bytes(rec: Path) -> dict[str, Any]:
    """What a ``rec`` reader keeps per record: its offset and its label (int64 each)."""
    found = scan_records(rec)
    held = found.offsets.nbytes + found.labels.nbytes
    return {
        "records": len(found.offsets),
        "index_bytes": held,
        "bytes_per_record": held / len(found.offsets),
    }


def memory_in_fresh_process(rec: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--memory-of", str(rec), "--workers", str(args.workers)]
    command += ["--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path("../shared/data/lfw/lfw-deepfunneled"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marginkit-rec"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data-batches", type=int, default=40, help="timed data batches")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--backbone", default="iresnet50")
    parser.add_argument("--step-batch-size", type=int, default=8)
    parser.add_argument("--step-batches", type=int, default=3, help="timed training steps")
    parser.add_argument("--step-repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--memory-of", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of is not None:  # the child measuring one pack's memory
        print(json.dumps(memory(args.memory_of, args.workers, args.batch_size, "rec")))
        return
    small = tenth(args.images, args.cache)
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "options": {k: str(v) for k, v in vars(args).items() if k != "memory_of"},
        "pack": packed(args.images, args.cache / "rec"),
    }
    packed(small, args.cache / "rec-tenth")
    print(json.dumps(results["pack"]), flush=True)
    results["index"] = {name: index_bytes(args.cache / name) for name in ("rec-tenth", "rec")}
    results["memory"] = {
        name: memory_in_fresh_process(args.cache / name, args) for name in ("rec-tenth", "rec")
    }
    for kind in ("rss", "pss"):
        results["memory"][f"{kind}_ratio"] = (
            results["memory"]["rec"][f"peak_{kind}_bytes"]
            / results["memory"]["rec-tenth"][f"peak_{kind}_bytes"]
        )
    print(
        json.dumps({"index": results["index"], "memory": results["memory"]}, indent=2), flush=True
    )
    results["rates"] = rates(args, args.images, args.cache / "rec")
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
