"""Names for the edges (command line, config files): the losses, backbones and data sets.

Each kind is a :class:`Registry` of canonical names, aliases and, for every name, the import
path (``"module:attribute"``) of what it stands for. A registry knows its names without
importing anything, so the command line lists them in its help without loading torch; the
implementation is imported on the first :meth:`Registry.get`.

Names are matched after :func:`normalise` (case, surrounding spaces, ``-`` and ``_`` do not
count), so ``"ArcFace"``, ``"am-softmax"`` and ``"Fashion_MNIST"`` are found. A registry made
with ``specs=True`` (:data:`BACKBONES`) also takes an import spec, ``"module:callable"``
(:func:`is_spec`), for something of the user's: it is imported as written, on first use.

>>> from marginkit.registry import LOSSES
>>> LOSSES.canonical("AM-Softmax")
'cosface'
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from marginkit.errors import MarginkitError

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from marginkit.data.raw import RawSplits
    from marginkit.data.readers import ReadRequest
    from marginkit.losses.head import MarginHead

__all__ = [
    "BACKBONES",
    "DATASETS",
    "LOSSES",
    "Registry",
    "UnknownNameError",
    "is_spec",
    "normalise",
]

T = TypeVar("T")

#: ``module.path:attribute.path``: dotted identifiers either side of one colon.
_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class UnknownNameError(MarginkitError, ValueError):
    """A name that no entry of a registry answers to (the message lists the known ones), or
    an import spec that names nothing importable and callable (the message names the spec)."""


def normalise(name: str) -> str:
    """The form names are compared in: lower case, no surrounding spaces, no ``-`` or ``_``."""
    return name.strip().lower().replace("-", "").replace("_", "")


def is_spec(name: object) -> bool:
    """Whether ``name`` is meant as an import spec (``"my_pkg.nets:build"``: it holds a
    colon) rather than a registered name."""
    return isinstance(name, str) and ":" in name


class Registry(Generic[T]):
    """Canonical names and aliases of one kind of thing, each bound to an import path.

    Args:
        kind: what the names stand for, as the option that takes them is called (``"loss"``,
            ``"backbone"``, ``"dataset"``); error messages use it.
        entries: canonical name -> ``"module:attribute"``, in the order :meth:`names` lists.
        aliases: other name -> canonical name.
        specs: also take ``"module:callable"`` import specs (:func:`is_spec`) for things
            outside the registry; :meth:`canonical` returns them as written.
    """

    def __init__(
        self,
        kind: str,
        entries: Mapping[str, str],
        aliases: Mapping[str, str] | None = None,
        *,
        specs: bool = False,
    ) -> None:
        self.kind = kind
        self.specs = specs
        self._entries = dict(entries)
        self.aliases = dict(aliases or {})
        self._canonical = {normalise(name): name for name in self._entries}
        self._canonical.update({normalise(alias): name for alias, name in self.aliases.items()})

    def names(self) -> list[str]:
        """The canonical names, in registration order."""
        return list(self._entries)

    def choices(self) -> list[str]:
        """Every name accepted as written here: the canonical names, then the aliases."""
        return [*self._entries, *self.aliases]

    def canonical(self, name: str) -> str:
        """The canonical name that ``name`` (canonical, alias, any case or separator) means;
        an import spec (``specs=True``) is returned as written, without surrounding spaces.

        Raises:
            TypeError: ``name`` is not a str.
            UnknownNameError: a one-line message naming the kind, ``name`` and the choices
                (or, for a spec, that it is not ``module:callable``).
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str; got {type(name).__name__}")
        if self.specs and is_spec(name):
            if _SPEC.fullmatch(name.strip()) is None:
                raise UnknownNameError(
                    f"{self.kind} {name!r}: an import spec must read module:callable "
                    "(dotted names, one colon), e.g. my_package.nets:build"
                )
            return name.strip()
        found = self._canonical.get(normalise(name))
        if found is None:
            spec = ", or module:callable" if self.specs else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.choices())}{spec}"
            )
        return found

    def get(self, name: str) -> T:
        """What ``name`` stands for, imported on first use (a spec: its module imported, then
        its attribute looked up).

        Raises:
            TypeError: ``name`` is not a str.
            UnknownNameError: a one-line message naming the kind, ``name`` and the choices;
                for a spec, naming it and what is missing (the module, the attribute) or that
                the attribute is not callable.
        """
        canonical = self.canonical(name)
        if self.specs and is_spec(canonical):
            return self._import_spec(canonical)
        module, _, attribute = self._entries[canonical].partition(":")
        found: T = getattr(importlib.import_module(module), attribute)
        return found

    def _import_spec(self, spec: str) -> T:
        """The callable named by ``module:attribute`` (attribute may be dotted)."""
        module_name, _, attribute = spec.partition(":")
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:  # the spec's module; not one it imports itself
            missing = error.name or ""
            if module_name != missing and not module_name.startswith(missing + "."):
                raise
            raise UnknownNameError(
                f"{self.kind} {spec!r}: no module named {missing!r} (is it on sys.path?)"
            ) from None
        for part in attribute.split("."):
            if not hasattr(found, part):
                raise UnknownNameError(
                    f"{self.kind} {spec!r}: module {module_name!r} has no attribute {attribute!r}"
                )
            found = getattr(found, part)
        if not callable(found):
            raise UnknownNameError(
                f"{self.kind} {spec!r}: {attribute!r} is a {type(found).__name__}, not callable"
            )
        result: T = found
        return result

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()!r}, aliases={self.aliases!r})"


