"""Training configuration: one dataclass with every option, YAML I/O, and the loss-argument
language used by ``--loss-arg``.

Loss arguments (``--loss-arg NAME=VALUE``, or ``loss_args: {NAME: VALUE}`` in YAML) are the
head's hyper-parameters by name; :data:`LOSS_ARGUMENTS` says how a value is read (as
``marginkit train --help`` shows it). A schedule's text (``warmup:0.5:20%``) is read by
:func:`marginkit.schedules.parse_schedule`. The config keeps the text form (so it
round-trips through YAML); :func:`loss_kwargs` turns it into the objects the head takes.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from marginkit.errors import ConfigError
from marginkit.registry import BACKBONES, DATASETS, LOSSES
from marginkit.schedules import SCHEDULE_KINDS, build_schedule, parse_number, parse_schedule

__all__ = [
    "GROUPS",
    "LOSS_ARGUMENTS",
    "ConfigError",
    "TrainConfig",
    "group_options",
    "inert_options",
    "load_config",
    "loss_kwargs",
    "option_choices",
    "option_help",
    "parse_classes",
    "parse_loss_arg",
    "parse_value",
    "read_text_file",
    "save_config",
    "verify_set_name",
]


#: How a loss argument's value is read, as ``marginkit train --help`` shows it; ``{schedules}``
#: stands for the table of :data:`marginkit.schedules.SCHEDULE_FORMS`.
LOSS_ARGUMENTS = """\
Loss arguments (--loss-arg NAME=VALUE, or loss_args: {{NAME: VALUE}} in YAML) are the
head's hyper-parameters by name. A value is parsed as:

- true / false -> bool; an integer literal -> int; any other number -> float;
  pi, pi/4, 3*pi/8 -> that angle in radians;
- a schedule, KIND[:ARG[:ARG...]] with numeric (or pi-expression) arguments; a
  length written with % is a share of the run (warmup:0.5:20%: the margin reaches
  0.5 after the first 20 % of the training steps), otherwise a number of steps:

{schedules}

- any other single word (letters, digits, _) -> that text, for an option with named
  choices (fallback=continuous); the head says which words it takes.

