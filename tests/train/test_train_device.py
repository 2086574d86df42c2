"""``--device``, ``--precision`` and ``--clip-grad-norm``: where and how a run trains.

Everything here runs on a CPU-only machine: the CUDA paths of device resolution are tested
with ``torch.cuda.is_available`` patched, a checkpoint "written on CUDA" is made by tagging
its storages as CUDA ones, and the fp16 scaler's checkpointing is exercised on the CPU (where
``fit`` itself refuses fp16) by lifting that refusal.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

import marginkit.cli as cli
import marginkit.train.loop as loop
import marginkit.train.precision as precision_module
from marginkit.data import DataBundle, augment_batch
from marginkit.train import (
    RunFolderError,
    TrainConfig,
    fit,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
)
from marginkit.train.checkpoint import save_checkpoint
from marginkit.train.config import ConfigError
from marginkit.train.precision import TrainingPrecision, resolve_device


def tiny_config(out: Path | None = None, **changes: Any) -> TrainConfig:
    """An MLP + ArcFace on the 96 fake 1x8x8 images: 3 steps an epoch."""
    values: dict[str, Any] = {
        "dataset": "fake",
        "backbone": "mlp",
        "embedding_dim": 8,
        "loss": "arcface",
        "loss_args": {"margin": 0.3, "scale": 16.0},
        "epochs": 2,
        "batch_size": 32,
        "lr": 0.05,
        "optimizer": "sgd",
        "lr_schedule": "constant",
        "log_every": 0,
        "threads": 1,
        "out": None if out is None else str(out),
    }
    values.update(changes)
    return TrainConfig(**values)


def weights(result: loop.TrainResult) -> dict[str, torch.Tensor]:
    return {
        **{f"backbone.{k}": v for k, v in result.backbone.state_dict().items()},
        **{f"head.{k}": v for k, v in result.head.state_dict().items()},
    }


def assert_bitwise_equal(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with two CUDA devices (resolution only: nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


# ------------------------------------------------------------------------ the device
def test_auto_is_cuda_where_available_else_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.usefixtures("two_gpus")
def test_cuda_devices_by_index() -> None:
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError) as caught:
        resolve_device("cuda:2")
    assert str(caught.value) == (
        "--device cuda:2: this machine has 2 CUDA device(s), cuda:0 to cuda:1"
    )


@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize("text", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_one_line_naming_device(text: str) -> None:
    with pytest.raises(ConfigError, match=rf"^--device {text}: CUDA is not available") as caught:
        resolve_device(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", "", 0])
def test_a_bad_device_is_refused_by_the_config(text: object) -> None:
    with pytest.raises(ConfigError, match=r"^device must be .*\(--device\); got "):
        TrainConfig(device=text)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^--device must be auto, cpu, cuda or cuda:N"):
        resolve_device(str(text))  # the same forms, refused again where torch is at hand


def test_a_bad_device_on_the_command_line_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--device", "gpu", "--quiet", "--out", str(tmp_path / "run")])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--device" in error and "'gpu'" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("no_cuda")
def test_fit_refuses_cuda_without_cuda_before_writing(
    tmp_path: Path, fake_image_bundle: DataBundle
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^--device cuda: CUDA is not available"):
        fit(tiny_config(out, device="cuda"), bundle=fake_image_bundle, progress=False)
    assert not out.exists()


# --------------------------------------------------------------------- the precision
@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_fp16_on_the_cpu_is_refused_before_writing(
    tmp_path: Path, fake_image_bundle: DataBundle, device: str
) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^--precision fp16 needs a CUDA device") as caught:
        fit(tiny_config(out, device=device, precision="fp16"), bundle=fake_image_bundle)
    assert "\n" not in str(caught.value) and "bf16" in str(caught.value)
    assert not out.exists()


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^precision must be 'fp32', 'bf16' or 'fp16'"):
        TrainConfig(precision="fp8")  # type: ignore[arg-type]


def build_models_recording(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[torch.dtype], list[nn.Module]]:
    """Patch ``loop.build_models`` to record the dtype of every backbone output and the
    networks built."""
    dtypes: list[torch.dtype] = []
    built: list[nn.Module] = []
    original = loop.build_models

    def recording(config: TrainConfig, bundle: Any) -> tuple[nn.Module, nn.Module]:
        backbone, head = original(config, bundle)
        backbone.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
        built.extend((backbone, head))
        return backbone, head

    monkeypatch.setattr(loop, "build_models", recording)
    return dtypes, built


def test_bf16_on_the_cpu_trains_finite_with_float32_parameters(
    fake_image_bundle: DataBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    dtypes, _ = build_models_recording(monkeypatch)
    config = tiny_config(device="cpu", precision="bf16")
    result = fit(config, bundle=fake_image_bundle, progress=False)
    # each epoch: 3 training steps under autocast, then the test set's evaluation in float32
    epoch = [torch.bfloat16] * 3 + [torch.float32]
    assert dtypes == epoch * 2
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    for network in (result.backbone, result.head):
        for name, parameter in network.named_parameters():
            assert parameter.dtype == torch.float32, name
            assert bool(torch.isfinite(parameter).all()), name
    fp32 = fit(tiny_config(device="cpu"), bundle=fake_image_bundle, progress=False)
    assert result.history[-1]["train_loss"] != fp32.history[-1]["train_loss"]
    dtypes_fp32 = {name: value.dtype for name, value in weights(fp32).items()}
    assert {name: value.dtype for name, value in weights(result).items()} == dtypes_fp32


def test_fp32_is_bitwise_a_plain_pytorch_loop(fake_image_bundle: DataBundle) -> None:
    """The fp32 CPU step is ``loss.backward(); optimizer.step()``, no scaling or copying:
    the same weights as a plain loop over the same seeded batches."""
    trained = fit(tiny_config(device="cpu", epochs=1), bundle=fake_image_bundle, progress=False)
    config, bundle = trained.config, fake_image_bundle  # as resolved by the recipe
    assert config is not None
    backbone, head = loop.build_models(config, bundle)
    head.set_total_steps(3)
    parameters = [*backbone.parameters(), *head.parameters()]
    optimizer = loop._optimizer(config, parameters)
    generator = torch.Generator().manual_seed(config.seed)
    inputs, labels = bundle.train.tensors()
    order = torch.randperm(labels.numel(), generator=generator)
    for step, index in enumerate(order.split(32)):
        x = augment_batch(inputs[index], generator)
        for group in optimizer.param_groups:
            group["lr"] = loop.learning_rate_at(config, step, 3)
        loss = head(backbone(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    reference = {
        **{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
        **{f"head.{k}": v for k, v in head.state_dict().items()},
    }
    assert_bitwise_equal(weights(trained), reference)


@pytest.mark.usefixtures("no_cuda")
def test_fp32_cpu_is_the_same_for_auto_and_cpu(fake_image_bundle: DataBundle) -> None:
    auto = fit(tiny_config(), bundle=fake_image_bundle, progress=False)
    cpu = fit(tiny_config(device="cpu"), bundle=fake_image_bundle, progress=False)
    assert_bitwise_equal(weights(auto), weights(cpu))
    assert auto.history[-1]["train_loss"] == cpu.history[-1]["train_loss"]


# ------------------------------------------------------------------- gradient clipping
@pytest.fixture
def norms_seen() -> Iterator[list[float]]:
    """The total gradient norm of each optimiser step, as the optimiser sees it."""
    seen: list[float] = []

    def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    yield seen
    handle.remove()


def test_clip_grad_norm_bounds_the_norm_the_optimiser_sees(
    fake_image_bundle: DataBundle, norms_seen: list[float]
) -> None:
    fit(tiny_config(device="cpu"), bundle=fake_image_bundle, progress=False)
    unclipped = list(norms_seen)
    assert len(unclipped) == 6 and min(unclipped) > 1e-2  # so the bound below binds
    norms_seen.clear()
    fit(tiny_config(device="cpu", clip_grad_norm=1e-2), bundle=fake_image_bundle, progress=False)
    assert len(norms_seen) == 6
    assert norms_seen == pytest.approx([1e-2] * 6, rel=1e-3)


def test_clipping_under_fp16_unscales_first(norms_seen: list[float]) -> None:
    """With a gradient scaler the gradients are unscaled before they are clipped: the
    optimiser sees the bound, not the bound divided by the scale."""
    network = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    precision = TrainingPrecision(torch.device("cpu"), "fp16", 1e-3, scaler)
    loss = network(torch.randn(8, 4)).square().sum()
    precision.backward(loss)
    precision.step(optimizer)
    assert norms_seen == [pytest.approx(1e-3, rel=1e-3)]
    assert precision.state_dict()["grad_scaler"]["scale"] == 2.0**10


def test_a_bound_above_the_norm_changes_nothing(fake_image_bundle: DataBundle) -> None:
    plain = fit(tiny_config(device="cpu"), bundle=fake_image_bundle, progress=False)
    config = tiny_config(device="cpu", clip_grad_norm=1e30)
    clipped = fit(config, bundle=fake_image_bundle, progress=False)
    assert_bitwise_equal(weights(clipped), weights(plain))


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, "big", True])
def test_a_bad_clip_grad_norm_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^clip_grad_norm must be a finite number > 0"):
        TrainConfig(clip_grad_norm=value)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- checkpoints
def written_as_cuda(save: Any) -> Any:
    """Call ``save`` while ``torch.save`` tags every storage as a ``cuda:0`` one, as on a
    GPU machine."""
    registry = torch.serialization._package_registry

    def cuda_tag(storage: Any) -> str:
        return "cuda:0"

    torch.serialization.register_package(0, cuda_tag, lambda obj, location: None)
    try:
        return save()
    finally:
        registry[:] = [entry for entry in registry if entry[1] is not cuda_tag]


@pytest.mark.usefixtures("no_cuda")
def test_a_checkpoint_written_on_cuda_loads_on_a_cpu_with_map_location(
    tmp_path: Path, fake_image_bundle: DataBundle
) -> None:
    config = tiny_config(device="cpu")
    backbone, head = loop.build_models(config, fake_image_bundle)
    moment = torch.randn(5)
    state = {
        "epoch": 1,
        "step": 7,
        "history": [],
        "optimizer": {"state": {0: {"momentum_buffer": moment}}},
    }
    folder = written_as_cuda(lambda: save_checkpoint(tmp_path, backbone, head, state))
    raw = (folder / "state.pt").read_bytes()
    with pytest.raises(RuntimeError, match="CUDA"):  # the file is a real "CUDA" one
        torch.load(io.BytesIO(raw), weights_only=True)
    loaded = load_checkpoint(folder)
    assert torch.equal(loaded.state["optimizer"]["state"][0]["momentum_buffer"], moment)
    assert loaded.state["optimizer"]["state"][0]["momentum_buffer"].device.type == "cpu"
    other_seed = dataclasses.replace(config, seed=1)
    fresh_backbone, fresh_head = loop.build_models(other_seed, fake_image_bundle)
    assert not torch.equal(fresh_head.weight, head.weight)
    load_weights(loaded, fresh_backbone, fresh_head)
    assert_bitwise_equal(fresh_head.state_dict(), head.state_dict())
    on_meta = load_checkpoint(folder, map_location="meta")  # the weights go where asked
    assert {value.device.type for value in on_meta.weights.values()} == {"meta"}
    assert on_meta.state["optimizer"]["state"][0]["momentum_buffer"].device.type == "cpu"


def interrupted_after_first_epoch(config: TrainConfig, bundle: DataBundle) -> None:
    """Train ``config`` and stop right after the epoch-1 checkpoint, as if killed."""
    original = loop.save_checkpoint

    def stop(run_dir: Path, backbone: nn.Module, head: nn.Module, state: dict[str, Any]) -> Path:
        path = original(run_dir, backbone, head, state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt
        return path

    loop.save_checkpoint = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(config, bundle=bundle, progress=False)
    finally:
        loop.save_checkpoint = original


def test_fp16_resume_restores_the_gradient_scaler(
    tmp_path: Path, fake_image_bundle: DataBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp16 is refused on the CPU by ``fit``; lifted here (CPU autocast has float16) to run
    the scaler through a checkpoint. A scale that doubles every step (growth interval 1,
    halved on overflow) makes a scaler restored wrongly visible."""
    monkeypatch.setattr(precision_module, "check_precision", lambda precision, device: None)
    monkeypatch.setattr(
        torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, growth_interval=1)
    )
    whole = fit(
        tiny_config(tmp_path / "whole", device="cpu", precision="fp16"),
        bundle=fake_image_bundle,
        progress=False,
    )
    config = tiny_config(tmp_path / "b", device="cpu", precision="fp16")
    interrupted_after_first_epoch(config, fake_image_bundle)
    first = load_checkpoint(latest_checkpoint(tmp_path / "b"))  # type: ignore[arg-type]
    assert first.state["grad_scaler"]["scale"] != 2.0**16  # it moved during epoch 1
    resumed = fit(config, bundle=fake_image_bundle, resume=True, progress=False)
    assert_bitwise_equal(weights(resumed), weights(whole))
    scalers = [
        load_checkpoint(latest_checkpoint(run)).state["grad_scaler"]  # type: ignore[arg-type]
        for run in (tmp_path / "whole", tmp_path / "b")
    ]
    assert scalers[0] == scalers[1]


