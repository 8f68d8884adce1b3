"""Interactive maps that work offline: folium pages with Leaflet inlined.

Shared by the hosting map (``map.html``) and the plan map (``plan.html``). folium links Leaflet,
jQuery and Bootstrap from CDNs; on a utility intranet none of them loads, so a page made here
links core Leaflet only (:func:`offline_map`), uses plain Leaflet popups (:func:`popup`; folium's
own popups need jQuery) and :func:`inline_leaflet` replaces the two CDN links by Leaflet's code
from the XStatic-Leaflet package. Tiles still come from OpenStreetMap when it is reachable; the
drawn layers do not need them.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

LEAFLET_JS_URL = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js"
LEAFLET_CSS_URL = "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css"

_POPUP_TEMPLATE = None


def offline_map(
    center: list[float],
    *,
    zoom_start: int = 15,
    prefer_canvas: bool = False,
    zoom_snap: float | None = None,
) -> Any:
    """A ``folium.Map`` that links core Leaflet only, with an OpenStreetMap tile layer.
    ``zoom_snap``: Leaflet's zoom step (a fraction lets ``fit_bounds`` fill the window)."""
    import folium

    extra: dict[str, Any] = {} if zoom_snap is None else {"zoom_snap": zoom_snap}
    m = folium.Map(
        location=center, zoom_start=zoom_start, tiles=None, prefer_canvas=prefer_canvas, **extra
    )
    # core Leaflet only, inlined by inline_leaflet: the map works on an intranet with no CDN
    m.default_js = [("leaflet", LEAFLET_JS_URL)]
    m.default_css = [("leaflet_css", LEAFLET_CSS_URL)]
    folium.TileLayer("OpenStreetMap", name="OpenStreetMap").add_to(m)
    return m


def escape(x: Any) -> str:
    """Text for a map's HTML: escaped, and inert inside the JavaScript template literal that
    folium puts a tooltip in (a backtick, ``$`` or backslash from a name or id stays text)."""
    text = html.escape(str(x))
    return text.replace("\\", "&#92;").replace("`", "&#96;").replace("$", "&#36;")


def popup(html: str) -> Any:
    """A plain Leaflet popup (folium's own Popup needs jQuery, which an offline page lacks)."""
    global _POPUP_TEMPLATE
    from branca.element import MacroElement
    from jinja2 import Template

    if _POPUP_TEMPLATE is None:  # compiled once: a city has thousands of popups
        _POPUP_TEMPLATE = Template(
            "{% macro script(this, kwargs) %}"
            "{{ this._parent.get_name() }}.bindPopup({{ this.html|tojson }}, {maxWidth: 300});"
            "{% endmacro %}"
        )
    el = MacroElement()
    el._name = "LvplanPopup"
    el._template = _POPUP_TEMPLATE
    el.html = html  # type: ignore[attr-defined]
    return el


def inline_leaflet(html: str) -> str:
    """Replace the CDN links of Leaflet by its code (from the XStatic-Leaflet package)."""
    from xstatic.pkg import leaflet

    base = Path(leaflet.BASE_DIR)
    js = (base / "leaflet.js").read_text(encoding="utf-8")
    css = (base / "leaflet.css").read_text(encoding="utf-8")
    out, n_js = re.subn(
        r'<script src="' + re.escape(LEAFLET_JS_URL) + r'"></script>',
        lambda _m: "<script>" + js.replace("</script", "<\\/script") + "</script>",
        html,
    )
    out, n_css = re.subn(
        r'<link rel="stylesheet" href="' + re.escape(LEAFLET_CSS_URL) + r'"/>',
        lambda _m: "<style>" + css + "</style>",
        out,
    )
    if n_js != 1 or n_css != 1:  # pragma: no cover - a folium template change
        raise RuntimeError("could not inline Leaflet into the map (folium template changed?)")
    return out


def render(m: Any) -> str:
    """The whole page of ``m``, Leaflet inlined."""
    return inline_leaflet(m.get_root().render())
