"""A stderr whose reader leaves (``lvplan ... --progress 2>&1 | head -1``), for the tests."""

from __future__ import annotations


class ClosedPipe:
    """stderr whose reader leaves after ``writes`` writes: every later write raises."""

    def __init__(self, writes: int = 0):
        self.writes = writes

    def write(self, s: str) -> int:
        if self.writes <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.writes -= 1
        return len(s)

    def flush(self) -> None:
        if self.writes <= 0:
            raise BrokenPipeError(32, "Broken pipe")
