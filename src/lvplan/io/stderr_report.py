"""Progress lines on stderr that never stop the work they report.

A reader that leaves (``lvplan plan ... --progress 2>&1 | head -3``) closes the pipe; the next
line would raise ``BrokenPipeError`` inside the plan and leave a half-made output folder. A
reporter made here goes quiet instead: the run finishes and writes its files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def reporter(prefix: str) -> Callable[[str], None]:
    """``say(text)`` printing ``prefix + text`` to stderr until stderr cannot be written."""
    gone = False

    def say(text: str) -> None:
        nonlocal gone
        if gone:
            return
        try:
            print(f"{prefix}{text}", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # a closed pipe, a full disk, a closed stream
            gone = True

    return say
