"""The ``marginkit`` command: a thin argparse layer over :mod:`marginkit.train` and
:mod:`marginkit.evaluate`.

Commands::

    marginkit                      # = marginkit compare: every loss on the digits, a report
    marginkit compare [--preset NAME|FILE] [--dataset D] [--losses a,b|all] [--epochs N] \\
        [--seeds S] [--label-noise R] [--classes 0-6] --out reports/NAME
    marginkit compare --list-presets
    marginkit train --dataset mnist --data-dir DIR --backbone lenetpp --embedding-dim 2 \\
        --loss arcface --loss-arg margin=0.5 --epochs 10 --out runs/NAME [--config cfg.yaml]
    marginkit eval runs/NAME [--split test] [--save-embeddings FILE]

torch is imported only inside the commands, so ``marginkit --help`` is instant. Errors in
the user's input print one line ``marginkit: error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main"]

_EPILOG_LOSS_ARGS = """\
loss arguments (--loss-arg NAME=VALUE, repeatable):
  numbers, true/false, pi expressions (pi/4), or schedules:
  warmup:TARGET:STEPS[:START]  ramp[:START:END:RATE]  adaptive[:START:MIN:Q:MOMENTUM:RATE]
  power:BASE:GAMMA:POWER[:MIN]  lsoftmax  sphereface  constant:VALUE
  e.g. --loss-arg margin=warmup:0.5:1000  --loss-arg c=ramp  --loss-arg lambda_=sphereface
