"""``fit(config)``: train a backbone and a margin head, with checkpoints and resume.

The loop, in one screen (see :func:`fit`)::

    for epoch in range(start_epoch, epochs):
        order = randperm(N, generator)                    # seeded shuffling
        for batch in order.split(accumulate * batch_size):
            x, y = inputs[batch[rows]], labels[batch[rows]]  # this rank's rows (all of one's)
            x = augment_batch(x, generator, rows)         # if the data set asks for it
            lr -> every param group                       # warm-up + step/cosine, per step
            for x, y in micro_batches(x, y):              # one without --accumulate
                x, y -> config.device                     # cpu, cuda, cuda:N
                with autocast(config.precision):          # fp32: none; bf16, fp16
                    embeddings = backbone(x)              # (b, D); no grad while frozen
                loss, correct = head.loss_and_correct(embeddings, y)  # margin CE, float32
                (loss * b / B).backward()                 # b of the step's B; fp16: scaled
            clip_grad_norm(config.clip_grad_norm); optimizer.step()
            every verify_every steps and at the epoch's end: --verify sets (best/)
        evaluate; checkpoint (atomic); metrics.json, log.csv

Everything random flows from ``config.seed``: the initial weights (global RNG, seeded before
the networks are built) and the order and augmentation of batches (a dedicated
``torch.Generator`` whose state is checkpointed), so on a CPU a run is bitwise reproducible
and a resumed run ends with exactly the weights of an uninterrupted one. The networks live on
``config.device``; the data set stays in CPU memory (where the shuffling generator lives) and
each batch is copied to the device (:mod:`marginkit.train.precision`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import torch
from torch import nn

from marginkit.errors import MarginkitError
from marginkit.progress import Progress, format_seconds
from marginkit.registry import BACKBONES, LOSSES
from marginkit.runfolder import (
    ACCURACY_UNIT,
    Metrics,
    OutputError,
    RunFolder,
    RunFolderError,
    foreign_entries,
    held,
    listed,
    lock_holder,
    make_folder,
    rows_in_fractions,
    run_entries,
)
from marginkit.train.accumulation import MicroBatch, micro_batches, step_rows, training_head
from marginkit.train.batches import BatchSource
from marginkit.train.checkpoint import (
    check_state,
    damaged_state,
    fault_point,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from marginkit.train.config import (
    ConfigError,
    TrainConfig,
    group_options,
    inert_options,
    loss_kwargs,
    parse_classes,
    save_config,
)
from marginkit.train.datarecord import data_difference, unchecked_data, write_data_record
from marginkit.train.distributed import SINGLE, Distribution, check_several_processes
from marginkit.train.initfrom import (
    check_resumed_source,
    check_source_path,
    describe,
    initial_weights,
)
from marginkit.train.precision import TrainingPrecision, resolve_device
from marginkit.train.preprocessing import write_preprocessing
from marginkit.train.recipe import RECIPE_OPTIONS, apply_recipe
from marginkit.train.steplog import StepLog
from marginkit.train.verification import (
    find_verify_files,
    load_verification,
    save_best_checkpoint,
    verify_columns,
)

if TYPE_CHECKING:
    from marginkit.data.bundle import DataBundle, Split
    from marginkit.losses.head import MarginHead
    from marginkit.train.distributed import TrainingHead

__all__ = [
    "EpochCallback",
    "NonFiniteLossError",
    "RunFolderError",
    "TrainResult",
    "build_models",
    "differing_options",
    "fit",
    "learning_rate_at",
    "load_bundle",
    "planned_steps",
    "total_steps",
]

#: Config keys that may differ between a run folder's config and a resumed run's: the inert
#: options (where the data lives, ``threads``, ``device``: the checkpoint holds CPU tensors
#: and loads on any device, ...), the ``distributed`` group and ``out``; ``precision`` may
#: not (a run's numbers depend on it).
_RESUME_FREE_KEYS = frozenset({"out", *inert_options(), *group_options("distributed")})

#: ``on_epoch(row, backbone, head)``: called by :func:`fit` after each epoch with the epoch's
#: metrics row (as in ``metrics.json``); it must not change the networks. ``head`` is the
#: run's head, or on several processes each rank's ``ShardedHead`` (its class rows).
EpochCallback = Callable[[dict[str, Any], nn.Module, nn.Module], None]


class NonFiniteLossError(MarginkitError, RuntimeError):
    """The loss (or the embeddings) became NaN or infinite during training."""


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        backbone: the trained backbone (eval mode).
        head: the trained margin head (eval mode); on several processes this rank's
            ``ShardedHead`` (its class rows: the whole head is never gathered; the
            checkpoint holds every rank's).
        bundle: the data the run trained on.
        history: one metrics dict per epoch.
        final: the final metrics (as in ``metrics.json``).
        run_dir: the run folder, or None for an in-memory run.
        config: the options the run used (its recipe applied, as in ``config.yaml``).
    """

    backbone: nn.Module
    head: TrainingHead
    bundle: DataBundle
    history: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    config: TrainConfig | None = None


# ------------------------------------------------------------------------- set-up
def load_bundle(config: TrainConfig, progress: bool = True) -> DataBundle:
    """Load the data set named by ``config`` (``marginkit.data.load_dataset``)."""
    from marginkit.data import load_dataset

    options = config.group("data")  # the data group whole: no data option left out
    name, image_size = options.pop("dataset"), options["image_size"]
    options["classes"] = None if config.classes is None else parse_classes(config.classes)
    # (height, width), or one value (--image-size 112): a square
    if isinstance(image_size, int):
        options["image_size"] = (image_size, image_size)
    elif isinstance(image_size, list):
        options["image_size"] = tuple(image_size)
    return load_dataset(
        name, **options, seed=config.seed, progress=progress, workers=config.workers
    )


