"""The study's figures (matplotlib, Agg), each drawn from a table that is also written beside it.

Every function takes the table it draws (a DataFrame or the map's features) and returns PNG
bytes; :mod:`lvplan.study.report` writes the table and the picture and states the numbers in
the caption from the same table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lvplan.hosting.mapdraw import map_png, network_features, plain_text, png_bytes
from lvplan.hosting.outputs import CLASSES

__all__ = ["map_png", "network_features"]

OUTCOME_COLOURS = {
    "fits": "#1a9850",
    "does_not_fit": "#fdae61",
    "hv_required": "#4575b4",
    "not_assessable": "#999999",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    return png_bytes(fig)


# -- hosting per transformer ---------------------------------------------------------------------
def hosting_by_transformer(hosting: pd.DataFrame) -> pd.DataFrame:
    """Per transformer: buses and the quartiles of their hosting kW, sorted by the median."""
    g = hosting.groupby("transformer").hosting_kw
    out = pd.DataFrame(
        {
            "buses": g.size(),
            "min_kw": g.min(),
            "p25_kw": g.quantile(0.25),
            "median_kw": g.median(),
            "p75_kw": g.quantile(0.75),
            "max_kw": g.max(),
        }
    ).round(1)
    return out.sort_values(["median_kw", "min_kw"]).reset_index()


@plain_text
def hosting_png(table: pd.DataFrame, title: str) -> bytes:
    plt = _plt()
    n = len(table)
    fig, ax = plt.subplots(figsize=(9, 4.2 if n <= 30 else 4.8))
    x = np.arange(n)
    ax.vlines(x, table.min_kw, table.max_kw, color="#999999", lw=1)
    ax.vlines(x, table.p25_kw, table.p75_kw, color="#4575b4", lw=5 if n <= 40 else 2)
    ax.scatter(x, table.median_kw, color="black", s=12 if n <= 40 else 4, zorder=3)
    for _name, lo, _hi, colour in CLASSES[:2]:
        ax.axhline(lo, color=colour, ls="--", lw=1)
    ax.set_ylabel("hosting capacity of its LV buses (kW)")
    if n <= 30:
        ax.set_xticks(x, [str(t).split(" ")[0] for t in table.transformer], fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} transformers, sorted by median")
    ax.set_title(title, fontsize=11)
    return _png(fig)


# -- transformer loading before / after ----------------------------------------------------------
@plain_text
def loading_png(table: pd.DataFrame, title: str, limit: float) -> bytes:
    """Dumbbells: each transformer's design-peak loading before and after the replay's approvals,
    sorted by the loading after."""
    plt = _plt()
    t = table.sort_values("loading_after_percent").reset_index(drop=True)
    n = len(t)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(n)
    ax.vlines(x, t.loading_before_percent, t.loading_after_percent, color="#999999", lw=1)
    s = 22 if n <= 40 else 6
    ax.scatter(x, t.loading_before_percent, color="#4575b4", s=s, label="before", zorder=3)
    ax.scatter(x, t.loading_after_percent, color="#d73027", s=s, label="after", zorder=3)
    ax.axhline(limit, color="black", ls="--", lw=1, label=f"limit {limit:g} %")
    ax.set_ylabel("transformer loading at design peak (%)")
    if n <= 30:
        ax.set_xticks(x, [str(v).split(" ")[0] for v in t.name], fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} transformers, sorted by the loading after")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=11)
    return _png(fig)


# -- approvals by policy -------------------------------------------------------------------------
def _cells(table: pd.DataFrame, keys: list, col: str, value: str, what: str) -> np.ndarray:
    """For each (network, policy_kw) of ``keys``: the sum of ``what`` over the rows whose
    ``col`` is ``value``."""
    sel = table[table[col].astype(str) == str(value)]
    sums = sel.groupby(["network", "policy_kw"])[what].sum()
    return np.array([float(sums.get((n, p), 0.0)) for n, p in keys])


@plain_text
def approvals_png(table: pd.DataFrame, labels: dict[str, str]) -> bytes:
    """Stacked bars of the replay's outcomes (share of applications) per network and policy."""
    plt = _plt()
    rows = list(dict.fromkeys(zip(table.network, table.policy_kw, strict=True)))
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.55 * len(rows)))
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for outcome, colour in OUTCOME_COLOURS.items():
        vals = _cells(table, rows, "outcome", outcome, "share")
        ax.barh(y, 100 * vals, left=100 * left, color=colour, label=labels[outcome])
        for k, v in enumerate(vals):
            if v >= 0.06:
                ink = "black" if outcome == "does_not_fit" else "white"
                ax.text(100 * (left[k] + v / 2), y[k], f"{100 * v:.0f} %", ha="center",
                        va="center", fontsize=8, color=ink)  # fmt: skip
        left += vals
    ax.set_yticks(y, [f"{n}, policy {p:g} kW" for n, p in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the year's applications (%)")
    ax.legend(
        fontsize=8,
        ncol=4,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25 if len(rows) > 2 else -0.4),
    )
    ax.set_title("Applications by outcome, first come first served", fontsize=11)
    return _png(fig)


# -- cost by measure type and year ---------------------------------------------------------------
@plain_text
def cost_png(by_kind: pd.DataFrame, by_year: pd.DataFrame) -> bytes:
    """Two panels: the plan's cost by measure type, and by year, per network and policy."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, table, col, title in (
        (axes[0], by_kind, "kind", "by measure type"),
        (axes[1], by_year, "year", "by year"),
    ):
        keys = list(dict.fromkeys(zip(table.network, table.policy_kw, strict=True)))
        cats = sorted(table[col].astype(str).unique())
        cmap = plt.get_cmap("tab10")
        x = np.arange(len(keys))
        bottom = np.zeros(len(keys))
        for j, c in enumerate(cats):
            vals = _cells(table, keys, col, c, "cost_cny") / 1e6
            ax.bar(x, vals, bottom=bottom, color=cmap(j % 10), label=c)
            bottom += vals
        for k, v in enumerate(bottom):
            ax.text(x[k], v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, [f"{n}\n{p:g} kW" for n, p in keys], fontsize=8)
        ax.set_ylabel("million CNY")
        ax.set_title(f"Plan cost {title}", fontsize=11)
        ax.legend(fontsize=7)
        ax.margins(y=0.15)
    fig.tight_layout()
    return _png(fig)
