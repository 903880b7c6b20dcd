"""Checks of fitted attributes: a model file is data from strangers.

Every stage's ``check_fitted`` reads its fitted attributes through these helpers,
which refuse, in one line naming the stage and the attribute, what the stage's code
cannot use: another dtype kind (object, void, structured), another number of
dimensions or shape, NaN or infinite values, values out of range.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..exceptions import ModelFileError

_ATTRIBUTE = object()  # fitted_array's default: read the attribute itself


def refuse(owner, name: str, what: str) -> ModelFileError:
    """The one-line error ``"<Class>.<attribute> <what>"`` (to be raised by the caller)."""
    return ModelFileError(f"{type(owner).__name__}.{name} {what}")


@contextmanager
def prefixed(where: str | None) -> Iterator[None]:
    """Re-raise a :class:`ModelFileError` as ``"<where>: <message>"`` (e.g. the model file's name)."""
    try:
        yield
    except ModelFileError as exc:
        if where is None:
            raise
        raise ModelFileError(f"{where}: {exc}") from None


def fitted_array(
    owner,
    name: str,
    *,
    kinds: str = "f",
    shape: tuple[int | None, ...] | None = None,
    finite: bool = True,
    low: float | None = None,
    strict: bool = False,
    value=_ATTRIBUTE,
) -> np.ndarray:
    """Attribute ``name`` of ``owner`` as a checked ndarray, or a :class:`ModelFileError`.

    Parameters
    ----------
    owner : estimator
    name : str
        Attribute name, e.g. ``"intercept_"``.
    kinds : str
        Allowed ``dtype.kind`` letters (``f`` float, ``i``/``u`` integer, ``b`` bool,
        ``U`` str); object, void and structured dtypes are never allowed.
    shape : tuple of int or None, or None
        Expected shape; ``None`` entries match any length (the length of the tuple is the ndim).
    finite : bool
        Float arrays must hold no NaN or infinity.
    low : float or None
        Lower bound of the values (``strict``: exclusive).
    value : object, optional
        The value to check under ``name`` (an item of a list attribute); default
        ``getattr(owner, name)``.

    Returns
    -------
    ndarray
        The attribute itself (no copy).
    """
    if value is _ATTRIBUTE:
        value = getattr(owner, name, None)
    if not isinstance(value, np.ndarray):
        raise refuse(owner, name, f"must be an array, got {type(value).__name__}")
    dtype = value.dtype
    if dtype.fields is not None or dtype.kind not in kinds or dtype.itemsize == 0:
        raise refuse(owner, name, f"has dtype {dtype.str!r}, expected kind {kinds!r}")
    if shape is not None:
        if value.ndim != len(shape) or any(e is not None and e != n for e, n in zip(shape, value.shape)):
            want = "(" + ", ".join("any" if e is None else str(e) for e in shape) + ")"
            raise refuse(owner, name, f"has shape {value.shape}, expected {want}")
    if dtype.kind == "f" and finite and value.size:
        if np.isnan(value).any():
            raise refuse(owner, name, "holds NaN")
        if not np.isfinite(value).all():
            raise refuse(owner, name, "holds infinite values")
    if low is not None and value.size:
        least = value.min().item()
        if least < low or (strict and least <= low):
            bound = f"> {low:g}" if strict else f">= {low:g}"
            raise refuse(owner, name, f"holds {least!r} where values must be {bound}")
    return value


def fitted_number(
    owner,
    name: str,
    value=None,
    *,
    integer: bool = False,
    low: float | None = None,
    strict: bool = False,
    high: float | None = None,
) -> float | int:
    """A scalar attribute (or parameter) checked as a finite number within bounds.

    ``value`` defaults to ``getattr(owner, name)``; bool is not a number here.
    Returns it as ``int`` (``integer``) or ``float``.
    """
    if value is None:
        value = getattr(owner, name, None)
    ok = (
        isinstance(value, (int, np.integer))
        if integer
        else isinstance(value, (int, float, np.integer, np.floating))
    )
    if not ok or isinstance(value, (bool, np.bool_)):
        kind = "an integer" if integer else "a number"
        raise refuse(owner, name, f"must be {kind}, got {type(value).__name__}")
    number = int(value) if integer else float(value)
    if not math.isfinite(number):
        raise refuse(owner, name, "holds NaN" if math.isnan(number) else "is infinite")
    if low is not None and (number < low or (strict and number <= low)):
        raise refuse(owner, name, f"is {number!r}, must be {'>' if strict else '>='} {low:g}")
    if high is not None and number > high:
        raise refuse(owner, name, f"is {number!r}, must be <= {high:g}")
    return number
