"""A reproducible land-auction pipeline for a network: ``lvplan synth parcels NETWORK``.

Positions and years come from :func:`lvplan.planning.synth_demand.synth_demand` (the one home of
"where new demand lands": clusters around loaded LV buses, about a tenth beyond every supply
radius, years uniform over the range); each position becomes a parcel with a land use drawn from
:data:`LAND_USES` and a floor area log-uniform over that use's range, rounded to 10 m². Same
network, arguments and seed: a byte-identical CSV (columns of :mod:`lvplan.planning.parcels`).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lvplan.errors import InputError

if TYPE_CHECKING:
    from lvplan.criteria import Criteria
    from lvplan.model.network import Network

#: land use, share of parcels, floor area range (m²): small urban infill plots
LAND_USES = (
    ("retail", 0.25, (300.0, 2400.0)),
    ("restaurant", 0.15, (400.0, 2000.0)),
    ("small_business", 0.15, (600.0, 3000.0)),
    ("office", 0.15, (800.0, 4000.0)),
    ("clinic", 0.15, (800.0, 3000.0)),
    ("residential", 0.10, (5000.0, 40000.0)),
    ("industrial", 0.05, (3000.0, 20000.0)),
)
#: the seed of the positions is the parcels' seed; the land uses draw from this offset of it
_USE_STREAM = 7919


def synth_parcels(
    network: Network,
    *,
    count: int,
    seed: int,
    criteria: Criteria,
    years: tuple[int, int] = (2027, 2030),
) -> list[dict[str, str]]:
    """``count`` parcels as CSV rows (strings, fixed decimals)."""
    from lvplan.planning.parcels import load_densities
    from lvplan.planning.synth_demand import synth_demand

    known = load_densities()
    for name, _, _ in LAND_USES:
        if name not in known:  # pragma: no cover - guards an edit of densities.toml
            raise InputError(f"land use {name!r} of the synthesis has no density in densities.toml")
    where = synth_demand(network, count=count, seed=seed, criteria=criteria, years=years)
    rng = np.random.Generator(np.random.PCG64([seed, _USE_STREAM]))
    shares = np.array([s for _, s, _ in LAND_USES])
    uses = rng.choice(len(LAND_USES), size=count, p=shares / shares.sum())
    u = rng.random(count)
    width = max(3, len(str(count)))
    out = []
    for i, row in enumerate(where.rows):
        name, _, (lo, hi) = LAND_USES[int(uses[i])]
        area = round(math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u[i]) / 10.0) * 10.0
        out.append(
            {
                "id": f"P{i + 1:0{width}d}",
                "land_use": name,
                "floor_area_m2": f"{area:.0f}",
                "year": row["year"],
                "lon": row["lon"],
                "lat": row["lat"],
            }
        )
    return out


def parcels_csv(rows: list[dict[str, str]]) -> str:
    from lvplan.planning.parcels import COLUMNS

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows([[r[c] for c in COLUMNS] for r in rows])
    return buf.getvalue()


def write_parcels(rows: list[dict[str, str]], out: str | Path) -> None:
    from lvplan.io.atomic import write_output_file

    write_output_file(out, parcels_csv(rows))
