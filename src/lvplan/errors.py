"""One exception tree for lvplan.

::

    LvplanError                 every error lvplan raises on purpose
    ├── InputError              a bad file, network or question (CLI exit 2, HTTP 4xx)
    │   └── InvalidNetwork      a network that fails validation; holds every issue found
    ├── PowerFlowError          the AC load flow did not converge or gave NaN
    │   ├── NotConverged        ... no solution found (Newton-Raphson did not converge)
    │   └── BaseCaseError       ... none for the network as given, before any demand (CLI exit 2)
    ├── RegisterUnavailable     the register cannot be read or written now (HTTP 503)
    └── OptimisationError       (reinforcement) infeasible, or no solution in time

Library code raises these and never calls ``sys.exit``; the CLI and the service translate them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the longest an error's one line is (its start and end kept; see :class:`InputError`)
MAX_MESSAGE_CHARS = 1000


class LvplanError(Exception):
    """Root of every error lvplan raises on purpose."""


class InputError(LvplanError):
    """A bad input: file, network, bus, kW, pf, category, option.

    Its text is one line (the CLI prints it as its one line on stderr): line breaks that came
    in with the input (a file name, a value, a library's message) are shown as spaces, and a
    text longer than :data:`MAX_MESSAGE_CHARS` (a huge value repeated from the input) keeps
    its start and its end, with the number of characters cut between them.
    """

    def __str__(self) -> str:
        text = " ".join(super().__str__().splitlines())
        if len(text) <= MAX_MESSAGE_CHARS:
            return text
        head, tail = MAX_MESSAGE_CHARS * 4 // 5, MAX_MESSAGE_CHARS // 10
        cut = len(text) - head - tail
        return f"{text[:head]} [... {cut:,} characters cut ...] {text[-tail:]}"


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a network: which element, which field, what is wrong."""

    element: str  # pandapower table, e.g. "line"
    index: int | None  # row index in that table, None for table-wide issues
    field: str  # column, e.g. "max_i_ka"
    message: str

    def __str__(self) -> str:
        where = self.element if self.index is None else f"{self.element} {self.index}"
        if self.field in ("", "-"):  # (an issue of the element as a whole: no field to name)
            return f"{where}: {self.message}"
        return f"{where}: {self.field}: {self.message}"


class InvalidNetwork(InputError):
    """A network that fails validation. ``issues`` holds all of them; str() names the first."""

    def __init__(self, issues: list[ValidationIssue]):
        self.issues = list(issues)
        first = str(self.issues[0]) if self.issues else "invalid network"
        n = len(self.issues) - 1  # (issues of any kind: not "4 more loads")
        more = f" (and {n} more issue{'s' if n > 1 else ''})" if n else ""
        super().__init__(f"invalid network: {first}{more}")


class PowerFlowError(LvplanError):
    """The AC load flow failed: no convergence, or NaN results."""


class NotConverged(PowerFlowError):
    """The AC load flow found no solution (Newton-Raphson did not converge)."""


class BaseCaseError(PowerFlowError):
    """The network's own base case (its loads as given, and the approvals it holds) has no AC
    solution (the load flow does not converge; not a network lvplan derived from it with
    changes, and not a NaN result, which stays a PowerFlowError), so nothing on it can be
    assessed. A check answers ``not_assessable``; a command
    that needs the base (hosting, plan, study) stops, and the CLI treats the network as a bad
    input (exit 2), as a malformed network file."""


class RegisterUnavailable(LvplanError):
    """The register cannot record or read right now: its file is gone or replaced, read-only,
    the disk is full, or it is locked for too long. Nothing was recorded (HTTP 503)."""


class OptimisationError(LvplanError):
    """The reinforcement optimiser found no solution (infeasible or out of time)."""
