"""A backbone of one's own through a ``module:callable`` import spec: how it is called, its
one-line errors, and a training run through the command line."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from marginkit import cli
from marginkit.models import BackboneError, build_backbone, confirm_backbone
from marginkit.registry import BACKBONES, UnknownNameError, is_spec

NETS = """
import math
from torch import nn

calls = []

def with_shape(embedding_dim, input_shape):
    calls.append(("with_shape", embedding_dim, input_shape))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), embedding_dim))

def without_shape(embedding_dim):
    calls.append(("without_shape", embedding_dim))
    return nn.Sequential(nn.Flatten(), nn.Linear(64, embedding_dim))

def anything(**kwargs):
    calls.append(("anything", kwargs))
    return nn.Linear(64, kwargs["embedding_dim"])

class Nets:
    @staticmethod
    def nested(embedding_dim):
        return nn.Linear(64, embedding_dim)

def not_a_module(embedding_dim):
    return [embedding_dim]

NOT_CALLABLE = 3
"""


@pytest.fixture
def nets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh module of backbone builders on ``sys.path``; its (unique) name."""
    name = f"user_nets_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(NETS))
    (folder / f"{name}_broken.py").write_text("import a_package_nobody_has_xyz\n")
    monkeypatch.syspath_prepend(str(folder))
    return name


def test_is_spec_means_a_colon() -> None:
    assert is_spec("pkg.mod:build") and is_spec("pkg:") and not is_spec("iresnet50")
    assert not is_spec(3)


def test_called_with_embedding_dim_and_input_shape_when_it_takes_it(nets: str) -> None:
    import importlib

    module = importlib.import_module(nets)
    net = build_backbone(f"{nets}:with_shape", [1, 8, 8], 5)
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 5)
    assert isinstance(build_backbone(f" {nets}:without_shape ", (64,), 4), nn.Module)
    build_backbone(f"{nets}:anything", (64,), 3)
    assert isinstance(build_backbone(f"{nets}:Nets.nested", (64,), 2), nn.Linear)
    assert module.calls == [
        ("with_shape", 5, (1, 8, 8)),
        ("without_shape", 4),
        ("anything", {"embedding_dim": 3, "input_shape": (64,)}),
    ]


def test_registry_keeps_a_spec_as_written(nets: str) -> None:
    assert BACKBONES.canonical(f"  {nets}:with_shape ") == f"{nets}:with_shape"
    with pytest.raises(UnknownNameError, match=r"; expected one of: lenetpp, .*, mlp, or "):
        BACKBONES.canonical("vgg")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch_package_xyz.nets:build", r"no module named 'nosuch_package_xyz' \(is it on"),
        ("{nets}:missing", r"module '{nets}' has no attribute 'missing'$"),
        ("{nets}:Nets.missing", r"module '{nets}' has no attribute 'Nets.missing'$"),
        ("{nets}:NOT_CALLABLE", r"'NOT_CALLABLE' is a int, not callable$"),
        ("{nets}:", "an import spec must read module:callable"),
        ("a:b:c", "an import spec must read module:callable"),
        ("my-pkg:build", "an import spec must read module:callable"),
    ],
)
def test_a_bad_spec_is_one_line_naming_it(nets: str, spec: str, message: str) -> None:
    spec, message = spec.format(nets=nets), message.format(nets=nets)
    with pytest.raises(UnknownNameError, match=rf"^backbone '{spec}': {message}") as caught:
        build_backbone(spec, (64,), 2)
    assert "\n" not in str(caught.value)


def test_a_result_that_is_not_a_module(nets: str) -> None:
    with pytest.raises(
        BackboneError, match=rf"^backbone '{nets}:not_a_module' returned a list, not a torch"
    ):
        build_backbone(f"{nets}:not_a_module", (64,), 2)


def test_a_missing_import_inside_the_users_module_is_not_hidden(nets: str) -> None:
    """The spec's module exists; what it imports does not: that is the module's own bug, and
    keeps its traceback (ModuleNotFoundError naming what it imports)."""
    with pytest.raises(ModuleNotFoundError, match="a_package_nobody_has_xyz"):
        build_backbone(f"{nets}_broken:build", (64,), 2)


TRAIN = ["train", "--dataset", "digits", "--epochs", "1", "--max-steps", "2", "--quiet"]
TRAIN += ["--threads", "1", "--batch-size", "16", "--embedding-dim", "6"]


@pytest.fixture
def keep_threads() -> object:
    """``--threads 1`` sets torch's thread count for the process: put it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("keep_threads")
def test_marginkit_train_with_a_spec(nets: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    spec = f"{nets}:with_shape"
    assert cli.main([*TRAIN, "--backbone", spec, "--out", str(out)]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["backbone"] == spec
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["backbone"] == spec
    assert (out / "log.csv").read_text().count("\n") == 2  # header + the one epoch


@pytest.mark.usefixtures("keep_threads")
@pytest.mark.parametrize(
    ("backbone", "fragment"),
    [
        ("nosuch_package_xyz:build", "backbone 'nosuch_package_xyz:build': no module named"),
        ("{nets}:not_a_module", "backbone '{nets}:not_a_module' returned a list, not a torch"),
        ("iresnet18", "backbone 'iresnet18' needs images of at least 97x97"),
    ],
)
def test_marginkit_train_refuses_in_one_line_before_writing(
    nets: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], backbone: str, fragment: str
) -> None:
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        cli.main([*TRAIN, "--backbone", backbone.format(nets=nets), "--out", str(out)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("marginkit: error: " + fragment.format(nets=nets))
    assert error.count("\n") == 1
    assert not out.exists()


def test_a_recorded_spec_needs_the_same_spec_to_confirm_it(nets: str) -> None:
    """Someone else's config.yaml or export record can name any module: it is imported only
    when the user names the same spec; a registered name needs no confirmation."""
    confirm_backbone("mlp", None, "config.yaml")
    confirm_backbone("resnet20", "ResNet-20", "config.yaml")
    spec = f"{nets}:with_shape"
    with pytest.raises(BackboneError, match=rf"^config.yaml: backbone '{spec}' would import mod"):
        confirm_backbone(spec, None, "config.yaml")
    with pytest.raises(BackboneError, match=rf"records backbone '{spec}', not 'os:system' \("):
        confirm_backbone(spec, "os:system", "config.yaml")
    with pytest.raises(BackboneError, match=r"records backbone 'mlp', not 'resnet20' \("):
        confirm_backbone("mlp", "resnet20", "config.yaml")
    confirm_backbone(f" {spec}", spec, "config.yaml")
    assert nets not in sys.modules  # confirming imports nothing
