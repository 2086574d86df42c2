"""Shared pytest set-up: every test starts from the same global random state; a module of
someone else's for the tests of recorded ``module:callable`` backbones."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Seed torch's global generator, so a test's outcome does not depend on test order."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_data_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader reads ``$MARGINKIT_DATA`` (which ``.ci/run`` exports for the real-data
    tests, through ``data_writers.SHARED_DATA``); every test starts without it, so what it
    reads does not depend on the environment. Tests of the variable set it themselves."""
    monkeypatch.delenv("MARGINKIT_DATA", raising=False)


#: A module of someone else's: importing it leaves ``NAME.imported`` beside it (so a test
#: sees whether it ran); ``mlp`` and ``resnet20`` build the registered backbones, whose
#: weights a run of those fits.
FOREIGN_MODULE = """
from pathlib import Path

Path(__file__).with_suffix(".imported").touch()

from marginkit.models import build_backbone


def mlp(embedding_dim, input_shape):
    return build_backbone("mlp", input_shape, embedding_dim)


def resnet20(embedding_dim, input_shape):
    return build_backbone("resnet20", input_shape, embedding_dim)
"""


@pytest.fixture
def foreign_backbone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A fresh module of backbone builders on ``sys.path`` (:data:`FOREIGN_MODULE`):
    ``(its name, the file its import creates)``; the spec ``f"{name}:mlp"`` builds an MLP."""
    name = f"foreign_nets_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / f"{name}.py").write_text(FOREIGN_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    return name, folder / f"{name}.imported"
