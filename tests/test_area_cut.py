"""An LV area cut with the branch incidence (the map's and the fast engine's prepare at city
scale) is the same model, to the bit, as the cut that scans every branch of the network."""

from __future__ import annotations

import numpy as np

from lvplan.model.network import Network
from lvplan.powerflow.lv_area import AreaUnsupported, branch_incidence, cut_area


def test_cut_with_incidence_is_the_full_scan_cut(urban):
    whole = Network(urban.pp, name="urban", source="test", validate=False)
    whole._islands_tried = True  # one engine over both MV islands
    eng = whole.fast_engine()
    inc = branch_incidence(eng.f_bus, eng.t_bus, eng.n)
    labels = np.unique(eng.lv_label[eng.lv_label >= 0])
    assert labels.size > 100
    cut = 0
    for lab in labels:
        L = np.flatnonzero(eng.lv_label == lab)
        out = []
        for incidence in (None, inc):
            try:
                out.append(
                    cut_area(
                        eng.Ybus,
                        eng.f_bus,
                        eng.t_bus,
                        L,
                        ref=eng.ref,
                        pv=eng.pv,
                        incidence=incidence,
                    )
                )
            except AreaUnsupported as exc:
                out.append(str(exc))
        a, b = out
        if isinstance(a, str):
            assert a == b
            continue
        cut += 1
        assert a.bnd_rows.size >= 1
        for k in ("L", "R", "bnd_rows", "bnd_root_is_from", "bnd_root_pos"):
            assert np.array_equal(getattr(a, k), getattr(b, k)), k
        for k in ("Y_LL", "Y_LR"):
            x, y = getattr(a, k), getattr(b, k)
            assert x.format == y.format and x.shape == y.shape
            for arr in ("data", "indices", "indptr"):
                assert np.array_equal(getattr(x, arr), getattr(y, arr)), (k, arr)
    assert cut == labels.size


def _digest(prep) -> list:
    out = []
    for p in prep.problems:
        row = [p.label, p.blocked, p.out_kinds, p.out_labels, p.branch_labels, p.bus_labels]
        for k in ("buses", "S0", "V0_L", "V0_R", "S_export0", "Y_root", "out_m", "out_c"):
            row.append(np.ascontiguousarray(getattr(p, k)).tobytes())
        for k in ("sens_R", "vmin", "vmax", "kf_j", "kt_j", "lim_j"):
            row.append(np.ascontiguousarray(getattr(p, k)).tobytes())
        for k in ("Y_LL", "Y_LR", "Yf_j", "Yt_j"):
            m = getattr(p, k)
            row += [m.data.tobytes(), m.indices.tobytes(), m.indptr.tobytes()]
        out.append(row)
    return out


def test_the_maps_areas_built_by_two_processes_are_those_of_one(urban, cn, monkeypatch):
    from lvplan.hosting import prepare_pool
    from lvplan.hosting.build import prepare

    one = prepare(urban, cn, pf=0.95)
    monkeypatch.setattr(prepare_pool, "PARALLEL_MIN_AREAS", 10)
    two = prepare(urban, cn, pf=0.95, workers=2)
    # built in the workers: they came back pickled, without their factors
    assert all(p._solver is not None for p in one.problems)
    assert all(p._solver is None for p in two.problems)
    assert len(one.problems) == len(two.problems) > 100
    assert _digest(one) == _digest(two)
    assert [(b.tolist(), r) for b, r in one.unsupported] == [
        (b.tolist(), r) for b, r in two.unsupported
    ]
    assert one.bus_transformer == two.bus_transformer and one.bus_trafo == two.bus_trafo
    # the problems came back without their factors and solve as those built here
    from lvplan.hosting.area import solve_area

    for a, b in zip(one.problems[:5], two.problems[:5], strict=True):
        ra, rb = solve_area(a, pf=0.95, max_kw=1000.0), solve_area(b, pf=0.95, max_kw=1000.0)
        assert np.array_equal(ra.hosting_kw, rb.hosting_kw)
        assert list(ra.binding_element) == list(rb.binding_element)