Examples: margin=0.5, margin=warmup:0.5:1000, margin=warmup:0.5:20%, c=ramp,
c=adaptive:40%, c=pi/4, lambda_=sphereface, lambda_=power:1000:0.12:1:5,
bias=true, fallback=continuous."""

#: The forms of ``device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


# ---------------------------------------------------------------------------- config
#: The groups of :class:`TrainConfig`'s options, named here once; each field names its own
#: (``metadata["group"]``), and a consumer takes a group whole (:func:`group_options`,
#: :meth:`TrainConfig.group`) instead of listing its options:
#:
#: - ``data``: what data the run loads (:func:`marginkit.data.load_dataset`'s options);
#: - ``model``: the backbone; ``loss``: the head and its hyper-parameters;
#: - ``optimisation``: the recipe, the batch and the optimiser with its lr schedule;
#: - ``run``: the run's length (its budget), its starting point (the seed, or the trained
#:   weights of ``init_from``), reporting and folder;
#: - ``device``: where and how fast the run computes; ``distributed``: its processes;
#: - ``verification``: the verification sets scored during training.
GROUPS = (
    "data",
    "model",
    "loss",
    "optimisation",
    "run",
    "device",
    "distributed",
    "verification",
)


def _about(group: str, description: str, **flag: Any) -> dict[str, Any]:
    """The metadata of a :class:`TrainConfig` field: its group, and what the command line
    makes the option's flag and help from (:mod:`marginkit.cli.flags`).

    Args:
        group: the option's group, one of :data:`GROUPS` (``metadata["group"]``).
        description: the option's help, plain text ending with a full stop
            (``metadata["help"]``).
        **flag: ``inert`` (True: the option says where files are, how fast or how often the
            run reports, never what it computes: :func:`inert_options`); and how the flag
            differs from ``--<option-name>`` of the option's type: ``flag`` (its name),
            ``metavar``, ``repeat`` (True: the flag may be given again, each adding values),
            ``names`` (the registry whose names the help lists).
    """
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}; expected one of {', '.join(GROUPS)}")
    return {"group": group, "help": description, **flag}


@dataclass
class TrainConfig:
    """Every option of a training run (the ``marginkit train`` flags, the YAML keys).

    The options are flat (``config.lr``, ``TrainConfig(lr=0.1)``, one YAML key each); each
    belongs to one of the :data:`GROUPS` (its field's ``metadata["group"]``), which
    :meth:`group` returns whole. Each option's description is its field's
    ``metadata["help"]`` (:func:`option_help`), which ``marginkit train --help`` shows with
    the option's default.
    """

    dataset: str = field(
        default="digits",
        metadata=_about("data", "data set name (marginkit.registry.DATASETS).", names=DATASETS),
    )
    data_dir: str | None = field(
        default=None,
        metadata=_about(
            "data",
            "folder holding the data set's files (None: $MARGINKIT_DATA/<dataset> when that "
            "folder exists, else the download cache).",
            inert=True,
        ),
    )
    cache_dir: str | None = field(
        default=None,
        metadata=_about(
            "data", "download cache folder (None: the data package's default).", inert=True
        ),
    )
    download: bool = field(
        default=True, metadata=_about("data", "allow downloading missing files.", inert=True)
    )
    classes: str | list[int] | None = field(
        default=None,
        metadata=_about("data", 'class subset for open-set splits, e.g. "0-6" or [0, 2, 4].'),
    )
    label_noise: float = field(
        default=0.0, metadata=_about("data", "symmetric training-label noise rate in [0, 1).")
    )
    validation_fraction: float = field(
        default=0.0, metadata=_about("data", "share of the training data held out for validation.")
    )
    augment: bool | None = field(
        default=None, metadata=_about("data", "random crop + flip (None: the data set's default).")
    )
    image_size: int | list[int] | None = field(
        default=None,
        metadata=_about("data", "resize images to this size (None: the data set's default)."),
    )
    min_images_per_person: int = field(
        default=10,
        metadata=_about("data", "lfw: keep the DevTrain people with at least this many images."),
    )
    pairs_file: str = field(
        default="pairsDevTest.txt", metadata=_about("data", "LFW pairs file for verification.")
    )
    backbone: str = field(
        default="mlp",
        metadata=_about(
            "model",
            (
                "backbone name (marginkit.registry.BACKBONES), or an import spec "
                "module:callable for a network of one's own, called as "
                "callable(embedding_dim=D) (and input_shape=(C, H, W) when it takes that "
                "keyword); its module must be importable when the run is trained and evaluated."
            ),
            names=BACKBONES,
        ),
    )
    embedding_dim: int = field(default=64, metadata=_about("model", "embedding width D."))
    loss: str = field(
        default="softmax",
        metadata=_about("loss", "loss name or alias (marginkit.registry.LOSSES).", names=LOSSES),
    )
    loss_args: dict[str, Any] = field(
        default_factory=dict,
        metadata=_about(
            "loss",
            (
                "the head's hyper-parameters (values in the loss-argument language); the recipe "
                "adds its own under these."
            ),
            flag="--loss-arg",
            metavar="NAME=VALUE",
        ),
    )
    recipe: Literal["marginkit", "paper"] = field(
        default="marginkit",
        metadata=_about(
            "optimisation",
            '"marginkit" (AdamW, cosine decay, margins that warm up over the run, scales at '
            'least the NormFace bound) or "paper" (the papers\' SGD settings, constant margins, '
            "official step-based annealings); fills every option left None and the loss "
            "arguments not given (marginkit.train.recipe).",
        ),
    )
    epochs: int = field(
        default=10, metadata=_about("run", "number of passes over the training data.")
    )
    max_steps: int | None = field(
        default=None,
        metadata=_about(
            "run",
            "stop after this many optimiser steps (None: epochs full epochs); the run's length, "
            "which run-relative schedules follow, is then max_steps.",
        ),
    )
    init_from: str | None = field(
        default=None,
        metadata=_about(
            "run",
            "fine-tune: start the backbone from trained weights instead of the seed's: a run "
            "folder (its newest intact checkpoint), one of its checkpoints "
            "(RUN/checkpoints/best-SSSSSSS), a safetensors file (marginkit export --format "
            "safetensors), or a PyTorch state dict such as InsightFace arcface_torch's "
            "backbone.pth (read without running code; its IResNet names mapped to ours). The "
            "head starts from the source run's when it has the same classes, else from the "
            "seed (docs/fine-tuning.md); a resumed run continues from its checkpoint.",
            metavar="RUN|FILE",
        ),
    )
    train_fraction: float = field(
        default=1.0,
        metadata=_about(
            "run",
            "train on this share of the training split, a seeded class-balanced subset (1.0: "
            "all of it).",
        ),
    )
    batch_size: int = field(
        default=128,
        metadata=_about(
            "optimisation",
            "training batch size: the samples of one forward pass (over all processes); an "
            "optimiser step takes accumulate such batches.",
        ),
    )
    accumulate: int = field(
        default=1,
        metadata=_about(
            "optimisation",
            "gradient accumulation: each optimiser step adds up the gradients of this many "
            "micro-batches of batch_size, so the batch of a step is accumulate x batch_size "
            "(the same samples, loss and gradient as a run with that batch size); the lr "
            "schedule, the margins' schedules, clipping, steps.csv and checkpoints count "
            "optimiser steps. The statistics of the batch some heads use (AdaCos, AdaFace, "
            "CurricularFace) are each micro-batch's (docs/single-runs.md).",
            metavar="N",
        ),
    )
    eval_batch_size: int = field(default=512, metadata=_about("run", "batch size for evaluation."))
    optimizer: Literal["sgd", "adamw"] | None = field(
        default=None,
        metadata=_about(
            "optimisation",
            '"sgd" (momentum, the papers\' optimiser) or "adamw" (None: the recipe\'s).',
        ),
    )
    lr: float | None = field(
        default=None,
        metadata=_about(
            "optimisation", "peak learning rate (None: the recipe's; 0.1 for SGD, 1e-3 for AdamW)."
        ),
    )
    momentum: float = field(default=0.9, metadata=_about("optimisation", "SGD momentum."))
    weight_decay: float | None = field(
        default=None,
        metadata=_about(
            "optimisation",
            "decoupled for AdamW, L2 for SGD; applied to weight matrices and convolution "
            "kernels only (not to biases, batch-norm or PReLU parameters); None: the recipe's.",
        ),
    )
    lr_schedule: Literal["step", "cosine", "constant"] | None = field(
        default=None,
        metadata=_about(
            "optimisation",
            '"step" (x lr_gamma at each milestone), "cosine" (to 0 over the run, per step) or '
            '"constant" (None: the recipe\'s).',
        ),
    )
    milestones: list[int] | None = field(
        default=None,
        metadata=_about(
            "optimisation",
            "epochs at which the step schedule multiplies the lr by lr_gamma (None: at 50 % and "
            "75 % of the epochs).",
        ),
    )
    lr_gamma: float = field(
        default=0.1, metadata=_about("optimisation", "factor of the step schedule.")
    )
    warmup_epochs: int = field(
        default=0,
        metadata=_about(
            "optimisation", "linear learning-rate warm-up from 0 over this many epochs."
        ),
    )
    freeze_backbone_epochs: int = field(
        default=0,
        metadata=_about(
            "optimisation",
            "train the head alone for this many epochs first: the backbone's weights and "
            "batch-norm statistics stay as they start (it runs in eval mode, without "
            "gradients), then the whole network trains.",
        ),
    )
    clip_grad_norm: float | None = field(
        default=None,
        metadata=_about(
            "optimisation",
            "clip the total gradient norm of the backbone and the head to this value before "
            "each optimiser step (None: no clipping).",
        ),
    )
    seed: int = field(
        default=0, metadata=_about("run", "seed of initialisation, shuffling and augmentation.")
    )
    threads: int | None = field(
        default=None,
        metadata=_about("device", "torch CPU threads (None: torch's default).", inert=True),
    )
    device: str = field(
        default="auto",
        metadata=_about(
            "device",
            'where the networks, the batches and the metrics live: "auto" (CUDA when available, '
            'else the CPU), "cpu", "cuda" or "cuda:N"; a resumed run may change it.',
            inert=True,
        ),
    )
    precision: Literal["fp32", "bf16", "fp16"] = field(
        default="fp32",
        metadata=_about(
            "device",
            '"fp32", "bf16" (autocast of the backbone\'s forward to bfloat16, CPU or CUDA) or '
            '"fp16" (float16 autocast with a gradient scaler, CUDA only); the parameters stay '
            "float32 and the margin head computes in float32.",
        ),
    )
    workers: int = field(
        default=0,
        metadata=_about(
            "device",
            "folder/lfw/rec: 0 decodes the training images into memory before the first step; "
            "N > 0 keeps only their index and decodes batches lazily in N DataLoader worker "
            "processes (same inputs, same order, same augmentation, same weights; memory "
            "independent of the number of images). The tensor data sets (MNIST, CIFAR, SVHN, "
            "digits, glyphs) stay in memory.",
            inert=True,
        ),
    )
    nproc: int = field(
        default=1,
        metadata=_about(
            "distributed",
            "training processes started on this machine (gloo on CPU, NCCL on CUDA), each "
            "taking an equal part of every batch (batch_size is the global batch): a DDP "
            "backbone and the head's classes sharded across them (docs/distributed.md); under "
            "torchrun its processes are used instead.",
        ),
    )
    timeout: float = field(
        default=300.0,
        metadata=_about(
            "distributed",
            "seconds a process waits for the others in a collective step before it stops with "
            "an error naming itself (a rank that died or hangs).",
        ),
    )
    log_every: int = field(
        default=50,
        metadata=_about(
            "run", "steps between progress lines (0: only at the end of an epoch).", inert=True
        ),
    )
    verify: list[str] | None = field(
        default=None,
        metadata=_about(
            "verification",
            (
                "verification files (.bin or LFW-style pairs files) on which the backbone is "
                "scored during training (flip test-time augmentation, 10-fold accuracy and AUC "
                "in log.csv, steps.csv and metrics.json); a relative name not found as given is "
                "looked for in the data folder and $MARGINKIT_DATA/lfw, as by marginkit verify; "
                "repeat the flag for several files."
            ),
            metavar="FILE",
            repeat=True,
        ),
    )
    verify_every: int = field(
        default=0,
        metadata=_about(
            "verification",
            "steps between verifications besides the one at the end of each epoch (0: at the "
            "end of each epoch only).",
        ),
    )
    verify_best: str | None = field(
        default=None,
        metadata=_about(
            "verification",
            "the verify file whose 10-fold accuracy picks the best checkpoint "
            "(checkpoints/best-SSSSSSS, named in checkpoints/best), given as listed in verify "
            "or by its name (the file name without extension); None: the first.",
        ),
    )
    out: str | None = field(
        default=None,
        metadata=_about(
            "run", "run folder (None: train in memory, write nothing; the command line needs one)."
        ),
    )

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check every field's type and range; raise :class:`ConfigError` naming it.

        Paths become strings, numbers floats, milestones a sorted list and an image size
        tuple a list, so that the config is plain YAML.
        """
        self._check_text()
        self._check_integers()
        self._check_numbers()
        self._check_ranges()
        self._check_choices()
        self._check_lists()
        self._check_loss_args()
        self._check_verify()

    def _check_text(self) -> None:
        for name in ("dataset", "backbone", "loss", "recipe", "pairs_file"):
            if not isinstance(getattr(self, name), str):
                _fail(name, "a string", getattr(self, name))
        if not isinstance(self.device, str) or _DEVICE.fullmatch(self.device) is None:
            _fail("device", "'auto', 'cpu', 'cuda' or 'cuda:N' (--device)", self.device)
        for name in ("data_dir", "cache_dir", "out", "init_from"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, Path)) or not str(value)):
                _fail(name, "a path", value)
            if isinstance(value, Path):
                setattr(self, name, str(value))

    def _check_integers(self) -> None:
        positive = (
            "embedding_dim",
            "epochs",
            "batch_size",
            "accumulate",
            "eval_batch_size",
            "nproc",
        )
        others = (
            "min_images_per_person",
            "warmup_epochs",
            "freeze_backbone_epochs",
            "seed",
            "log_every",
            "verify_every",
            "workers",
        )
        for name in (*positive, *others):
            minimum = 1 if name in positive else 0
            if not _is_integer(getattr(self, name), minimum):
                _fail(name, f"an integer >= {minimum}", getattr(self, name))
        for name in ("max_steps", "threads"):
            value = getattr(self, name)
            if value is not None and not _is_integer(value, 1):
                _fail(name, "an integer >= 1 or null", value)

    def _check_numbers(self) -> None:
        if not _is_number(self.train_fraction):
            _fail("train_fraction", "a number in (0, 1]", self.train_fraction)
        self.train_fraction = float(self.train_fraction)
        if not 0.0 < self.train_fraction <= 1.0:
            _fail("train_fraction", "a number in (0, 1]", self.train_fraction)
        for name in ("label_noise", "validation_fraction", "momentum", "weight_decay", "lr_gamma"):
            value = getattr(self, name)
            if value is None and name == "weight_decay":
                continue
            if not _is_number(value):
                _fail(name, "a number", value)
            if not math.isfinite(value):
                _fail(name, "a finite number", value)
            setattr(self, name, float(value))
        if not _is_number(self.timeout) or not math.isfinite(self.timeout) or self.timeout <= 0:
            _fail("timeout", "a number of seconds > 0", self.timeout)
        self.timeout = float(self.timeout)
        for name in ("lr", "clip_grad_norm"):
            value = getattr(self, name)
            if value is not None:
                if not _is_number(value) or not math.isfinite(value) or value <= 0:
                    _fail(name, "a finite number > 0 or null", value)
                setattr(self, name, float(value))

    def _check_ranges(self) -> None:
        if not 0.0 <= self.label_noise < 1.0:
            _fail("label_noise", "a rate in [0, 1)", self.label_noise)
        if not 0.0 <= self.validation_fraction < 1.0:
            _fail("validation_fraction", "a fraction in [0, 1)", self.validation_fraction)
        if not 0 < self.lr_gamma <= 1:
            _fail("lr_gamma", "a factor in (0, 1]", self.lr_gamma)
        if self.momentum < 0:
            _fail("momentum", "a number >= 0", self.momentum)
        if self.weight_decay is not None and self.weight_decay < 0:
            _fail("weight_decay", "a number >= 0", self.weight_decay)

    def _check_choices(self) -> None:
        if not isinstance(self.download, bool):
            _fail("download", "true or false", self.download)
        if self.augment is not None and not isinstance(self.augment, bool):
            _fail("augment", "true, false or null", self.augment)
        for name, (choices, optional) in option_choices().items():
            value = getattr(self, name)
            if value not in choices and not (optional and value is None):
                quoted = [repr(choice) for choice in choices]
                expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
                _fail(name, f"{expected} (or null: the recipe's)" if optional else expected, value)

    def _check_lists(self) -> None:
        if self.milestones is not None:
            if not isinstance(self.milestones, (list, tuple)) or not all(
                _is_integer(milestone, 1) for milestone in self.milestones
            ):
                _fail("milestones", "a list of epochs >= 1", self.milestones)
            self.milestones = sorted(self.milestones)
        if self.classes is not None:
            parse_classes(self.classes)
        if isinstance(self.image_size, tuple):
            self.image_size = list(self.image_size)

    def _check_loss_args(self) -> None:
        if not isinstance(self.loss_args, dict):
            _fail("loss_args", "a mapping of hyper-parameter names to values", self.loss_args)
        for name, value in self.loss_args.items():
            if not isinstance(name, str) or not name.isidentifier():
                _fail("loss_args", "hyper-parameter names that are identifiers", name)
            if isinstance(value, str):
                parse_value(value, name)  # schedule text is checked now, built later
            elif value is not None and not isinstance(value, (bool, int, float)):
                _fail(f"loss_args.{name}", "a number, bool or schedule text", value)
            elif isinstance(value, float) and not math.isfinite(value):
                _fail(f"loss_args.{name}", "a finite number", value)

    def _check_verify(self) -> None:
        if isinstance(self.verify, (str, Path)):
            self.verify = [str(self.verify)]
        if self.verify is not None:
            if not isinstance(self.verify, (list, tuple)) or not all(
                isinstance(file, (str, Path)) and str(file) for file in self.verify
            ):
                _fail("verify", "a list of .bin or pairs files", self.verify)
            self.verify = [str(file) for file in self.verify] or None
        files = self.verify or []
        names = [verify_set_name(file) for file in files]
        for name in names:
            if names.count(name) > 1:
                twins = [file for file in files if verify_set_name(file) == name]
                _fail("verify", f"files of distinct names (the name of {twins} is {name!r})", files)
        if self.verify_best is not None:
            if not isinstance(self.verify_best, str):
                _fail("verify_best", "a verify file or its name", self.verify_best)
            if self.verify_best not in files and self.verify_best not in names:
                _fail(
                    "verify_best",
                    f"one of the verify files {files} or their names",
                    self.verify_best,
                )

    # ----------------------------------------------------------------- resolution
    def learning_rate(self) -> float:
        """The peak learning rate (the optimiser's default when ``lr`` is None)."""
        if self.lr is not None:
            return self.lr
        return 0.1 if self.optimizer == "sgd" else 1e-3

    def lr_milestones(self) -> list[int]:
        """Epochs at which the step schedule decays (default: 50 % and 75 % of the run)."""
        if self.milestones is not None:
            return list(self.milestones)
        return sorted({max(1, self.epochs // 2), max(1, (3 * self.epochs) // 4)})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (YAML/JSON-ready)."""
        return dataclasses.asdict(self)

    def group(self, name: str) -> dict[str, Any]:
        """The options of group ``name`` (one of :data:`GROUPS`) with their values, in the
        class's order (``config.group("data")``: what decides the data the run loads)."""
        return {option: getattr(self, option) for option in group_options(name, type(self))}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys raise :class:`ConfigError` naming the key."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of option names to values")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})"
                )
        return cls(**values)

    @classmethod
    def from_sources(
        cls,
        *,
        file: str | Path | None = None,
        saved: str | Path | None = None,
        flags: Mapping[str, Any] | None = None,
        loss_args: Sequence[str] = (),
    ) -> TrainConfig:
        """Merge the places a run's options come from; later ones win.

        Args:
            file: a YAML config file (``--config``), the starting point.
            saved: without ``file``, the starting point instead: a saved config (a resumed
                run's ``config.yaml``), read if it exists.
            flags: option name -> value, for each option given (``--epochs 3``).
            loss_args: ``NAME=VALUE`` texts (``--loss-arg``), each added to the loss
                arguments so far or replacing the one of that name.

        Raises:
            ConfigError: an unreadable file, an unknown option or a bad value (one line).
        """
        values: dict[str, Any] = {}
        if file is not None:
            values = load_config(file).to_dict()
        elif saved is not None and Path(saved).is_file():
            values = load_config(saved).to_dict()
        values.update(flags or {})
        if loss_args:
            values["loss_args"] = dict(values.get("loss_args") or {})
            for text in loss_args:
                name, value = parse_loss_arg(text)
                values["loss_args"][name] = value
        return cls.from_dict(values, source="options")


