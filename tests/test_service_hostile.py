"""Hostile requests against a real server process (issue 9, points 5-HTTP and 6): every one is
a 4xx in the documented error shape naming the field, and the server keeps serving; plus the
spreadsheet-formula escaping of CSV exports and the docs behind the token."""

from __future__ import annotations

import csv
import io
import socket
import time
from urllib.parse import quote

import httpx
import pytest
from test_service import AUTH, TOKEN, server

from lvplan.io.csvsafe import safe_cell, safe_row
from lvplan.register.fields import check_id
from lvplan.register.store import Application, export_csv

JSON = {**AUTH, "Content-Type": "application/json"}
DEEP_ARRAYS = b"[" * 7000 + b"]" * 7000  # 14,000 bytes: under the 16 KiB limit
DEEP_OBJECTS = b'{"a":' * 2700 + b"1" + b"}" * 2700  # 16,201 bytes


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    db = tmp_path_factory.mktemp("hostile") / "r.db"
    with server(db) as (url, proc):
        yield url, proc


def _alive(url: str, proc) -> None:
    assert proc.poll() is None
    r = httpx.get(f"{url}/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["ok"] is True


def _assert_error(r: httpx.Response, status: int, field: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"field", "message"}
    assert body["error"]["field"] == field, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in r.text


POST, APPS, CHECK, BUSES = (
    "POST",
    "/v1/applications",
    "/v1/check",
    "/v1/capacity/buses?transformer=",
)

# (name, method, path, raw body or None, headers, status, field)
HOSTILE = [
    # lone surrogates: json.loads accepts "\ud800", UTF-8 (SQLite, the answer) cannot hold it
    ("surrogate id", POST, APPS, rb'{"id": "\ud800", "bus": 15, "kw": 5}', JSON, 422, "id"),
    (
        "surrogate category",
        POST,
        CHECK,
        rb'{"bus": 15, "kw": 5, "category": "a\udfff"}',
        JSON,
        422,
        "category",
    ),
    ("surrogate bus name", POST, CHECK, rb'{"bus": "\ud800", "kw": 5}', JSON, 422, "bus"),
    (
        "surrogate area_class",
        POST,
        CHECK,
        rb'{"lon": 114.05, "lat": 22.54, "kw": 5, "area_class": "\ud800"}',
        JSON,
        422,
        "area_class",
    ),
    ("surrogate field name", POST, CHECK, rb'{"\ud800": 1, "bus": 15, "kw": 5}', JSON, 400, "body"),
    # integers that overflow a float, or pass Python's 4,300-digit int-string limit
    ("400-digit kw", POST, CHECK, b'{"bus": 15, "kw": ' + b"9" * 400 + b"}", JSON, 422, "kw"),
    (
        "5000-digit kw",
        POST,
        APPS,
        b'{"id": "d", "bus": 15, "kw": ' + b"9" * 5000 + b"}",
        JSON,
        422,
        "kw",
    ),
    ("5000-digit bus", POST, CHECK, b'{"bus": ' + b"9" * 5000 + b', "kw": 5}', JSON, 422, "bus"),
    (
        "400-digit lon",
        POST,
        CHECK,
        b'{"lon": ' + b"9" * 400 + b', "lat": 22.5, "kw": 5}',
        JSON,
        422,
        "lon",
    ),
    (
        "400-digit pf",
        POST,
        CHECK,
        b'{"bus": 15, "kw": 5, "pf": -' + b"9" * 400 + b"}",
        JSON,
        422,
        "pf",
    ),
    # nesting: RecursionError inside json.loads, and deep-but-parsable
    ("7000 nested arrays", POST, CHECK, DEEP_ARRAYS, JSON, 400, "body"),
    ("2700 nested objects", POST, APPS, DEEP_OBJECTS, JSON, 400, "body"),
    (
        "40 nested arrays in bus",
        POST,
        CHECK,
        b'{"bus": ' + b"[" * 40 + b"]" * 40 + b', "kw": 5}',
        JSON,
        400,
        "body",
    ),
    # non-finite numbers (Python's json reads NaN and Infinity literals)
    ("kw 1e309", POST, CHECK, b'{"bus": 15, "kw": 1e309}', JSON, 422, "kw"),
    ("kw Infinity", POST, APPS, b'{"id": "i", "bus": 15, "kw": Infinity}', JSON, 422, "kw"),
    ("lat -Infinity", POST, CHECK, b'{"lon": 114.05, "lat": -Infinity, "kw": 5}', JSON, 422, "lat"),
    ("lon NaN", POST, CHECK, b'{"lon": NaN, "lat": 22.5, "kw": 5}', JSON, 422, "lon"),
    ("pf NaN", POST, CHECK, b'{"bus": 15, "kw": 5, "pf": NaN}', JSON, 422, "pf"),
    ("bus Infinity", POST, CHECK, b'{"bus": Infinity, "kw": 5}', JSON, 422, "bus"),
    # encodings: JSON on the wire is UTF-8
    (
        "latin-1 body",
        POST,
        CHECK,
        '{"bus": "\u00e9", "kw": 5}'.encode("latin-1"),
        JSON,
        400,
        "body",
    ),
    ("UTF-16 body", POST, CHECK, '{"bus": 15, "kw": 5}'.encode("utf-16"), JSON, 400, "body"),
    ("UTF-8 BOM", POST, CHECK, b'\xef\xbb\xbf{"bus": 15, "kw": 5}', JSON, 400, "body"),
    ("empty body", POST, CHECK, b"", JSON, 400, "body"),
    # duplicate keys: the last one would silently win
    ("kw twice", POST, CHECK, b'{"bus": 15, "kw": 5, "kw": -1}', JSON, 422, "kw"),
    ("id twice", POST, APPS, b'{"id": "a", "bus": 15, "kw": 5, "id": "b"}', JSON, 422, "id"),
    (
        "a key twice inside bus",
        POST,
        CHECK,
        b'{"bus": {"a": 1, "a": 2}, "kw": 5}',
        JSON,
        422,
        "bus",
    ),
    # huge strings (the answer echoes them, cut)
    (
        "15 kB category",
        POST,
        CHECK,
        b'{"bus": 15, "kw": 5, "category": "' + b"x" * 15000 + b'"}',
        JSON,
        422,
        "category",
    ),
    ("15 kB bus name", POST, CHECK, b'{"bus": "' + b"x" * 15000 + b'", "kw": 5}', JSON, 422, "bus"),
    # ids outside the alphabet (lvplan.register.fields.check_id)
    ("id with /", POST, APPS, b'{"id": "a/b", "bus": 15, "kw": 5}', JSON, 422, "id"),
    ("id with newline", POST, APPS, b'{"id": "a\\nb", "bus": 15, "kw": 5}', JSON, 422, "id"),
    ("id with NUL", POST, APPS, b'{"id": "a\\u0000b", "bus": 15, "kw": 5}', JSON, 422, "id"),
    ("id with tab", POST, APPS, b'{"id": "a\\tb", "bus": 15, "kw": 5}', JSON, 422, "id"),
    ("id not NFC", POST, APPS, b'{"id": "cafe\\u0301", "bus": 15, "kw": 5}', JSON, 422, "id"),
    (
        "id with zero-width space",
        POST,
        APPS,
        b'{"id": "a\\u200bb", "bus": 15, "kw": 5}',
        JSON,
        422,
        "id",
    ),
    (
        "id with RTL override",
        POST,
        APPS,
        b'{"id": "a\\u202eb", "bus": 15, "kw": 5}',
        JSON,
        422,
        "id",
    ),
    ("id with leading space", POST, APPS, b'{"id": " a", "bus": 15, "kw": 5}', JSON, 422, "id"),
    ("id ..", POST, APPS, b'{"id": "..", "bus": 15, "kw": 5}', JSON, 422, "id"),
    (
        "id of 129 characters",
        POST,
        APPS,
        b'{"id": "' + b"a" * 129 + b'", "bus": 15, "kw": 5}',
        JSON,
        422,
        "id",
    ),
    ("id empty", POST, APPS, b'{"id": "", "bus": 15, "kw": 5}', JSON, 422, "id"),
    # a body as sent: JSON, uncompressed (each was read as JSON and answered 201; probe
    # helper-79); an empty category (decided as the default, stored as "")
    (
        "text/plain body",
        POST,
        APPS,
        b'{"id": "t1", "bus": 15, "kw": 5}',
        {**AUTH, "Content-Type": "text/plain"},
        415,
        "content-type",
    ),
    (
        "form body",
        POST,
        CHECK,
        b'{"bus": 15, "kw": 5}',
        {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        415,
        "content-type",
    ),
    (
        "gzip said, not sent",
        POST,
        APPS,
        b'{"id": "g1", "bus": 15, "kw": 5}',
        {**JSON, "Content-Encoding": "gzip"},
        415,
        "content-encoding",
    ),
    (
        "empty category",
        POST,
        APPS,
        b'{"id": "c1", "bus": 15, "kw": 5, "category": ""}',
        JSON,
        422,
        "category",
    ),
    # a trailing slash is another path: no redirect (not JSON; Location from the Host header)
    ("trailing slash", "GET", "/v1/applications/x/", None, AUTH, 404, "path"),
    (
        "POST trailing slash",
        POST,
        APPS + "/",
        b'{"id": "s1", "bus": 15, "kw": 5}',
        JSON,
        404,
        "path",
    ),
    # routes and methods: the documented shape, not FastAPI's {"detail": ...}
    ("unknown route", "GET", "/v1/nothing", None, AUTH, 404, "path"),
    ("unknown route, no token", "GET", "/v1/nothing", None, {}, 401, "authorization"),
    ("id with %2F is no route", "GET", "/v1/applications/a%2Fb", None, AUTH, 404, "path"),
    ("GET /v1/check", "GET", "/v1/check", None, AUTH, 405, "method"),
    ("DELETE an application", "DELETE", "/v1/applications/x", None, AUTH, 405, "method"),
    ("OPTIONS /v1/check", "OPTIONS", "/v1/check", None, AUTH, 405, "method"),
    ("PUT /healthz", "PUT", "/healthz", None, {}, 405, "method"),
    # the docs need the token unless --open-docs
    ("/docs without token", "GET", "/docs", None, {}, 401, "authorization"),
    ("/redoc without token", "GET", "/redoc", None, {}, 401, "authorization"),
    ("/openapi.json without token", "GET", "/openapi.json", None, {}, 401, "authorization"),
    (
        "oauth2-redirect without token",
        "GET",
        "/docs/oauth2-redirect",
        None,
        {},
        401,
        "authorization",
    ),
    # the token header
    (
        "non-ASCII token bytes",
        "GET",
        "/v1/capacity/transformers",
        None,
        {"Authorization": b"Bearer \xff\xfe\xc3\xa9"},
        401,
        "authorization",
    ),
    (
        "token without Bearer",
        "GET",
        "/v1/capacity/transformers",
        None,
        {"Authorization": TOKEN},
        401,
        "authorization",
    ),
    # query parameters
    ("transformer NUL", "GET", BUSES + "%00", None, AUTH, 404, "transformer"),
    ("transformer invalid UTF-8", "GET", BUSES + "%FF%FE", None, AUTH, 404, "transformer"),
    ("transformer encoded surrogate", "GET", BUSES + "%ED%A0%80", None, AUTH, 404, "transformer"),
    ("transformer 5000 digits", "GET", BUSES + "9" * 5000, None, AUTH, 404, "transformer"),
    ("transformer empty", "GET", BUSES, None, AUTH, 404, "transformer"),
    ("transformer -1", "GET", BUSES + "-1", None, AUTH, 404, "transformer"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_request_is_a_4xx_naming_the_field_and_the_server_keeps_serving(live, case):
    url, proc = live
    _name, method, path, body, headers, status, field = case
    r = httpx.request(method, url + path, content=body, headers=headers, timeout=30)
    _assert_error(r, status, field)
    _alive(url, proc)


def test_chunked_body_above_16_kib_is_413(live):
    url, proc = live

    def chunks():
        yield b'{"bus": 15, "kw": 5, "category": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    r = httpx.post(f"{url}/v1/check", content=chunks(), headers=JSON, timeout=30)
    _assert_error(r, 413, "body")
    _alive(url, proc)


def _raw(url: str, request: bytes, timeout: float) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_content_length_lie_is_408_not_a_hang(live):
    """Content-Length says 100, 11 bytes come: the body times out (10 s), it does not hang."""
    url, proc = live
    head = f"POST /v1/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    t = time.monotonic()
    out = _raw(url, head.encode() + b'Content-Length: 100\r\n\r\n{"bus": 15}', timeout=30)
    assert time.monotonic() - t < 20
    status, _, rest = out.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in rest.lower()
    assert b'{"error":{"field":"body","message":' in rest
    _alive(url, proc)


def test_head_is_get_without_a_body(live):
    url, proc = live
    r = httpx.head(f"{url}/healthz")
    assert r.status_code == 200 and r.content == b""
    assert httpx.head(f"{url}/v1/capacity/transformers").status_code == 401
    r = httpx.head(f"{url}/v1/capacity/transformers", headers=AUTH, timeout=30)
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) > 0
    _alive(url, proc)


def test_docs_with_the_token(live):
    url, _ = live
    r = httpx.get(f"{url}/openapi.json", headers=AUTH)
    assert r.status_code == 200 and r.json()["info"]["title"] == "lvplan"
    assert httpx.get(f"{url}/docs", headers=AUTH).status_code == 200


IDS_ALLOWED = ["申请-2026 1", "a?b#c%d", "=1+1", "x y", "Ölpumpe №3", "\\"]


@pytest.mark.parametrize("app_id", IDS_ALLOWED)
def test_allowed_ids_round_trip_through_the_url(live, app_id):
    """Non-ASCII, URL-special and formula-looking ids are allowed: GET and withdraw reach them."""
    url, proc = live
    r = httpx.post(
        f"{url}/v1/applications", json={"id": app_id, "bus": 15, "kw": 1}, headers=AUTH, timeout=30
    )
    assert r.status_code == 201, r.text
    path = f"{url}/v1/applications/{quote(app_id, safe='')}"
    got = httpx.get(path, headers=AUTH)
    assert got.status_code == 200 and got.json()["id"] == app_id
    w = httpx.post(f"{path}/withdraw", headers=AUTH, timeout=30)
    assert w.status_code == 200 and w.json()["status"] == "withdrawn"
    _alive(url, proc)


def test_decisions_carry_no_server_path(live):
    url, _ = live
    d = httpx.post(f"{url}/v1/check", json={"bus": 15, "kw": 5}, headers=AUTH).json()["decision"]
    assert d["network"]["source"] == "sz-futian"  # the bundled folder's name, not its path
    assert "/" not in str(d["network"]) and "\\" not in str(d["network"])
    hz = httpx.get(f"{url}/healthz").json()
    assert set(hz) == {"ok", "worker", "network", "fingerprint", "islands", "register"}
    assert hz["islands"] in ("prepared", "cache", "whole")
    assert "/" not in str(hz)


# -- units ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-1", "'-1"),  # a string: user text, escaped
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("", ""),
        ("'=1", "'=1"),
        (-5.0, -5.0),  # numbers stay numbers
        (-3, -3),
        (None, None),
    ],
)
def test_safe_cell(value, expected):
    assert safe_cell(value) == expected
    assert type(safe_cell(value)) is type(expected)


def test_safe_row():
    assert safe_row(["=1", 2, "-x", -2.5]) == ["'=1", 2, "'-x", -2.5]


def _app(app_id: str, category: str, element: str, kw: float) -> Application:
    return Application(
        id=app_id,
        seq=1,
        status="approved",
        request={},
        request_sha256="0" * 64,
        decision={
            "declared_kw": kw,
            "category": category,
            "decision": "fits",
            "binding": {"kind": "voltage", "element": element},
        },
        bus=15,
        design_kw=kw,
        design_kvar=-1.5,
        network_fingerprint="f",
        lvplan_version="v",
        created_at="t",
        updated_at="t",
    )


def test_export_csv_neutralises_formulas_and_keeps_numbers():
    text = export_csv([_app("=cmd|' /C calc'!A0", "@SUM(1)", "-bus 3", 12.5)])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == "'=cmd|' /C calc'!A0"
    assert row["category"] == "'@SUM(1)"
    assert row["binding_element"] == "'-bus 3"
    assert row["design_kvar"] == "-1.5"  # a number, not escaped
    assert row["declared_kw"] == "12.5" and row["bus"] == "15"
    for cell in row.values():  # what still starts like a formula is a number
        if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
            float(cell)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a/b",
        "a\nb",
        "a\x00b",
        "\ud800",
        " a",
        "a ",
        ".",
        "..",
        "x" * 129,
        5,
        None,
        "cafe\u0301",
    ],
)
def test_check_id_refuses(bad):
    from lvplan.errors import InputError

    with pytest.raises(InputError, match=r"^id: "):
        check_id(bad)


