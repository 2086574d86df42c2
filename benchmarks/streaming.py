"""Streaming data (``--workers N``): images/s feeding ``facenet`` and peak memory.

One command (not part of the test suite)::

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/streaming.py \\
        --cache /tmp/marginkit-streaming --out benchmarks/results/streaming.json

1. **The folder.** ``--images`` (20,000) random JPEG "faces", 112x112, ``--per-identity``
   (20) per identity sub-folder, and a second folder of ``--small-images`` (2,000), written
   once under ``--cache`` with PIL (quality 90) and reused. Each image is a random 14x14
   colour field upscaled bicubically plus noise, so it encodes to a few KB like a photo
   rather than like white noise.
2. **Rate.** Two feeds of the same 112x112 images, both ``torch.utils.data.DataLoader`` with
   ``--workers`` (2) worker processes and batch ``--batch-size`` (64), shuffled:

   - **marginkit**: ``load_dataset("folder", workers=N, image_size=(112, 112))`` and the
     trainer's :class:`marginkit.train.batches.BatchSource` (``epoch``: randperm from a
     generator, workers decode crop + resize + normalise, default collate);
   - **baseline**: a plain ``Dataset`` written here (``PIL.Image.open``, ``convert("RGB")``,
     ``resize((112, 112), BILINEAR)``, ``numpy`` -> float tensor, per-channel
     normalisation) with ``DataLoader(shuffle=True)``.

   Timed, per trial, from the third batch to the end of ``--batches`` more: ``facenet``
   (128-D) forward, ``nn.Linear`` + cross-entropy over the identities, backward and an SGD
   step per batch, in wall seconds (the feed's time waiting for a batch included; worker
   start-up and the first two batches not). The two feeds alternate, ``--repeats`` trials
   each; medians and their ratio are from this one run. Also the **pure data rate**
   (``--data-batches`` batches, no network), alternating the same way.
3. **Memory.** In a fresh process per folder: ``load_dataset`` (index + the streaming
   statistics pass) and one whole data-only epoch of the marginkit feed; the peak over that
   time of the summed RSS (and PSS, which counts pages shared with the forked workers once)
   of the main process and its workers, sampled every 20 ms from ``/proc``.

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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from marginkit.data import load_dataset
from marginkit.models import build_backbone
from marginkit.train.batches import BatchSource

SIZE = 112


# ------------------------------------------------------------------------ the folder
def make_folder(root: Path, images: int, per_identity: int, seed: int) -> Path:
    """``images`` JPEGs of ``SIZE`` x ``SIZE`` under ``root/faces-<images>/<id>/``, once."""
    from PIL import Image

    folder = root / f"faces-{images}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    rng = np.random.default_rng(seed)
    for index in range(images):
        identity = folder / f"id{index // per_identity:05d}"
        identity.mkdir(parents=True, exist_ok=True)
        field = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
        image = Image.fromarray(field).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        noisy = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (SIZE, SIZE, 3))
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(
            identity / f"{index % per_identity:03d}.jpg", quality=90
        )
    done.write_text(f"{images}\n")
    return folder


# ------------------------------------------------------------------------ the feeds
class PlainFolder(Dataset):
    """The baseline: ``(path, label)`` pairs, each image read with PIL when asked for."""

    def __init__(self, folder: Path, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        identities = sorted(p for p in folder.iterdir() if p.is_dir())
        self.samples = [
            (str(path), label)
            for label, identity in enumerate(identities)
            for path in sorted(identity.glob("*.jpg"))
        ]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
        return (pixels.float() / 255.0 - self.mean) / self.std, label


def marginkit_feed(folder: Path, workers: int, dataset: str = "folder") -> tuple[BatchSource, Any]:
    """The trainer's streamed feed of ``dataset`` (``folder``, or ``rec``: a packed folder)."""
    bundle = load_dataset(
        dataset, data_dir=folder, image_size=(SIZE, SIZE), workers=workers, progress=False
    )
    return BatchSource(bundle.train, pin_memory=False), bundle


def batches_of(feed: Any, batch_size: int, count: int, seed: int) -> Any:
    if isinstance(feed, BatchSource):
        return feed.epoch(torch.Generator().manual_seed(seed), batch_size, count)
    return iter(feed)


# ------------------------------------------------------------------------ the timing
def trial(
    feed: Any, batch_size: int, count: int, seed: int, step: Any, waits: list[float] | None = None
) -> float:
    """Images/s from the third batch on, ``count`` timed batches, ``step(x, y)`` each; the
    seconds spent waiting for those batches are appended to ``waits`` when it is given."""
    batches = batches_of(feed, batch_size, count + 2, seed)
    for _ in range(2):
        step(*next(batches))
    start, seen, waited = time.perf_counter(), 0, 0.0
    for _ in range(count):
        asked = time.perf_counter()
        x, y = next(batches)
        waited += time.perf_counter() - asked
        step(x, y)
        seen += y.numel()
    rate = seen / (time.perf_counter() - start)
    del batches  # shuts the workers down
    if waits is not None:
        waits.append(waited)
    return rate


