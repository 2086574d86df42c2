"""The ``marginkit`` command: a thin argparse layer over :mod:`marginkit.train` and
:mod:`marginkit.evaluation`.

Commands::

    marginkit                      # = marginkit compare: every loss on the digits, a report
    marginkit compare [--preset NAME|FILE] [--dataset D] [--losses a,b|all] [--epochs N] \\
        [--seeds S] [--label-noise R] [--classes 0-6] --out reports/NAME
    marginkit compare --list-presets
    marginkit train --dataset mnist --data-dir DIR --backbone lenetpp --embedding-dim 2 \\
        --loss arcface --loss-arg margin=0.5 --epochs 10 --out runs/NAME [--config cfg.yaml]
    marginkit eval runs/NAME [--split test] [--save-embeddings FILE]
    marginkit verify runs/NAME --pairs lfw.bin [--pairs pairs.txt ...] [--no-flip]
    marginkit ijb runs/NAME|FILE --root IJB_release --set IJBB|IJBC [--out FILE] [--workers N]
    marginkit export runs/NAME --format onnx|torchscript|safetensors --out FILE [--force]
    marginkit embed runs/NAME|FILE --images DIR --out embeddings.npz [--batch-size N] [--force]
    marginkit align --images DIR --landmarks FILE --out DIR [--size 112]
    marginkit pack FOLDER --out DIR [--force]   # train.rec/.idx/property for --dataset rec

The flags of ``train`` (and the training options of ``compare``) are generated from
:class:`~marginkit.train.config.TrainConfig` (:mod:`marginkit.cli.flags`); the command only
parses and forwards. torch is imported only inside the commands, so ``marginkit --help`` is
instant. Errors in the user's input print one line ``marginkit: error: ...`` and exit with
status 2; any other error (a bug) keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from marginkit.errors import MarginkitError, first_line

__all__ = ["build_parser", "main"]

#: The options of ``compare`` that set a :class:`TrainConfig` option of every run, besides
#: the ``model`` and ``device`` groups, whole: where the data is, and the training's length,
#: seed, class subset and recipe (the label noise has ``compare``'s own ``--label-noise``).
_COMPARE_DATA = ("dataset", "data_dir")
_COMPARE_TRAINING = (
    "epochs",
    "max_steps",
    "train_fraction",
    "batch_size",
    "seed",
    "classes",
    "recipe",
)


class _UsageError(MarginkitError):
    """An error in the user's input, reported as one line with exit status 2."""


