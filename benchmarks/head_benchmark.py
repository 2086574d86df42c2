"""Head benchmark: forward + backward time and peak memory of every margin head.

One command (not part of the test suite)::

    .venv/bin/python benchmarks/head_benchmark.py --out benchmarks/results

times, at B = 256, D = 512, fp32, for C in {1k, 10k, 100k, 1M}: plain ``F.linear`` +
``F.cross_entropy``, every marginkit head (fused path), and pytorch-metric-learning's
equivalents (ArcFaceLoss, CosFaceLoss, SphereFaceLoss, LargeMarginSoftmaxLoss,
NormalizedSoftmaxLoss). All configurations of one C run interleaved round-robin in one
process (the median of the repeats is reported); every configuration's peak memory is measured
in its own subprocess (peak RSS of one step above the RSS after set-up). Writes
``results.json``, ``time_vs_classes.png`` and ``table.md`` (the README table) to ``--out``, and
prints the table. ``--end-to-end`` adds LeNet++ training images/s on MNIST (softmax vs margin
heads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from marginkit.losses import available, build, sanity

MARGINKIT_HEADS = available()
PML_LOSSES = {
    "pml-arcface": ("ArcFaceLoss", {"margin": 28.6, "scale": 64}),
    "pml-cosface": ("CosFaceLoss", {"margin": 0.35, "scale": 64}),
    "pml-sphereface": ("SphereFaceLoss", {"margin": 4}),
    "pml-lsoftmax": ("LargeMarginSoftmaxLoss", {"margin": 4}),
    "pml-normface": ("NormalizedSoftmaxLoss", {"temperature": 0.05}),
}
PML_OF = {
    "arcface": "pml-arcface",
    "cosface": "pml-cosface",
    "sphereface": "pml-sphereface",
    "lsoftmax": "pml-lsoftmax",
    "normface": "pml-normface",
}
NORMALISED_MARGIN_HEADS = ["normface", "cosface", "arcface", "combined", "camsoftmax"]
TIME_TARGET = 1.15  # design target: fwd+bwd time of a normalised margin head / plain
#: The descendants that change the non-target logits too, and their time targets (issue 24):
#: CurricularFace's modulation, sub-centre ArcFace's K = 3 rows a class.
DESCENDANT_TIME_TARGETS = {"curricularface": 1.2, "subcenter": 1.5}


def configurations(names: list[str]) -> list[str]:
    out = ["plain", *MARGINKIT_HEADS]
    out += [name for name in PML_LOSSES if _pml_available()]
    return [name for name in out if not names or name in names]


def _pml_available() -> bool:
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        return False
    return True


def make_step(
    name: str, weight: nn.Parameter, embeddings: torch.Tensor, labels: torch.Tensor
) -> Callable[[], None]:
    """A closure running one forward + backward of configuration ``name`` on shared data.

    Every configuration uses the same (C, D) weight storage, so only one weight and one
    gradient exist at a time even at C = 1M.
    """
    num_classes, dim = weight.shape
    if name == "plain":

        def step() -> None:
            weight.grad = None
            embeddings.grad = None
            F.cross_entropy(F.linear(embeddings, weight), labels).backward()

        step.parameter = weight  # type: ignore[attr-defined]
        return step
    if name.startswith("pml-"):
        from pytorch_metric_learning import losses

        class_name, kwargs = PML_LOSSES[name]
        loss = getattr(losses, class_name)(num_classes=num_classes, embedding_size=dim, **kwargs)
        loss.W = nn.Parameter(weight.detach().t())  # (D, C) view of the shared storage
        parameter = loss.W

        def step() -> None:
            parameter.grad = None
            embeddings.grad = None
            loss(embeddings, labels).backward()

        step.parameter = parameter  # type: ignore[attr-defined]
        return step
    with sanity.unchecked():  # built 1-D (no (C, D) allocation), then given the shared weight
        head = build(name, num_classes=num_classes, embedding_dim=1).to(weight.device)
    head.embedding_dim = dim
    rows_per_class = getattr(head, "subcenters", 1)  # sub-centre ArcFace: K rows per class
    head.weight = (
        weight
        if rows_per_class == 1
        else nn.Parameter(weight.detach().repeat_interleave(rows_per_class, dim=0))
    )  # its own (C K, D) copy
    if getattr(head, "bias", None) is not None:
        head.bias = None
    # A training step, batch statistics included (AdaCos's scale, AdaFace's norms ...); the
    # run is so long that the run-relative schedules stay at their start in every repeat.
    head.set_total_steps(10**12)

    def step() -> None:
        head.weight.grad = None  # the shared weight, or the sub-centres' own copy
        embeddings.grad = None
        head(embeddings, labels).backward()

    step.parameter = head.weight  # type: ignore[attr-defined]
    return step


def setup(num_classes: int, dim: int, batch: int, seed: int = 0, device: str = "cpu"):  # type: ignore[no-untyped-def]
    """The shared weight (C, D), embeddings (B, D) and labels (B,), drawn on the CPU from
    ``seed`` and moved to ``device`` (the same values on every device)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.empty(num_classes, dim)
    nn.init.kaiming_uniform_(weight, a=5**0.5, generator=generator)
    embeddings = torch.randn(batch, dim, generator=generator)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    weight = nn.Parameter(weight.to(device))
    return weight, embeddings.to(device).requires_grad_(True), labels.to(device)


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_configurations(
    names: list[str], num_classes: int, dim: int, batch: int, repeats: int, device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """Median fwd+bwd seconds of each configuration, runs interleaved round-robin (on CUDA
    each timing waits for the device before it starts and after the step)."""
    weight, embeddings, labels = setup(num_classes, dim, batch, device=device)
    where = weight.device
    steps = {name: make_step(name, weight, embeddings, labels) for name in names}
    for step in steps.values():  # warm-up
        step()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name, step in steps.items():
            _synchronize(where)
            start = time.perf_counter()
            step()
            _synchronize(where)
            samples[name].append(time.perf_counter() - start)
    return {
        name: {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "max_s": max(values),
            "repeats": len(values),
        }
        for name, values in samples.items()
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``/proc/self/clear_refs`` 5, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def memory_child(name: str, num_classes: int, dim: int, batch: int) -> None:
    """Run in a subprocess: print the peak RSS of one step above the RSS before it (bytes).

    One warm-up step first (thread pools, kernel caches, allocator arenas), gradients
    dropped, then the peak-RSS mark is reset and a second step measured: the figure is the
    step's own working memory, the weight gradient included.
    """
    weight, embeddings, labels = setup(num_classes, dim, batch)
    step = make_step(name, weight, embeddings, labels)
    step()
    weight.grad = None
    embeddings.grad = None
    step.parameter.grad = None  # type: ignore[attr-defined]
    reset = _reset_peak_rss()
    baseline = _rss_bytes()
    step()
    peak = _peak_rss_bytes()
    print(
        json.dumps(
            {"peak_delta_bytes": max(0, peak - baseline), "setup_bytes": baseline, "reset": reset}
        )
    )


def measure_memory(name: str, num_classes: int, dim: int, batch: int) -> dict[str, int]:
    command = [sys.executable, __file__, "--memory-child", name, str(num_classes)]
    command += ["--dim", str(dim), "--batch", str(batch)]
    # Fixed mmap threshold: every large tensor is mmapped and returned to the system when
    # freed, so resident memory follows the live tensors (glibc's adaptive threshold would
    # keep freed buffers resident and hide the second step's allocations).
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return json.loads(result.stdout.strip().splitlines()[-1])


def end_to_end(repeats: int, heads: list[str]) -> dict[str, float]:
    """LeNet++ (embedding_dim 2) training images/s on MNIST, batch 256, SGD, interleaved."""
    from marginkit.models import build_backbone

    try:
        from marginkit.data import load_dataset

        bundle = load_dataset("mnist", progress=False)  # $MARGINKIT_DATA/mnist or the cache
        images, labels = bundle.train.tensors()
        images, labels = images[: 256 * 20], labels[: 256 * 20]
        source = "MNIST"
    except Exception as error:  # the figure does not depend on the pixel values
        print(f"MNIST not loadable ({error}); timing on random 28x28 images", file=sys.stderr)
        images, labels = torch.randn(256 * 20, 1, 28, 28), torch.randint(0, 10, (256 * 20,))
        source = "random 28x28"
    runs = {}
    for head_name in heads:
        torch.manual_seed(0)
        backbone = build_backbone("lenetpp", input_shape=(1, 28, 28), embedding_dim=2)
        head = build(head_name, num_classes=10, embedding_dim=2)
        optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.01)
        runs[head_name] = (backbone, head, optimizer)
    samples: dict[str, list[float]] = {name: [] for name in heads}
    batches = images.shape[0] // 256
    for repeat in range(repeats + 1):
        for name, (backbone, head, optimizer) in runs.items():
            start = time.perf_counter()
            for index in range(batches):
                chunk = slice(index * 256, (index + 1) * 256)
                optimizer.zero_grad(set_to_none=True)
                head(backbone(images[chunk]), labels[chunk]).backward()
                optimizer.step()
            if repeat:  # the first round is warm-up
                samples[name].append(batches * 256 / (time.perf_counter() - start))
    result = {name: statistics.median(values) for name, values in samples.items()}
    result["source"] = source  # type: ignore[assignment]
    return result


def markdown_table(results: dict, classes: list[int]) -> str:  # type: ignore[type-arg]
    """README table: median ms (ratio to plain; ratio to PML) per configuration and C."""
    names = list(results["time"][str(classes[0])])
    header = "| configuration | " + " | ".join(f"C = {c:,}" for c in classes) + " |"
    lines = [header, "|" + "---|" * (len(classes) + 1)]
    for name in names:
        cells = []
        for num_classes in classes:
            timing = results["time"][str(num_classes)]
            if name not in timing:
                cells.append("")
                continue
            milliseconds = timing[name]["median_s"] * 1e3
            ratio = timing[name]["median_s"] / timing["plain"]["median_s"]
            cell = f"{milliseconds:,.0f} ms ({ratio:.2f}x"
            pml = PML_OF.get(name)
            if pml and pml in timing:
                cell += (
                    f"; {timing[pml]['median_s'] / timing[name]['median_s']:.2f}x faster than PML"
                )
            cell += ")"
            memory = results.get("memory", {}).get(str(num_classes), {}).get(name)
            if memory:
                cell += f", {memory['peak_delta_bytes'] / 2**20:,.0f} MiB"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_report(results: dict, num_classes: int) -> list[str]:  # type: ignore[type-arg]
    timing = results["time"].get(str(num_classes))
    if not timing or "plain" not in timing:
        return []
    plain = timing["plain"]["median_s"]
    memory = results.get("memory", {}).get(str(num_classes), {})
    lines = [f"Targets at C = {num_classes:,} (time within {TIME_TARGET}x plain, memory <= plain):"]
    for name in NORMALISED_MARGIN_HEADS:
        if name not in timing:
            continue
        ratio = timing[name]["median_s"] / plain
        verdict = (
            "met" if ratio <= TIME_TARGET else f"MISSED by {100 * (ratio / TIME_TARGET - 1):.0f}%"
        )
        line = f"  {name}: time {ratio:.3f}x plain ({verdict})"
        if name in memory and "plain" in memory:
            extra = memory[name]["peak_delta_bytes"] / max(1, memory["plain"]["peak_delta_bytes"])
            line += f"; memory {extra:.2f}x plain ({'met' if extra <= 1.0 else 'MISSED'})"
        lines.append(line)
    for name, target in DESCENDANT_TIME_TARGETS.items():
        if name in timing:
            ratio = timing[name]["median_s"] / plain
            verdict = "met" if ratio <= target else f"MISSED by {100 * (ratio / target - 1):.0f}%"
            lines.append(f"  {name}: time {ratio:.3f}x plain, target {target}x ({verdict})")
    return lines


def plot(results: dict, classes: list[int], path: Path) -> None:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5))
    names = list(results["time"][str(classes[0])])
    for name in names:
        xs = [c for c in classes if name in results["time"][str(c)]]
        ys = [results["time"][str(c)][name]["median_s"] * 1e3 for c in xs]
        style = "k-o" if name == "plain" else ("--x" if name.startswith("pml-") else "-.")
        axes.plot(xs, ys, style, label=name, linewidth=2 if name == "plain" else 1)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("number of classes C")
    axes.set_ylabel("forward + backward, median ms")
    setting = results["setting"]
    axes.set_title(
        f"B = {setting['batch']}, D = {setting['dim']}, fp32, {setting['threads']} threads"
    )
    axes.legend(fontsize=7, ncol=2)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def machine() -> dict[str, str | int]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": model,
        "gpu": gpu,
        "cpus": os.cpu_count() or 0,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--classes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15, help="repeats per configuration")
    parser.add_argument("--large-repeats", type=int, default=3, help="repeats when C >= 1,000,000")
    parser.add_argument("--only", nargs="*", default=[], help="configurations to run")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-RSS children (CPU memory)"
    )
    parser.add_argument("--end-to-end", action="store_true")
    parser.add_argument("--memory-child", nargs=2, metavar=("NAME", "C"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]), args.dim, args.batch)
        return

    names = configurations(args.only)
    results: dict = {  # type: ignore[type-arg]
        "setting": {
            "batch": args.batch,
            "dim": args.dim,
            "dtype": "float32",
            "device": args.device,
            "threads": torch.get_num_threads(),
            "configurations": names,
        },
        "machine": machine(),
        "time": {},
        "memory": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for num_classes in args.classes:
        repeats = args.large_repeats if num_classes >= 1_000_000 else args.repeats
        print(f"C = {num_classes:,}: timing {len(names)} configurations x {repeats}", flush=True)
        results["time"][str(num_classes)] = time_configurations(
            names, num_classes, args.dim, args.batch, repeats, args.device
        )
        if not args.no_memory and args.device == "cpu":  # peak RSS: CPU memory only
            results["memory"][str(num_classes)] = {
                name: measure_memory(name, num_classes, args.dim, args.batch) for name in names
            }
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if args.end_to_end:
        print("end-to-end: LeNet++ on MNIST", flush=True)
        results["end_to_end"] = end_to_end(3, ["softmax", "cosface", "arcface", "sphereface"])
    results["machine"]["load_average_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(results, args.classes)
    report = [table, ""]
    for num_classes in args.classes:
        report += target_report(results, num_classes)
    if "end_to_end" in results:
        e2e = results["end_to_end"]
        report.append(f"\nLeNet++ training images/s ({e2e['source']}, batch 256):")
        for name, value in e2e.items():
            if name != "source":
                report.append(
                    f"  {name}: {value:,.0f} images/s ({value / e2e['softmax']:.1%} of softmax)"
                )
    text = "\n".join(report)
    (args.out / "table.md").write_text(text + "\n")
    plot(results, args.classes, args.out / "time_vs_classes.png")
    print(f"machine: {results['machine']}")
    print(text)


if __name__ == "__main__":
    main()
