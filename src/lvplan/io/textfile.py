"""One bounded read of a user's text file (demand, parcels, a study, a catalogue), with the
one-line errors every reader gives: a folder, an unreadable file, one larger than its kind can
be (a device or an endless stream is refused, not read to the end), text that is not UTF-8."""

from __future__ import annotations

import os
from pathlib import Path

from lvplan.errors import InputError


def read_bytes_bounded(p: Path, what: str, max_bytes: int) -> bytes:
    """The whole file ``p``, at most ``max_bytes``; ``what`` names its kind ("a study file")."""
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not {what}")
    try:
        # opened without waiting: a named pipe no one writes to reads as empty (before, the
        # open blocked for ever); reads then block as usual, so a pipe being written works
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            os.set_blocking(fd, True)
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{p}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise InputError(f"{p}: larger than {max_bytes // 2**20} MB: not {what}")
    return data


def decode_utf8(p: Path, data: bytes) -> str:
    """``data`` as UTF-8 text (a byte-order mark dropped)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text (byte {exc.start})") from None


def read_text_bounded(p: Path, what: str, max_bytes: int) -> str:
    return decode_utf8(p, read_bytes_bounded(p, what, max_bytes))