@pytest.mark.usefixtures("no_cuda")
def test_resume_may_change_the_device_not_the_precision(
    tmp_path: Path, fake_image_bundle: DataBundle
) -> None:
    out = tmp_path / "run"
    interrupted_after_first_epoch(tiny_config(out, device="auto"), fake_image_bundle)
    with pytest.raises(RunFolderError, match=r"precision \('fp32' there, 'bf16' now\)"):
        fit(tiny_config(out, precision="bf16"), bundle=fake_image_bundle, resume=True)
    resumed = fit(tiny_config(out, device="cpu"), bundle=fake_image_bundle, resume=True)
    assert [row["epoch"] for row in resumed.history] == [1, 2]


# ------------------------------------------------------------------- the command line
def test_train_help_shows_the_new_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--device DEVICE" in shown and "(default: auto)" in shown
    assert "--precision {fp32,bf16,fp16}" in shown and "(default: fp32)" in shown
    assert "--clip-grad-norm CLIP_GRAD_NORM" in shown


def test_the_new_options_round_trip_through_flags_and_yaml(tmp_path: Path) -> None:
    from marginkit.train.config import load_config, save_config

    args = cli.build_parser().parse_args(
        ["train", "--device", "cuda:1", "--precision", "bf16", "--clip-grad-norm", "5"]
    )
    assert (args.device, args.precision, args.clip_grad_norm) == ("cuda:1", "bf16", 5.0)
    config = TrainConfig.from_sources(
        flags={"device": args.device, "precision": args.precision, "clip_grad_norm": 5.0}
    )
    save_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert (again.device, again.precision, again.clip_grad_norm) == ("cuda:1", "bf16", 5.0)
