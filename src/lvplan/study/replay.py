"""Application replay: a year of applications decided first-come-first-served through the desk.

The applications (a file in ``check-batch`` form, validated by :func:`read_queue`, or generated
by :func:`synth_applications` with a stated distribution of size and category) go, in order,
through a :class:`~lvplan.register.desk.Desk` on an in-memory register: every approval reserves
its load, so later applications see it. Run once per policy limit (the profile's
``lv_policy_max_kw``): an application above the limit is ``hv_required`` (a 10 kV connection),
one that fits is approved at no cost to the utility, one that does not fit needs reinforcement.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lvplan.criteria import Criteria
from lvplan.io.csvsafe import safe_writer

if TYPE_CHECKING:
    from lvplan.model.network import Network
    from lvplan.study.spec import SynthApplications

#: one row per application of a replay
COLUMNS = [
    "seq",
    "id",
    "bus",
    "bus_name",
    "declared_kw",
    "category",
    "design_kw",
    "decision",
    "transformer",
    "transformer_name",
    "binding_kind",
    "binding_element",
    "trafo_loading_after_percent",
]
#: one row per public transformer of a replay
TRANSFORMER_COLUMNS = [
    "trafo",
    "name",
    "rated_kva",
    "loading_before_percent",
    "loading_after_percent",
    "applications",
    "approved",
    "approved_design_kw",
    "rejected",
    "first_rejection_seq",
    "first_rejection_binding",
]
#: what each decision means for the customer, in the report's words
OUTCOMES = {
    "fits": "approved at zero cost",
    "does_not_fit": "needs reinforcement",
    "hv_required": "10 kV connection",
    "not_assessable": "manual review",
}


def synth_applications(
    network: Network, spec: SynthApplications, criteria: Criteria
) -> list[dict[str, Any]]:
    """``spec.count`` applications at LV buses (weighted by the load already at each bus, as
    :mod:`lvplan.planning.synth_demand` places new demand), declared kW uniform within a size
    class drawn by its share (rounded to 5 kW), category drawn by its share. Same network,
    spec and seed: the same applications."""
    from lvplan.planning.synth_demand import _load_kw

    rng = np.random.Generator(np.random.PCG64(spec.seed))
    lv = (network.bus_vn_kv < 1.0) & network.live.bus
    rows = np.flatnonzero(lv)
    if not len(rows):
        from lvplan.errors import InputError

        raise InputError(f"network {network.name}: no energised LV bus to apply at")
    w = 1.0 + _load_kw(network)[rows]
    w /= w.sum()
    buses = network.pp.bus.index.to_numpy()[rows]
    size_p = np.array([s for _, _, s in spec.sizes_kw], float)
    cats = list(spec.categories)
    cat_p = np.array([spec.categories[c] for c in cats], float)
    n = spec.count
    at = rng.choice(len(buses), size=n, p=w)
    cls = rng.choice(len(size_p), size=n, p=size_p / size_p.sum())
    u = rng.random(n)
    cat = rng.choice(len(cats), size=n, p=cat_p / cat_p.sum())
    out = []
    width = max(4, len(str(n)))
    for i in range(n):
        lo, hi, _ = spec.sizes_kw[int(cls[i])]
        kw = max(5.0, round((lo + (hi - lo) * u[i]) / 5.0) * 5.0)
        out.append(
            {
                "id": f"A{i + 1:0{width}d}",
                "bus": int(buses[int(at[i])]),
                "kw": float(kw),
                "category": cats[int(cat[i])],
            }
        )
    return out


def applications_csv(apps: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    cols = ["id", "bus", "lon", "lat", "kw", "category"]
    cols = [c for c in cols if any(c in a for a in apps)]
    w = safe_writer(csv.writer(buf, lineterminator="\n"))  # (ids and categories: user text)
    w.writerow(cols)
    for a in apps:
        w.writerow([a.get(c, "") for c in cols])
    return buf.getvalue()


def read_applications(path: str | Path, network: Network, criteria: Criteria) -> list[dict]:
    """A ``check-batch`` queue file, validated whole against the network and profile."""
    from lvplan.register.batch import read_queue

    return [req for _line, req in read_queue(path, network, criteria)]


@dataclass
class Replay:
    """The decisions of one replay under one policy limit, in arrival order."""

    policy_kw: float
    table: pd.DataFrame  # COLUMNS
    transformers: pd.DataFrame  # per transformer: loading before/after, first rejection
    runtime_s: float

    def counts(self) -> dict[str, int]:
        c = self.table.decision.value_counts()
        return {k: int(c.get(k, 0)) for k in OUTCOMES}

    def shares(self) -> dict[str, float]:
        n = max(1, len(self.table))
        return {k: v / n for k, v in self.counts().items()}

    def binding_kinds(self) -> dict[str, int]:
        t = self.table[self.table.decision == "does_not_fit"]
        return {str(k): int(v) for k, v in t.binding_kind.value_counts().sort_index().items()}

    def summary(self) -> dict[str, Any]:
        return {
            "policy_kw": self.policy_kw,
            "applications": len(self.table),
            "counts": self.counts(),
            "shares": {k: round(v, 4) for k, v in self.shares().items()},
            "binding_kinds": self.binding_kinds(),
            "approved_design_kw": round(
                float(self.table.design_kw[self.table.decision == "fits"].sum()), 1
            ),
            "runtime_s": round(self.runtime_s, 2),
        }


def replay(network: Network, apps: list[dict[str, Any]], criteria: Criteria) -> Replay:
    """Decide ``apps`` in order through a desk on a fresh in-memory register."""
    import time

    from lvplan.register.desk import Desk
    from lvplan.register.store import SqliteBackend

    t0 = time.perf_counter()
    desk = Desk(network, SqliteBackend(":memory:"), criteria)
    before = {t["trafo"]: t for t in desk.transformer_capacity()["transformers"]}
    rows = []
    for seq, req in enumerate(apps, start=1):
        app, _ = desk.apply(dict(req))
        d = app.decision
        b = d.get("binding") or {}
        tr = d.get("transformer") or {}
        rows.append(
            {
                "seq": seq,
                "id": app.id,
                "bus": app.bus,
                "bus_name": d.get("bus_name"),
                "declared_kw": d.get("declared_kw"),
                "category": d.get("category"),
                "design_kw": app.design_kw,
                "decision": d.get("decision"),
                "transformer": tr.get("index"),
                "transformer_name": tr.get("name"),
                "binding_kind": b.get("kind", ""),
                "binding_element": b.get("element", ""),
                "trafo_loading_after_percent": d.get("transformer_loading_after_percent"),
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    after = {t["trafo"]: t for t in desk.transformer_capacity()["transformers"]}
    trs = []
    for t, b in before.items():
        mine = table[table.transformer == t]
        rej = mine[mine.decision == "does_not_fit"]
        ok = mine[mine.decision == "fits"]
        trs.append(
            {
                "trafo": t,
                "name": b["name"],
                "rated_kva": b["rated_kva"],
                "loading_before_percent": b["loading_percent"],
                "loading_after_percent": after[t]["loading_percent"],
                "applications": len(mine),
                "approved": len(ok),
                "approved_design_kw": round(float(ok.design_kw.sum()), 1),
                "rejected": len(rej),
                "first_rejection_seq": int(rej.seq.min()) if len(rej) else None,
                "first_rejection_binding": (
                    f"{rej.iloc[0].binding_kind} {rej.iloc[0].binding_element}".strip()
                    if len(rej)
                    else ""
                ),
            }
        )
    trafos = pd.DataFrame(trs, columns=TRANSFORMER_COLUMNS)
    trafos["first_rejection_seq"] = trafos["first_rejection_seq"].astype("Int64")
    return Replay(float(criteria.lv_policy_max_kw), table, trafos, time.perf_counter() - t0)
