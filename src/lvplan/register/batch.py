"""``lvplan check-batch``: a queue of applications, first come first served, reserving as it goes.

The CSV (columns ``id``, ``bus`` or ``lon`` + ``lat``, ``kw``, optional ``category``, ``pf``,
``area_class``) is validated whole before anything is decided: a bad row stops the batch with a
one-line error naming the row and field, and nothing is recorded. Each application is committed
to the register as it is decided, so an interrupted batch loses nothing: run it again and the
decided ones are returned from the register (same id, same request), the rest decided.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lvplan.errors import InputError
from lvplan.io.atomic import write_text_atomic
from lvplan.register.desk import Desk, normalise_request
from lvplan.register.store import open_backend

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
        return int(v) if v.lstrip("-").isdigit() else v
    return v


def read_queue(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "id" not in reader.fieldnames or "kw" not in reader.fieldnames:
        raise InputError(f"{p}: needs a header with at least id and kw (and bus or lon, lat)")
    out, seen = [], set()
    for n, row in enumerate(reader, start=2):
        body = {k: _cell(row, k) for k in reader.fieldnames if k}
        try:
            req = normalise_request({k: v for k, v in body.items() if v is not None}, need_id=True)
        except InputError as exc:
            raise InputError(f"{p} line {n}: {exc}") from None
        if req["id"] in seen:
            raise InputError(f"{p} line {n}: id: {req['id']!r} appears twice")
        seen.add(req["id"])
        out.append(req)
    return out


def run_batch(network, queue_csv, register, out_csv, criteria, *, progress=None) -> int:
    queue = read_queue(queue_csv)
    desk = Desk(network, open_backend(register), criteria)
    from lvplan.hosting.run import Progress

    bar = Progress(len(queue), progress)
    rows = []
    counts: dict[str, int] = {}
    try:
        for req in queue:
            app, _created = desk.apply(req)
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
    finally:
        bar.close()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=OUT_COLUMNS)
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(out_csv, buf.getvalue())
    print(
        f"{len(rows)} applications decided: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f" -> {out_csv}"
    )
    return 0