def option_help() -> dict[str, str]:
    """Each option's description, its field's ``metadata["help"]``, in the class's order
    (the command line's help shows it)."""
    return {option.name: option.metadata["help"] for option in dataclasses.fields(TrainConfig)}


def group_options(name: str, config: type[TrainConfig] = TrainConfig) -> tuple[str, ...]:
    """The options of group ``name`` (one of :data:`GROUPS`), in the class's order.

    Raises:
        ValueError: ``name`` is not a group.
    """
    if name not in GROUPS:
        raise ValueError(f"unknown option group {name!r}; expected one of {', '.join(GROUPS)}")
    return tuple(f.name for f in dataclasses.fields(config) if f.metadata["group"] == name)


def inert_options(config: type[TrainConfig] = TrainConfig) -> tuple[str, ...]:
    """The options that say where files are, how fast or how often a run reports, never what
    it computes (``data_dir``, ``threads``, ``log_every``, ...): two runs that differ only in
    them are the same run."""
    return tuple(f.name for f in dataclasses.fields(config) if f.metadata.get("inert"))


def option_choices() -> dict[str, tuple[tuple[str, ...], bool]]:
    """The options that take one of a few words: name -> ``(choices, None allowed)``, read
    from their ``Literal`` types."""
    found = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        words = [arg for arg in typing.get_args(hint) if typing.get_origin(arg) is Literal]
        if typing.get_origin(hint) is Literal:
            found[name] = (typing.get_args(hint), False)
        elif words:
            found[name] = (typing.get_args(words[0]), type(None) in typing.get_args(hint))
    return found


