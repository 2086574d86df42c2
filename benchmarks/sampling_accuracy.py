"""Effect of class sampling (Partial FC) on accuracy: a synthetic 1,000-class problem.

    .venv/bin/python benchmarks/sampling_accuracy.py [--loss cosface] [--epochs 12]

Gaussian classes (1,000 centres ``N(0, I)`` in 64 dimensions, samples ``centre + 1.1 N(0, I)``,
40 training and 10 test samples per class), an MLP backbone (64 -> 256 -> 64) and a margin
head trained with :class:`~marginkit.losses.sampling.ClassSampledHead` at fractions 1.0, 0.1
and 0.01 from the same seed (same initial weights, same batches). Reports the closed-set test
accuracy (argmax of ``head.logits`` over all 1,000 classes) and the training time per run.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from marginkit.losses import build
from marginkit.losses.sampling import ClassSampledHead


def make_data(classes: int, dim: int, per_class: int, test_per_class: int, seed: int):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(classes).repeat_interleave(count)
        noise = torch.randn(len(labels), dim, generator=generator) * 1.1
        return centres[labels] + noise, labels

    return draw(per_class), draw(test_per_class)


def run(fraction: float, args: argparse.Namespace, data) -> dict[str, float]:  # type: ignore[no-untyped-def]
    (train_x, train_y), (test_x, test_y) = data
    torch.manual_seed(args.seed)
    backbone = nn.Sequential(
        nn.Linear(train_x.shape[1], 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 64)
    )
    head = build(args.loss, num_classes=args.classes, embedding_dim=64)
    sampled = ClassSampledHead(head, fraction=fraction, seed=args.seed)
    parameters = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)
    order = torch.Generator().manual_seed(args.seed)
    steps = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        permutation = torch.randperm(len(train_y), generator=order)
        for index in range(0, len(permutation) - args.batch + 1, args.batch):
            chosen = permutation[index : index + args.batch]
            optimizer.zero_grad(set_to_none=True)
            sampled(backbone(train_x[chosen]), train_y[chosen]).backward()
            optimizer.step()
            steps += 1
    seconds = time.perf_counter() - start
    backbone.eval()
    with torch.no_grad():
        predictions = head.logits(backbone(test_x)).argmax(dim=1)
    return {
        "fraction": fraction,
        "classes_per_step": sampled.num_sampled,
        "test_accuracy": float((predictions == test_y).float().mean()),
        "train_seconds": seconds,
        "steps": steps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loss", default="cosface")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1, 0.01])
    parser.add_argument("--threads", type=int, default=1, help="small model: 1 thread is fastest")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = make_data(args.classes, 64, 40, 10, seed=args.seed)
    results = [run(fraction, args, data) for fraction in args.fractions]
    print(json.dumps({"loss": args.loss, "epochs": args.epochs, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