def training_step(
    backbone_name: str, embedding_dim: int, classes: int, seed: int
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """A plain training step of a backbone built from ``seed`` for SIZE x SIZE RGB images:
    ``nn.Linear`` + cross-entropy, backward, SGD (lr 0.01)."""
    torch.manual_seed(seed)
    backbone = build_backbone(backbone_name, (3, SIZE, SIZE), embedding_dim)
    classifier = nn.Linear(embedding_dim, classes)
    optimizer = torch.optim.SGD([*backbone.parameters(), *classifier.parameters()], lr=0.01)

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:  # x (B, 3, S, S), y (B,)
        loss = F.cross_entropy(classifier(backbone(x)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return train_step


def no_step(x: torch.Tensor, y: torch.Tensor) -> None:
    """The step of a data-only trial: nothing."""


def rates(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    source, bundle = marginkit_feed(folder, args.workers)
    plain = DataLoader(
        PlainFolder(folder, bundle.mean, bundle.std),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    train_step = training_step("facenet", 128, bundle.num_classes, args.seed)
    figures: dict[str, Any] = {}
    for name, step, count in (
        ("facenet", train_step, args.batches),
        ("data_only", no_step, args.data_batches),
    ):
        measured: dict[str, list[float]] = {"marginkit": [], "baseline": []}
        for repeat in range(args.repeats):
            for feed_name, feed in (("marginkit", source), ("baseline", plain)):
                rate = trial(feed, args.batch_size, count, args.seed + repeat, step)
                measured[feed_name].append(rate)
                print(f"{name} {feed_name} trial {repeat + 1}: {rate:.1f} img/s", flush=True)
        medians = {k: statistics.median(v) for k, v in measured.items()}
        figures[name] = {
            "images_per_second": measured,
            "median": medians,
            "ratio": medians["marginkit"] / medians["baseline"],
        }
    return figures


# ------------------------------------------------------------------------ memory
def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found + [grandchild for child in found for grandchild in _children(child)]


def _memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes of ``pid``, 0 where it has gone."""
    try:
        rows = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0
    values = {row.split(":")[0]: int(row.split()[1]) * 1024 for row in rows[1:] if ":" in row}
    return values.get("Rss", 0), values.get("Pss", 0)


def memory(folder: Path, workers: int, batch_size: int, dataset: str = "folder") -> dict[str, Any]:
    """Peak summed RSS/PSS of this process and its workers: load + one data-only epoch
    (``dataset``: ``folder``, or ``rec`` for benchmarks/rec_throughput.py)."""
    peak = {"rss": 0, "pss": 0}
    running = True

    def sample() -> None:
        while running:
            pids = [os.getpid(), *_children(os.getpid())]
            totals = [_memory_of(pid) for pid in pids]
            peak["rss"] = max(peak["rss"], sum(t[0] for t in totals))
            peak["pss"] = max(peak["pss"], sum(t[1] for t in totals))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    source, _ = marginkit_feed(folder, workers, dataset)
    loaded = time.perf_counter() - start
    steps = -(-len(source) // batch_size)
    seen = sum(y.numel() for _, y in source.epoch(torch.Generator(), batch_size, steps))
    running = False
    sampler.join()
    return {
        "images": seen,
        "load_seconds": loaded,
        "epoch_seconds": time.perf_counter() - start - loaded,
        "peak_rss_bytes": peak["rss"],
        "peak_pss_bytes": peak["pss"],
    }


def memory_in_fresh_process(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--memory-of",
        str(folder),
        "--workers",
        str(args.workers),
        "--batch-size",
        str(args.batch_size),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/marginkit-streaming"))
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--small-images", type=int, default=2_000)
    parser.add_argument("--per-identity", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=4, help="timed facenet batches")
    parser.add_argument("--data-batches", type=int, default=40, help="timed data batches")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--memory-of", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of is not None:  # the child measuring one folder's memory
        print(json.dumps(memory(args.memory_of, args.workers, args.batch_size)))
        return
    start = time.perf_counter()
    large = make_folder(args.cache, args.images, args.per_identity, args.seed)
    small = make_folder(args.cache, args.small_images, args.per_identity, args.seed + 1)
    print(f"folders ready in {time.perf_counter() - start:.0f} s", flush=True)
    results: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
        "options": {k: str(v) for k, v in vars(args).items() if k != "memory_of"},
    }
    results["memory"] = {
        str(args.images): memory_in_fresh_process(large, args),
        str(args.small_images): memory_in_fresh_process(small, args),
    }
    big, little = results["memory"][str(args.images)], results["memory"][str(args.small_images)]
    for kind in ("rss", "pss"):
        results["memory"][f"{kind}_ratio"] = (
            big[f"peak_{kind}_bytes"] / little[f"peak_{kind}_bytes"]
        )
    print(json.dumps(results["memory"], indent=2), flush=True)
    results["rates"] = rates(args, large)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
