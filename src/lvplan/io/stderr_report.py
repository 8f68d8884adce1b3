"""Progress lines on stderr that never stop the work they report.

A reader that leaves (``lvplan plan ... --progress 2>&1 | head -3``) closes the pipe; the next
line would raise ``BrokenPipeError`` inside the plan and leave a half-made output folder. A
reporter made here goes quiet instead: the run finishes and writes its files.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator


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


class QuietStderr:
    """``sys.stderr`` for a progress bar (tqdm): a write or flush its reader cannot take is
    dropped, never raised (tqdm 4.70 holds its class-wide write lock across the write, and a
    write that raised would keep it held for good)."""

    def __init__(self) -> None:
        self.gone = False

    def write(self, s: str) -> int:
        if not self.gone:
            try:
                return sys.stderr.write(s)
            except (OSError, ValueError):
                self.gone = True
        return len(s)

    def flush(self) -> None:
        if not self.gone:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                self.gone = True


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """While it is held, what native code prints to the process's stdout (file descriptor 1)
    goes to its stderr (descriptor 2): HiGHS 1.16 prints
    ``HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();`` there now and
    then with its output off (``lvplan plan sz-futian`` with mixed area classes, stop 52: five
    such lines before the plan's summary), which would break ``lvplan plan --json``. For a
    command's own process only (the CLI): it rewires descriptor 1 for every thread. Where
    either descriptor is closed, nothing is changed."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        try:
            os.dup2(2, 1)
        except OSError:
            yield
            return
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
