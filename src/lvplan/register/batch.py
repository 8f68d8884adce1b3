"""``lvplan check-batch``: a queue of applications, first come first served, reserving as it goes.

The CSV (columns ``id``, ``bus`` or ``lon`` + ``lat``, ``kw``, optional ``category``, ``pf``,
``area_class``) is validated whole, against the network and the profile (bus, category, numbers,
coordinates), before the register is even opened: a bad row stops the batch with one line
``FILE:LINE: field: message``, and nothing is recorded. Each application is then decided and
committed in order, through the same desk as the service (so a server or another batch on the
same register is counted at every decision), and each commit is durable: an interrupted batch
keeps what it committed, and running it again returns the decided ones from the register (same
id, same request) and decides the rest.
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path
from typing import Any

from lvplan.errors import InputError
from lvplan.io.atomic import check_output_file, write_output_file
from lvplan.io.csvread import dict_rows
from lvplan.io.csvsafe import safe_writer
from lvplan.io.textfile import read_text_bounded
from lvplan.register.desk import Desk, normalise_request, validate_request
from lvplan.register.store import Conflict, open_backend, register_file, request_hash

OUT_COLUMNS = [
    "id",
    "status",
    "decision",
    "bus",
    "design_kw",
    "binding_kind",
    "binding_element",
    "headroom_kw",
    "engine",
]


def _cell(row: dict[str, str], key: str) -> Any:
    v = (row.get(key) or "").strip()
    if v == "":
        return None
    if key in ("kw", "pf", "lon", "lat"):
        try:
            return float(v)
        except ValueError:
            return v  # normalise_request names the field
    if key == "bus":
        return int(v) if re.fullmatch(r"-?[0-9]{1,18}", v) else v
    return v


#: Pause between a batch's decisions, for other writers of the same register.
BATCH_COURTESY_S = 0.003

#: An applications file of a million rows is some 60 MB; a larger one is not a queue.
MAX_QUEUE_BYTES = 64 * 2**20

KNOWN_COLUMNS = ("id", "bus", "lon", "lat", "kw", "category", "pf", "area_class")


def read_queue(path: str | Path, network=None, criteria=None) -> list[tuple[int, dict[str, Any]]]:
    """The validated queue as (line, request); with ``network`` and ``criteria``, every row is
    also checked against them (:func:`validate_request`)."""
    p = Path(path)
    # a folder, unreadable, larger than a queue can be (a device), not UTF-8: one line
    text = read_text_bounded(p, "an applications file", MAX_QUEUE_BYTES)
    cols, read = dict_rows(p, io.StringIO(text, newline=""), _EXTRA)
    if "id" not in cols or "kw" not in cols:
        raise InputError(f"{p}:1: needs a header with at least id and kw (and bus or lon, lat)")
    unknown = [c for c in cols if c not in KNOWN_COLUMNS]
    if unknown:
        raise InputError(f"{p}:1: {unknown[0]}: unknown column (known: {', '.join(KNOWN_COLUMNS)})")
    out, seen = [], set()
    for n, row in read:
        try:
            if row.get(_EXTRA):
                raise InputError(f"row: more cells than the header's {len(cols)} columns")
            body = {k: _cell(row, k) for k in cols}
            req = normalise_request({k: v for k, v in body.items() if v is not None}, need_id=True)
            if req["id"] in seen:
                raise InputError(f"id: {req['id']!r} appears twice")
            if network is not None:
                validate_request(network, criteria, req)
        except InputError as exc:
            raise InputError(f"{p}:{n}: {exc}") from None
        seen.add(req["id"])
        out.append((n, req))
    if not out:
        raise InputError(f"{p}: no applications")
    return out


_EXTRA = "\x00extra"


def run_batch(
    network, queue_csv, register, out_csv, criteria, *, progress=None, migrate=False
) -> int:
    from lvplan.decision import resolve_criteria

    criteria = resolve_criteria(criteria)
    inputs = [
        ("the network", network.source),
        ("the applications file", queue_csv),
        ("--register", register_file(register)),
    ]
    check_output_file(out_csv, inputs=inputs)  # (before anything is decided)
    queue = read_queue(queue_csv, network, criteria)
    desk = Desk(network, open_backend(register), criteria, migrate=migrate)
    if desk.migration is not None:
        from lvplan.io.stderr_report import reporter

        reporter("lvplan: ")(desk.migration.summary())
    for line, req in queue:  # an id the register holds with another request: nothing decided
        old = desk.register.get(req["id"])
        if old is not None and old.request_sha256 != request_hash(req):
            raise Conflict(
                f"{queue_csv}:{line}: id: {req['id']!r} is in the register with another request"
            )
    from lvplan.hosting.run import Progress

    bar = Progress(len(queue), progress)
    rows = []
    counts: dict[str, int] = {}
    try:
        for line, req in queue:
            try:
                app, _created = desk.apply(req)
            except InputError as exc:  # e.g. another writer took the id meanwhile
                raise InputError(f"{queue_csv}:{line}: {exc}") from None
            d = app.decision
            b = d.get("binding") or {}
            rows.append(
                {
                    "id": app.id,
                    "status": app.status,
                    "decision": d.get("decision"),
                    "bus": "" if app.bus is None else app.bus,
                    "design_kw": app.design_kw,
                    "binding_kind": b.get("kind", ""),
                    "binding_element": b.get("element", ""),
                    "headroom_kw": "" if d.get("headroom_kw") is None else d["headroom_kw"],
                    "engine": d.get("engine") or "",
                }
            )
            counts[app.status] = counts.get(app.status, 0) + 1
            bar(1)
            # a moment between decisions: a server waiting for the register gets its turn
            # (waiters poll every millisecond), so a long batch never starves the service
            time.sleep(BATCH_COURTESY_S)
    finally:
        bar.close()
    buf = io.StringIO()
    w = safe_writer(csv.writer(buf))  # ids and names come from the user: no formulas
    w.writerow(OUT_COLUMNS)
    w.writerows([[r[c] for c in OUT_COLUMNS] for r in rows])
    write_output_file(out_csv, buf.getvalue(), inputs=inputs)
    print(
        f"{len(rows)} applications decided: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f" -> {out_csv}"
    )
    return 0