@pytest.mark.parametrize(
    "good", ["a", "申请-1", "a?b#c%d", "x" * 128, "=1", "a.b", "...", "caf\u00e9"]
)
def test_check_id_allows(good):
    assert check_id(good) == good


def test_open_docs_flag(sz, tmp_path):
    """``--open-docs`` reaches create_app; with it the four docs paths need no token, without it
    they do (in process, through the ASGI app; the other routes always need it)."""
    import asyncio

    from lvplan.cli import build_parser
    from lvplan.register.desk import Desk
    from lvplan.register.service import create_app
    from lvplan.register.store import SqliteBackend

    args = ["serve", "sz-futian", "--register", "r.db"]
    assert build_parser().parse_args(args).open_docs is False
    assert build_parser().parse_args([*args, "--open-docs"]).open_docs is True
    desk = Desk(sz, SqliteBackend(tmp_path / "r.db"))

    async def statuses(open_docs: bool) -> dict[str, int]:
        app = create_app(desk, TOKEN, open_docs=open_docs)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            paths = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")
            out = {p: (await c.get(p)).status_code for p in paths}
            out["/v1/capacity/transformers"] = (
                await c.get("/v1/capacity/transformers")
            ).status_code
            out["/healthz"] = (await c.get("/healthz")).status_code
            return out

    docs = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")
    opened, closed = asyncio.run(statuses(True)), asyncio.run(statuses(False))
    assert all(opened[p] == 200 for p in docs) and all(closed[p] == 401 for p in docs)
    for got in (opened, closed):
        assert got["/v1/capacity/transformers"] == 401 and got["/healthz"] == 200