LOSSES: Registry[type[MarginHead]] = Registry(
    "loss",
    {
        "softmax": "marginkit.losses.softmax:Softmax",
        "lsoftmax": "marginkit.losses.lsoftmax:LSoftmax",
        "sphereface": "marginkit.losses.lsoftmax:SphereFace",
        "normface": "marginkit.losses.normface:NormFace",
        "cosface": "marginkit.losses.cosface:CosFace",
        "arcface": "marginkit.losses.arcface:ArcFace",
        "combined": "marginkit.losses.combined:CombinedMargin",
        "virtual": "marginkit.losses.virtual:VirtualSoftmax",
        "camsoftmax": "marginkit.losses.camsoftmax:CamSoftmax",
        "adacos": "marginkit.losses.adacos:AdaCos",
        "curricularface": "marginkit.losses.curricularface:CurricularFace",
        "subcenter": "marginkit.losses.subcenter:SubCenterArcFace",
        "magface": "marginkit.losses.magface:MagFace",
        "adaface": "marginkit.losses.adaface:AdaFace",
    },
    aliases={"amsoftmax": "cosface", "asoftmax": "sphereface", "subcenter_arcface": "subcenter"},
)

BACKBONES: Registry[Callable[[Any, int], nn.Module]] = Registry(
    "backbone",
    {
        "lenetpp": "marginkit.models.backbones:LeNetPP",
        "mnistnet": "marginkit.models.backbones:MNISTNet",
        "resnet20": "marginkit.models.backbones:ResNet20",
        "facenet": "marginkit.models.backbones:FaceNet",
        "iresnet18": "marginkit.models.faces:iresnet18",
        "iresnet34": "marginkit.models.faces:iresnet34",
        "iresnet50": "marginkit.models.faces:iresnet50",
        "iresnet100": "marginkit.models.faces:iresnet100",
        "mobilefacenet": "marginkit.models.faces:MobileFaceNet",
        "mlp": "marginkit.models.backbones:MLP",
    },
    specs=True,
)

DATASETS: Registry[Callable[[ReadRequest], RawSplits]] = Registry(
    "dataset",
    {
        "digits": "marginkit.data.readers:read_bundled_digits",
        "glyphs": "marginkit.data.readers:read_generated_glyphs",
        "mnist": "marginkit.data.readers:read_idx_files",
        "fashion-mnist": "marginkit.data.readers:read_idx_files",
        "kmnist": "marginkit.data.readers:read_idx_files",
        "cifar10": "marginkit.data.readers:read_cifar_batches",
        "cifar100": "marginkit.data.readers:read_cifar_batches",
        "svhn": "marginkit.data.readers:read_svhn_files",
        "folder": "marginkit.data.readers:read_image_folder",
        "rec": "marginkit.data.readers:read_record_folder",
        "lfw": "marginkit.data.readers:read_lfw_tree",
    },
)
