"""The package's shape: dependencies run one way, down the layers of docs/architecture.md,
and functions stay short.

The checks read the source with ``ast`` (nothing is imported), so they see imports inside
functions as well as at the top of a module.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "marginkit"
#: Where the layer order is written, once.
ARCHITECTURE = ROOT / "docs" / "architecture.md"
#: The longest function allowed, in lines (decorators and docstring included).
MAX_FUNCTION_LINES = 80
#: Functions allowed to be longer: the fused autograd Function's forward and backward, whose
#: numerics read best as one piece (docs/architecture.md).
EXEMPT = {("marginkit.losses.fused", "forward"), ("marginkit.losses.fused", "backward")}


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` tests ``TYPE_CHECKING`` (``typing.TYPE_CHECKING``)."""
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", None)
    return name == "TYPE_CHECKING"


def _imports(
    name: str, path: Path, modules: dict[str, Path], *, with_type_checking: bool = True
) -> set[str]:
    """The package's modules that module ``name`` imports (anywhere in its body; without
    ``with_type_checking``, not those under ``if TYPE_CHECKING:``, which never run)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skipped = set()
    if not with_type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                skipped.update(id(inner) for part in node.body for inner in ast.walk(part))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in modules and module != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycle_among_the_packages_modules() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert sum(len(targets) for targets in graph.values()) > 50  # the check sees imports
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _layers() -> dict[str, int]:
    """Each top-level module or package of marginkit -> its layer (0: the top), read from
    the numbered list of docs/architecture.md's "The layers" (``1. `cli/` — ...``; the names
    on one line are one layer, ``__init__.py`` is the package's own module)."""
    text = ARCHITECTURE.read_text().split("\n## The layers\n", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for line in text.splitlines():
        item = re.fullmatch(r"(\d+)\. ((?:`[^`]+`(?:, )?)+)(?: — .*)?", line)
        if item is None:
            continue
        assert int(item.group(1)) == len(set(layers.values())) + 1, line  # numbered in order
        for unit in re.findall(r"`([^`]+)`", item.group(2)):
            unit = "marginkit" if unit == "__init__.py" else unit.removesuffix("/")
            assert unit.removesuffix(".py") not in layers, f"{unit} is listed twice"
            layers[unit.removesuffix(".py")] = int(item.group(1)) - 1
    return layers


def _unit(module: str) -> str:
    """The top-level module or package of marginkit that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """The imports of ``graph`` from a module to one of its own layer or of a higher one
    (another top-level unit: a package may import its own modules)."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            source, destination = _unit(module), _unit(target)
            if source != destination and layers[destination] <= layers[source]:
                found.append(f"{module} -> {target}")
    return found


def _runtime_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(package)
    return {
        name: _imports(name, path, modules, with_type_checking=False)
        for name, path in modules.items()
    }


def test_every_module_has_one_layer() -> None:
    units = {_unit(module) for module in _modules()}
    assert set(_layers()) == units


def test_imports_run_only_down_the_layers() -> None:
    """No module imports one of a higher layer or another package of its own layer, at the
    top of the module or inside a function (``docs/architecture.md``, "The layers")."""
    graph = _runtime_graph()
    assert sum(len(targets) for targets in graph.values()) > 50  # the check sees imports
    assert _upward_imports(graph, _layers()) == []


def test_training_does_not_import_verify() -> None:
    graph = _runtime_graph()
    edges = [f"{m} -> {t}" for m, targets in graph.items() for t in targets]
    assert [
        e for e in edges if re.fullmatch(r"marginkit\.train\S* -> marginkit\.verify\S*", e)
    ] == []


def test_the_layer_check_finds_a_planted_upward_import(tmp_path: Path) -> None:
    """A function-local import of ``verify`` planted in a copy of ``train/verification.py``
    is found; one under ``if TYPE_CHECKING:`` is not (it never runs)."""
    copy = tmp_path / "marginkit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planted = copy / "train" / "verification.py"
    planted.write_text(
        planted.read_text()
        + "\n\ndef _planted() -> None:\n    from marginkit.verify.run import verify_run\n"
        + "\n\nif TYPE_CHECKING:\n    from marginkit.compare import grid\n"
    )
    graph = _runtime_graph(copy)
    assert _upward_imports(graph, _layers()) == [
        "marginkit.train.verification -> marginkit.verify.run"
    ]


def test_the_layer_check_refuses_an_import_within_a_layer() -> None:
    layers = {"top": 0, "a": 1, "b": 1, "floor": 2}
    graph = {"m.top": {"m.a", "m.floor"}, "m.a.x": {"m.a.y", "m.b"}, "m.floor": {"m.top.z"}}
    assert _upward_imports(graph, layers) == ["m.a.x -> m.b", "m.floor -> m.top.z"]


def test_no_function_is_longer_than_80_lines() -> None:
    too_long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1 if node.end_lineno else 0
                if length > MAX_FUNCTION_LINES and (name, node.name) not in EXEMPT:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []
