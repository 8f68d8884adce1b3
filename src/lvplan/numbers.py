"""Numbers given as text (a CLI option, a CSV cell, a JSON string): one grammar for all of them.

Python's ``float()`` and ``int()`` also read ``"1_000"`` and full-width ``"２５"``. A CSV does not
write them, and a number read one way in ``check`` must be read the same way in ``plan``: every
number lvplan takes as text goes through here, and :func:`finite` is the one check that it is
a finite number (the caller gives the field's name, how it is joined to the message, and how
the value is shown).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

#: a decimal number as a CSV writes it: ASCII digits, an optional exponent; inf and nan are read
#: (each caller then refuses them as not finite, with its own words)
NUMBER_TEXT = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.I | re.A
)
#: a whole number: ASCII digits, at most 18 (an int64 holds it)
INT_TEXT = re.compile(r"[+-]?[0-9]{1,18}")


def read_float(value: Any) -> float:
    """``float(value)``, but text must be a decimal number (surrounding blanks allowed).

    Raises ValueError for text outside the grammar, as ``float()`` raises for text it cannot
    read; TypeError and OverflowError pass through as from ``float()``.
    """
    if isinstance(value, str):
        text = value.strip()
        if not NUMBER_TEXT.fullmatch(text):
            raise ValueError(f"not a decimal number: {value!r}")
        return float(text)
    return float(value)


def read_int(value: Any) -> int:
    """``int(value)`` for text: ASCII digits only, at most 18 (ValueError otherwise)."""
    text = str(value).strip()
    if not INT_TEXT.fullmatch(text):
        raise ValueError(f"not a whole number: {value!r}")
    return int(text)


def shown(value: Any) -> str:
    """``value`` for a message, as a file gave it: its repr (blanks around text dropped), at
    most 40 characters."""
    text = repr(value.strip() if isinstance(value, str) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def finite(field: str, value: Any, *, sep: str = ": ", show: Callable[[Any], str] = shown) -> float:
    """``value`` (text in the grammar above, or a number) as a finite float; else an
    :class:`~lvplan.errors.InputError` of one line: ``{field}{sep}must be a number, got …`` or
    ``… must be a finite number, got …`` (the value as ``show`` gives it). A bool and None are
    not numbers."""
    from lvplan.errors import InputError

    if isinstance(value, bool) or value is None:
        raise InputError(f"{field}{sep}must be a number, got {show(value)}")
    try:
        x = read_float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{field}{sep}must be a number, got {show(value)}") from None
    if not math.isfinite(x):
        raise InputError(f"{field}{sep}must be a finite number, got {show(value)}")
    return x