def verify_set_name(file: str | Path) -> str:
    """The name of a verification file in logs and columns: its name without extension
    (``data/lfw.bin`` -> ``lfw``)."""
    return Path(file).stem


def _is_integer(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(name: str, expected: str, got: Any) -> NoReturn:
    raise ConfigError(f"{name} must be {expected}; got {got!r}")


def read_text_file(path: str | Path, what: str) -> str:
    """The text of a file the user names (a config or preset YAML file), decoded as UTF-8
    whatever the locale.

    Args:
        path: the file.
        what: what it is, for the message (``"config file"``).

    Raises:
        ConfigError: one line, "cannot read config file PATH: why" or "config file PATH is not
            UTF-8 text (byte 0xff at offset 0)".
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
            f"{error.start})"
        ) from None


def load_config(path: str | Path) -> TrainConfig:
    """Read a :class:`TrainConfig` from a YAML file; unknown keys are rejected.

    Raises:
        ConfigError: a one-line message for a missing/unreadable file, invalid YAML, an
            unknown key or a bad value.
    """
    import yaml

    path = Path(path)
    text = read_text_file(path, "config file")
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    return TrainConfig.from_dict(values or {}, source=f"config file {path}")


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write ``config`` as YAML (atomically: a temporary file renamed into place)."""
    import yaml

    from marginkit.runfolder import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config.to_dict(), sort_keys=False))


