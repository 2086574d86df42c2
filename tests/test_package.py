"""The package itself: cheap, side-effect-free import, ``py.typed`` and ``__version__``."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import re
import subprocess
import sys

from hang import HANG_LIMIT

HEAVY = ["torch", "numpy", "matplotlib", "sklearn", "PIL", "yaml", "safetensors", "scipy"]


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_marginkit_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import marginkit\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))\n"
    )
    assert run_python(code).strip() == "[]"


def test_losses_load_on_first_access() -> None:
    """``marginkit.losses`` loads torch lazily, and importing it pulls no plotting or
    training dependency."""
    code = (
        "import sys\n"
        "import marginkit\n"
        "assert 'torch' not in sys.modules\n"
        "marginkit.losses.build('arcface', num_classes=3, embedding_dim=2)\n"
        "import marginkit.schedules\n"
        "print('torch' in sys.modules, sorted(name for name in "
        "['matplotlib', 'sklearn', 'PIL', 'yaml', 'safetensors', 'scipy'] "
        "if name in sys.modules))\n"
    )
    assert run_python(code).strip() == "True []"


def test_unknown_attribute_raises_attribute_error() -> None:
    code = (
        "import marginkit\n"
        "try:\n"
        "    marginkit.no_such_thing\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    assert "no_such_thing" in run_python(code)


def test_py_typed_and_version() -> None:
    import marginkit

    assert importlib.resources.files("marginkit").joinpath("py.typed").is_file()
    assert isinstance(marginkit.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", marginkit.__version__)
    assert marginkit.__version__ == importlib.metadata.version("marginkit")
