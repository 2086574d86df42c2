"""Where and in what precision a run trains: ``--device``, ``--precision``, ``--clip-grad-norm``.

- :func:`resolve_device`: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``,
  ``cuda:N`` -> a ``torch.device``, or one line naming ``--device`` when the machine has no
  such device.
- :class:`TrainingPrecision`: the autocast context around the backbone's forward and the
  backward + optimiser step of one training step.

  ``fp32`` uses no autocast and no scaler: the step is ``loss.backward()`` and
  ``optimizer.step()``, as before these options existed, so a CPU run stays bitwise
  reproducible. ``bf16`` runs the backbone's forward under ``torch.autocast`` with bfloat16
  (CPU or CUDA); ``fp16`` does so with float16 and scales the loss with a
  ``torch.amp.GradScaler`` (mixed-precision training, Micikevicius et al., ICLR 2018), on CUDA
  only. In both the parameters stay float32 (autocast casts per operation, never in place) and
  the margin head switches autocast off and computes in float32
  (:mod:`marginkit.losses.head`), so the logits, the margin and the softmax keep float32's
  range.
- ``clip_grad_norm``: the total gradient norm of the backbone and the head is clipped to it
  before the optimiser step (after unscaling the gradients under ``fp16``); a bound above the
  norm changes nothing (the gradients are multiplied by exactly 1).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from marginkit.train.config import ConfigError

__all__ = ["PRECISIONS", "TrainingPrecision", "check_precision", "resolve_device"]

#: The autocast dtype of each precision (None: no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_device(text: str) -> torch.device:
    """The device named by ``--device``.

    Args:
        text: ``"auto"`` (``cuda`` when ``torch.cuda.is_available()``, else ``cpu``),
            ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ConfigError: an unknown form, CUDA asked for where it is not available, or a CUDA
            index beyond the machine's devices (one line naming ``--device``).
    """
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    kind, colon, index = text.partition(":")
    if kind != "cuda" or (colon and not index.isdigit()):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N; got {text!r}")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--device {text}: CUDA is not available here (torch {torch.__version__}); "
            "use --device cpu or --device auto"
        )
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise ConfigError(
            f"--device {text}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )
    return torch.device(text)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot train in.

    Raises:
        ConfigError: an unknown precision; ``fp16`` on the CPU (no gradient scaler there;
            bf16 has float32's range and needs none); ``bf16`` on a GPU without bfloat16.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be fp32, bf16 or fp16; got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"--precision fp16 needs a CUDA device (--device gives {device}); on the CPU use "
            "--precision bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use "
            "--precision fp16 or fp32"
        )


@dataclass
class TrainingPrecision:
    """The precision of a run's training steps.

    Attributes:
        device: where the run trains.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        clip_grad_norm: the bound on the total gradient norm, or None.
        scaler: the ``fp16`` gradient scaler (None otherwise); its state is checkpointed.
    """

    device: torch.device
    precision: str = "fp32"
    clip_grad_norm: float | None = None
    scaler: torch.amp.GradScaler | None = None

    @classmethod
    def create(
        cls, device: torch.device, precision: str, clip_grad_norm: float | None = None
    ) -> TrainingPrecision:
        """Check ``precision`` on ``device`` (:func:`check_precision`) and make the scaler."""
        check_precision(precision, device)
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        return cls(device, precision, clip_grad_norm, scaler)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context of the backbone's forward: ``torch.autocast`` to bf16/fp16, or none."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (scaled under ``fp16``) into the gradients."""
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the gradients of every parameter of ``optimizer`` (when asked) and step it.

        Under ``fp16`` the gradients are unscaled before clipping, a step whose gradients
        hold inf/NaN is skipped, and the scale is updated (``GradScaler``).
        """
        if self.clip_grad_norm is not None:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            parameters: list[nn.Parameter] = [
                parameter for group in optimizer.param_groups for parameter in group["params"]
            ]
            nn.utils.clip_grad_norm_(parameters, self.clip_grad_norm)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps besides the CPU's RNG: the scaler's state (``fp16``) and
        the CUDA device's RNG state (dropout on the GPU); empty for a CPU run."""
        state: dict[str, Any] = {}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` kept (a checkpoint's ``state.pt``); the parts of
        another device (a run resumed on the CPU after CUDA, or the reverse) are skipped."""
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
