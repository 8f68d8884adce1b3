"""The one way lvplan reads a user's CSV file: strictly, each row with the line it starts on.

Python's ``csv`` reader, left lenient, reads a quote that is opened and never closed to the end
of the file as one cell: a demand file's second row then said ``kw: missing`` and every row
after it was swallowed without a word (found by a hostile probe). Read with ``strict=True``,
it is one line naming the row the quote opens on. A row whose quoted cell spans lines is named
by its first line (``csv`` counts to its last), blank lines skipped as the reader skips them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lvplan.errors import InputError


def dict_rows(
    p: Path | str, lines: Iterable[str], restkey: str
) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """(the header's names, stripped; the rows as (the line each starts on, its cells by name,
    cells past the header's under ``restkey``)). A broken header or row raises
    :class:`InputError` ``FILE:LINE: not a readable CSV header/row (why)``."""
    at = [0, 0]  # lines read so far; the first line (not blank) of the row being read

    def counted(it: Iterable[str]) -> Iterator[str]:
        for text in it:
            at[0] += 1
            if not at[1] and text.strip():
                at[1] = at[0]
            yield text

    reader = csv.DictReader(counted(lines), restkey=restkey, strict=True)
    try:
        header = [h.strip() for h in reader.fieldnames or []]
    except csv.Error as exc:
        raise InputError(f"{p}:1: not a readable CSV header ({exc})") from None
    for i, h in enumerate(header):  # (the reader would keep the last such cell, silently)
        if h and h in header[:i]:
            raise InputError(f"{p}:1: {h}: column appears twice")
    reader.fieldnames = header

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        while True:
            at[1] = 0
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                why = str(exc)
                if "unexpected end of data" in why:
                    why = "a quoted cell opened on this line is never closed"
                raise InputError(
                    f"{p}:{at[1] or reader.line_num}: not a readable CSV row ({why})"
                ) from None
            yield at[1] or reader.line_num, row

    return header, rows()