"""


class _UsageError(Exception):
    """An error in the user's input, reported as one line with exit status 2."""


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``train``; defaults are SUPPRESS so only given flags override the config."""
    add = parser.add_argument
    hidden = argparse.SUPPRESS
    add("--config", default=None, help="YAML file with any of the options below")
    add("--dataset", default=hidden, help="digits, mnist, fashion-mnist, kmnist, cifar10, ...")
    add(
        "--data-dir",
        dest="data_dir",
        default=hidden,
        help="folder holding the data files (default: $MARGINKIT_DATA/DATASET, else download)",
    )
    add("--cache-dir", dest="cache_dir", default=hidden, help="download cache folder")
    add("--no-download", dest="download", action="store_false", default=hidden)
    add("--classes", default=hidden, help="known-class subset, e.g. 0-6 or 0,2,5-7")
    add("--label-noise", dest="label_noise", type=float, default=hidden)
    add("--validation-fraction", dest="validation_fraction", type=float, default=hidden)
    add("--augment", dest="augment", action=argparse.BooleanOptionalAction, default=hidden)
    add("--image-size", dest="image_size", type=int, nargs="+", default=hidden)
    add("--min-images-per-person", dest="min_images_per_person", type=int, default=hidden)
    add("--pairs-file", dest="pairs_file", default=hidden)
    add("--backbone", default=hidden, help="lenetpp, mnistnet, resnet20, facenet, mlp")
    add("--embedding-dim", dest="embedding_dim", type=int, default=hidden)
    add("--loss", default=hidden, help="softmax, lsoftmax, sphereface, normface, cosface, ...")
    add("--loss-arg", dest="loss_arg", action="append", default=None, metavar="NAME=VALUE")
    add(
        "--recipe",
        choices=["marginkit", "paper"],
        default=hidden,
        help="marginkit (default: AdamW, cosine lr, margins warmed up over the run) or paper "
        "(the papers' SGD settings and step-based annealings)",
    )
    add("--epochs", type=int, default=hidden)
    add("--max-steps", dest="max_steps", type=int, default=hidden, help="stop after N steps")
    add(
        "--train-fraction",
        dest="train_fraction",
        type=float,
        default=hidden,
        help="train on a seeded class-balanced share of the training split, in (0, 1]",
    )
    add("--batch-size", dest="batch_size", type=int, default=hidden)
    add("--eval-batch-size", dest="eval_batch_size", type=int, default=hidden)
    add("--optimizer", choices=["sgd", "adamw"], default=hidden)
    add("--lr", type=float, default=hidden)
    add("--momentum", type=float, default=hidden)
    add("--weight-decay", dest="weight_decay", type=float, default=hidden)
    add("--lr-schedule", dest="lr_schedule", choices=["step", "cosine", "constant"], default=hidden)
    add("--milestones", type=int, nargs="+", default=hidden, help="epochs of the step decay")
    add("--lr-gamma", dest="lr_gamma", type=float, default=hidden)
    add("--warmup-epochs", dest="warmup_epochs", type=int, default=hidden)
    add("--seed", type=int, default=hidden)
    add("--threads", type=int, default=hidden)
    add("--log-every", dest="log_every", type=int, default=hidden)
    add("--out", default=hidden, help="run folder (required here or as out: in --config)")
    add("--resume", action="store_true", help="continue the run in --out")
    add("--overwrite", action="store_true", help="replace the run in --out")
    add("--quiet", action="store_true", help="no progress lines")


def build_parser() -> argparse.ArgumentParser:
    """The ``marginkit`` argument parser (no heavy imports)."""
    parser = argparse.ArgumentParser(
        prog="marginkit",
        description="Margin-based softmax losses: train, evaluate and compare. "
        "Without a command: compare every loss on the digits and write a report.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train a backbone with a margin loss into a run folder",
        epilog=_EPILOG_LOSS_ARGS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _train_arguments(train)
    evaluate = commands.add_parser("eval", help="evaluate a saved run (writes eval.json)")
    evaluate.add_argument("run_dir", help="run folder written by marginkit train")
    evaluate.add_argument("--split", default="test", choices=["train", "validation", "test"])
    evaluate.add_argument(
        "--save-embeddings",
        dest="save_embeddings",
        default=None,
        metavar="FILE",
        help="write the split's embeddings and labels (.npz)",
    )
    evaluate.add_argument("--batch-size", dest="batch_size", type=int, default=512)
    evaluate.add_argument(
        "--data-dir",
        dest="data_dir",
        default=None,
        help="read the data set from this folder (where the run's data moved)",
    )
    evaluate.add_argument(
        "--checkpoint",
        default=None,
        metavar="NAME",
        help="measure this checkpoint (e.g. epoch-0029) instead of the newest",
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress")
    evaluate.add_argument(
        "--no-analysis", dest="analysis", action="store_false", help="accuracy only (fast)"
    )
    evaluate.add_argument("--no-plots", dest="plots", action="store_false", help="no pictures")
    compare = commands.add_parser(
        "compare",
        help="train several losses under identical settings; write report.md and report.html",
        description="Train every loss of a comparison (same initial weights and batches per "
        "seed), evaluate each and write a report. Without --preset: the digits preset (or, "
        "with another --dataset, every loss for 2 epochs); the options below override it.",
    )
    _compare_arguments(compare)
    return parser


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``compare``; None means "the preset's"."""
    add = parser.add_argument
    add("--preset", default=None, help="a preset name (--list-presets) or a preset YAML file")
    add("--list-presets", dest="list_presets", action="store_true", help="list the presets")
    add("--dataset", default=None, help="digits, mnist, lfw, fashion-mnist, cifar10, ...")
    add("--data-dir", dest="data_dir", default=None, help="folder holding the data files")
    add("--losses", default=None, help="comma-separated loss names, or all")
    add("--backbone", default=None, help="lenetpp, mnistnet, resnet20, facenet, mlp")
    add("--embedding-dim", dest="embedding_dim", type=int, default=None)
    add("--epochs", type=int, default=None)
    add("--max-steps", dest="max_steps", type=int, default=None, help="steps per run (budget)")
    add("--train-fraction", dest="train_fraction", type=float, default=None)
    add("--batch-size", dest="batch_size", type=int, default=None)
    add("--seeds", type=int, default=None, help="number of seeds (mean ± std over them)")
    add("--seed", type=int, default=None, help="first seed")
    add("--label-noise", dest="label_noise", default=None, help="a rate, or rates: 0,0.2,0.4")
    add("--classes", default=None, help="train on these classes only, e.g. 0-6 (open set)")
    add("--recipe", choices=["marginkit", "paper"], default=None)
    add("--threads", type=int, default=None, help="torch CPU threads")
    add("--out", default=None, help="report folder (default: reports/<preset or dataset>)")
    add("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------- commands
def _train(args: argparse.Namespace) -> int:
    _require("train")
    from marginkit.train import TrainConfig, fit, load_config, parse_loss_arg

    given = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "config", "loss_arg", "resume", "overwrite", "quiet")
    }
    if "image_size" in given:
        size = given["image_size"]
        given["image_size"] = size[0] if len(size) == 1 else size
    values: dict[str, Any] = {}
    if args.config is not None:
        values = load_config(args.config).to_dict()
    out = given.get("out", values.get("out"))
    if out is None:
        raise _UsageError("train: --out RUN_FOLDER is required (or out: in the --config file)")
    if args.config is None and args.resume:
        from pathlib import Path

        saved = Path(out) / "config.yaml"
        if saved.is_file():  # `marginkit train --out runs/x --resume` continues as saved
            values = load_config(saved).to_dict()
    values.update(given)
    if args.loss_arg:
        values["loss_args"] = dict(values.get("loss_args") or {})
        for text in args.loss_arg:
            name, value = parse_loss_arg(text)
            values["loss_args"][name] = value
    config = TrainConfig.from_dict(values, source="options")
    result = fit(config, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    final = result.final
    accuracy, loss = final.get("test_accuracy"), final.get("train_loss")
    print(
        f"{config.out}: test accuracy {'n/a' if accuracy is None else f'{100 * accuracy:.2f}%'}, "
        f"train loss {'n/a' if loss is None else f'{loss:.4f}'}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    _require("train")
    if args.analysis and args.plots:
        _require("plots")
    from pathlib import Path

    from marginkit.evaluate import evaluate_run

    report = evaluate_run(
        args.run_dir,
        split=args.split,
        save_embeddings=args.save_embeddings,
        batch_size=args.batch_size,
        analysis=args.analysis,
        plots=args.plots,
        data_dir=args.data_dir,
        checkpoint=args.checkpoint,
        progress=not args.quiet,
    )
    from marginkit.evaluate import summarize

    print(summarize(report))
    print(f"full report: {Path(args.run_dir) / 'eval.json'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    _require("train")
    if not args.list_presets:
        try:
            _require("plots")
        except ModuleNotFoundError:
            raise _UsageError(
                "compare: the report's figures need matplotlib, an optional dependency: "
                'pip install "marginkit[plots]"'
            ) from None
    from marginkit.compare import available_presets, fresh_folder, run_grid
    from marginkit.compare.presets import spec_from_options

    if args.list_presets:
        for name, title in available_presets().items():
            print(f"{name:<14} {title}")
        return 0
    options = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "preset", "list_presets", "out", "quiet")
    }
    spec = spec_from_options(args.preset, options)
    if args.out is not None:
        out = Path(args.out)
    else:  # the default folder, or a fresh one beside it: finished work is never replaced
        out = fresh_folder(Path("reports") / (spec.preset or spec.settings.dataset), spec)
    result = run_grid(spec, out, progress=not args.quiet)
    print(result.table)
    print(f"report: {result.report_html} (and report.md); {result.wall_time:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``marginkit`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["compare", *(argv or [])])
    handlers = {"train": _train, "eval": _eval, "compare": _compare}
    try:
        return handlers[args.command](args)
    except _UsageError as error:
        parser.exit(2, f"marginkit: error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "marginkit: interrupted\n")
    except Exception as error:
        message = _user_error(error)
        if message is not None:
            parser.exit(2, f"marginkit: error: {message}\n")
        raise
    return 0


#: The optional modules each extra of ``pyproject.toml`` installs.
_EXTRA_MODULES = {
    "train": ("safetensors", "yaml", "sklearn", "PIL", "scipy", "tqdm"),
    "plots": ("matplotlib",),
    "tensorboard": ("tensorboard",),
}
_EXTRAS = {module: extra for extra, modules in _EXTRA_MODULES.items() for module in modules}


def _require(extra: str) -> None:
    """Fail before any work when a module of ``extra`` is not installed (the message of
    :func:`_user_error` then names the extra to install)."""
    import importlib.util

    for module in _EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module blocked in sys.modules
            found = False
        if not found:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)


def _user_error(error: Exception) -> str | None:
    """The one-line message of an error caused by the user's input or set-up, or None for
    a bug (which keeps its traceback).

    marginkit reports bad input as ``ValueError`` (``ConfigError``, ``DataError``,
    ``RunFolderError``, ``CheckpointError`` are subclasses); an ``OSError`` (no space, a
    read-only or missing path, no permission) names its path; a missing optional package
    names the extra that installs it. Set ``MARGINKIT_DEBUG=1`` to see the traceback.
    """
    import os

    from marginkit.train.loop import NonFiniteLossError

    if os.environ.get("MARGINKIT_DEBUG"):
        return None
    if isinstance(error, ModuleNotFoundError) and error.name is not None:
        package = error.name.split(".")[0]
        if package in _EXTRAS:
            extra = _EXTRAS[package]
            hint = " (or pass --no-plots)" if extra == "plots" else ""
            return (
                f"this command needs the {package} package, an optional dependency: "
                f'pip install "marginkit[{extra}]"{hint}'
            )
        return None
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror.lower()}"
    if isinstance(error, (ValueError, NonFiniteLossError, OSError)):
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
