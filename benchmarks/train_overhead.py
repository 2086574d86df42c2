"""Trainer overhead: ``marginkit.train.fit`` against a plain PyTorch loop, images/s.

One command (not part of the test suite)::

    .venv/bin/python benchmarks/train_overhead.py [--data-dir DATA/mnist] [--steps 40]

Both sides train the same backbone (LeNet++, 128-D) on the same data held in memory (MNIST
when ``--data-dir`` is given, otherwise random MNIST-shaped images), at batch 128, with AdamW
(lr 1e-3, weight decay 5e-4) and a per-step cosine learning rate, for ``--steps`` steps:

- **plain**: the loop a user writes by hand: shuffle, index the batch, ``nn.Linear`` +
  ``F.cross_entropy``, ``zero_grad``, ``backward``, ``step``, ``scheduler.step``;
- **marginkit**: ``fit(TrainConfig(loss=..., max_steps=steps, ...), bundle=...)`` with its
  run-time checks (finite embeddings and loss), schedules, running loss and accuracy,
  per-step log and progress, and no run folder; timed over its training epoch only
  (``marginkit.train.loop._train_epoch``), as the plain loop over its steps: set-up and the
  evaluation after the epoch are not counted.

Both are timed in CPU seconds of this process (``time.process_time``; with one torch thread
that is the work done, whatever else the machine runs) and in wall seconds. The two alternate
(plain, marginkit, plain, ...) after one warm-up trial each; the medians over ``--repeats`` and
their ratio are printed and, with ``--out``, written as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from marginkit.data import ArrayDataset, DataBundle, load_dataset
from marginkit.models import build_backbone
from marginkit.train import TrainConfig, fit, loop

BATCH = 128
EMBEDDING_DIM = 128
LR = 1e-3
WEIGHT_DECAY = 5e-4


def synthetic_bundle(count: int, seed: int = 0) -> DataBundle:
    """Random 1x28x28 uint8 images of 10 classes (MNIST's shape and normalisation)."""
    generator = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 256, (count, 1, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.arange(count) % 10
    split = ArrayDataset(data, labels, mean=[0.1307], std=[0.3081])
    return DataBundle(
        name="synthetic",
        train=split,
        validation=None,
        test=ArrayDataset(data[:512], labels[:512], mean=[0.1307], std=[0.3081]),
        num_classes=10,
        input_shape=(1, 28, 28),
        class_names=[str(c) for c in range(10)],
        train_labels=labels,
        train_clean_labels=labels,
        test_labels=labels[:512],
        pairs=None,
    )


class Clock:
    """CPU and wall seconds between :meth:`start` and :meth:`stop`."""

    def start(self) -> None:
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def stop(self, images: int) -> tuple[float, float]:
        """Images per CPU second and per wall second."""
        cpu, wall = time.process_time() - self.cpu, time.perf_counter() - self.wall
        return images / cpu, images / wall


def plain_loop(bundle: DataBundle, steps: int, seed: int) -> tuple[float, float]:
    """Images/s (CPU, wall) of a hand-written training loop, timed over the steps only."""
    torch.manual_seed(seed)
    backbone = build_backbone("lenetpp", tuple(bundle.input_shape), EMBEDDING_DIM)
    classifier = nn.Linear(EMBEDDING_DIM, bundle.num_classes)
    parameters = [*backbone.parameters(), *classifier.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    inputs, labels = bundle.train.tensors()  # (N, 1, 28, 28), (N,)
    generator = torch.Generator().manual_seed(seed)
    backbone.train()
    clock = Clock()
    clock.start()
    order = torch.randperm(labels.numel(), generator=generator)  # (N,)
    for step in range(steps):
        index = order[step * BATCH : (step + 1) * BATCH]  # (B,)
        logits = classifier(backbone(inputs[index]))  # (B, C)
        loss = F.cross_entropy(logits, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return clock.stop(steps * BATCH)


def marginkit_fit(
    bundle: DataBundle, steps: int, seed: int, loss: str, threads: int
) -> tuple[float, float]:
    """Images/s (CPU, wall) of ``fit``'s one epoch of ``steps`` steps."""
    config = TrainConfig(
        dataset=bundle.name,
        backbone="lenetpp",
        embedding_dim=EMBEDDING_DIM,
        loss=loss,
        epochs=1,
        max_steps=steps,
        batch_size=BATCH,
        optimizer="adamw",
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        lr_schedule="cosine",
        seed=seed,
        threads=threads,
        log_every=0,
    )
    clock, train_epoch = Clock(), loop._train_epoch

    def timed_epoch(*args: object) -> object:
        clock.start()
        tally = train_epoch(*args)
        timed.append(clock.stop(steps * BATCH))
        return tally

    timed: list[tuple[float, float]] = []
    loop._train_epoch = timed_epoch
    try:
        fit(config, bundle=bundle, progress=False)
    finally:
        loop._train_epoch = train_epoch
    return timed[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", help="MNIST IDX files (default: random images)")
    parser.add_argument("--steps", type=int, default=40, help="steps per trial (default 40)")
    parser.add_argument("--repeats", type=int, default=5, help="trials per side (default 5)")
    parser.add_argument("--loss", default="softmax", help="marginkit's loss (default softmax)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.data_dir:
        bundle = load_dataset("mnist", data_dir=args.data_dir, download=False, progress=False)
    else:
        bundle = synthetic_bundle(max(args.steps * BATCH, 1024))
    if len(bundle.train_labels) < args.steps * BATCH:
        raise SystemExit(f"--steps {args.steps}: the data holds fewer than steps x {BATCH}")
    plain_loop(bundle, 2, seed=0)  # warm-up: allocator, kernels
    marginkit_fit(bundle, 2, 0, args.loss, args.threads)
    plain, ours = [], []
    for repeat in range(args.repeats):  # interleaved: a busy machine slows both alike
        plain.append(plain_loop(bundle, args.steps, seed=repeat))
        ours.append(marginkit_fit(bundle, args.steps, repeat, args.loss, args.threads))
        print(
            f"trial {repeat + 1}: plain {plain[-1][0]:.1f} img/CPU-s ({plain[-1][1]:.1f} wall), "
            f"marginkit {ours[-1][0]:.1f} img/CPU-s ({ours[-1][1]:.1f} wall)"
        )
    result: dict[str, object] = {
        "data": bundle.name,
        "loss": args.loss,
        "steps": args.steps,
        "batch": BATCH,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    for index, clock in enumerate(("cpu", "wall")):
        mine = [value[index] for value in ours]
        theirs = [value[index] for value in plain]
        ratios = [m / p for m, p in zip(mine, theirs, strict=True)]
        result[clock] = {
            "plain_images_per_second": theirs,
            "marginkit_images_per_second": mine,
            "median_plain": statistics.median(theirs),
            "median_marginkit": statistics.median(mine),
            "ratio_of_medians": statistics.median(mine) / statistics.median(theirs),
            "median_pairwise_ratio": statistics.median(ratios),
        }
        figures = result[clock]
        assert isinstance(figures, dict)
        print(
            f"{clock}: median plain {figures['median_plain']:.1f} img/s, marginkit "
            f"{figures['median_marginkit']:.1f} img/s: ratio {figures['ratio_of_medians']:.3f} "
            f"(median of pairwise ratios {figures['median_pairwise_ratio']:.3f})"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
