"""``lvplan inspect``: what a network holds, how loaded it is, and what is already wrong."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lvplan.criteria import Criteria
from lvplan.criteria.judge import Limits, Violation
from lvplan.errors import PowerFlowError
from lvplan.model.network import Network
from lvplan.model.topology import LV_MAX_KV, MV_MAX_KV


@dataclass(frozen=True)
class Summary:
    network: dict[str, str]
    counts: dict[str, dict[str, Any]]
    transformers: list[dict[str, Any]]
    lowest_voltages: list[dict[str, Any]]
    highest_voltages: list[dict[str, Any]]
    violations: list[Violation]
    error: str | None
    criteria: Criteria
    #: every MV feeder's N-1 state (profiles with an N-1 rule): lvplan.n1.feeders.FeederN1
    feeders: list[Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "network": self.network,
            "counts": self.counts,
            "transformers": self.transformers,
            "lowest_voltages": self.lowest_voltages,
            "highest_voltages": self.highest_voltages,
            "pre_existing_violations": [v.to_dict() for v in self.violations],
            "error": self.error,
            "criteria": self.criteria.to_dict(),
        }
        if self.feeders is not None:
            out["feeders"] = [f.to_dict() for f in self.feeders]
            out["n1_pass_rate"] = self.pass_rate().to_dict()
        return out

    def pass_rate(self):
        """The district's N-1 pass rate (:func:`lvplan.n1.feeders.pass_rate`)."""
        from lvplan.n1.feeders import pass_rate

        return pass_rate({f.feeder: f.contingencies for f in self.feeders or []}, self.criteria)


def _level(vn: np.ndarray) -> np.ndarray:
    return np.where(vn < LV_MAX_KV, "LV", np.where(vn <= MV_MAX_KV, "MV", "HV"))


def summarise(network: Network, criteria: Criteria, *, top: int = 5) -> Summary:
    net = network.pp
    bus_level = _level(net.bus.vn_kv.to_numpy(float))
    counts: dict[str, dict[str, Any]] = {}
    for lvl in ("HV", "MV", "LV"):
        on = bus_level == lvl
        ids = set(net.bus.index[on].tolist())
        counts[lvl] = {
            "buses": int(on.sum()),
            "lines": int(net.line.from_bus.isin(ids).sum()),
            "loads": int(net.load.bus.isin(ids).sum()),
            "load_mw": round(float(net.load.p_mw[net.load.bus.isin(ids)].sum()), 4),
        }
    public = ((net.trafo.vn_hv_kv <= MV_MAX_KV) & (net.trafo.vn_lv_kv < LV_MAX_KV)).to_numpy()
    working = network.feeding_trafo  # (in service, no side switched out, fed)
    counts["transformers"] = {
        "public_mv_lv": int(public.sum()),
        "public_mv_lv_in_operation": int((public & working).sum()),
        "total": len(net.trafo),
    }
    imp = net.get("impedance")
    n_imp = 0 if imp is None or imp.empty else int(imp.in_service.astype(bool).sum())
    if n_imp:  # (followed as pandapower does: model/topology.py's feeders say how)
        counts["impedances"] = {"in_service": n_imp}
    info = {"name": network.name, "source": network.source, "fingerprint": network.fingerprint}
    try:
        st = network.base_state()
    except PowerFlowError as exc:
        return Summary(info, counts, [], [], [], [], str(exc), criteria)
    limits = Limits(net, criteria)
    topo = network.topology
    trafos = []
    for row, (idx, t) in enumerate(net.trafo.iterrows()):
        if not (t.vn_hv_kv <= MV_MAX_KV and t.vn_lv_kv < LV_MAX_KV):
            continue
        load = float(st.trafo_loading_percent[row])
        kva = float(t.sn_mva) * 1000.0
        room = limits.trafo_headroom_kva(load, kva)
        on = bool(working[row])  # (false: out of service, switched out or unfed)
        known = on and math.isfinite(load)  # (null: not in operation, or not judged)
        trafos.append(
            {
                "index": int(idx),
                "name": limits.trafo_names[row],
                "rated_kva": round(kva, 1),
                "in_operation": on,
                "loading_percent": round(load, 2) if known else None,
                "headroom_kva": round(room, 1) if known and room is not None else None,
                "feeder": topo.trafo_feeder.get(int(idx)),
            }
        )
    v = st.vm_pu * limits.vn_kv * 1000.0
    lv = np.flatnonzero((bus_level == "LV") & np.isfinite(v))
    order = lv[np.argsort(v[lv])]

    def row_of(r: int) -> dict[str, Any]:
        return {
            "bus": int(net.bus.index[r]),
            "name": limits.bus_names[r],
            "voltage_v": round(float(v[r]), 2),
        }

    feeders = None
    if criteria.has_n1:
        from lvplan.n1.feeders import feeder_n1

        feeders = feeder_n1(network, criteria)
    return Summary(
        info,
        counts,
        trafos,
        [row_of(r) for r in order[:top]],
        [row_of(r) for r in order[::-1][:top]],
        limits.judge(st).violations,
        None,
        criteria,
        feeders,
    )


