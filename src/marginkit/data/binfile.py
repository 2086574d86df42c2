"""InsightFace's verification ``.bin`` files (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``).

A ``.bin`` is a pickle of a pair ``(images, flags)``: ``images`` a list of 2P encoded images
(the bytes of JPEG or PNG files), ``flags`` a list of P booleans; pair ``i`` is images
``2 i`` and ``2 i + 1``, and ``flags[i]`` is True when both show one person (the format of
InsightFace's ``lfw2pack.py``, Deng et al., "ArcFace", CVPR 2019).

Reading never runs code from the file. :class:`_PairUnpickler` resolves no global at all:
its ``find_class`` refuses every name but a handful that real files contain, and for those
it returns inert stand-ins defined here, never the named object:

- ``_codecs.encode``: how Python 3 pickles ``bytes`` at protocols 0-2; the stand-in only
  turns a latin-1 string back into bytes.
- numpy's array and scalar reconstructors (``numpy.core.multiarray._reconstruct``,
  ``numpy.core.numeric._frombuffer``, ``numpy.core.multiarray.scalar``, ``numpy.ndarray``,
  ``numpy.dtype``, and their ``numpy._core`` spellings): InsightFace's ``cfp2pack.py`` and
  ``agedb2pack2.py`` store the output of ``cv2.imencode``, a ``uint8`` array, and other
  writers store ``numpy.bool_`` flags. The stand-ins record the dtype, shape and raw bytes;
  only a byte array (read as its bytes) or a boolean (array or scalar) is accepted after.

Anything else (an ``os.system`` call, any class) stops the unpickling at the opcode naming
it, before anything is built, and the file is refused with one line naming it. After
unpickling, the structure is checked: two lists (or tuples), bytes and booleans, twice as
many images as flags.

Reading never allocates more than the file warrants either. Python's unpickler sizes its
memo by the largest index a ``PUT`` names and a ``bytes`` by its declared length before
reading on, so a 9-byte file naming memo index 2**27 made it allocate 2.3 GB. Before
unpickling, every opcode is read without building anything (:func:`pickletools.genops`),
and a file is refused that declares a length past its end or a memo index larger than the
bytes before it (each memo entry needs at least one byte to build what it stores): the memo
then takes at most 16 bytes per byte of the file.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginkit.data.errors import DataError

__all__ = ["BIN_PICKLE_PROTOCOL", "BinPairs", "encode_bin", "read_bin"]

#: The pickle protocol :func:`encode_bin` writes: bytes and booleans need no global at
#: protocol 4, and every Python 3 reader of ``.bin`` files (InsightFace's included) loads it.
BIN_PICKLE_PROTOCOL = 4


@dataclass(frozen=True)
class BinPairs:
    """The contents of a verification ``.bin`` file.

    Attributes:
        images: 2P encoded images (JPEG, PNG, ... file contents); pair ``i`` is images
            ``2 i`` and ``2 i + 1``.
        same: P flags, True for a pair of one person.
    """

    images: list[bytes]
    same: list[bool]

    def __len__(self) -> int:
        return len(self.same)


# ------------------------------------------------------------------------ stand-ins
class _StandIn:
    """What ``find_class`` hands the unpickler: a callable with no attributes to set (a
    pickle's BUILD cannot alter it) and no class to instantiate through NEWOBJ."""

    __slots__ = ("_function", "_name")
    _function: Callable[..., Any]
    _name: str

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_function", function)

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set an attribute of {self._name}")

    def __reduce__(self) -> Any:  # never pickled itself
        raise pickle.PicklingError(f"{self._name} is a stand-in used while reading .bin files")


class _Dtype:
    """Stands for a ``numpy.dtype``: records its type code (``"u1"``, ``"b1"``, ...)."""

    code = ""

    def __init__(self, code: Any = "", align: Any = False, copy: Any = True) -> None:
        self.code = _text(code).lstrip("<>|=")

    def __setstate__(self, state: Any) -> None:  # byte order etc.: one-byte types only
        """Ignore the byte order and flags: only one-byte types are accepted later."""


class _Array:
    """Stands for a numpy array: records its dtype, shape and raw bytes."""

    dtype: _Dtype | None = None
    shape: tuple[Any, ...] = ()
    raw = b""

    def __setstate__(self, state: Any) -> None:
        # (version, shape, dtype, is_fortran, raw) or, from old numpy, without the version
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("a numpy array with an unknown state layout")
        shape, dtype, _, raw = state
        self.set(raw, dtype, shape)

    def set(self, raw: Any, dtype: Any, shape: Any) -> None:
        """Record the array's bytes, dtype and shape (bytes only: nothing is allocated)."""
        if not isinstance(dtype, _Dtype) or not isinstance(shape, tuple):
            raise pickle.UnpicklingError("a numpy array without a dtype and shape")
        if not isinstance(raw, (bytes, bytearray, str)):
            raise pickle.UnpicklingError("a numpy array whose data is not bytes")
        self.dtype, self.shape = dtype, shape
        self.raw = raw.encode("latin1") if isinstance(raw, str) else bytes(raw)


def _text(value: Any) -> str:
    """A name from a Python 2 (bytes) or Python 3 (str) pickle."""
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, str):
        return value
    raise pickle.UnpicklingError(f"expected a type name, got {type(value).__name__}")


