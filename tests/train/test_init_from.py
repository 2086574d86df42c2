"""``--init-from`` (fine-tuning) and ``--freeze-backbone-epochs``.

The sources: a marginkit run (its newest checkpoint), a safetensors file, an exported file,
and InsightFace ``arcface_torch``'s IResNet state dict (``backbone.pth``), which the tests
write from the published names and shapes (``recognition/arcface_torch/backbones/
iresnet.py``) with random values; a functional forward pass of that published network over
those names (:func:`arcface_torch_forward`) must give our backbone's embeddings, so every
tensor lands in its parameter. Refusals are one line; a resumed fine-tuning run ends with
the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

import marginkit.train.loop as loop
from marginkit import cli
from marginkit.data import ArrayDataset, DataBundle
from marginkit.losses import build
from marginkit.models import build_backbone
from marginkit.runfolder import RunFolderError
from marginkit.train import TrainConfig, build_models, fit, latest_checkpoint, load_checkpoint
from marginkit.train.initfrom import InitFromError, Source, initial_weights, start_weights

FACE = (3, 112, 112)
IRESNET50 = (3, 4, 14, 3)
IRESNET18 = (2, 2, 2, 2)


# ------------------------------------------------------------------ arcface_torch's IResNet
def arcface_torch_state(layers: tuple[int, ...], embedding_dim: int = 512) -> dict[str, Tensor]:
    """A state dict named and shaped as arcface_torch's ``IResNet(IBasicBlock, layers)``:
    ``conv1``, ``bn1``, ``prelu``; per stage S and block I ``layerS.I.bn1``, ``conv1`` (3x3),
    ``bn2``, ``prelu``, ``conv2`` (3x3, the stride), ``bn3`` and, in the first block,
    ``downsample.0`` (1x1 conv) and ``downsample.1`` (BN); then ``bn2``, ``fc`` (512 * 7 * 7
    -> D) and ``features`` (BN1d). Random values, scaled to keep activations moderate."""
    generator = torch.Generator().manual_seed(23)
    state: dict[str, Tensor] = {}

    def random(*shape: int, scale: float = 1.0) -> Tensor:
        return torch.randn(shape, generator=generator) * scale

    def batch_norm(name: str, width: int) -> None:
        state[f"{name}.weight"] = 1.0 + random(width, scale=0.1)
        state[f"{name}.bias"] = random(width, scale=0.1)
        state[f"{name}.running_mean"] = random(width, scale=0.1)
        state[f"{name}.running_var"] = 1.0 + torch.rand(width, generator=generator)
        state[f"{name}.num_batches_tracked"] = torch.tensor(1000)

    def conv(name: str, out: int, into: int, side: int) -> None:
        state[name] = random(out, into, side, side, scale=(into * side * side) ** -0.5)

    conv("conv1.weight", 64, 3, 3)
    batch_norm("bn1", 64)
    state["prelu.weight"] = 0.25 + random(64, scale=0.01)
    into = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        for index in range(count):
            block = f"layer{stage}.{index}"
            batch_norm(f"{block}.bn1", into)
            conv(f"{block}.conv1.weight", planes, into, 3)
            batch_norm(f"{block}.bn2", planes)
            state[f"{block}.prelu.weight"] = 0.25 + random(planes, scale=0.01)
            conv(f"{block}.conv2.weight", planes, planes, 3)
            batch_norm(f"{block}.bn3", planes)
            if index == 0:
                conv(f"{block}.downsample.0.weight", planes, into, 1)
                batch_norm(f"{block}.downsample.1", planes)
            into = planes
    batch_norm("bn2", 512)
    state["fc.weight"] = random(embedding_dim, 512 * 49, scale=(512 * 49) ** -0.5)
    state["fc.bias"] = random(embedding_dim, scale=0.1)
    batch_norm("features", embedding_dim)
    state["features.weight"] = torch.ones(embedding_dim)  # fixed at 1 in arcface_torch
    return state


def arcface_torch_forward(
    state: dict[str, Tensor], images: Tensor, layers: tuple[int, ...]
) -> Tensor:
    """The published network's forward pass in eval mode, from ``state`` by its names:
    conv1 -> bn1 -> prelu; each block bn1 -> conv1 -> bn2 -> prelu -> conv2 (stride) -> bn3,
    plus the input or its downsample; bn2 -> flatten -> (dropout 0) -> fc -> features."""

    def norm(name: str, inputs: Tensor) -> Tensor:
        return F.batch_norm(
            inputs,
            state[f"{name}.running_mean"],
            state[f"{name}.running_var"],
            state[f"{name}.weight"],
            state[f"{name}.bias"],
            training=False,
            eps=1e-5,
        )

    x = F.prelu(
        norm("bn1", F.conv2d(images, state["conv1.weight"], padding=1)), state["prelu.weight"]
    )
    for stage, count in enumerate(layers, start=1):
        for index in range(count):
            block, stride = f"layer{stage}.{index}", 2 if index == 0 else 1
            out = F.conv2d(norm(f"{block}.bn1", x), state[f"{block}.conv1.weight"], padding=1)
            out = F.prelu(norm(f"{block}.bn2", out), state[f"{block}.prelu.weight"])
            out = F.conv2d(out, state[f"{block}.conv2.weight"], stride=stride, padding=1)
            out = norm(f"{block}.bn3", out)
            if index == 0:
                shortcut = F.conv2d(x, state[f"{block}.downsample.0.weight"], stride=stride)
                x = out + norm(f"{block}.downsample.1", shortcut)
            else:
                x = out + x
    flat = norm("bn2", x).flatten(1)
    return norm("features", F.linear(flat, state["fc.weight"], state["fc.bias"]))


@pytest.fixture(scope="module")
def arcface50() -> dict[str, Tensor]:
    return arcface_torch_state(IRESNET50)


@pytest.fixture(scope="module")
def iresnet50() -> torch.nn.Module:
    """An IResNet-50 from the seed, for the refusals (which leave it as it is)."""
    return build_backbone("iresnet50", FACE, 512)


def face_bundle(count: int = 4, classes: int = 2) -> DataBundle:
    """``count`` random 3x112x112 images of ``classes`` people."""
    generator = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (count, *FACE), generator=generator, dtype=torch.uint8)
    labels = torch.arange(count) % classes
    split = ArrayDataset(images, labels, mean=[0.5] * 3, std=[0.25] * 3)
    return DataBundle(
        name="faces",
        train=split,
        validation=None,
        test=split,
        num_classes=classes,
        input_shape=FACE,
        class_names=[f"person{c}" for c in range(classes)],
        train_labels=labels,
        train_clean_labels=labels,
        test_labels=labels,
        pairs=None,
    )


def test_an_arcface_torch_iresnet50_state_dict_lands_in_every_parameter(
    tmp_path: Path, arcface50: dict[str, Tensor]
) -> None:
    path = tmp_path / "backbone.pth"
    torch.save(arcface50, path)  # as arcface_torch saves it: a plain state dict
    config = TrainConfig(backbone="iresnet50", embedding_dim=512, init_from=str(path))
    backbone = build_backbone("iresnet50", FACE, 512)
    head = build("arcface", num_classes=2, embedding_dim=512)
    seed_head = head.weight.detach().clone()
    record = initial_weights(config, None, False, (backbone, head), face_bundle())
    assert record is not None
    assert record["names"] == "arcface_torch" and record["kind"] == "state dict"
    assert record["head"] == "seed" and torch.equal(head.weight, seed_head)
    # as many tensors and numbers on both sides, and the same function of them
    ours = backbone.state_dict()
    assert len(ours) == len(arcface50)
    assert sum(t.numel() for t in ours.values()) == sum(t.numel() for t in arcface50.values())
    images = torch.randn(1, *FACE, generator=torch.Generator().manual_seed(1))
    backbone.eval()
    with torch.no_grad():
        expected = arcface_torch_forward(arcface50, images, IRESNET50)
        assert torch.equal(backbone(images), expected)
        assert float(expected.abs().max()) > 0.1  # not a degenerate comparison


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (
            lambda s: s.update({"layer3.0.conv1.weight": torch.zeros(256, 64, 3, 3)}),
            ["layer3.0.conv1.weight is (256, 64, 3, 3) saved, (256, 128, 3, 3) in the IResNet"],
        ),
        (lambda s: s.pop("layer4.2.bn3.bias"), ["missing layer4.2.bn3.bias"]),
        (
            lambda s: s.update({"layer5.0.conv1.weight": torch.zeros(1)}),
            ["unexpected layer5.0.conv1.weight"],
        ),
        (
            lambda s: s.update(
                {"fc.bias": s["fc.bias"].clone().index_fill_(0, torch.tensor([3]), math.nan)}
            ),
            ["fc.bias holds NaN or infinite values"],
        ),
    ],
    ids=["shape", "missing", "unexpected", "nan"],
)
def test_an_arcface_torch_state_dict_that_does_not_fit_is_refused_with_one_line(
    arcface50: dict[str, Tensor], iresnet50: torch.nn.Module, change: object, fragments: list[str]
) -> None:
    weights = dict(arcface50)  # the changed entries are replaced, never modified in place
    change(weights)  # type: ignore[operator]
    source = Source("backbone.pth", "state dict", Path("backbone.pth"), "0" * 64, 1, weights)
    before = iresnet50.state_dict()["blocks.7.body.1.weight"].clone()
    with pytest.raises(InitFromError) as raised:
        start_weights(source, iresnet50)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("init_from backbone.pth: ")
    for fragment in fragments:
        assert fragment in message, message
    assert torch.equal(iresnet50.state_dict()["blocks.7.body.1.weight"], before)


def test_training_from_an_arcface_torch_checkpoint_continues(tmp_path: Path) -> None:
    """IResNet-18 from arcface_torch names, without num_batches_tracked (an older file): one
    AdamW step (lr 1e-3, each weight moves by about the lr at most) starts from the file."""
    state = arcface_torch_state(IRESNET18)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "r18-backbone.pth"
    torch.save(state, path)
    config = TrainConfig(
        backbone="iresnet18",
        embedding_dim=512,
        loss="arcface",
        init_from=str(path),
        optimizer="adamw",
        lr=1e-3,
        lr_schedule="constant",
        max_steps=1,
        batch_size=2,
        eval_batch_size=2,
        threads=1,
        log_every=0,
    )
    result = fit(config, bundle=face_bundle(count=2), progress=False)
    assert len(result.history) == 1 and math.isfinite(result.final["train_loss"])
    trained = result.backbone.state_dict()
    for ours, theirs in [
        ("stem.0.weight", "conv1.weight"),
        ("blocks.7.body.4.weight", "layer4.1.conv2.weight"),
    ]:
        step = (trained[ours] - state[theirs]).abs().max()
        assert 0 < step < 1.5e-3, ours  # moved, from the file's values


# ------------------------------------------------------------------ marginkit's own runs
def digits_config(out: Path | None, **changes: object) -> TrainConfig:
    values: dict[str, object] = {
        "dataset": "digits",
        "backbone": "mlp",  # batch norm: its statistics are part of what is started/frozen
        "embedding_dim": 16,
        "loss": "cosface",
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.01,
        "lr_schedule": "cosine",
        "log_every": 0,
        "threads": 1,
        "out": None if out is None else str(out),
    }
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


@dataclasses.dataclass
class SourceRun:
    run_dir: Path
    backbone: dict[str, Tensor]  # its newest checkpoint's
    head: dict[str, Tensor]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, digits: DataBundle) -> SourceRun:
    run_dir = tmp_path_factory.mktemp("source") / "run"
    fit(digits_config(run_dir, lr=0.05, seed=7), bundle=digits, progress=False)
    folder = latest_checkpoint(run_dir)
    assert folder is not None
    weights = load_checkpoint(folder).weights
    part = {
        prefix: {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(prefix + ".")}
        for prefix in ("backbone", "head")
    }
    return SourceRun(run_dir, part["backbone"], part["head"])


def backbone_state(module: torch.nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def assert_same(first: dict[str, Tensor], second: dict[str, Tensor]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def first_step_loss(run_dir: Path) -> float:
    import csv

    with open(run_dir / "steps.csv") as handle:
        return float(next(csv.DictReader(handle))["loss"])


def test_a_run_starts_from_the_source_runs_weights_and_trains_on(
    tmp_path: Path, digits: DataBundle, source: SourceRun
) -> None:
    config = digits_config(tmp_path / "tuned", init_from=str(source.run_dir))
    backbone, head = build_models(config, digits)
    record = initial_weights(config, None, False, (backbone, head), digits)
    assert record is not None and record["kind"] == "run" and record["head"] == "source"
    assert record["file"].endswith(os.path.join("epoch-0002", "weights.safetensors"))
    assert_same(backbone.state_dict(), source.backbone)  # step 0: the source's weights
    assert torch.equal(head.weight, source.head["weight"])  # the same classes: its head
    assert int(head.step) == 0 and int(source.head["step"]) > 0  # its schedules start afresh
    tuned = fit(config, bundle=digits, progress=False)
    fresh = fit(digits_config(tmp_path / "fresh"), bundle=digits, progress=False)
    assert first_step_loss(tmp_path / "tuned") < first_step_loss(tmp_path / "fresh")
    assert len(tuned.history) == 2 and tuned.final["train_loss"] < fresh.history[0]["train_loss"]
    saved = yaml.safe_load((tmp_path / "tuned" / "config.yaml").read_text())
    assert saved["init_from"] == str(source.run_dir) and saved["freeze_backbone_epochs"] == 0
    recorded = yaml.safe_load((tmp_path / "tuned" / "init_from.json").read_text())
    assert recorded == record


def test_other_classes_get_a_head_from_the_seed(digits: DataBundle, source: SourceRun) -> None:
    config = digits_config(None, init_from=str(source.run_dir), classes="0-6")
    backbone, head = build_models(config, digits)
    seeded = head.weight.detach().clone()
    record = initial_weights(config, None, False, (backbone, head), digits)
    assert record is not None and record["head"] == "seed"
    assert (
        record["head_reason"] == "other classes: classes None in the source run, '0-6' in this one"
    )
    assert torch.equal(head.weight, seeded)
    assert_same(backbone.state_dict(), source.backbone)


def test_a_checkpoint_a_safetensors_file_and_an_exported_file(
    tmp_path: Path, digits: DataBundle, source: SourceRun
) -> None:
    from marginkit.export import export_run, read_sidecar

    exported = export_run(source.run_dir, "safetensors", tmp_path / "digits.safetensors")
    checkpoint = latest_checkpoint(source.run_dir)
    assert checkpoint is not None
    copied = tmp_path / "weights.safetensors"  # a checkpoint's file alone: backbone.* keys
    shutil.copy(checkpoint / "weights.safetensors", copied)
    cases = [
        (checkpoint, "checkpoint", "source"),
        (exported, "safetensors", "seed"),
        (copied, "safetensors", "seed"),
    ]
    for path, kind, head_from in cases:
        config = digits_config(None, init_from=str(path))
        backbone, head = build_models(config, digits)
        record = initial_weights(config, None, False, (backbone, head), digits)
        assert record is not None and (record["kind"], record["head"]) == (kind, head_from), path
        assert_same(backbone.state_dict(), source.backbone)
    assert record["sha256"] != read_sidecar(exported)["sha256"]  # the last: the copy
    config = digits_config(None, init_from=str(exported))
    record = initial_weights(config, None, False, build_models(config, digits), digits)
    assert record is not None and record["sha256"] == read_sidecar(exported)["sha256"]


def test_a_frozen_backbone_is_bitwise_unchanged_for_its_epochs(
    digits: DataBundle, source: SourceRun
) -> None:
    snapshots: list[tuple[dict[str, Tensor], Tensor]] = []

    def on_epoch(row: object, backbone: torch.nn.Module, head: torch.nn.Module) -> None:
        snapshots.append((backbone_state(backbone), head.weight.detach().clone()))

    config = digits_config(None, init_from=str(source.run_dir), freeze_backbone_epochs=2, epochs=3)
    fit(config, bundle=digits, progress=False, on_epoch=on_epoch)
    for frozen, _ in snapshots[:2]:  # weights and batch-norm statistics
        assert_same(frozen, source.backbone)
    assert not torch.equal(snapshots[2][0]["layers.1.weight"], source.backbone["layers.1.weight"])
    assert not torch.equal(
        snapshots[2][0]["layers.2.running_mean"], source.backbone["layers.2.running_mean"]
    )
    assert not torch.equal(snapshots[0][1], source.head["weight"])  # the head trains


def interrupted(config: TrainConfig, bundle: DataBundle, after_epoch: int) -> None:
    """Train ``config`` and stop it right after the checkpoint of ``after_epoch`` (0:
    before the first checkpoint is written)."""
    original = loop.save_checkpoint

    def stop(run_dir, backbone, head, state):  # type: ignore[no-untyped-def]
        if after_epoch == 0:
            raise KeyboardInterrupt
        path = original(run_dir, backbone, head, state)
        if state["epoch"] == after_epoch:
            raise KeyboardInterrupt
        return path

    loop.save_checkpoint = stop
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(config, bundle=bundle, progress=False)
    finally:
        loop.save_checkpoint = original


def other_weights(path: Path, source: SourceRun) -> None:
    """Write a different backbone into the safetensors file ``path``."""
    from safetensors.torch import save_file

    save_file(
        {k: v + 1.0 if v.is_floating_point() else v for k, v in source.backbone.items()}, str(path)
    )


def test_a_resumed_fine_tuning_run_ends_as_an_uninterrupted_one(
    tmp_path: Path, digits: DataBundle, source: SourceRun
) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "start.safetensors"
    save_file(source.backbone, str(weights))
    changes = {"init_from": str(weights), "freeze_backbone_epochs": 1, "epochs": 3}
    whole = fit(digits_config(tmp_path / "whole", **changes), bundle=digits, progress=False)
    config = digits_config(tmp_path / "part", **changes)
    interrupted(config, digits, after_epoch=2)
    other_weights(weights, source)  # the source changes: the resumed run does not read it
    stream = io.StringIO()
    resumed = fit(config, bundle=digits, resume=True, progress=False, stream=stream)
    assert_same(backbone_state(resumed.backbone), backbone_state(whole.backbone))
    assert_same(resumed.head.state_dict(), whole.head.state_dict())
    note = stream.getvalue()
    assert f"note: init_from {weights} has changed since the run started" in note
    assert "resumes from its own checkpoint" in note and len(note.strip().splitlines()) == 1


def test_a_run_resumes_from_its_checkpoint_when_its_source_is_gone(
    tmp_path: Path, digits: DataBundle, source: SourceRun
) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "start.safetensors"
    save_file(source.backbone, str(weights))
    config = digits_config(tmp_path / "run", init_from=str(weights))
    interrupted(config, digits, after_epoch=1)
    weights.unlink()
    stream = io.StringIO()
    resumed = fit(config, bundle=digits, resume=True, progress=False, stream=stream)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert (
        f"note: init_from {weights} cannot be read now (no such file or folder); "
        in stream.getvalue()
    )


def test_a_run_resumed_before_its_first_checkpoint_refuses_a_changed_source(
    tmp_path: Path, digits: DataBundle, source: SourceRun
) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "start.safetensors"
    save_file(source.backbone, str(weights))
    config = digits_config(tmp_path / "run", init_from=str(weights))
    interrupted(config, digits, after_epoch=0)
    assert (tmp_path / "run" / "init_from.json").is_file()
    other_weights(weights, source)
    with pytest.raises(RunFolderError, match=r"has changed since the run in .* started"):
        fit(config, bundle=digits, resume=True, progress=False)
    save_file(source.backbone, str(weights))  # restored: it starts again from it
    resumed = fit(config, bundle=digits, resume=True, progress=False)
    assert len(resumed.history) == 2


def test_unreadable_or_unsafe_sources_are_refused_before_anything_is_written(
    tmp_path: Path, digits: DataBundle, source: SourceRun
) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"layers.1.weight": torch.zeros(1), "code": Payload()}, unsafe)
    text, scripted, nested = tmp_path / "notes.txt", tmp_path / "scripted.pt", tmp_path / "n.pth"
    text.write_text("not weights\n")
    with warnings.catch_warnings():  # torch.jit.script is deprecated, still what users have
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(scripted))
    torch.save({"state_dict": {"layers.1.weight": torch.zeros(1)}}, nested)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    damaged = tmp_path / "damaged"
    shutil.copytree(source.run_dir, damaged)
    weights = damaged / "checkpoints" / "epoch-0002" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    out = tmp_path / "out"
    cases = [
        (tmp_path / "missing.pth", ["no such file or folder"]),
        (unsafe, ["is not a PyTorch state dict file", "holds Python objects, not only tensors"]),
        (text, ["is not a PyTorch state dict file", "(not a file torch.save wrote)"]),
        (scripted, ["a TorchScript archive: give the run, or its safetensors export"]),
        (
            nested,
            ["holds a checkpoint whose 'state_dict' entry is a dict", "save that entry alone"],
        ),
        (garbage, ["is not a safetensors file"]),
        (tmp_path, ["neither a run (no config.yaml) nor a checkpoint"]),
        (
            damaged,
            [
                "checkpoint epoch-0002 is damaged (weights.safetensors: checksum mismatch)",
                f"give {damaged / 'checkpoints' / 'epoch-0001'} to start from it",
            ],
        ),
        (out / "checkpoints", [f"inside the run's own folder {out}"]),
    ]
    (out / "checkpoints").mkdir(parents=True)
    for path, fragments in cases:
        run_dir = out if path == out / "checkpoints" else tmp_path / "run"
        with pytest.raises(InitFromError) as raised, warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning of torch.load's beside the one line
            fit(digits_config(run_dir, init_from=str(path)), bundle=digits, progress=False)
        message = str(raised.value)
        assert message.startswith(f"init_from {path}: ") and "\n" not in message, message
        assert all(fragment in message for fragment in fragments), message
        assert not (tmp_path / "run").exists()  # nothing written
        assert sorted(entry.name for entry in out.iterdir()) == ["checkpoints"]
    assert not (tmp_path / "ran").exists()  # the pickle's code never ran


def test_the_command_line_names_a_missing_source_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing, out = tmp_path / "r50.pth", tmp_path / "run"
    arguments = ["train", "--dataset", "digits", "--quiet", "--threads", "1"]
    with pytest.raises(SystemExit) as raised:
        cli.main([*arguments, "--init-from", str(missing), "--out", str(out)])
    assert raised.value.code == 2
    error = f"marginkit: error: init_from {missing}: no such file or folder\n"
    assert capsys.readouterr().err == error
    assert not out.exists()


def test_a_resumed_run_says_which_frozen_epochs_are_still_to_come(
    tmp_path: Path, digits: DataBundle, source: SourceRun
) -> None:
    """After "resuming ... after epoch 1", the epochs the backbone stays frozen are 2-2; after
    epoch 2 none are left, and nothing is said of them."""
    for after_epoch, frozen in ((1, ["backbone frozen (eval mode) for epochs 2-2"]), (2, [])):
        run_dir = tmp_path / f"run{after_epoch}"
        config = digits_config(
            run_dir, init_from=str(source.run_dir), freeze_backbone_epochs=2, epochs=3
        )
        interrupted(config, digits, after_epoch=after_epoch)
        stream = io.StringIO()
        fit(config, bundle=digits, resume=True, progress=True, stream=stream)
        said = [
            line
            for line in stream.getvalue().splitlines()
            if line.startswith(("resum", "backbone"))
        ]
        assert said == [
            f"resuming {run_dir} after epoch {after_epoch} (step {22 * after_epoch})",
            *frozen,
        ]
