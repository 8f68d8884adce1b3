"""The study report: figures with the tables behind them, headline numbers, ``report.html`` and
``report.md`` (jinja2 templates in ``templates/``; no HTML is assembled by hand).

Each number in a caption or in the headline table is read from the table written beside the
figure (``DIR/figures/*.csv``, ``*.geojson``) or from the plan's ``summary.json``, so the report
and its CSVs cannot disagree.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lvplan.io.atomic import write_bytes_atomic, write_text_atomic
from lvplan.io.csvsafe import frame_csv
from lvplan.study import figures as fg
from lvplan.study.replay import OUTCOMES

if TYPE_CHECKING:
    from lvplan.study.run import NetworkResult
    from lvplan.study.spec import Study

TEMPLATES = Path(__file__).with_name("templates")
HOTSPOTS_PER_NETWORK = 10


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cny"] = lambda x: "–" if x is None else f"{x:,.0f}"
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f} %"
    env.filters["kw"] = lambda x: "–" if x is None else f"{x:,.0f} kW"
    return env


class _MdRaw(str):
    """Markdown the template made itself (a code span from :func:`md_code`): not escaped again."""


#: characters that Markdown would read as markup inside a line (``<``, ``>`` and ``&`` become
#: entities below: a name is never raw HTML)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")
_MD_LINE_START = re.compile(r"^(\s*)([#+=-]|\d+[.)])(?=\s|$)")


def md_text(x: Any) -> Any:
    """A value as Markdown text that shows as given: HTML's ``<``, ``>`` and ``&`` as entities
    (no element, no autolink), the characters of emphasis, links, code and table cells
    (``* _ [ ] ` | \\``) escaped by a backslash, line breaks as spaces (a name stays on its line
    and in its table cell) and a leading ``# ``, ``- ``, ``+ ``, ``= `` or ``1. `` escaped (no
    heading or list). Numbers and the template's own Markdown (:class:`_MdRaw`) are left as
    they are."""
    if not isinstance(x, str) or isinstance(x, _MdRaw):
        return x
    text = html.escape(" ".join(x.splitlines()), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(r"\1\\\2", text)


def md_code(x: Any) -> _MdRaw:
    """A code span of ``x`` that no backtick in it can close (fenced by a longer run), on one
    line. Inside a code span nothing is markup, so nothing else is escaped."""
    text = " ".join(str(x).splitlines())
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return _MdRaw(f"{fence}{pad}{text}{pad}{fence}")


def _md_env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=False,  # Markdown is not HTML: md_text escapes every value instead
        finalize=md_text,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(_env().filters)
    env.filters["code"] = md_code
    return env


class _Figures:
    """Writes each figure (PNG) and the data behind it into DIR/figures/."""

    def __init__(self, dest: Path):
        self.dir = dest / "figures"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.items: list[dict[str, Any]] = []

    def add(
        self, fid: str, title: str, png: bytes, data: dict[str, str], caption: str, section: str
    ) -> None:
        write_bytes_atomic(self.dir / f"{fid}.png", png)
        for name, text in data.items():
            write_text_atomic(self.dir / name, text)
        self.items.append(
            {
                "id": fid,
                "title": title,
                "png": f"figures/{fid}.png",
                "data": [f"figures/{n}" for n in data],
                "caption": caption,
                "section": section,
                "b64": base64.b64encode(png).decode("ascii"),
            }
        )


def _csv(df: pd.DataFrame) -> str:
    return frame_csv(df, lineterminator="\n")  # (names and ids: no spreadsheet formulas)


def write_report(
    study: Study, results: list[NetworkResult], dest: Path, doc: dict[str, Any]
) -> dict[str, Any]:
    """Write the figures, their tables and both reports; return ``headline`` and ``figures``
    for ``study.json``."""
    figs = _Figures(dest)
    crit_limit = _trafo_limit(study)
    hi = max(study.policies_kw)
    lo = min(study.policies_kw)
    headline: dict[str, Any] = {"policy_low_kw": lo, "policy_high_kw": hi, "networks": []}
    approvals_rows: list[dict[str, Any]] = []
    kind_rows: list[dict[str, Any]] = []
    year_rows: list[dict[str, Any]] = []
    hotspots: list[dict[str, Any]] = []
    for r in results:
        h: dict[str, Any] = {"network": r.name, "label": r.label, "folder": r.folder}
        if r.hosting is not None:
            _map_figure(figs, r, h)
            _hosting_figure(figs, r, h)
        if r.replays:
            _loading_figure(figs, r, h, hi, crit_limit)
            h["replay"] = {}
            for p, rep in r.replays.items():
                s = rep.summary()
                h["replay"][f"{p:g}"] = s
                n = s["applications"]
                for k, v in s["counts"].items():
                    approvals_rows.append(
                        {
                            "network": r.name,
                            "policy_kw": p,
                            "outcome": k,
                            "count": v,
                            "share": round(v / n, 4) if n else 0.0,
                        }
                    )
            a, b = h["replay"][f"{lo:g}"], h["replay"][f"{hi:g}"]
            h["applications"] = a["applications"]
            h["approved_zero_cost"] = b["counts"]["fits"]
            if hi != lo:  # (one policy: nothing to compare it with; it was compared with itself)
                h["more_at_380v"] = (b["applications"] - b["counts"]["hv_required"]) - (
                    a["applications"] - a["counts"]["hv_required"]
                )
                h["more_approved_zero_cost"] = b["counts"]["fits"] - a["counts"]["fits"]
            spots = _hotspots(r, hi)
            hotspots.extend(spots)
            h["first_to_fill"] = (
                f"{spots[0]['element_name']} ({spots[0]['binding_kind'].replace('_', ' ')} "
                f"limit, application #{spots[0]['first_rejection_seq']})"
                if spots
                else None
            )
        if r.plans:
            h["plan"] = {}
            for p, s in r.plans.items():
                cust = r.customers
                col = f"at_380v_{p:g}kw"
                h["plan"][f"{p:g}"] = {
                    "customers": len(cust) if cust is not None else 0,
                    "customers_380v": int(cust[col].sum()) if cust is not None else 0,
                    "demands_served": s["demands_served"],
                    "demands_unserved": s["demands_unserved"],
                    "design_kw_served": s["design_kw_served"],
                    "total_cost_cny": s["total_cost_cny"],
                    "status": s["solver"]["status"],
                    "measures": s["measures"],
                    "new_substations": s["new_substations"],
                }
                for k, v in s["cost_by_kind_cny"].items():
                    kind_rows.append({"network": r.name, "policy_kw": p, "kind": k, "cost_cny": v})
                for y, v in s["cost_by_year_cny"].items():
                    year_rows.append({"network": r.name, "policy_kw": p, "year": y, "cost_cny": v})
            if hi != lo and f"{lo:g}" in h["plan"] and f"{hi:g}" in h["plan"]:
                h["extra_cost_cny"] = round(
                    h["plan"][f"{hi:g}"]["total_cost_cny"] - h["plan"][f"{lo:g}"]["total_cost_cny"],
                    2,
                )
        headline["networks"].append(h)
    if approvals_rows:
        _approvals_figure(figs, pd.DataFrame(approvals_rows), headline, lo, hi)
    if kind_rows or year_rows:
        _cost_figure(figs, pd.DataFrame(kind_rows), pd.DataFrame(year_rows), headline, lo, hi)
    hot = pd.DataFrame(hotspots)
    if len(hot):
        write_text_atomic(figs.dir / "hotspots.csv", _csv(hot))
    from lvplan.planning.parcels import load_densities

    ctx = {
        "study": study,
        "headline": headline,
        "figures": figs.items,
        "hotspots": hotspots,
        "hotspots_csv": "figures/hotspots.csv" if len(hot) else None,
        "outcomes": OUTCOMES,
        "versions": doc["versions"],
        "inputs": doc["inputs"],
        "densities": [d.to_dict() for d in load_densities().values()],
        "results": results,
    }
    html = _env().get_template("report.html.j2").render(**ctx)
    write_text_atomic(dest / "report.html", html)
    md = _md_env().get_template("report.md.j2").render(**ctx)
    write_text_atomic(dest / "report.md", md)
    return {
        "headline": headline,
        "figures": [{k: v for k, v in f.items() if k != "b64"} for f in figs.items],
    }


def _trafo_limit(study: Study) -> float:
    from lvplan.criteria import load_criteria

    return float(load_criteria(study.profile, **study.set).trafo_max_loading_percent)


# -- each figure ---------------------------------------------------------------------------------
def _map_figure(figs: _Figures, r: NetworkResult, h: dict[str, Any]) -> None:
    feats = fg.network_features(r.network, r.hosting)
    f = feats["features"]
    lines = [x["properties"] for x in f if x["properties"]["kind"] == "line"]
    buses = [x["properties"] for x in f if x["properties"]["kind"] == "bus"]
    areas = [x for x in f if x["properties"]["kind"] == "area"]
    loaded = [p for p in lines if p["loading_percent"] is not None]
    worst = max(loaded, key=lambda p: p["loading_percent"]) if loaded else None
    over80 = sum(p["loading_percent"] >= 80 for p in loaded)
    counts = {
        name: sum(lo_ <= b["hosting_kw"] < hi_ for b in buses) for name, lo_, hi_, _ in fg.CLASSES
    }
    mv = sum(p["level"] == "MV" for p in lines)
    cap = (
        f"{len(buses)} LV buses coloured by the largest new 380 V load each takes "
        + ", ".join(f"{v} at {k}" for k, v in counts.items())
        + f"; {mv} MV feeder sections and {len(lines) - mv} LV cable sections coloured by loading "
        f"at the design peak ({over80} at 80 % or more"
        + (
            f", the most loaded line {worst['line']} at {worst['loading_percent']:.1f} %"
            if worst
            else ""
        )
        + f"); {len(areas)} transformer areas shaded (convex hull of each area's LV buses)."
    )
    h["hosting_classes"] = counts
    fid = f"{r.folder}-map"
    figs.add(
        fid,
        f"{r.label}: network, loading and hosting capacity",
        fg.map_png(feats, f"{r.label}: hosting capacity and line loading"),
        {f"{fid}.geojson": json.dumps(feats, ensure_ascii=False) + "\n"},
        cap,
        r.folder,
    )


def _hosting_figure(figs: _Figures, r: NetworkResult, h: dict[str, Any]) -> None:
    assert r.hosting is not None
    t = fg.hosting_by_transformer(r.hosting)
    if t.empty:  # no LV bus: nothing to draw
        return
    low = t.iloc[0]
    high = t.iloc[-1]
    below100 = int((t.min_kw < 100).sum())
    cap = (
        f"Hosting capacity (design kW) of the LV buses of each of {len(t)} transformers: median "
        f"(dot), quartiles (bar) and range (line). Median from {low.median_kw:g} kW "
        f"({low.transformer}) to {high.median_kw:g} kW ({high.transformer}); {below100} of "
        f"{len(t)} transformers have a bus below 100 kW. Dashed: 100 and 200 kW."
    )
    h["transformers"] = len(t)
    h["transformers_with_bus_below_100kw"] = below100
    fid = f"{r.folder}-hosting"
    figs.add(
        fid,
        f"{r.label}: hosting capacity per transformer",
        fg.hosting_png(t, f"{r.label}: hosting capacity per transformer"),
        {f"{fid}.csv": _csv(t)},
        cap,
        r.folder,
    )


def _loading_figure(figs: _Figures, r: NetworkResult, h: dict[str, Any], hi: float, limit: float):
    rep = r.replays[hi]
    t = rep.transformers.copy()
    t = t[t.loading_before_percent.notna() & t.loading_after_percent.notna()]
    if t.empty:
        return
    at_limit = int((t.loading_after_percent >= limit - 5).sum())
    top = t.sort_values("loading_after_percent").iloc[-1]
    rise = (t.loading_after_percent - t.loading_before_percent).max()
    cap = (
        f"Loading of each of {len(t)} transformers at the design peak before and after the "
        f"{len(rep.table)} applications of the replay under the {hi:g} kW policy (the "
        f"{int(rep.counts()['fits'])} approvals reserved). The most loaded after: "
        f"{top['name']} at {top.loading_after_percent:.1f} %; largest rise {rise:.1f} "
        f"%-points; {at_limit} transformers within 5 %-points of the {limit:g} % limit after."
    )
    fid = f"{r.folder}-loading"
    figs.add(
        fid,
        f"{r.label}: transformer loading before and after a year of approvals",
        fg.loading_png(t, f"{r.label}: transformer loading, {hi:g} kW policy", limit),
        {f"{fid}.csv": _csv(t)},
        cap,
        r.folder,
    )


def _approvals_figure(figs: _Figures, t: pd.DataFrame, headline, lo: float, hi: float) -> None:
    parts = []
    for h in headline["networks"]:
        if "replay" not in h:
            continue
        a, b = h["replay"][f"{lo:g}"], h["replay"][f"{hi:g}"]
        if hi == lo:  # one policy: said once, not compared with itself
            parts.append(
                f"{h['label']}: of {a['applications']} applications, {a['counts']['fits']} "
                f"({100 * a['shares']['fits']:.1f} %) approved at zero cost under {lo:g} kW; "
                f"{a['counts']['hv_required']} sent to 10 kV; {a['counts']['does_not_fit']} "
                "need reinforcement"
            )
            continue
        parts.append(
            f"{h['label']}: of {a['applications']} applications, {a['counts']['fits']} "
            f"({100 * a['shares']['fits']:.1f} %) approved at zero cost under {lo:g} kW and "
            f"{b['counts']['fits']} ({100 * b['shares']['fits']:.1f} %) under {hi:g} kW; "
            f"{a['counts']['hv_required']} against {b['counts']['hv_required']} sent to 10 kV; "
            f"{a['counts']['does_not_fit']} against {b['counts']['does_not_fit']} need "
            "reinforcement"
        )
    figs.add(
        "approvals",
        "Approvals by policy",
        fg.approvals_png(t, OUTCOMES),
        {"approvals.csv": _csv(t)},
        ". ".join(parts) + ".",
        "all",
    )


def _cost_figure(figs, by_kind: pd.DataFrame, by_year: pd.DataFrame, headline, lo, hi) -> None:
    parts = []
    for h in headline["networks"]:
        if "plan" not in h:
            continue
        segs = [
            f"{p} kW: {v['total_cost_cny']:,.0f} CNY for {v['demands_served']} of "
            f"{v['customers_380v']} 380 V customers ({v['status']})"
            for p, v in h["plan"].items()
        ]
        parts.append(f"{h['label']}: " + "; ".join(segs))
    if by_kind.empty:
        by_kind = pd.DataFrame(columns=["network", "policy_kw", "kind", "cost_cny"])
    if by_year.empty:
        by_year = pd.DataFrame(columns=["network", "policy_kw", "year", "cost_cny"])
    figs.add(
        "cost",
        "Cost of the plan by measure type and by year",
        fg.cost_png(by_kind, by_year),
        {"cost-by-kind.csv": _csv(by_kind), "cost-by-year.csv": _csv(by_year)},
        "The AC-verified plan for the 380 V customers of the land-parcel forecast. "
        + ". ".join(parts)
        + ".",
        "all",
    )


def _hotspots(r: NetworkResult, policy: float) -> list[dict[str, Any]]:
    """Elements that stop applications, in the order they first did (the replay under
    ``policy``): the element the decision names as binding, how often, loadings."""
    rep = r.replays[policy]
    net = r.network.pp
    t = rep.table[rep.table.decision == "does_not_fit"]
    if t.empty:
        return []
    tr = rep.transformers.set_index("trafo")
    base = r.network.base_state()
    line_row = {int(li): k for k, li in enumerate(net.line.index)}
    out: list[dict[str, Any]] = []
    for el, g in t.groupby("binding_element", sort=False):
        kind, _, idx = str(el).partition(" ")
        name, before, after = str(el), None, None
        if kind == "trafo" and idx.isdigit() and int(idx) in tr.index:
            row = tr.loc[int(idx)]
            name = str(row["name"])
            before, after = row.loading_before_percent, row.loading_after_percent
        elif kind == "line" and idx.isdigit() and int(idx) in line_row:
            nm = net.line.at[int(idx), "name"] if "name" in net.line.columns else ""
            name = f"line {idx} {nm}".strip() if isinstance(nm, str) else f"line {idx}"
            before = round(float(base.line_loading_percent[line_row[int(idx)]]), 2)
        out.append(
            {
                "network": r.name,
                "element": str(el),
                "element_name": name,
                "binding_kind": ", ".join(sorted(set(g.binding_kind))),
                "first_rejection_seq": int(g.seq.min()),
                "rejections": len(g),
                "loading_before_percent": before,
                "loading_after_percent": after,
            }
        )
    out.sort(key=lambda x: (x["first_rejection_seq"], -x["rejections"]))
    return out[:HOTSPOTS_PER_NETWORK]