def _ndarray_marker(*args: Any) -> Any:
    raise pickle.UnpicklingError("refusing to call numpy.ndarray")


_NDARRAY = _StandIn("numpy.ndarray", _ndarray_marker)


def _reconstruct(cls: Any, shape: Any = None, code: Any = None) -> _Array:
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("numpy's reconstructor called for another class")
    return _Array()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any = "C") -> _Array:
    array = _Array()
    array.set(buffer, dtype, shape)
    return array


def _scalar(dtype: Any, raw: Any) -> bool:
    """Only ``numpy.bool_`` scalars: the flags of some writers."""
    if not isinstance(dtype, _Dtype) or dtype.code != "b1":
        raise pickle.UnpicklingError("a numpy scalar that is not a boolean")
    data = raw.encode("latin1") if isinstance(raw, str) else raw
    if not isinstance(data, bytes) or len(data) != 1:
        raise pickle.UnpicklingError("a numpy boolean without its one byte")
    return data != b"\x00"


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode(text, "latin1")``: Python 3's spelling of bytes at protocol <= 2."""
    if not isinstance(text, str) or _text(encoding).lower() not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode used for something other than bytes")
    return text.encode("latin1")


def _stand_ins() -> dict[tuple[str, str], _StandIn]:
    """Every global a real ``.bin`` names, each mapped to its inert stand-in."""
    table = {
        ("_codecs", "encode"): _StandIn("_codecs.encode", _latin1_encode),
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _StandIn("numpy.dtype", _Dtype),
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _StandIn("_reconstruct", _reconstruct)
        table[(f"{core}.multiarray", "scalar")] = _StandIn("scalar", _scalar)
        table[(f"{core}.numeric", "_frombuffer")] = _StandIn("_frombuffer", _frombuffer)
    return table


_STAND_INS = _stand_ins()


class _PairUnpickler(pickle.Unpickler):
    """An unpickler that resolves no global: known names get an inert stand-in."""

    def find_class(self, module: str, name: str) -> Any:
        stand_in = _STAND_INS.get((module, name))
        if stand_in is None:
            raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id")


#: The opcodes that store into the memo at an index the file names.
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def check_declared_sizes(data: bytes) -> None:
    """Refuse a pickle that declares more than it holds, before anything is allocated.

    Raises:
        ValueError: a length past the end of the data (from :func:`pickletools.genops`),
            an unknown opcode, or a truncated pickle.
        pickle.UnpicklingError: a memo index larger than the bytes before it.
    """
    for opcode, argument, position in pickletools.genops(data):
        # position: None only for a stream without tell(), never for bytes
        if (
            opcode.name in _MEMO_PUTS
            and isinstance(argument, int)
            and position is not None
            and argument > position
        ):
            raise pickle.UnpicklingError(
                f"memo index {argument} at byte {position}, more entries than the "
                f"{position} bytes before it could build"
            )


#: What can go wrong while unpickling a damaged or hostile file.
_UNPICKLING_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    OverflowError,
    RecursionError,
    MemoryError,
)


