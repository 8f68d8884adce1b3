"""Field rules shared by every way into the register (HTTP, check-batch, the CLI).

Application ids
---------------
An id is what a client uses in ``/v1/applications/{id}`` and what a spreadsheet shows, so it
must survive a URL path and a CSV cell. Allowed: 1 to 128 printable characters (letters and
digits of any script, punctuation, symbols, the ASCII space), with these exceptions:

* no ``/`` (a router decodes ``%2F`` before matching, so ``GET`` could never reach it);
* no control, format or separator characters (``str.isprintable``: no tab, newline, NUL,
  zero-width space, bidi overrides, lone surrogates);
* no leading or trailing whitespace (``" a"`` and ``"a"`` would look the same);
* not ``.`` or ``..`` (clients collapse them as path segments);
* in Unicode normal form NFC (``café`` typed as ``e`` and a combining accent looked the same
  as the precomposed one and was a second record: probe, 2026-12-08).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from lvplan.errors import InputError

ID_MAX_CHARS = 128


def check_id(value: Any) -> str:
    """The application id, if it is in the allowed alphabet; else ``InputError("id: ...")``."""
    if not isinstance(value, str):
        raise InputError("id: must be a string")
    if not value or len(value) > ID_MAX_CHARS:
        raise InputError(f"id: must be 1 to {ID_MAX_CHARS} characters")
    if "/" in value:
        raise InputError("id: must not contain '/'")
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise InputError(
            f"id: must not contain control, format or separator characters (U+{ord(bad):04X})"
        )
    if value != value.strip():
        raise InputError("id: must not start or end with whitespace")
    if value in (".", ".."):
        raise InputError("id: must not be '.' or '..'")
    if not unicodedata.is_normalized("NFC", value):
        raise InputError(
            "id: must be in Unicode normal form NFC (it has a letter and a combining mark "
            "that one character writes: the same id to the eye)"
        )
    return value
