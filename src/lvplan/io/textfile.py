"""One bounded read of a user's text file (demand, parcels, a study, a catalogue), with the
one-line errors every reader gives: a folder, an unreadable file, one larger than its kind can
be (a device or an endless stream is refused, not read to the end), text that is not UTF-8.
:func:`text_lines` reads a large one (a demand CSV) a line at a time, never whole."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Generator
from pathlib import Path

from lvplan.errors import InputError

#: byte-order marks of the encodings a spreadsheet may save "Unicode text" in, longest first
_WIDE_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_UTF8_BOM = b"\xef\xbb\xbf"


def _open_bounded(p: Path, what: str, max_bytes: int) -> io.BufferedReader:
    """``p`` opened for reading; a folder, an unreadable file or a regular file larger than
    ``max_bytes`` is refused here, unread."""
    try:
        if p.is_dir():  # (raises for a name too long or a folder one cannot enter)
            raise InputError(f"{p}: is a folder, not {what}")
        # opened without waiting: a named pipe no one writes to reads as empty (before, the
        # open blocked for ever); reads then block as usual, so a pipe being written works
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"{p}: {exc.strerror or exc}") from None
    try:
        os.set_blocking(fd, True)
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise InputError(f"{p}: {exc.strerror or exc}") from None
    if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
        os.close(fd)
        raise _too_large(p, what, max_bytes)
    return os.fdopen(fd, "rb")


def _too_large(p: Path, what: str, max_bytes: int) -> InputError:
    size = f"{max_bytes // 2**20} MB" if max_bytes >= 2**20 else f"{max_bytes // 2**10} kB"
    return InputError(f"{p}: larger than {size}: not {what}")


def read_bytes_bounded(p: Path, what: str, max_bytes: int) -> bytes:
    """The whole file ``p``, at most ``max_bytes``; ``what`` names its kind ("a study file")."""
    f = _open_bounded(p, what, max_bytes)
    try:
        with f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{p}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise _too_large(p, what, max_bytes)
    return data


def text_lines(
    p: Path, what: str, *, max_bytes: int, max_line_chars: int, max_lines: int
) -> Generator[str, None, None]:
    """The lines of UTF-8 text file ``p`` one at a time, each with its line end (``\\n``,
    ``\\r\\n`` or ``\\r``, as ``newline=""`` gives them: for :mod:`csv`), a byte-order mark
    dropped: memory of one line, whatever the file holds. The file is opened (and a folder,
    an unreadable file, one larger than ``max_bytes`` or one in UTF-16/32 refused) before this
    returns; then, as it is read, the first line of more than ``max_line_chars`` characters,
    more than ``max_lines`` lines or ``max_bytes`` bytes (a device, a pipe), a NUL byte
    (binary content) or a byte that is not UTF-8 ends it with one line (:class:`InputError`)
    and reads no further. Close the iterator (or read it to the end) to close the file."""
    raw = _open_bounded(p, what, max_bytes)
    try:
        head = raw.peek(4)[:4]
    except OSError as exc:
        raw.close()
        raise InputError(f"{p}: {exc.strerror or exc}") from None
    for bom, enc in _WIDE_BOMS:
        if head.startswith(bom):
            raw.close()
            raise InputError(f"{p}: {enc} text: save it as UTF-8 ({what} is UTF-8)")
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    return _lines(p, what, text, len(_UTF8_BOM) if head.startswith(_UTF8_BOM) else 0,
                  max_bytes, max_line_chars, max_lines)  # fmt: skip


def _lines(
    p: Path,
    what: str,
    text: io.TextIOWrapper,
    offset: int,
    max_bytes: int,
    max_line_chars: int,
    max_lines: int,
) -> Generator[str, None, None]:
    with text:
        for n in range(1, max_lines + 2):
            try:  # (a line of max_line_chars and its "\r\n" read in one piece)
                line = text.readline(max_line_chars + 2)
            except OSError as exc:
                raise InputError(f"{p}: {exc.strerror or exc}") from None
            if not line:
                return
            if "\x00" in line:
                raise InputError(f"{p}: not {what} (binary content)")
            if line.isascii():
                size = len(line)
            else:  # bytes that are not UTF-8 were read as lone surrogates (surrogateescape)
                try:
                    size = len(line.encode("utf-8"))
                except UnicodeEncodeError as exc:
                    at = offset + len(line[: exc.start].encode("utf-8", "surrogateescape"))
                    raise not_utf8(p, b"", at) from None
            if len(line.rstrip("\r\n")) > max_line_chars:
                raise InputError(
                    f"{p}:{n}: a line of more than {max_line_chars:,} characters: not {what}"
                )
            if n > max_lines:
                raise InputError(f"{p}: more than {max_lines:,} lines: not {what}")
            offset += size
            if offset > max_bytes:
                raise _too_large(p, what, max_bytes)
            yield line


def not_utf8(p: object, head: bytes, at: int) -> InputError:
    """The one line for a file that is not UTF-8 text at byte ``at``; ``head``, its first four
    bytes, names UTF-16 or UTF-32 (a spreadsheet's "Unicode text") as :func:`text_lines` does."""
    for bom, enc in _WIDE_BOMS:
        if head.startswith(bom):
            return InputError(f"{p}: {enc} text: save it as UTF-8")
    return InputError(f"{p}: not UTF-8 text (byte {at})")


def decode_utf8(p: Path, data: bytes) -> str:
    """``data`` as UTF-8 text (a byte-order mark dropped)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(p, data[:4], exc.start) from None


def read_text_bounded(p: Path, what: str, max_bytes: int) -> str:
    return decode_utf8(p, read_bytes_bounded(p, what, max_bytes))
