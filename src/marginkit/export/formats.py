"""Writing a backbone in each export format, reading it back, and checking the two agree.

- ``onnx``: ``torch.onnx.export`` with the torch.export-based exporter (``dynamo=True``, the
  default since torch 2.9; it needs ``onnxscript``; the TorchScript-based one is deprecated),
  at opset :data:`ONNX_OPSET`, the batch axis dynamic; one file (weights inside). Read with
  onnxruntime on the CPU.
- ``torchscript``: ``torch.jit.trace`` in eval mode, ``torch.jit.save``; read with
  ``torch.jit.load``. (TorchScript is deprecated by PyTorch; its warnings are silenced here.
  It remains what C++ libtorch loads.)
- ``safetensors``: the backbone's ``state_dict`` alone; read by building the registered
  backbone from the record (name, input shape, embedding size) and loading it strictly.

Every reader returns a function from inputs ``(B, *input_shape)`` float32 to embeddings
``(B, D)`` float32; :func:`largest_difference` compares it with the PyTorch backbone.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from marginkit.export.sidecar import ExportError, first_line

__all__ = [
    "CHECK_BATCH_SIZES",
    "INPUT_NAME",
    "ONNX_OPSET",
    "OUTPUT_NAME",
    "WRITERS",
    "Forward",
    "largest_difference",
    "module_forward",
    "read_model",
]

#: ONNX operator set: the lowest the torch.export-based exporter implements natively (no
#: version conversion); onnxruntime >= 1.14, TensorRT >= 8.6 and OpenVINO run it.
ONNX_OPSET = 18
#: Names of the exported graph's input and output.
INPUT_NAME, OUTPUT_NAME = "images", "embeddings"
#: The batch of the example the exporters see; the checks use other sizes
#: (:data:`CHECK_BATCH_SIZES`), which proves the batch axis is not fixed.
EXAMPLE_BATCH = 2
CHECK_BATCH_SIZES = (1, 3)

#: ``forward(inputs)``: inputs (B, *input_shape) float32 -> embeddings (B, D) float32.
Forward = Callable[[Tensor], Tensor]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' deprecation notes and log lines (torchvision operators not
    registered, progress) for the duration of an export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit.*")
            yield
    finally:
        logger.setLevel(level)


def _failed(format: str, error: Exception) -> ExportError:
    """The exporter's error as one line (the caller names the file)."""
    return ExportError(f"the {format} exporter failed on the backbone ({first_line(error)})")


# -------------------------------------------------------------------------------- writers
def write_onnx(backbone: nn.Module, example: Tensor, path: Path) -> dict[str, Any]:
    """Export ``backbone`` to ONNX at ``path`` (dynamic batch axis); the record's fields."""
    batch = torch.export.Dim("batch")
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                backbone,
                (example,),
                None,
                dynamo=True,
                verbose=False,
                opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
            )
    except ImportError:  # onnx or onnxscript missing: the command names the extra
        raise
    except Exception as error:
        raise _failed("onnx", error) from error
    assert program is not None
    program.save(path, external_data=False)
    return {"onnx_opset": ONNX_OPSET}


def write_torchscript(backbone: nn.Module, example: Tensor, path: Path) -> dict[str, Any]:
    """Trace ``backbone`` and save it as TorchScript at ``path``; the record's fields."""
    try:
        with _quiet_exporter(), torch.no_grad():
            traced = torch.jit.trace(backbone, (example,), check_trace=False)
            torch.jit.save(traced, str(path))
    except OSError:
        raise
    except Exception as error:
        raise _failed("torchscript", error) from error
    return {}


def write_safetensors(backbone: nn.Module, example: Tensor, path: Path) -> dict[str, Any]:
    """Save ``backbone``'s ``state_dict`` (buffers included) as safetensors; the record's
    fields."""
    from safetensors.torch import save_file

    # contiguous clones: safetensors refuses shared or non-contiguous storage
    weights = {
        key: value.detach().cpu().contiguous().clone()
        for key, value in backbone.state_dict().items()
    }
    save_file(weights, str(path), metadata={"format": "pt"})
    return {}


#: format -> ``write(backbone, example (B, *input_shape), path) -> record fields``.
WRITERS: dict[str, Callable[[nn.Module, Tensor, Path], dict[str, Any]]] = {
    "onnx": write_onnx,
    "torchscript": write_torchscript,
    "safetensors": write_safetensors,
}


