"""Branch admittances of single elements, in pandapower's own per-unit model.

``evaluate`` changes a network by adding and removing branch *stamps* (the 2x2 admittance block
a branch adds to ``Ybus`` and its ``Yf``/``Yt`` rows) instead of rebuilding the whole model:

* a line's ppci branch row follows pandapower's ``_calc_line_parameter`` (r, x per length over
  the base impedance and the parallel count; b, g from c and g per length);
* a transformer's row is pandapower's own: a two-bus network with the unit is built and solved
  once per set of parameters (cached), and its internal branch row taken, so the T model,
  magnetising branch, taps and phase shift are exactly pandapower's;
* the stamp of a row is pandapower's ``branch_vectors`` of that row (what ``makeYbus`` adds).

``tests/test_changes.py`` compares the resulting states with pandapower's ``runpp`` on the same
changes made through pandapower's API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pandapower.pypower.idx_brch import (
    BR_B,
    BR_G,
    BR_R,
    BR_STATUS,
    BR_X,
    F_BUS,
    SHIFT,
    TAP,
    branch_cols,
)
from pandapower.pypower.makeYbus import branch_vectors


@dataclass(frozen=True)
class Stamp:
    """What one branch adds: ``Ybus[[f, t]][:, [f, t]] += Y``; ``I_from = yf @ V[[f, t]]``,
    ``I_to = yt @ V[[f, t]]`` (pu)."""

    f: int
    t: int
    Y: np.ndarray  # (2, 2) complex
    yf: np.ndarray  # (2,) complex
    yt: np.ndarray  # (2,) complex

    def scaled(self, k: float) -> Stamp:
        return Stamp(self.f, self.t, self.Y * k, self.yf * k, self.yt * k)


def stamp(row: np.ndarray, f: int, t: int) -> Stamp:
    """The stamp of one ppci branch row between internal buses ``f`` and ``t`` (in service),
    by pandapower's own ``branch_vectors`` (what its ``makeYbus`` adds per branch)."""
    br = np.array(row, dtype=complex, copy=True).reshape(1, -1)
    br[0, BR_STATUS] = 1
    (ytt,), (yff,), (yft,), (ytf,) = branch_vectors(br, 1)
    return Stamp(
        f,
        t,
        np.array([[yff, yft], [ytf, ytt]], dtype=complex),
        np.array([yff, yft], dtype=complex),
        np.array([ytf, ytt], dtype=complex),
    )


def line_row(
    *,
    r_ohm_per_km: float,
    x_ohm_per_km: float,
    c_nf_per_km: float,
    g_us_per_km: float,
    length_km: float,
    parallel: float,
    base_kv: float,
    baseMVA: float,
    f_hz: float,
) -> np.ndarray:
    """A line's ppci branch row, as pandapower's ``_calc_line_parameter`` writes it."""
    base_r = base_kv**2 / baseMVA
    row = np.zeros(branch_cols)
    row[BR_R] = r_ohm_per_km * length_km / base_r / parallel
    row[BR_X] = x_ohm_per_km * length_km / base_r / parallel
    row[BR_B] = 2 * f_hz * math.pi * c_nf_per_km * 1e-9 * base_r * length_km * parallel
    row[BR_G] = g_us_per_km * 1e-6 * base_r * length_km * parallel
    row[TAP] = 1.0
    row[SHIFT] = 0.0
    row[BR_STATUS] = 1
    return row


#: a transformer's phase shift and tap changer (a replacement or parallel unit keeps them)
TAP_COLUMNS = (
    "shift_degree",
    "tap_side",
    "tap_neutral",
    "tap_min",
    "tap_max",
    "tap_step_percent",
    "tap_step_degree",
    "tap_pos",
    "tap_changer_type",
)
#: the transformer columns that define its branch (with the two buses' nominal voltages)
TRAFO_COLUMNS = (
    "sn_mva",
    "vn_hv_kv",
    "vn_lv_kv",
    "vk_percent",
    "vkr_percent",
    "pfe_kw",
    "i0_percent",
    *TAP_COLUMNS,
    "parallel",
)


def trafo_key(row, vn_hv_bus_kv: float, vn_lv_bus_kv: float) -> tuple:
    out = []
    for c in TRAFO_COLUMNS:
        v = row.get(c) if hasattr(row, "get") else row[c]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append((c, None))
        else:
            out.append((c, v.item() if hasattr(v, "item") else v))
    return (*out, float(vn_hv_bus_kv), float(vn_lv_bus_kv))


@lru_cache(maxsize=512)
def trafo_row(key: tuple, baseMVA: float, f_hz: float) -> tuple[np.ndarray, complex]:
    """pandapower's internal branch row for a transformer with these parameters, and its
    no-load voltage ratio V_lv / V_hv (a warm start for a new LV board)."""
    import pandapower as pp

    from lvplan.powerflow.ac import runpp_options

    *params, vn_hv, vn_lv = key
    kw = {c: v for c, v in params if v is not None}
    net = pp.create_empty_network(sn_mva=baseMVA, f_hz=f_hz)
    hv = pp.create_bus(net, vn_hv)
    lv = pp.create_bus(net, vn_lv)
    pp.create_ext_grid(net, hv)
    pp.create_transformer_from_parameters(net, hv, lv, **kw)
    pp.runpp(net, **runpp_options(net))
    ppci = net._ppc["internal"]
    lk = net._pd2ppc_lookups["bus"]
    V = ppci["V"]
    ratio = complex(V[lk[lv]] / V[lk[hv]])
    row = np.array(ppci["branch"][0], dtype=complex)
    if int(row[F_BUS].real) != lk[hv]:  # pragma: no cover - pandapower puts hv first
        raise RuntimeError("unexpected branch orientation in pandapower's model")
    return row, ratio