# ------------------------------------------------------------------------- checks
def _as_image(path: Path, index: int, item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, _Array) and item.dtype is not None and item.dtype.code in ("u1", "i1"):
        return item.raw
    if isinstance(item, _Array):
        kind = f"a numpy array of {item.dtype.code if item.dtype else 'unknown type'}"
    else:
        kind = type(item).__name__
    raise DataError(f"{path}: image {index}: expected the bytes of an encoded image, got {kind}")


def _as_flags(path: Path, flags: Any) -> list[bool]:
    if isinstance(flags, _Array) and flags.dtype is not None and flags.dtype.code == "b1":
        return [byte != 0 for byte in flags.raw]  # a numpy bool array, any shape
    if not isinstance(flags, (list, tuple)):
        raise DataError(
            f"{path}: expected a list of same/different flags, got {type(flags).__name__}"
        )
    for index, flag in enumerate(flags):
        if not isinstance(flag, bool):
            raise DataError(f"{path}: flag {index}: expected a boolean, got {type(flag).__name__}")
    return list(flags)


def _checked(path: Path, content: Any) -> BinPairs:
    """The structure of an unpickled ``.bin``: ``(images, flags)``, 2 images per flag."""
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        raise DataError(
            f"{path}: expected a pickled pair (images, flags), got {type(content).__name__}"
            + (f" of length {len(content)}" if isinstance(content, (tuple, list)) else "")
        )
    images, flags = content
    if not isinstance(images, (list, tuple)):
        raise DataError(f"{path}: expected a list of encoded images, got {type(images).__name__}")
    same = _as_flags(path, flags)
    if not same:
        raise DataError(f"{path}: holds no pairs")
    if len(images) != 2 * len(same):
        raise DataError(
            f"{path}: expected 2 images per flag ({2 * len(same)} for {len(same)} pairs), "
            f"got {len(images)}"
        )
    return BinPairs([_as_image(path, i, item) for i, item in enumerate(images)], same)


def read_bin(path: str | Path) -> BinPairs:
    """Read a verification ``.bin`` file without running any code from it.

    Args:
        path: the file (InsightFace's ``lfw.bin`` ... or one written by :func:`encode_bin`).

    Returns:
        The encoded images (not decoded here) and the flags.

    Raises:
        DataError: the file is missing, is not a pickle, declares more than it holds (a
            length past its end, a memo index past what it could build), refers to
            anything but bytes, lists, tuples and booleans (numpy byte arrays and booleans
            included), or is not a pair ``(2P images, P flags)``; one line naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the .bin file ({error.strerror or error})") from None
    try:
        check_declared_sizes(data)  # before the unpickler allocates what the file declares
        content = _PairUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _UNPICKLING_ERRORS as error:
        raise DataError(
            f"{path}: not a verification .bin file (a pickled pair of images and flags): "
            f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None
    return _checked(path, content)


def encode_bin(images: Sequence[bytes], same: Sequence[bool]) -> bytes:
    """The bytes of a ``.bin`` file holding ``images`` (2P encoded images) and ``same``.

    Written as a pickled tuple ``(list of bytes, list of bool)`` at
    :data:`BIN_PICKLE_PROTOCOL`, the layout InsightFace's readers expect.

    Raises:
        ValueError: not bytes and booleans, or not two images per flag.
    """
    images = list(images)
    flags = list(same)
    if not all(isinstance(image, bytes) for image in images):
        raise ValueError("images: expected the bytes of each encoded image")
    if not all(isinstance(flag, bool) for flag in flags) or not flags:
        raise ValueError("same: expected at least one flag, each a bool")
    if len(images) != 2 * len(flags):
        raise ValueError(f"images: expected {2 * len(flags)} (2 per flag), got {len(images)}")
    return pickle.dumps((images, flags), protocol=BIN_PICKLE_PROTOCOL)
