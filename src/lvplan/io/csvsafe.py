"""CSV cells that a spreadsheet will not run as formulas.

A cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
spreadsheets skip before looking for one) is a formula to Excel, LibreOffice and Google Sheets:
``=HYPERLINK(...)`` in an application id would run when the export is opened. ``safe_cell``
prefixes such *strings* with ``'`` (OWASP's advice for CSV injection). Numbers are written as
they are: ``-5`` from a float is a number, not user text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` itself, or ``"'" + value`` for a string a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def safe_row(values: Iterable[Any]) -> list[Any]:
    """``safe_cell`` of every cell."""
    return [safe_cell(v) for v in values]


class SafeWriter:
    """A ``csv.writer`` whose rows go through :func:`safe_cell` (``writerow``, ``writerows``)."""

    def __init__(self, writer: Any):
        self._w = writer

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def safe_writer(writer: Any) -> SafeWriter:
    """``safe_writer(csv.writer(f))``: the same writer, formula cells neutralised."""
    return SafeWriter(writer)


def frame_csv(df: Any, **kwargs: Any) -> str:
    """``df.to_csv(index=False, **kwargs)`` with every text cell through :func:`safe_cell` (a
    table of user text, such as ids and names: the study's CSV files, the hosting map's);
    ``df`` is not touched."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype != object:
            continue
        col = out[c]
        try:
            hit = col.str.startswith(FORMULA_START, na=False).to_numpy(bool)  # (text cells)
        except AttributeError:  # (no text in it at all: pandas refuses .str)
            continue
        if hit.any():
            col = col.copy()
            col[hit] = ["'" + v for v in col[hit].tolist()]
            out[c] = col
    return out.to_csv(index=False, **kwargs)
