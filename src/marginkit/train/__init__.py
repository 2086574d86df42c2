"""Training: a config dataclass, the ``fit`` loop and checkpoints (comparisons of several
losses: :mod:`marginkit.compare`).

>>> from marginkit.train import TrainConfig, fit
>>> result = fit(TrainConfig(dataset="digits", loss="arcface", epochs=2))  # doctest: +SKIP
"""

from marginkit.runfolder import OutputError, RunFolderError
from marginkit.train.checkpoint import (
    CheckpointError,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
)
from marginkit.train.config import (
    ConfigError,
    TrainConfig,
    load_config,
    loss_kwargs,
    parse_classes,
    parse_loss_arg,
    parse_value,
    save_config,
)
from marginkit.train.loop import (
    NonFiniteLossError,
    TrainResult,
    build_models,
    fit,
    learning_rate_at,
    load_bundle,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "NonFiniteLossError",
    "OutputError",
    "RunFolderError",
    "TrainConfig",
    "TrainResult",
    "build_models",
    "find_checkpoint",
    "fit",
    "latest_checkpoint",
    "learning_rate_at",
    "load_bundle",
    "load_checkpoint",
    "load_config",
    "load_weights",
    "loss_kwargs",
    "parse_classes",
    "parse_loss_arg",
    "parse_value",
    "save_config",
]