def render(s: Summary) -> str:
    out = [
        f"network {s.network['name']}  ({s.network['source']})",
        f"fingerprint {s.network['fingerprint'][:16]}  criteria {s.criteria.profile}",
        "",
    ]
    out.append(f"{'level':<6}{'buses':>8}{'lines':>8}{'loads':>8}{'load MW':>10}")
    for lvl in ("HV", "MV", "LV"):
        c = s.counts[lvl]
        out.append(f"{lvl:<6}{c['buses']:>8}{c['lines']:>8}{c['loads']:>8}{c['load_mw']:>10.3f}")
    t = s.counts["transformers"]
    idle = t["public_mv_lv"] - t.get("public_mv_lv_in_operation", t["public_mv_lv"])
    out.append(
        f"transformers: {t['public_mv_lv']} public MV/LV of {t['total']}"
        + (f" ({idle} not in operation: out of service, switched out or unfed)" if idle else "")
    )
    if "impedances" in s.counts:
        out.append(
            f"impedance elements: {s.counts['impedances']['in_service']} in service (an upstream "
            "network's equivalent is a source busbar; one inside the 10 kV network is part of "
            "its feeder, never a head section N-1 loses)"
        )
    if s.error:
        out += ["", f"base load flow failed: {s.error}"]
        return "\n".join(out)
    out += [
        "",
        f"{'trafo':>6}  {'name':<36}{'kVA':>7}{'loading %':>11}{'headroom kVA':>14}  feeder",
    ]
    for tr in s.transformers[:200]:
        load, room = tr["loading_percent"], tr["headroom_kva"]
        out.append(
            f"{tr['index']:>6}  {tr['name'][:35]:<36}{tr['rated_kva']:>7.0f}"
            + (
                f"{load:>11.1f}{room:>14.1f}"
                if load is not None and room is not None
                else f"{'not in operation' if not tr.get('in_operation') else 'not judged':>25}"
            )
            + f"  {tr['feeder']}"
        )
    if len(s.transformers) > 200:
        out.append(f"  ... {len(s.transformers) - 200} more (use --json)")
    out += [
        "",
        "lowest LV voltages: "
        + ", ".join(f"bus {r['bus']} {r['voltage_v']:.1f} V" for r in s.lowest_voltages),
    ]
    out.append(
        "highest LV voltages: "
        + ", ".join(f"bus {r['bus']} {r['voltage_v']:.1f} V" for r in s.highest_voltages)
    )
    if s.feeders is not None:
        out += ["", *_render_feeders(s.feeders), s.pass_rate().text()]
    out += ["", f"pre-existing violations: {len(s.violations)}"]
    for v in s.violations[:50]:
        out.append(
            f"  {v.kind:<12}{v.element:<12}{v.element_name[:34]:<35}"
            f"{v.value:>10.2f} {v.unit} (limit {v.limit:.2f})"
        )
    if len(s.violations) > 50:
        out.append(f"  ... {len(s.violations) - 50} more (use --json)")
    return "\n".join(out)


def _render_feeders(feeders: list[Any]) -> list[str]:
    """The MV feeders: normal loading of the head section, ties, k/(k+1) screening, N-1."""
    out = [
        f"MV feeders: {len(feeders)}, N-1 (emergency limits after a transfer) failing on "
        f"{sum(not f.ok for f in feeders)}",
        f"  {'feeder':<28}{'head %':>8}{'ties':>6}{'k/(k+1) %':>11}  {'N-1':<6}"
        "worst after transfer",
    ]
    for f in feeders[:200]:
        d = f.to_dict()
        sc = d["screening"] or {}
        load = d["head_loading_percent"]
        worst = ""
        for c in f.contingencies:
            b = c.best
            if c.status == "no_restoring_tie":
                worst = f"{c.contingency.id}: no restoring tie"
                break
            if b is not None and b.closest is not None and c.status != "pass":
                v = b.closest
                worst = (
                    f"{c.contingency.id}, {b.option.name}: {v.element} "
                    f"{v.value:.4g} {v.unit} (limit {v.limit:.4g})"
                )
                break
        if not worst and f.contingencies and f.contingencies[0].best is not None:
            v = f.contingencies[0].best.closest
            if v is not None:
                worst = f"closest {v.element} {v.value:.4g} {v.unit} (limit {v.limit:.4g})"
        out.append(
            f"  {f.feeder[:27]:<28}{'-' if load is None else f'{load:.1f}':>8}"
            f"{len(f.ties):>6}{sc.get('screening_limit_percent', 0.0):>11.1f}  "
            f"{'ok' if f.ok else 'FAIL':<6}{worst}"
        )
        for c in f.failing[1:]:
            out.append(f"  {'':<59}also {c.contingency.id} ({c.status})")
    if len(feeders) > 200:
        out.append(f"  ... {len(feeders) - 200} more (use --json)")
    return out