class _CommandParser(argparse.ArgumentParser):
    """A command's parser whose options are added when it is first used (to parse or for
    its help): they come from :class:`TrainConfig` and the compare presets, whose package
    imports torch, so ``marginkit --help`` stays instant.

    Args:
        add_options: adds the command's options to the parser it is given.
        *args, **kwargs: as for ``argparse.ArgumentParser``.
    """

    def __init__(
        self,
        *args: Any,
        add_options: Callable[[argparse.ArgumentParser], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._add_options = add_options

    def _complete(self) -> None:
        if self._add_options is not None:
            add_options, self._add_options = self._add_options, None
            add_options(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()

    def format_help(self) -> str:
        self._complete()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The ``marginkit`` argument parser (each command's options load on first use)."""
    parser = argparse.ArgumentParser(
        prog="marginkit",
        description="Margin-based softmax losses: train, evaluate and compare. "
        "Without a command: the default comparison of every loss (marginkit compare).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    commands.add_parser(
        "train",
        help="train a backbone with a margin loss into a run folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_options=_train_arguments,
    )
    commands.add_parser(
        "eval", help="evaluate a saved run (writes eval.json)", add_options=_eval_arguments
    )
    commands.add_parser(
        "verify",
        help="verify a saved run on .bin or pairs files (writes verify.json)",
        add_options=_verify_arguments,
    )
    commands.add_parser(
        "ijb",
        help="evaluate a run or an exported file on IJB-B or IJB-C (writes ijb.json)",
        add_options=_ijb_arguments,
    )
    commands.add_parser(
        "compare",
        help="train several losses under identical settings; write report.md and report.html",
        add_options=_compare_arguments,
    )
    commands.add_parser(
        "export",
        help="write a run's backbone as ONNX, TorchScript or safetensors (+ FILE.json)",
        add_options=_export_arguments,
    )
    commands.add_parser(
        "embed",
        help="embed a folder of images with a run or an exported file (.npz)",
        add_options=_embed_arguments,
    )
    commands.add_parser(
        "align",
        help="align photos onto the ArcFace 112x112 template by their five landmarks",
        add_options=_align_arguments,
    )
    commands.add_parser(
        "pack",
        help="write a folder of identity sub-folders as RecordIO files (--dataset rec)",
        add_options=_pack_arguments,
    )
    return parser


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``train``: one per :class:`TrainConfig` option (a flag not given leaves
    the config file's value), and how to treat the run folder."""
    from marginkit.cli.flags import add_config_flags, loss_argument_help

    parser.epilog = loss_argument_help()
    add = parser.add_argument
    add("--config", default=None, help="YAML file with any of the options below")
    add_config_flags(parser)
    add("--resume", action="store_true", help="continue the run in --out")
    add("--overwrite", action="store_true", help="replace the run in --out")
    add("--quiet", action="store_true", help="no progress lines")


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``eval``."""
    add = parser.add_argument
    add("run_dir", help="run folder written by marginkit train")
    add("--split", default="test", choices=["train", "validation", "test"])
    add(
        "--save-embeddings",
        dest="save_embeddings",
        default=None,
        metavar="FILE",
        help="write the split's embeddings and labels (.npz)",
    )
    add(
        "--batch-size",
        dest="batch_size",
        type=_positive_int,
        default=512,
        help="inputs per forward pass (default: 512)",
    )
    add(
        "--data-dir",
        dest="data_dir",
        default=None,
        help="read the data set from this folder (where the run's data moved)",
    )
    add(
        "--checkpoint",
        default=None,
        metavar="NAME",
        help="measure this checkpoint (epoch-0029; best: the best by --verify), not the newest",
    )
    _add_force(parser, "the --save-embeddings file")
    _add_backbone(parser)
    add("--quiet", action="store_true", help="no progress")
    add("--no-analysis", dest="analysis", action="store_false", help="accuracy only (fast)")
    add("--no-plots", dest="plots", action="store_false", help="no pictures")


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``verify``."""
    add = parser.add_argument
    add("run_dir", help="run folder written by marginkit train")
    add(
        "--pairs",
        action="append",
        required=True,
        metavar="FILE",
        help="a .bin file (InsightFace) or an LFW-style pairs file (pairs.txt); repeatable",
    )
    add("--no-flip", dest="flip", action="store_false", help="no flip test-time augmentation")
    add(
        "--batch-size",
        dest="batch_size",
        type=_positive_int,
        default=256,
        help="images per forward pass (default: 256)",
    )
    add(
        "--data-dir",
        dest="data_dir",
        default=None,
        help="the run's data folder (where it moved); pairs files are looked for there too",
    )
    add(
        "--checkpoint",
        default=None,
        metavar="NAME",
        help="this checkpoint (epoch-0029; best: the best by --verify), not the newest",
    )
    add(
        "--crop",
        type=float,
        default=None,
        metavar="FRACTION",
        help="centre crop height as a share of each image's (default: 1.0 for .bin, "
        "LFW's 0.6 for images in an LFW image folder)",
    )
    add("--device", default=None, help="where to run the backbone, e.g. cuda (default: cpu)")
    _add_backbone(parser)
    add("--quiet", action="store_true", help="no progress")


def _ijb_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``ijb``."""
    add = parser.add_argument
    add("source", metavar="RUN|FILE", help="a run folder, or a file written by marginkit export")
    add(
        "--root",
        required=True,
        metavar="DIR",
        help="the set's folder (loose_crop/, meta/) or the folder holding it (IJB_release)",
    )
    add("--set", dest="set_name", required=True, choices=["IJBB", "IJBC"], help="which set")
    add("--out", default=None, metavar="FILE", help="report (default: RUN/ijb.json, FILE.ijb.json)")
    add(
        "--workers",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="processes reading and aligning the crops (default: 0, this one)",
    )
    add(
        "--batch-size",
        dest="batch_size",
        type=_positive_int,
        default=64,
        metavar="N",
        help="faces per batch (default: 64)",
    )
    add("--no-flip", dest="flip", action="store_false", help="no flip test-time augmentation")
    add(
        "--score-weighting",
        dest="score_weighting",
        action="store_true",
        help="weight each image by its detector score when pooling media and templates",
    )
    add(
        "--checkpoint",
        default=None,
        metavar="NAME",
        help="a run's checkpoint (epoch-0029; best: the best by --verify)",
    )
    add("--data-dir", dest="data_dir", default=None, help="the run's data (older runs only)")
    _add_force(parser, "an --out file of another source or kind")
    _add_backbone(parser)
    add("--quiet", action="store_true", help="no progress")


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``compare``; None means "the preset's"."""
    from marginkit.cli.flags import add_config_flags
    from marginkit.compare.presets import DEFAULT_PRESET, GENERIC_SETTINGS, REPORTS_FOLDER
    from marginkit.compare.spec import ALL_LOSSES
    from marginkit.registry import LOSSES
    from marginkit.train.config import group_options

    generic = ", ".join(f"{key} {value}" for key, value in GENERIC_SETTINGS.items())
    parser.description = (
        "Train every loss of a comparison (same initial weights and batches per seed), "
        f"evaluate each and write a report. Without --preset: the {DEFAULT_PRESET} preset "
        f"(or, with another --dataset, every loss with {generic}); the options below "
        "override it."
    )
    add = parser.add_argument
    add("--preset", default=None, help="a preset name (--list-presets) or a preset YAML file")
    add("--list-presets", dest="list_presets", action="store_true", help="list the presets")
    add(
        "--losses",
        default=None,
        help=f"comma-separated loss names, or {ALL_LOSSES}. "
        f"Choices: {', '.join(LOSSES.choices())}. (default: the preset's)",
    )
    settings = (
        *_COMPARE_DATA,
        *group_options("model"),
        *_COMPARE_TRAINING,
        *group_options("device"),
    )
    add_config_flags(parser, settings, default_text="the preset's")
    add(
        "--seeds",
        type=int,
        default=None,
        help="number of seeds; differences are paired by seed and given with an interval",
    )
    add(
        "--baseline",
        default=None,
        metavar="RUN",
        help="the run every other is compared with (default: softmax, else the first run)",
    )
    add("--label-noise", dest="label_noise", default=None, help="a rate, or rates: 0,0.2,0.4")
    add(
        "--out",
        default=None,
        help=f"report folder (default: {REPORTS_FOLDER}/<preset or dataset>, or a fresh "
        "folder beside it)",
    )
    add("--quiet", action="store_true", help="no progress bar")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``export``."""
    from marginkit.export import FORMATS, TOLERANCE

    add = parser.add_argument
    add("run_dir", metavar="RUN", help="run folder written by marginkit train")
    add("--format", required=True, choices=FORMATS, help="file format")
    add("--out", required=True, metavar="FILE", help="file to write; its record: FILE.json")
    add(
        "--checkpoint",
        default=None,
        metavar="NAME",
        help="export this checkpoint (epoch-0029; best: the best by --verify)",
    )
    add(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        metavar="T",
        help=f"largest difference from PyTorch's embeddings allowed (default: {TOLERANCE:g})",
    )
    add("--data-dir", dest="data_dir", default=None, help="the run's data (older runs only)")
    _add_force(parser, "FILE and FILE.json")
    _add_backbone(parser)


def _embed_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``embed``."""
    add = parser.add_argument
    add("source", metavar="RUN|FILE", help="a run folder, or a file written by marginkit export")
    add("--images", required=True, metavar="DIR", help="folder of images (searched recursively)")
    add("--out", required=True, metavar="FILE", help=".npz to write (embeddings, paths)")
    add(
        "--batch-size",
        dest="batch_size",
        type=_positive_int,
        default=64,
        metavar="N",
        help="images per batch (default: 64)",
    )
    add(
        "--checkpoint",
        default=None,
        metavar="NAME",
        help="a run's checkpoint (epoch-0029; best: the best by --verify)",
    )
    add("--data-dir", dest="data_dir", default=None, help="the run's data (older runs only)")
    _add_force(parser, "the .npz")
    _add_backbone(parser)
    add("--quiet", action="store_true", help="no progress")


def _align_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``align`` (docs/alignment.md)."""
    parser.description = (
        "Align every image under --images by its line of --landmarks (path x1 y1 ... x5 y5 "
        "[score]) onto the ArcFace template; crops keep their relative paths (JPEG photos as "
        "JPEG quality 95, others as PNG). Crops already in --out are kept and skipped."
    )
    add = parser.add_argument
    add("--images", required=True, metavar="DIR", help="folder of photos (searched recursively)")
    add("--landmarks", required=True, metavar="FILE", help="one line per photo: its five points")
    add("--out", required=True, metavar="DIR", help="folder for the aligned crops")
    add(
        "--size",
        type=_positive_int,
        default=112,
        metavar="N",
        help="crop width and height in pixels (default: 112)",
    )
    add("--quiet", action="store_true", help="no progress")


def _pack_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``pack``."""
    add = parser.add_argument
    add("folder", metavar="FOLDER", help="folder of identity sub-folders of images")
    add(
        "--out",
        required=True,
        metavar="DIR",
        help="folder to write train.rec, train.idx and property into (InsightFace's layout)",
    )
    _add_force(parser, "train.rec, train.idx and property")
    add("--quiet", action="store_true", help="no progress")


def _add_force(parser: argparse.ArgumentParser, what: str) -> None:
    """``--force``: replace an existing output file (never one the command reads, nor one
    in a run's checkpoints folder)."""
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace {what} if it exists (never a file this command reads, nor one in a "
        "run's checkpoints folder)",
    )


def _add_backbone(parser: argparse.ArgumentParser) -> None:
    """``--backbone SPEC``: confirm the ``module:callable`` backbone a run or an export
    record names (importing it runs its code)."""
    parser.add_argument(
        "--backbone",
        default=None,
        metavar="SPEC",
        help="confirm the module:callable backbone that the run's config.yaml (or the "
        "exported file's record) names: it is imported, and its code run, only then",
    )


# ---------------------------------------------------------------------------- commands
def _train(args: argparse.Namespace) -> int:
    _require("train")
    from marginkit.runfolder import RunFolder
    from marginkit.train import TrainConfig, fit

    flags = vars(args).copy()
    for name in ("command", "config", "resume", "overwrite", "quiet"):
        flags.pop(name)
    loss_args = flags.pop("loss_args", [])
    out = flags.get("out")
    saved = RunFolder(out) if args.resume and out is not None else None
    if saved is not None:
        saved.check_format()  # a run of a newer format: refused before its options are read
    config = TrainConfig.from_sources(
        file=args.config,
        saved=None if saved is None else saved.config,
        flags=flags,
        loss_args=loss_args,
    )
    if config.out is None:
        raise _UsageError("train: --out RUN_FOLDER is required (or out: in the --config file)")
    if saved is not None:  # the run's own config.yaml, maybe someone else's
        from marginkit.models import confirm_backbone

        confirm_backbone(config.backbone, flags.get("backbone"), saved.config)
    from marginkit.train import distributed

    if config.nproc > 1 and not distributed.distributed_environment():
        _launch(config, args)  # --nproc N: N processes of this command, watched
        return 0
    with distributed.process_group(config.timeout, distributed.uses_cuda(config)) as part:
        result = fit(config, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    if not part.is_main:
        return 0
    accuracy, loss = result.final.get("test_accuracy"), result.final.get("train_loss")
    print(
        f"{config.out}: test accuracy {'n/a' if accuracy is None else f'{100 * accuracy:.2f}%'}, "
        f"train loss {'n/a' if loss is None else f'{loss:.4f}'}"
    )
    return 0


def _launch(config: Any, args: argparse.Namespace) -> None:
    """``train --nproc N``: run ``train`` with the options resolved here as N ranks."""
    from marginkit.runfolder import RunFolder
    from marginkit.train import save_config
    from marginkit.train.distributed import check_several_processes, launch, launch_folder
    from marginkit.train.verification import find_verify_files

    check_several_processes(config)  # one line here, not one per rank
    find_verify_files(config)  # a missing --verify file too
    with launch_folder() as folder:
        options = RunFolder(folder).config  # the resolved options, as a run records them
        save_config(config, options)
        arguments = ["--config", str(options)]
        arguments += [f"--{name}" for name in ("resume", "overwrite", "quiet") if vars(args)[name]]
        launch(arguments, config.nproc)


def _eval(args: argparse.Namespace) -> int:
    _require("train")
    if args.analysis and args.plots:
        _require("plots")
    from marginkit.evaluation import evaluate_run
    from marginkit.runfolder import RunFolder

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
        force=args.force,
        backbone=args.backbone,
    )
    from marginkit.evaluation import summarize

    print(summarize(report))
    print(f"full report: {RunFolder(args.run_dir).eval}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    _require("train")
    from marginkit.runfolder import RunFolder
    from marginkit.verify import summarize_verification, verify_run

    report = verify_run(
        args.run_dir,
        args.pairs,
        flip=args.flip,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        checkpoint=args.checkpoint,
        crop=args.crop,
        device=args.device,
        progress=not args.quiet,
        backbone=args.backbone,
    )
    print(summarize_verification(report))
    print(f"full report: {RunFolder(args.run_dir).verify}")
    return 0


def _ijb(args: argparse.Namespace) -> int:
    _require("train")
    from marginkit.ijb import evaluate_ijb, summarize_ijb

    entry, out = evaluate_ijb(
        args.source,
        args.root,
        args.set_name,
        out=args.out,
        flip=args.flip,
        score_weighting=args.score_weighting,
        batch_size=args.batch_size,
        workers=args.workers,
        checkpoint=args.checkpoint,
        data_dir=args.data_dir,
        backbone=args.backbone,
        progress=not args.quiet,
        force=args.force,
    )
    print(summarize_ijb(entry))
    print(f"full report: {out}")
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
    from marginkit.compare.presets import report_folder, spec_from_options

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
    # without --out: the default folder, or a fresh one beside it (finished work stays)
    out = Path(args.out) if args.out is not None else fresh_folder(report_folder(spec), spec)
    result = run_grid(spec, out, progress=not args.quiet)
    print(result.table)
    print(f"report: {result.report_html} (and report.md); {result.wall_time:.1f} s")
    return 0


def _export(args: argparse.Namespace) -> int:
    _require("train")
    if args.format == "onnx":
        _require("export")
    from marginkit.export import export_run, sidecar_path

    out = export_run(
        args.run_dir,
        args.format,
        args.out,
        checkpoint=args.checkpoint,
        data_dir=args.data_dir,
        tolerance=args.tolerance,
        force=args.force,
        backbone=args.backbone,
    )
    print(f"{out} (and {sidecar_path(out).name})")
    return 0


def _embed(args: argparse.Namespace) -> int:
    _require("train")
    from marginkit.export import embed_folder

    out = embed_folder(
        args.source,
        args.images,
        args.out,
        batch_size=args.batch_size,
        checkpoint=args.checkpoint,
        data_dir=args.data_dir,
        progress=not args.quiet,
        force=args.force,
        backbone=args.backbone,
    )
    print(out)
    return 0


def _align(args: argparse.Namespace) -> int:
    _require("train")
    from marginkit.data.align_folder import align_folder

    done = align_folder(
        args.images, args.landmarks, args.out, size=args.size, progress=not args.quiet
    )
    faces = "face" if done.written == 1 else "faces"
    print(
        f"{done.out}: {done.written} {faces} aligned to {done.size}x{done.size}, "
        f"{done.skipped} already there"
    )
    return 0


def _pack(args: argparse.Namespace) -> int:
    _require("train")
    from marginkit.data.pack import pack_folder

    done = pack_folder(args.folder, args.out, force=args.force, progress=not args.quiet)
    print(
        f"packed {done.images:,} images of {done.identities:,} identities "
        f"({done.height}x{done.width}) into {done.out}: train.rec ({done.rec_bytes:,} bytes), "
        "train.idx, property"
    )
    return 0


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """marginkit's own warnings (a ``MarginWarning``: a scale or margin that cannot work) as
    one line, like the errors; every other warning as Python shows it."""
    if category.__module__.startswith("marginkit."):
        return f"marginkit: warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


_PYTHON_FORMAT = warnings.formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``marginkit`` console script; returns the exit status."""
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["compare", *(argv or [])])
    handlers = {"train": _train, "eval": _eval, "verify": _verify, "compare": _compare}
    handlers.update(export=_export, embed=_embed, ijb=_ijb, align=_align, pack=_pack)
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt as error:  # Ctrl-C; a launcher's signal (its status: 128 + number)
        parser.exit(getattr(error, "status", 130), f"marginkit: {error or 'interrupted'}\n")
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
    "export": ("onnx", "onnxscript", "onnxruntime"),
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

    The expected errors are marginkit's own (:class:`~marginkit.errors.MarginkitError`, the
    base of every error the package raises for its user) and an ``OSError`` (no space, a
    read-only or missing path, no permission: it names its path); a missing optional package
    names the extra that installs it. Any other error, a ``ValueError`` included, is a bug.
    Set ``MARGINKIT_DEBUG=1`` to see the traceback of an expected error too.
    """
    import os

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
    if isinstance(error, (MarginkitError, OSError)):
        return first_line(error)
    return None


def _positive_int(text: str) -> int:
    """argparse type: an int >= 1 (argparse names the option in its one-line error)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