# ------------------------------------------------------------------- class subsets
def parse_classes(spec: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"0-6"`` -> [0..6]; ``"0,2,5-7"`` -> [0, 2, 5, 6, 7]; a list passes through.

    Raises:
        ConfigError: naming ``classes`` and the bad part.
    """
    if isinstance(spec, (list, tuple)):
        if not spec or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in spec):
            _fail("classes", "a non-empty list of class indices >= 0", spec)
        return list(spec)
    if not isinstance(spec, str):
        _fail("classes", "a range like '0-6' or a list of ints", spec)
    result: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            _fail("classes", "ranges like '0-6' or '0,2,5-7'", spec)
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            _fail("classes", "ranges with low <= high", spec)
        result.extend(range(low, high + 1))
    if len(set(result)) != len(result):
        _fail("classes", "each class once", spec)
    return result


# ------------------------------------------------------------------ loss arguments
def parse_value(
    text: str, name: str = "value"
) -> bool | int | float | str | tuple[str, list[float]]:
    """Parse one loss-argument value (see the module docstring).

    Returns:
        a bool, int or float, ``(kind, arguments)`` for a schedule, or the text of a single
        word (a named choice).

    Raises:
        ConfigError: naming the argument and what was expected.
    """
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    schedule = parse_schedule(text, name)
    if schedule is not None:
        return schedule
    number = parse_number(text, name)
    if number is not None:
        return number
    if lowered in ("nan", "inf", "infinity"):  # words, but never a usable value
        raise ConfigError(f"loss argument {name}: {text!r} is not a finite number")
    if re.fullmatch(r"[A-Za-z_]\w*", text):
        return text  # a named choice (fallback=continuous); the head checks the word
    raise ConfigError(
        f"loss argument {name}: {text!r} is neither a number, a bool, a schedule "
        f"({', '.join(SCHEDULE_KINDS)}) nor a single word"
    )


def parse_loss_arg(text: str) -> tuple[str, Any]:
    """``"margin=0.5"`` -> ``("margin", 0.5)``; schedule values stay text.

    Numbers and bools are converted; schedule text is validated and kept as text so the
    config stays plain YAML.

    Raises:
        ConfigError: for text without ``=`` or a bad value.
    """
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ConfigError(f"--loss-arg must look like NAME=VALUE (e.g. margin=0.5); got {text!r}")
    parsed = parse_value(value, name)
    return name, value.strip() if isinstance(parsed, tuple) else parsed


def loss_kwargs(loss_args: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments for ``marginkit.losses.build`` from config ``loss_args``.

    Strings are parsed (schedules become :mod:`marginkit.schedules` objects); numbers and
    bools pass through.

    Raises:
        ConfigError: for bad schedule text or schedule arguments.
    """
    kwargs: dict[str, Any] = {}
    for name, value in loss_args.items():
        if isinstance(value, str):
            value = parse_value(value, name)
        if isinstance(value, tuple):
            kind, arguments = value  # parse_value's (kind, arguments)
            value = build_schedule(kind, arguments, name)
        kwargs[name] = value
    return kwargs
