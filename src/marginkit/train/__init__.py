"""Training: a config dataclass, the ``fit`` loop and checkpoints (comparisons of several
losses: :mod:`marginkit.compare`).

>>> from marginkit.train import TrainConfig, fit
>>> result = fit(TrainConfig(dataset="digits", loss="arcface", epochs=2))  # doctest: +SKIP

The names below load their module on first access: ``marginkit.train.config`` (the options,
which the command line's help lists) imports no torch.
"""

from marginkit._lazy import lazy_attributes

_EXPORTS = {
    "checkpoint": [
        "CheckpointError",
        "find_checkpoint",
        "latest_checkpoint",
        "load_checkpoint",
        "load_weights",
    ],
    "config": [
        "ConfigError",
        "TrainConfig",
        "load_config",
        "loss_kwargs",
        "parse_classes",
        "parse_loss_arg",
        "parse_value",
        "save_config",
    ],
    "loop": [
        "NonFiniteLossError",
        "TrainResult",
        "build_models",
        "fit",
        "learning_rate_at",
        "load_bundle",
    ],
    "runfolder": ["OutputError", "RunFolderError"],
}

__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