# -------------------------------------------------------------------------------- readers
@dataclass
class _OnnxForward:
    """An onnxruntime session on the CPU, with as many threads as torch uses."""

    path: Path

    def __post_init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, inputs: Tensor) -> Tensor:
        feed = {self.input_name: inputs.detach().to(torch.float32).contiguous().numpy()}
        (embeddings,) = self.session.run(None, feed)
        return torch.from_numpy(embeddings)  # (B, D)


def module_forward(module: nn.Module) -> Forward:
    """``module`` in eval mode as a :data:`Forward` (no gradients, float32 inputs)."""
    module.eval()

    def forward(inputs: Tensor) -> Tensor:
        with torch.no_grad():
            return module(inputs.to(torch.float32))  # (B, D)

    return forward


def _read_torchscript(path: Path, info: dict[str, Any]) -> Forward:
    with _quiet_exporter():
        module = torch.jit.load(str(path), map_location="cpu")
    return module_forward(module)


def _read_safetensors(path: Path, info: dict[str, Any], backbone: str | None) -> Forward:
    from safetensors.torch import load_file

    from marginkit.export.sidecar import sidecar_path
    from marginkit.models import build_backbone, confirm_backbone
    from marginkit.train.checkpoint import state_mismatch

    confirm_backbone(info["backbone"], backbone, sidecar_path(path))
    weights = load_file(str(path))
    shape = tuple(info["preprocessing"]["input_shape"])
    network = build_backbone(info["backbone"], shape, int(info["embedding_dim"]))
    problem = state_mismatch(network, weights)
    if problem is not None:
        raise ExportError(f"{path}: does not fit backbone {info['backbone']!r} ({problem})")
    network.load_state_dict(weights, strict=True)
    return module_forward(network)


def read_model(
    path: Path, format: str, info: dict[str, Any], *, backbone: str | None = None
) -> Forward:
    """The forward function of a file written in ``format``.

    Args:
        path: the exported file.
        format: one of :data:`~marginkit.export.sidecar.FORMATS`.
        info: its record (``safetensors`` needs ``backbone``, ``embedding_dim`` and the
            preprocessing's ``input_shape``).
        backbone: the ``module:callable`` backbone the record names, confirming that it may
            be imported to rebuild a ``safetensors`` file's network (None: only a registered
            backbone is built).

    Raises:
        ExportError: the file cannot be read as ``format`` (damaged, or changed and its
            record re-hashed), or its weights do not fit the recorded backbone.
        BackboneError: a ``safetensors`` record names an import spec that ``backbone``
            does not confirm.
    """
    from marginkit.models import BackboneError

    try:
        if format == "onnx":
            return _OnnxForward(path)
        if format == "torchscript":
            return _read_torchscript(path, info)
        return _read_safetensors(path, info, backbone)
    except (ExportError, BackboneError, ImportError):  # named already; a missing extra
        raise
    except Exception as error:  # each runtime has its own errors for a file it cannot read
        raise ExportError(f"{path}: cannot be read as {format} ({first_line(error)})") from None


# -------------------------------------------------------------------------------- check
def largest_difference(
    forward: Forward,
    backbone: nn.Module,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int] = CHECK_BATCH_SIZES,
) -> float:
    """The largest absolute difference between ``forward`` and ``backbone`` over random
    batches (standard normal, like normalised images; seeded) of each size.

    Raises:
        ExportError: an output of the wrong shape or not finite.
    """
    generator = torch.Generator().manual_seed(0)
    backbone.eval()
    largest = 0.0
    for size in batch_sizes:
        inputs = torch.randn((size, *input_shape), generator=generator)  # (B, *input_shape)
        with torch.no_grad():
            expected = backbone(inputs)  # (B, D)
            got = forward(inputs).detach()
        if tuple(got.shape) != tuple(expected.shape):
            raise ExportError(
                f"the exported model's embeddings of a batch of {size} have shape "
                f"{tuple(got.shape)}, {tuple(expected.shape)} expected"
            )
        difference = float((got.to(torch.float32) - expected).abs().max())
        if difference != difference:  # NaN
            raise ExportError(
                f"the exported model's embeddings of a batch of {size} are not finite"
            )
        largest = max(largest, difference)
    return largest