def test_healthz_reads_a_slow_sqlite_register_off_the_loop(sz, tmp_path, monkeypatch):
    """/healthz read a SQLite register on the event loop: a register on a slow disk (here a
    read that takes 0.6 s) stalled every other request of the process for as long. It is read
    in a worker thread now: the loop keeps ticking while /healthz waits for the file."""
    import asyncio
    import time

    from lvplan.register.desk import Desk
    from lvplan.register.service import create_app
    from lvplan.register.store import SqliteBackend

    desk = Desk(sz, SqliteBackend(tmp_path / "r.db"))
    read = desk.health

    def slow() -> dict:
        time.sleep(0.6)
        return read()

    monkeypatch.setattr(desk, "health", slow)

    async def run() -> tuple[int, float]:
        app = create_app(desk, TOKEN)
        transport = httpx.ASGITransport(app=app)
        stalls: list[float] = []

        async def ticks() -> None:
            for _ in range(40):
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                stalls.append(time.perf_counter() - t)

        async def asked() -> httpx.Response:
            await asyncio.sleep(0.05)  # (the ticks run first)
            return await c.get("/healthz")

        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            _, got = await asyncio.gather(ticks(), asked())
        return got.status_code, max(stalls)

    status, stall_s = asyncio.run(run())
    assert status == 200
    assert stall_s < 0.3, stall_s  # (on the loop: >= 0.6 s)
    monkeypatch.setattr(desk, "health", read)

    async def busy() -> float:
        """/healthz while the threads the capacity tables use are all taken (anyio's 40): in
        that pool it waited for them (3-4.6 s behind 133 bus tables on simbench-urban)."""
        import anyio.to_thread

        app = create_app(desk, TOKEN)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def asked() -> float:
                await asyncio.sleep(0.1)  # (the pool taken first)
                t = time.perf_counter()
                assert (await c.get("/healthz")).status_code == 200
                return time.perf_counter() - t

            *_, took = await asyncio.gather(
                *(anyio.to_thread.run_sync(time.sleep, 1.5) for _ in range(60)), asked()
            )
        return took

    took_s = asyncio.run(busy())
    assert took_s < 0.5, took_s  # (in the shared pool: >= 1.4 s)
