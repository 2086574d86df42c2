"""The one registry of names: losses, backbones and data sets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hang import HANG_LIMIT
from marginkit.data import DATASETS as DATASET_NAMES
from marginkit.data.readers import read_idx_files
from marginkit.losses import CosFace, SphereFace, available
from marginkit.losses.registry import ALIASES, REGISTRY
from marginkit.models import LeNetPP, available_backbones
from marginkit.registry import (
    BACKBONES,
    DATASETS,
    LOSSES,
    Registry,
    UnknownNameError,
    normalise,
)

ALL = [LOSSES, BACKBONES, DATASETS]


def test_normalise_ignores_case_spaces_and_separators() -> None:
    assert normalise("  Fashion_MNIST ") == normalise("fashion-mnist") == "fashionmnist"


@pytest.mark.parametrize(
    ("registry", "name", "canonical"),
    [
        (LOSSES, "AM-Softmax", "cosface"),
        (LOSSES, "a_softmax", "sphereface"),
        (LOSSES, "ArcFace", "arcface"),
        (BACKBONES, "LeNet-PP", "lenetpp"),
        (DATASETS, "Fashion_MNIST", "fashion-mnist"),
        (DATASETS, "CIFAR-10", "cifar10"),
    ],
)
def test_canonical_accepts_aliases_and_spellings(
    registry: Registry[object], name: str, canonical: str
) -> None:
    assert registry.canonical(name) == canonical


def test_get_imports_what_the_name_stands_for() -> None:
    assert LOSSES.get("amsoftmax") is CosFace
    assert LOSSES.get("asoftmax") is SphereFace
    assert BACKBONES.get("lenetpp") is LeNetPP
    assert DATASETS.get("kmnist") is read_idx_files


@pytest.mark.parametrize("registry", ALL, ids=lambda registry: registry.kind)
def test_every_entry_imports(registry: Registry[object]) -> None:
    for name in registry.names():
        assert callable(registry.get(name)), name


@pytest.mark.parametrize(
    ("registry", "message"),
    [
        (
            LOSSES,
            r"^unknown loss 'nope'; expected one of: softmax, .*, amsoftmax, asoftmax, "
            r"subcenter_arcface$",
        ),
        (
            BACKBONES,
            r"^unknown backbone 'nope'; expected one of: lenetpp, .*, mlp, or module:callable$",
        ),
        (DATASETS, r"^unknown dataset 'nope'; expected one of: digits, .*, lfw$"),
    ],
)
def test_an_unknown_name_is_one_line_naming_the_choices(
    registry: Registry[object], message: str
) -> None:
    with pytest.raises(UnknownNameError, match=message):
        registry.get("nope")
    assert issubclass(UnknownNameError, ValueError)


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="name must be a str; got int"):
        LOSSES.canonical(3)  # type: ignore[arg-type]


def test_the_packages_read_the_registry() -> None:
    assert available() == LOSSES.names() == list(REGISTRY)
    assert (
        ALIASES
        == LOSSES.aliases
        == {"amsoftmax": "cosface", "asoftmax": "sphereface", "subcenter_arcface": "subcenter"}
    )
    assert available_backbones() == BACKBONES.names()
    assert list(DATASET_NAMES) == DATASETS.names()
    assert LOSSES.choices() == [*LOSSES.names(), "amsoftmax", "asoftmax", "subcenter_arcface"]


def test_names_are_known_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from marginkit.registry import BACKBONES, DATASETS, LOSSES\n"
        "print(len(LOSSES.names()), len(BACKBONES.names()), len(DATASETS.names()),"
        " LOSSES.canonical('AMSoftmax'), 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_LIMIT, check=True
    )
    assert result.stdout.split() == ["14", "10", "11", "cosface", "False"]
