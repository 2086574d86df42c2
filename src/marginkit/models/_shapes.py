"""Input-shape checks shared by the backbones, and the error of a backbone that cannot be
built for its input."""

from __future__ import annotations

from collections.abc import Sequence

from marginkit.errors import MarginkitError

__all__ = ["BackboneError", "check_min_size", "check_shape"]


class BackboneError(MarginkitError, ValueError):
    """A backbone that cannot be built as asked: images too small for it, or a
    ``module:callable`` spec whose callable does not give an ``nn.Module``. The message is
    one line naming the backbone."""


def check_shape(input_shape: Sequence[int], *, image: bool, name: str) -> tuple[int, ...]:
    """Validate ``input_shape`` as a tuple of positive ints; (C, H, W) when ``image``."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a sequence of ints; got {type(input_shape).__name__}")
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be positive ints; got {input_shape!r}")
    if image and len(shape) != 3:
        raise BackboneError(
            f"backbone {name!r} needs image inputs, input_shape (C, H, W); got {shape}"
        )
    return shape


def check_min_size(shape: tuple[int, ...], minimum: int, name: str, why: str = "") -> None:
    """Raise :class:`BackboneError` unless the (C, H, W) ``shape`` is at least
    ``minimum`` x ``minimum``; ``why`` is added to the message in parentheses."""
    if shape[1] < minimum or shape[2] < minimum:
        reason = f" ({why})" if why else ""
        raise BackboneError(
            f"backbone {name!r} needs images of at least {minimum}x{minimum}{reason}; "
            f"got input_shape {shape}"
        )