def build_models(config: TrainConfig, bundle: DataBundle) -> tuple[nn.Module, MarginHead]:
    """The backbone and head of ``config`` for ``bundle``, initialised from ``config.seed``."""
    from marginkit.losses import build
    from marginkit.models import build_backbone

    torch.manual_seed(config.seed)
    # a BackboneError (images too small for it; a spec giving no nn.Module) is the user's
    backbone = build_backbone(config.backbone, tuple(bundle.input_shape), config.embedding_dim)
    kwargs = loss_kwargs(config.loss_args)
    try:
        head = build(
            config.loss,
            num_classes=bundle.num_classes,
            embedding_dim=config.embedding_dim,
            **kwargs,
        )
    except (TypeError, ValueError) as error:  # an unknown, mistyped or out-of-range argument
        raise ConfigError(f"loss {config.loss!r}: {error}") from None
    return backbone, head


def _check_names(config: TrainConfig, resume: bool) -> None:
    """Fail fast (before any data is read) on unknown backbone or loss names, on a
    backbone import spec whose module or callable cannot be found, and on an ``init_from``
    that lies in the run's own folder or, unless resuming, does not exist."""
    LOSSES.canonical(config.loss)
    BACKBONES.get(config.backbone)  # a spec's module is imported here
    check_source_path(config, resume)


def _comparable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in _RESUME_FREE_KEYS}


def _check_not_in_use(run_dir: Path) -> None:
    """Refuse a run folder whose lock another live training holds, naming its PID."""
    holder = lock_holder(run_dir)
    if holder is not None:
        raise RunFolderError(
            f"out folder {run_dir} is in use by another training (PID {holder}); wait for it "
            "to finish or choose another folder"
        )


def _same_option(key: str, now: Any, there: Any) -> bool:
    """Whether option ``key`` of a new run (``now``) matches the saved run's (``there``).

    The saved config is resolved by its recipe; an option the new run leaves to the recipe
    (None) matches, and so do loss arguments the recipe added.
    """
    if now is None and key in RECIPE_OPTIONS:
        return True
    if key == "loss_args" and isinstance(now, dict) and isinstance(there, dict):
        return all(name in there and there[name] == value for name, value in now.items())
    return bool(now == there)


def differing_options(saved: TrainConfig, current: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """The options in which a new run (``current``) differs from a saved, resolved one.

    Options that may change when a run is resumed (``out``, ``threads``, ``log_every``,
    where the data lives) are ignored, and so are options ``current`` leaves to the recipe
    that ``saved`` holds resolved (:func:`_same_option`).

    Returns:
        ``{name: (saved value, current value)}``, empty when they describe the same run.
    """
    old, new = _comparable(saved.to_dict()), _comparable(current.to_dict())
    return {
        key: (old.get(key), new[key])
        for key in new
        if not _same_option(key, new[key], old.get(key))
    }


def _check_run_folder(run_dir: Path, config: TrainConfig, resume: bool, overwrite: bool) -> bool:
    """Decide what to do with ``run_dir``; True when a previous run is to be resumed.

    Raises:
        RunFolderError: ``resume`` and the folder holds no run, or one of a newer format
            (:meth:`~marginkit.runfolder.RunFolder.check_format`); it holds a run and neither
            ``resume`` nor ``overwrite`` is given; it holds a different run; it holds files
            marginkit did not write (named) and no run, or ``overwrite`` is given (which
            removes only what marginkit wrote); it holds no run and ``overwrite`` is not
            given. A message suggests ``--overwrite`` only where it would be accepted.
    """
    entries = run_entries(run_dir)
    run = RunFolder(run_dir)
    holds_run = run.config.is_file()
    if resume and holds_run:
        run.check_format()  # a run of a newer format is not continued (--overwrite replaces it)
    if resume and not holds_run:
        raise RunFolderError(
            f"--resume: {run_dir} holds no run (no config.yaml); check the path, or leave "
            "out --resume to start a new run there"
        )
    foreign = foreign_entries(entries)  # --overwrite never removes these
    if foreign and (overwrite or not holds_run):
        what = "besides its run" if holds_run else "and holds no run (no config.yaml)"
        hint = "move them away or choose another folder" if holds_run else "choose another folder"
        raise RunFolderError(
            f"{'--overwrite: ' if overwrite else ''}out folder {run_dir} holds files marginkit "
            f"did not write ({listed(foreign)}) {what}; {hint}"
        )
    if not entries or overwrite:
        return False
    if not holds_run:  # only marginkit's files: a run stopped before its config.yaml
        raise RunFolderError(
            f"out folder {run_dir} holds no run (no config.yaml), only files of one that "
            "never started; pass --overwrite to replace them or choose another folder"
        )
    if not resume:
        replace = "--overwrite to replace it"
        if foreign:
            replace += f" once {listed(foreign)} (not marginkit's) are moved away"
        raise RunFolderError(
            f"out folder {run_dir} already holds a run; pass --resume to continue it or {replace}"
        )
    from marginkit.train.config import load_config

    differing = differing_options(load_config(run.config), config)
    if differing:
        shown = ", ".join(
            f"{k} ({old!r} there, {new!r} now)" for k, (old, new) in differing.items()
        )
        raise RunFolderError(f"out folder {run_dir} holds a different run: {shown}")
    return True


def _check_same_data(run_dir: Path, bundle: DataBundle, stream: TextIO) -> None:
    """Refuse to resume the run in ``run_dir`` on other data than those it recorded (one
    line naming what differs); say so on ``stream`` (even when quiet) when they cannot be
    checked (:func:`~marginkit.train.datarecord.unchecked_data`)."""
    unchecked = unchecked_data(run_dir, bundle)
    if unchecked is not None:
        print(f"warning: {unchecked}; resuming without checking them", file=stream, flush=True)
        return
    difference = data_difference(run_dir, bundle)
    if difference is not None:
        raise RunFolderError(
            f"--resume: the data differ from the run's in {run_dir} ({difference}); resume it "
            "on its own data or start a new run"
        )


def _clear_run_folder(run_dir: Path) -> None:
    """``--overwrite``: remove what marginkit wrote in the run folder (its lock file stays;
    :func:`_check_run_folder` refused a folder holding anything else)."""
    foreign = foreign_entries(run_entries(run_dir))
    for entry in run_entries(run_dir):
        if entry in foreign:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as error:
            raise OutputError("remove", entry, error) from None


def _resume_point(run_dir: Path, stream: TextIO) -> Any:
    """The newest intact checkpoint of ``run_dir`` (loaded), or None to start afresh.

    Damaged checkpoints newer than it are reported on ``stream`` (even when quiet) and moved
    aside to ``checkpoints/damaged-epoch-NNNN`` (kept for inspection, never deleted, never
    used again).
    """
    search = find_checkpoint(run_dir)
    if search.damaged:
        then = "resuming from it" if search.folder is not None else "starting afresh"
        print(f"warning: {search.report()}; {then}", file=stream, flush=True)
        for folder in search.damaged_folders:
            aside = folder.with_name(f"damaged-{folder.name}")
            copy = 1
            while aside.exists():
                copy += 1
                aside = folder.with_name(f"damaged-{folder.name}.{copy}")
            try:
                folder.rename(aside)
            except OSError as error:
                raise OutputError("move aside", folder, error) from None
    return None if search.folder is None else load_checkpoint(search.folder)


def _optimizer(config: TrainConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW; weight decay on matrices/kernels only (dim >= 2)."""
    decay = [p for p in parameters if p.dim() >= 2]
    no_decay = [p for p in parameters if p.dim() < 2]
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    lr = config.learning_rate()
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def _training_set(config: TrainConfig, bundle: DataBundle, pin_memory: bool = False) -> BatchSource:
    """The samples a run trains on (in memory, or streamed from files): the training split,
    or its seeded class-balanced ``train_fraction`` subset; ``pin_memory``: streamed batches
    page-locked for a fast copy to a GPU."""
    source = BatchSource(bundle.train, pin_memory=pin_memory)
    if config.train_fraction < 1.0:
        from marginkit.data.options import derived_generator, stratified_split

        keep = stratified_split(
            source.labels, config.train_fraction, derived_generator(config.seed, "train_fraction")
        )[1]
        source = source.subset(keep)
    return source


def _epoch_length(config: TrainConfig, count: int, world: int = 1) -> tuple[int, int]:
    """``(batch size of a step, steps per epoch)`` for ``count`` training samples split over
    ``world`` processes (each takes its part of every batch, :meth:`Distribution.rows`).

    A step's batch is ``accumulate x batch_size`` samples (``--accumulate``: that many
    micro-batches, :mod:`marginkit.train.accumulation`), at most ``count``. A last batch
    that would leave a process fewer than 2 rows (one process: a lone sample) is dropped:
    batch norm cannot train on one row, and a process cannot step on none.

    Raises:
        ConfigError: several processes and a batch that gives one of them fewer than 2 rows.
    """
    micro_batch_size = min(config.batch_size, count)
    if world > 1 and micro_batch_size // world < 2:
        raise ConfigError(
            f"batch_size: {micro_batch_size} rows cannot give each of {world} processes 2 or "
            f"more; use --batch-size {2 * world} or more"
        )
    batch_size = min(config.batch_size * config.accumulate, count)
    steps_per_epoch = math.ceil(count / batch_size)
    last = count % batch_size
    if last and last // world < 2:  # a part of one row (or none): the batch is dropped
        steps_per_epoch -= 1
    return batch_size, steps_per_epoch


def planned_steps(config: TrainConfig, bundle: DataBundle) -> int:
    """The number of optimiser steps :func:`fit` will take for ``config`` on ``bundle``."""
    count = len(_training_set(config, bundle))
    return total_steps(config, _epoch_length(config, max(count, 2))[1])


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The run's length in optimiser steps: ``epochs`` epochs, capped at ``max_steps``."""
    total = config.epochs * steps_per_epoch
    return total if config.max_steps is None else min(total, config.max_steps)


def learning_rate_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of training step ``step`` (0-based) of the run.

    Linear warm-up over ``warmup_epochs``, then ``step`` (x ``lr_gamma`` at each
    milestone epoch), ``cosine`` (half a cosine period from the peak to 0 at the run's last
    step, :func:`total_steps`) or ``constant``.
    """
    peak = config.learning_rate()
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return peak * (step + 1) / warmup
    if config.lr_schedule == "step":
        epoch = step // steps_per_epoch
        passed = sum(1 for milestone in config.lr_milestones() if epoch >= milestone)
        return peak * config.lr_gamma**passed
    if config.lr_schedule == "cosine":
        total = max(1, total_steps(config, steps_per_epoch) - warmup)
        return 0.5 * peak * (1.0 + math.cos(math.pi * (step - warmup) / total))
    return peak


# ----------------------------------------------------------------------- evaluation
@torch.no_grad()
def _accuracy(
    backbone: nn.Module,
    head: TrainingHead,
    dataset: Split | None,
    num_classes: int,
    batch_size: int,
    device: torch.device,
    part: Distribution = SINGLE,
) -> float | None:
    """Top-1 accuracy (a fraction) of ``head`` on the known-class samples of ``dataset``, in
    float32, each batch copied to ``device`` (the networks') and the count kept there (one
    wait for the device, at the end); ``part``: each rank embeds its share of them, the
    sharded head's distributed arg-max (``ShardedHead.predict``) classifies them, and the
    counts are summed."""
    if dataset is None:
        return None
    source = BatchSource(dataset)
    known = source.labels < num_classes
    if not bool(known.any()):
        return None
    total = int(known.sum())
    source = source.subset(torch.nonzero(known).flatten()[part.rows(total)])
    was_training = backbone.training, head.training
    backbone.eval()
    head.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for inputs, labels in _evaluation_batches(source, batch_size, part, total):
        if inputs is None:  # a rank whose share is shorter: none this time
            embeddings = torch.zeros(0, int(head.embedding_dim), device=device)
        else:
            embeddings = backbone(inputs.to(device, non_blocking=True))  # (b, D)
        correct += (_top1(head, embeddings) == labels.to(device)).sum()
    backbone.train(was_training[0])
    head.train(was_training[1])
    return part.total(int(correct)) / total


def _evaluation_batches(
    source: BatchSource, batch_size: int, part: Distribution, total: int
) -> Iterator[tuple[torch.Tensor | None, torch.Tensor]]:
    """``source`` in order, ``batch_size`` at a time; on several processes as many batches
    on every rank (the arg-max is a collective), the last ones without inputs (None) where
    a rank's share is shorter."""
    batches = 0
    for inputs, labels in source.in_order(batch_size):
        batches += 1
        yield inputs, labels
    most = -(-total // part.world)  # the largest share (Distribution.rows)
    for _ in range(batches, -(-most // batch_size) if part.several else 0):
        yield None, torch.zeros(0, dtype=torch.long)


def _top1(head: TrainingHead, embeddings: torch.Tensor) -> torch.Tensor:
    """(b,) the whole head's top-1 classes of (b, D) embeddings: a sharded head's by its
    distributed arg-max (a collective), a whole head's from its (b, C) scores."""
    from marginkit.distributed import ShardedHead

    if isinstance(head, ShardedHead):
        return head.predict(embeddings)
    return head.logits(embeddings).argmax(1)


# ------------------------------------------------------------------- run-folder logs
_CSV_FIELDS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "validation_accuracy",
    "test_accuracy",
    "images_per_second",
    "epoch_time",
    "wall_time",
]


def _write_logs(
    run_dir: Path, config: TrainConfig, history: list[dict[str, Any]], final: dict[str, Any]
) -> None:
    """metrics.json and log.csv from the history (rewritten whole, atomically)."""
    run = RunFolder(run_dir)
    run.write_metrics(Metrics(config=config.to_dict(), epochs=history, final=final))
    names = sorted({name for row in history for name in row.get("hyperparameters", {})})
    sets = list(dict.fromkeys(n for row in history for n in _verified(row)))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_FIELDS + names + [c for n in sets for c in verify_columns(n)])
    for row in history:
        values = [row.get(name) for name in _CSV_FIELDS]
        values += [row.get("hyperparameters", {}).get(name) for name in names]
        for name in sets:
            figures = _verified(row).get(name, {})
            values += [figures.get("accuracy"), figures.get("auc")]
        writer.writerow(["" if v is None else v for v in values])
    run.write_log(buffer.getvalue())


def _verified(row: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The verification figures at the end of an epoch's row, by set (empty: none)."""
    record = row.get("verification")
    return record["sets"] if isinstance(record, dict) else {}


def _tensorboard_writer(run_dir: Path | None) -> Any:
    """A TensorBoard SummaryWriter on ``RUN/tensorboard`` when tensorboard is installed."""
    import importlib.util

    if run_dir is None or importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(RunFolder(run_dir).tensorboard))


def _format_hyperparameters(values: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.4g}" for name, value in values.items())


# ------------------------------------------------------------------------------ fit
@dataclass
class _Run:
    """One training run while :func:`fit` trains it: the networks, the data in memory, the
    optimiser state and the outputs (run folder, logs, progress)."""

    config: TrainConfig  # resolved by its recipe, as in config.yaml
    bundle: DataBundle
    backbone: nn.Module
    head: TrainingHead  # this rank's: the whole head, or its shard
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # the order and augmentation of batches
    batches: BatchSource  # the training samples, in memory or streamed
    batch_size: int  # a step's: accumulate x micro_batch_size (at most the samples)
    micro_batch_size: int  # a forward pass's (--batch-size)
    steps_per_epoch: int
    run_steps: int  # the whole run's optimiser steps
    run_dir: Path | None
    say: Callable[[str], None]
    stream: TextIO
    precision: TrainingPrecision  # the device, autocast, gradient scaler and clipping
    model: nn.Module  # what a step calls: the backbone, or its DDP wrapper
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0  # optimiser steps taken
    start_epoch: int = 0
    last_checkpoint: str = "none (no epoch finished)"
    bar: Any = None  # marginkit.progress.Progress
    steps_log: Any = None  # StepLog
    writer: Any = None  # TensorBoard SummaryWriter, or None
    wall_start: float = 0.0
    verification: Any = None  # TrainingVerification (--verify), or None
    part: Distribution = SINGLE  # this process's rank of the run's processes
    init_from: dict[str, Any] | None = None  # where --init-from's weights came from

    def frozen(self, epoch: int) -> bool:
        """Whether the backbone is frozen in ``epoch`` (0-based): --freeze-backbone-epochs."""
        return epoch < self.config.freeze_backbone_epochs

    @property
    def epochs(self) -> int:
        return math.ceil(self.run_steps / self.steps_per_epoch)


@dataclass
class _Tally:
    """The running loss and accuracy of the epoch being trained."""

    start: float = field(default_factory=time.perf_counter)
    loss_sum: float = 0.0  # sum of the batches' mean losses x their sizes, in float64
    correct: int = 0
    seen: int = 0
    lr: float = 0.0  # the last step's
    train_time: float = 0.0  # seconds of training steps, set at the end of the epoch
    verification: dict[str, Any] | None = None  # --verify at the epoch's end
    verify_time: float = 0.0  # seconds of verification, not counted as training
    verification_steps: list[dict[str, Any]] = field(default_factory=list)  # within it

    def add(self, loss: float, correct: int, count: int) -> None:
        """Count a batch of ``count`` samples: its mean loss and how many it got right."""
        self.loss_sum += loss * count
        self.correct += correct
        self.seen += count

    @property
    def loss(self) -> float:
        return self.loss_sum / self.seen

    @property
    def accuracy(self) -> float:
        return self.correct / self.seen

    def text(self) -> str:
        return f"loss {self.loss:.4f} acc {100.0 * self.accuracy:.2f}%"


def fit(
    config: TrainConfig,
    *,
    bundle: DataBundle | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``config.backbone`` + ``config.loss`` on ``config.dataset``.

    With ``config.out`` set, the run folder receives ``config.yaml`` (the resolved config),
    ``preprocessing.json`` (input shape, normalisation and crop, for embedding new images), a
    checkpoint after every epoch, ``metrics.json`` and ``log.csv`` (one row per epoch),
    ``steps.csv`` (one row per step: loss, learning rate, hyper-parameters) and TensorBoard
    events when ``tensorboard`` is installed (the ``tensorboard`` extra). The folder is
    locked (``RUN/.lock``) while training.

    Args:
        config: the run's options.
        bundle: a ``marginkit.data.DataBundle`` to train on instead of loading
            ``config.dataset`` (tests, notebooks).
        resume: continue the run in ``config.out`` from its newest intact checkpoint (a
            run without one starts from scratch; a folder holding no run is an error), on
            the data it recorded (``data.json``, :mod:`marginkit.train.datarecord`).
        overwrite: replace the run in ``config.out``: what marginkit wrote there is
            removed; a folder that also holds other files is refused, naming them.
        progress: show progress: on a terminal a bar with the ETA, elsewhere a line every
            ``config.log_every`` steps (loss, accuracy, lr, hyper-parameters, images/s, ETA);
            and a line per epoch.
        stream: where progress goes (default ``sys.stderr``).
        on_epoch: called after each epoch as ``on_epoch(row, backbone, head)`` with the
            epoch's metrics row, once the epoch's checkpoint is written (snapshots of the
            features during training, progress bars); it must not change the networks.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError, marginkit.data.DataError, ValueError: bad options or data, before any
            file is written.
        RunFolderError: ``config.out`` is in use by another training (the message names
            its PID), holds a different run (other settings, or ``resume`` on other
            data, naming what differs), holds a run and neither ``resume`` nor
            ``overwrite`` is given, holds no run and ``resume`` is, or holds files marginkit
            did not write and ``overwrite`` is given or it holds no run.
        NonFiniteLossError: the loss became NaN/inf; names the epoch, the step and the last
            finite checkpoint.
        OutputError: a file or folder cannot be written (no space, read-only, not a folder,
            no permission): one line naming it.
    """
    with contextlib.ExitStack() as cleanup:  # releases the run lock, closes the logs
        # set-up: data, recipe, networks, optimiser; the run folder (resume) and the logs
        run = _set_up(config, bundle, resume, overwrite, progress, stream, cleanup)
        for epoch in range(run.start_epoch, run.epochs):
            # one shuffled pass of optimiser steps
            tally = _train_epoch(run, epoch)
            # evaluate, log, checkpoint, call back
            _end_epoch(run, epoch, tally, on_epoch)
        return _finish(run)


def _set_up(
    config: TrainConfig,
    bundle: DataBundle | None,
    resume: bool,
    overwrite: bool,
    progress: bool,
    stream: TextIO | None,
    cleanup: contextlib.ExitStack,
) -> _Run:
    """Everything before the first step; whatever can fail on bad input fails before any
    file is written."""
    stream = sys.stderr if stream is None else stream
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    part = Distribution.current()  # several processes: only rank 0 reports and writes
    progress = progress and part.is_main
    _check_names(config, resume)
    device = resolve_device(config.device)  # no such device, or fp16 on the CPU: fail now
    precision = TrainingPrecision.create(device, config.precision, config.clip_grad_norm)
    if part.several:
        check_several_processes(config)
    run_dir = None if config.out is None else Path(config.out)
    if run_dir is not None and part.is_main:
        _check_not_in_use(run_dir)
        _check_run_folder(run_dir, config, resume, overwrite)
    verify_files = find_verify_files(config)  # a missing one fails before the data is read
    if bundle is None:
        bundle = load_bundle(config, progress=progress)
    # what the run uses, in config.yaml
    config = apply_recipe(config, bundle.num_classes, bundle.input_shape)
    verification = load_verification(config, bundle, verify_files, progress)  # read once
    backbone, whole = build_models(config, bundle)  # on the CPU, from the seed
    # --init-from: trained weights instead (not for a run resumed from its checkpoint)
    init = initial_weights(config, run_dir, resume, (backbone, whole), bundle)
    backbone.to(device)  # the same initial weights on every device
    head = part.shard_head(whole.to(device))  # this rank's class rows (all for one process)
    batches = _training_set(config, bundle, pin_memory=device.type == "cuda")
    count = len(batches)
    if count < 2:
        raise ConfigError(f"dataset {config.dataset!r} has {count} training samples; need >= 2")
    batch_size, steps_per_epoch = _epoch_length(config, count, part.world)
    run = _Run(
        config=config,
        bundle=bundle,
        backbone=backbone,
        head=head,
        optimizer=_optimizer(config, [*backbone.parameters(), *head.parameters()]),
        generator=torch.Generator().manual_seed(config.seed),
        batches=batches,
        batch_size=batch_size,
        micro_batch_size=min(config.batch_size, count),
        steps_per_epoch=steps_per_epoch,
        run_steps=total_steps(config, steps_per_epoch),
        run_dir=run_dir if part.is_main else None,
        say=(lambda text: print(text, file=stream, flush=True)) if progress else (lambda _: None),
        stream=stream,
        precision=precision,
        verification=verification,
        part=part,
        model=part.wrap_backbone(backbone),
        init_from=init,
    )
    if init is not None:
        run.say(describe(init))
    if run_dir is not None and part.is_main:
        _open_run_folder(run, resume, overwrite, cleanup)
    elif run_dir is not None:  # another rank: restores what rank 0 resumes from
        _follow_run_folder(run)
    if (
        config.freeze_backbone_epochs > run.start_epoch
    ):  # said after "resuming ...", if still to come
        first, last = run.start_epoch + 1, config.freeze_backbone_epochs
        run.say(f"backbone frozen (eval mode) for epochs {first}-{last}")
    if verification is not None:
        verification.restore(run.history)  # the best so far of a resumed run
    head.set_total_steps(run.run_steps)  # run-relative schedules follow the run's length
    _open_logs(run, progress, cleanup)
    return run


def _open_run_folder(
    run: _Run, resume: bool, overwrite: bool, cleanup: contextlib.ExitStack
) -> None:
    """Lock the run folder, clear it (``overwrite``) or restore its newest intact checkpoint
    (``resume``), and write ``config.yaml`` and empty logs."""
    run_dir = run.run_dir
    assert run_dir is not None
    make_folder(run_dir)
    cleanup.enter_context(held(run_dir))
    # checked again under the lock: another training may have written in the meantime
    resuming = _check_run_folder(run_dir, run.config, resume, overwrite)
    if resuming:
        _check_same_data(run_dir, run.bundle, run.stream)
    if overwrite:
        _clear_run_folder(run_dir)
    checkpoint = _resume_point(run_dir, run.stream) if resuming else None
    run.part.share(None if checkpoint is None else str(checkpoint.path))  # to the other ranks
    if checkpoint is not None:
        _restore(run, checkpoint)
        run.say(f"resuming {run_dir} after epoch {run.start_epoch} (step {run.step})")
    folder = RunFolder(run_dir)
    save_config(run.config, folder.config)
    folder.write_format()  # a run of an earlier format is continued in this one
    if not folder.data.is_file():  # a new run (an older one: recorded from now on)
        write_data_record(run_dir, run.bundle)
    if run.init_from is not None:  # the weights it starts from (again, without a checkpoint)
        folder.write_init_from(run.init_from)
    elif checkpoint is not None:  # resumed: its checkpoint's weights, not the source's
        check_resumed_source(run.config, run_dir, run.stream)
    write_preprocessing(run_dir, run.bundle, run.config.dataset)  # embed/export need no data
    _write_logs(run_dir, run.config, run.history, {})


def _follow_run_folder(run: _Run) -> None:
    """A rank other than 0: restore the checkpoint rank 0 resumes from (if any)."""
    path = run.part.share(None)
    if path is not None:
        _restore(run, load_checkpoint(Path(path)))


def _restore(run: _Run, checkpoint: Any) -> None:
    """Continue from ``checkpoint``: weights (this rank's head rows), this rank's optimiser
    and RNG states (resharded from a run on another number of processes), the batches'
    generator, the history and the step."""
    folder = checkpoint.path
    check_state(folder, checkpoint.state, resumable=True)  # keys and types, one line if not
    run.last_checkpoint = str(folder)
    run.part.load_networks(checkpoint, run.backbone, run.head)  # this rank's rows only
    optimizer_state, rng_state = run.part.own_state(checkpoint, run.optimizer, run.head)
    try:
        run.optimizer.load_state_dict(optimizer_state)  # to the parameters' device
    except (ValueError, KeyError, TypeError) as error:  # groups or parameters that differ
        raise damaged_state(folder, "its optimizer state does not fit the run", error) from None
    run.precision.load_state_dict(checkpoint.state)  # fp16's scaler, the CUDA RNG
    try:
        run.generator.set_state(checkpoint.state["generator"])
        torch.set_rng_state(rng_state)
    except RuntimeError as error:  # a byte tensor of the wrong size (CPU states only)
        raise damaged_state(folder, "a malformed generator state", error) from None
    # accuracies as fractions, also in a checkpoint an earlier version wrote in percent
    unit = checkpoint.state.get("accuracy_unit")  # (upgraded in marginkit.runfolder)
    run.history = rows_in_fractions(list(checkpoint.state["history"]), unit)
    run.step = int(checkpoint.state["step"])
    run.start_epoch = checkpoint.epoch


def _open_logs(run: _Run, progress: bool, cleanup: contextlib.ExitStack) -> None:
    """TensorBoard (when installed), ``steps.csv`` and the progress bar of ``run``."""
    run.writer = _tensorboard_writer(run.run_dir)
    if run.writer is not None:
        cleanup.callback(run.writer.close)
    names = list(run.head.hyperparameters())
    extra = [] if run.verification is None else run.verification.columns()
    run.steps_log = cleanup.enter_context(StepLog(run.run_dir, names, run.step, extra))
    run.bar = cleanup.enter_context(
        Progress(
            run.run_steps,
            "training",
            enabled=progress,
            stream=run.stream,
            every=0,
            initial=run.step,
            unit="step",
        )
    )
    run.wall_start = time.perf_counter() - (run.history[-1]["wall_time"] if run.history else 0.0)


def _train_epoch(run: _Run, epoch: int) -> _Tally:
    """One shuffled pass over the training set (or what is left of the run's steps).

    Returns:
        The epoch's training loss, accuracy, last lr and time.
    """
    config, optimizer = run.config, run.optimizer
    run.backbone.train(not run.frozen(epoch))  # frozen: eval mode, its BN statistics kept
    run.head.train()
    tally = _Tally()
    batches = min(run.steps_per_epoch, run.run_steps - run.step)
    # the batches of a randperm drawn from run.generator: from memory or decoded by workers;
    # on several processes only this rank's rows of each (step_rows)
    rows = _own_rows(run)
    epoch_batches = run.batches.epoch(run.generator, run.batch_size, batches, rows)
    for batch_index, (x, y) in enumerate(epoch_batches):  # (b, *input_shape), (b,)
        # the global batch's size; this rank's rows of its micro-batches (one without
        # --accumulate), augmented as the global batch (the same draws on every rank)
        count = min(run.batch_size, len(run.batches) - batch_index * run.batch_size)
        if run.bundle.augment:
            from marginkit.data import augment_batch

            own = None if rows is None else rows(count)  # (b,)
            x = augment_batch(x, run.generator, rows=own, batch_size=None if own is None else count)
        parts = micro_batches(x, y, count, run.micro_batch_size, run.part)
        # the step: lr, forward, loss (advances the head's schedules), backward, update
        tally.lr = learning_rate_at(config, run.step, run.steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = tally.lr
        loss, correct = _step(run, epoch, batch_index, parts)  # global mean, this rank's
        run.step += 1
        # the running figures and the step's log
        tally.add(loss, run.part.total(correct), count)
        fault_point("step", run.step)
        verified = _verify(run, epoch, tally, last_of_epoch=batch_index == batches - 1)
        _report_step(run, epoch, batch_index, loss, tally, verified)
    tally.train_time = time.perf_counter() - tally.start - tally.verify_time
    return tally


def _own_rows(run: _Run) -> Callable[[int], torch.Tensor] | None:
    """A step's size -> the positions of this rank's rows in it (:func:`step_rows`); None
    for one process (every row)."""
    if not run.part.several:
        return None
    part, micro_batch_size = run.part, run.micro_batch_size
    return lambda total: step_rows(total, micro_batch_size, part)


def _step(run: _Run, epoch: int, batch_index: int, parts: list[MicroBatch]) -> tuple[float, int]:
    """One optimiser step on a batch, on the run's device and in its precision: the forward
    and backward pass of each of its micro-batches (one without ``--accumulate``), each
    loss weighted by its micro-batch's share of the batch, the gradients added up (on
    several processes summed over them with the last one's backward pass), then the update.

    The loop waits for the device once per step (on CUDA; the head's own input checks and
    the per-step log's hyper-parameters may add theirs): the loss and the number of samples
    classified correctly are read together after the backward passes are queued and before
    the update, so a non-finite loss stops the run without reaching the weights.

    Args:
        parts: this process's rows of each micro-batch, on the CPU.

    Returns:
        The batch's mean loss and its number of correctly classified samples.

    Raises:
        NonFiniteLossError: the embeddings or the loss is NaN or infinite.
    """
    run.optimizer.zero_grad(set_to_none=True)
    figures = []
    with training_head(run.head).one_step(len(parts)):  # the head counts one step
        for index, micro in enumerate(parts):
            last = index == len(parts) - 1  # DDP sums the gradients in its backward pass
            with contextlib.nullcontext() if last else run.part.gradients_kept(run.model):
                loss, correct = _forward(run, epoch, batch_index, micro.inputs, micro.labels)
                if micro.share is not None:  # the gradient of the whole batch's mean
                    loss = loss * micro.share
                run.precision.backward(loss)
            figures.append(torch.stack([loss.detach(), correct.sum().to(loss.dtype)]))  # (2,)
    summed = figures[0] if len(figures) == 1 else torch.stack(figures).sum(dim=0)  # (2,)
    loss_value, correct_count = summed.tolist()  # the step's one wait for the device
    if not math.isfinite(loss_value):
        _fail(run, epoch, batch_index, "the loss")
    run.precision.step(run.optimizer)  # clipping, fp16's scaler, the update
    return loss_value, int(correct_count)


def _forward(
    run: _Run, epoch: int, batch_index: int, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and ``correct`` of one (micro-)batch, on the run's device.

    Args:
        inputs: (B, *input_shape) batch, on the CPU.
        labels: (B,) class indices, on the CPU.

    Returns:
        The scalar mean loss (over every process's rows) and (B,) bool, this process's.

    Raises:
        NonFiniteLossError: the embeddings are NaN or infinite.
    """
    device, frozen = run.precision.device, run.frozen(epoch)
    inputs = inputs.to(device, non_blocking=True)  # (B, *input_shape); no copy on the CPU
    labels = labels.to(device, non_blocking=True)  # (B,)
    with run.precision.autocast(), torch.set_grad_enabled(not frozen):
        # (b, D), bf16/fp16 under autocast; DDP sums grads; frozen: no gradient, no update
        embeddings = (run.backbone if frozen else run.model)(inputs)
    try:
        return run.head.loss_and_correct(embeddings, labels)  # scalar, (B,)
    except ValueError:  # the head refuses non-finite embeddings (among other bad input)
        if not bool(torch.isfinite(embeddings).all()):
            _fail(run, epoch, batch_index, "the embeddings")
        raise


def _fail(run: _Run, epoch: int, batch_index: int, what: str) -> None:
    raise NonFiniteLossError(
        f"{what} became non-finite at epoch {epoch + 1}, step {run.step} "
        f"(batch {batch_index + 1} of {run.steps_per_epoch}); last finite checkpoint: "
        f"{run.last_checkpoint}"
    )


def _verify(run: _Run, epoch: int, tally: _Tally, *, last_of_epoch: bool) -> dict[str, float]:
    """Score the ``--verify`` sets when due (every ``verify_every`` steps, at the epoch's
    end), record them in ``tally`` and keep the best checkpoint.

    Returns:
        The figures as ``steps.csv`` columns (empty when not due).
    """
    verification = run.verification
    if verification is None or not verification.due(run.step, last_of_epoch):
        return {}
    start = time.perf_counter()
    # eval mode, no grad, no RNG; mode restored; each rank embeds its share with rank 0's
    # batch-norm statistics (the checkpoint's), rank 0 scores
    run.part.same_buffers(run.backbone)
    figures = verification.measure(run.backbone, run.part)
    tally.verify_time += time.perf_counter() - start
    record = {"step": run.step, "sets": figures}
    if last_of_epoch:
        tally.verification = record
    else:
        tally.verification_steps.append(record)
    shown = ", ".join(f"{n} {100 * f['accuracy']:.2f}%" for n, f in figures.items())
    run.bar.write(f"step {run.step}: verification accuracy (10-fold, flip) {shown}")
    if verification.improves(figures):  # the same on every rank (rank 0's figures)
        name = _keep_best(run, epoch, record)
        verification.best = {
            "set": verification.best_set,
            "accuracy": figures[verification.best_set]["accuracy"],
            "step": run.step,
            "epoch": epoch + 1,
            "checkpoint": name,
        }
    columns: dict[str, float] = {}
    for name, values in figures.items():
        columns.update(zip(verify_columns(name), (values["accuracy"], values["auc"]), strict=True))
    return columns


def _keep_best(run: _Run, epoch: int, record: dict[str, Any]) -> str | None:
    """Write the best checkpoint of the run folder (shard-local on several processes: each
    rank writes its rows); its name (None for an in-memory run, and on the ranks other than
    0)."""
    if run.config.out is None:
        return None
    if run.run_dir is None:  # another rank: its files, into rank 0's temporary folder
        _shard_writer(run, epoch + 1)(None)
        return None
    state = {
        "epoch": epoch + 1,  # the epoch in progress (complete when at its end)
        "step": run.step,
        "history": run.history,
        "accuracy_unit": ACCURACY_UNIT,
        "verification": record,
        "hyperparameters": run.head.hyperparameters(),
    }
    shards = _shard_writer(run, epoch + 1) if run.part.several else None
    head = None if run.part.several else run.head
    return save_best_checkpoint(run.run_dir, run.backbone, head, state, shards=shards).name


def _shard_writer(run: _Run, epoch: int) -> Callable[[Path | None], Any]:
    """This rank's part of a shard-local checkpoint (:meth:`Distribution.write_shards`)."""
    return lambda folder: run.part.write_shards(folder, run.head, run.optimizer, epoch)


def _save_checkpoint(run: _Run, epoch: int) -> None:
    """The checkpoint of ``epoch`` (1-based; an in-memory run writes none): the whole head
    and the optimiser in one process's; on several processes shard-local, each rank writing
    its head rows, optimiser state and RNG state, rank 0 the rest."""
    if run.config.out is None:
        return
    if run.run_dir is None:  # another rank: its files, into rank 0's temporary folder
        _shard_writer(run, epoch)(None)
        return
    state = {
        "epoch": epoch,
        "step": run.step,
        "generator": run.generator.get_state(),
        "history": run.history,
        "accuracy_unit": ACCURACY_UNIT,
        **run.precision.state_dict(),
    }
    if run.part.several:
        folder = save_checkpoint(
            run.run_dir, run.backbone, None, state, shards=_shard_writer(run, epoch)
        )
    else:
        state.update(optimizer=run.optimizer.state_dict(), torch_rng=torch.get_rng_state())
        folder = save_checkpoint(run.run_dir, run.backbone, run.head, state)
    run.last_checkpoint = str(folder)


def _report_step(
    run: _Run,
    epoch: int,
    batch_index: int,
    loss: float,
    tally: _Tally,
    verified: dict[str, float],
) -> None:
    """``steps.csv``, TensorBoard and the progress bar (or a line every ``log_every``)."""
    values, lr = run.head.hyperparameters(), tally.lr
    run.steps_log.add(run.step, epoch + 1, loss, lr, values, verified)
    if run.writer is not None:
        for name, value in verified.items():
            run.writer.add_scalar(f"verification/{name}", value, run.step)
    if run.writer is not None:
        run.writer.add_scalar("step/loss", loss, run.step)
        run.writer.add_scalar("step/lr", lr, run.step)
    running = tally.text()
    run.bar.update(postfix=f"epoch {epoch + 1}/{run.epochs} {running} lr {lr:.3g}")
    log_every = run.config.log_every
    if run.bar.interactive or not log_every or run.step % log_every:
        return
    rate = tally.seen / max(time.perf_counter() - tally.start, 1e-9)
    parts = (
        f"epoch {epoch + 1}/{run.epochs}",
        f"step {batch_index + 1}/{run.steps_per_epoch} {running} lr {lr:.3g}",
        _format_hyperparameters(values),
        f"{rate:.0f} img/s, ETA {format_seconds(run.bar.eta() or 0.0)}",
    )
    run.bar.write(" ".join(part for part in parts if part))


def _end_epoch(run: _Run, epoch: int, tally: _Tally, on_epoch: EpochCallback | None) -> None:
    """Evaluate, record and report the epoch; write its checkpoint; call ``on_epoch``."""
    bundle, networks, batch = run.bundle, (run.backbone, run.head), run.config.eval_batch_size
    device, part = run.precision.device, run.part  # each rank scores its share
    part.same_buffers(run.backbone)  # with rank 0's batch-norm statistics: the checkpoint's
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "step": run.step,
        "lr": tally.lr,
        "train_loss": tally.loss,
        "train_accuracy": tally.accuracy,
        "validation_accuracy": _accuracy(
            *networks, bundle.validation, bundle.num_classes, batch, device, part
        ),
        "test_accuracy": _accuracy(*networks, bundle.test, bundle.num_classes, batch, device, part),
        "images_per_second": tally.seen / tally.train_time,
        "hyperparameters": run.head.hyperparameters(),
    }
    if run.verification is not None:
        row["verification"] = tally.verification
        row["verification_steps"] = tally.verification_steps
    row["epoch_time"] = time.perf_counter() - tally.start
    row["wall_time"] = time.perf_counter() - run.wall_start
    run.history.append(row)
    run.bar.write(f"epoch {row['epoch']}/{run.epochs} done: {_epoch_summary(row)}")
    run.steps_log.flush()
    _save_checkpoint(run, row["epoch"])  # shard-local on several processes
    if run.run_dir is not None:
        _write_logs(run.run_dir, run.config, run.history, {})
    if run.writer is not None:
        for name in ("train_loss", "train_accuracy", "test_accuracy", "images_per_second"):
            if row[name] is not None:
                run.writer.add_scalar(name, row[name], row["epoch"])
        for name, value in row["hyperparameters"].items():
            run.writer.add_scalar(f"hyperparameters/{name}", value, row["epoch"])
    if on_epoch is not None:
        on_epoch(row, run.backbone, run.head)


def _epoch_summary(row: dict[str, Any]) -> str:
    shown = [f"train loss {row['train_loss']:.4f}", f"acc {100 * row['train_accuracy']:.2f}%"]
    for name in ("validation_accuracy", "test_accuracy"):
        if row[name] is not None:
            shown.append(f"{name.split('_')[0]} acc {100 * row[name]:.2f}%")
    shown += [
        _format_hyperparameters(row["hyperparameters"]),
        f"{row['images_per_second']:.0f} img/s",
        f"{row['epoch_time']:.1f} s",
    ]
    return ", ".join(part for part in shown if part)


def _finish(run: _Run) -> TrainResult:
    """The final metrics (``metrics.json``'s ``final``) and the trained networks."""
    history = run.history
    head = run.head  # this rank's: never gathered
    head_parameters = run.part.head_parameters(head)
    final = dict(history[-1]) if history else {}
    if history:
        final["images_per_second"] = sum(r["images_per_second"] for r in history) / len(history)
        final["parameters"] = {
            "backbone": sum(p.numel() for p in run.backbone.parameters()),
            "head": head_parameters,  # the whole head's, over the ranks' shards
        }
    if run.verification is not None:
        final["verification_best"] = run.verification.best
    if run.run_dir is not None:
        _write_logs(run.run_dir, run.config, history, final)
    run.backbone.eval()
    head.eval()
    return TrainResult(run.backbone, head, run.bundle, history, final, run.run_dir, run.config)
