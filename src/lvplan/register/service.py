"""``lvplan serve``: the HTTP service (FastAPI; OpenAPI docs at /docs and /openapi.json).

Every route but ``/healthz`` needs ``Authorization: Bearer <token>`` (``LVPLAN_TOKEN`` or a
token file); so do the docs (``/docs``, ``/redoc``, ``/openapi.json``) unless the server was
started with ``--open-docs``. Every answer that is not a success is a 4xx (or 503) with
``{"error": {"field": ..., "message": ...}}``, unknown routes and wrong methods included; a load
flow that fails is a ``not_assessable`` decision, not an error. Bodies above ``MAX_BODY_BYTES``
are refused with 413 before they are read; a body must arrive within ``BODY_SECONDS`` (408).

Bodies are parsed strictly (:func:`parse_body`): UTF-8 only, no key twice, nesting at most
``MAX_DEPTH`` deep, no lone surrogates anywhere, integers of more than ``INT_DIGITS`` digits
read as floats (so a 5,000-digit kW is ``inf``, refused by the field's finite-number rule,
instead of an overflow or Python's int-string limit).

Decisions never block the event loop: one that can take the desk's lock at once runs inline
(no thread switch: the fast path), one that would wait for it (a capacity table holds it)
runs in a worker thread; capacity tables always run in a worker thread. ``/healthz`` takes no
lock; it reads the register in a thread of its own (a PostgreSQL server's round trip, a SQLite
file on a slow disk: the loop never waits for either, nor /healthz for the capacity tables'
threads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import json
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from lvplan.errors import InputError, LvplanError, RegisterUnavailable
from lvplan.register.desk import Desk
from lvplan.register.fields import check_id
from lvplan.register.locks import IslandLocks
from lvplan.register.store import Conflict, NotFound, RegisterBusy

MAX_BODY_BYTES = 16 * 1024
BODY_SECONDS = 10.0  # the whole body, from the first byte read to the last
MAX_DEPTH = 16  # a request is one flat object; 16 leaves room and stops deep-nesting tricks
INT_DIGITS = 18  # int64 range; longer integers are read as floats
MESSAGE_CHARS = 300  # error messages echo input: cut them here

#: this server process's name in /healthz (random: a process id would tell a stranger more)
WORKER = uuid.uuid4().hex[:12]

DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


def _text(s: str, limit: int) -> str:
    """``s`` cut to ``limit`` characters, lone surrogates escaped (UTF-8 can hold no others)."""
    if len(s) > limit:
        s = s[:limit] + "…"
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    field, _, rest = message.partition(": ")
    if not rest or " " in field:
        field, rest = "", message
    content = {"error": {"field": _text(field, 64), "message": _text(rest, MESSAGE_CHARS)}}
    return JSONResponse(status_code=status, content=content, headers=headers)


def _status_of(exc: InputError) -> int:
    msg = str(exc)
    if msg.startswith(("content-type:", "content-encoding:")):
        return 415
    if msg.startswith("body: larger"):
        return 413
    if msg.startswith("body: not received"):
        return 408
    return 400 if msg.startswith("body:") else 422


# -- body parsing --------------------------------------------------------------------------------
class _Object(dict):
    """A JSON object that remembers the keys it was given more than once."""

    repeated: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    out = _Object(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        repeated = []
        for k, _ in pairs:
            if k in seen:
                repeated.append(k)
            seen.add(k)
        out.repeated = tuple(repeated)
    return out


def _int(text: str) -> int | float:
    digits = len(text) - text.startswith("-")
    return int(text) if digits <= INT_DIGITS else float(text)


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_tree(body: Any) -> None:
    """Depth, repeated keys and lone surrogates, iteratively; the field named is the top-level
    key the problem is under."""
    stack: list[tuple[Any, int, str]] = [(body, 0, "body")]
    while stack:
        value, depth, field = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"body: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            if _has_surrogate(value):
                raise InputError(f"{field}: contains a lone surrogate (not Unicode text)")
        elif isinstance(value, dict):
            for key in value:
                if _has_surrogate(key):
                    raise InputError(f"{field}: a field name contains a lone surrogate")
            repeated = getattr(value, "repeated", ())
            if repeated and depth == 0:
                raise InputError(f"{repeated[0]}: given more than once")
            if repeated:
                raise InputError(f"{field}: a key given more than once ({repeated[0]!r})")
            for key, item in value.items():
                stack.append((item, depth + 1, key if depth == 0 else field))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, field) for item in value)


def parse_body(raw: bytes) -> Any:
    """The JSON body, strictly (raises InputError ``body: ...`` or naming the field)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"body: not UTF-8 (byte {exc.start})") from None
    try:
        # NaN and ±Infinity literals become floats, which every numeric field refuses as not
        # finite (and as not an integer or a string where those are wanted)
        body = json.loads(text, object_pairs_hook=_object, parse_int=_int, parse_constant=float)
    except RecursionError:
        raise InputError(f"body: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"body: malformed JSON ({exc.msg}, column {exc.colno})") from None
    except ValueError:  # pragma: no cover - no other ValueError is known to come out of loads
        raise InputError("body: malformed JSON") from None
    _check_tree(body)
    return body


def _json_body(headers: Mapping[str, str]) -> None:
    """A body must be JSON as sent: a ``Content-Type`` other than JSON (a form, text/plain)
    or a ``Content-Encoding`` (gzip: the bytes were read as JSON anyway) is refused with 415
    before it is read (probe helper-79: each was answered 201). A body without a
    ``Content-Type`` is read as JSON."""
    kind = headers.get("content-type")
    if kind is not None:
        media = kind.split(";", 1)[0].strip().lower()
        if media != "application/json" and not (
            media.startswith("application/") and media.endswith("+json")
        ):
            raise InputError(f"content-type: must be application/json, got {kind[:60]!r}")
    coding = headers.get("content-encoding")
    if coding is not None and coding.strip().lower() not in ("", "identity"):
        raise InputError(f"content-encoding: not supported ({coding[:30]!r}): send it as it is")


async def _read(request: Request) -> bytes:
    raw = bytearray()

    async def pull() -> None:
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > MAX_BODY_BYTES:
                raise InputError(f"body: larger than {MAX_BODY_BYTES} bytes")

    try:
        await asyncio.wait_for(pull(), BODY_SECONDS)
    except TimeoutError:
        raise InputError(f"body: not received within {BODY_SECONDS:g} s") from None
    return bytes(raw)


# -- the token, the body size, HEAD --------------------------------------------------------------
class _Guard:
    """Body size (from Content-Length, before anything is read), the bearer token, and HEAD as
    GET without a body, as a plain ASGI middleware (Starlette's BaseHTTPMiddleware costs about
    a millisecond a request)."""

    def __init__(self, app, expected: bytes, open_paths: tuple[str, ...]):
        self.app = app
        self.expected = expected
        self.open_paths = open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = None
        headers = dict(scope["headers"])
        size = headers.get(b"content-length")
        if size is not None:
            try:
                if int(size) > MAX_BODY_BYTES:
                    refusal = _error(
                        413, f"body: larger than {MAX_BODY_BYTES} bytes", {"connection": "close"}
                    )
            except ValueError:
                refusal = _error(400, "content-length: not a number", {"connection": "close"})
        if refusal is None and scope["path"] not in self.open_paths:
            got = headers.get(b"authorization", b"")
            if not hmac.compare_digest(got, self.expected):
                refusal = _error(401, "authorization: a valid bearer token is required")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope["method"] == "HEAD":  # the server itself sends no body for HEAD
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


def create_app(desk: Desk, token: str, *, open_docs: bool = False):
    if not token:
        raise InputError("token: an empty token is not allowed")
    app = FastAPI(
        title="lvplan",
        description="Automated checks of new 380 V applications against public 10/0.4 kV "
        "transformers, with a register that reserves approved capacity. Every route but "
        "/healthz needs `Authorization: Bearer <token>`.",
        version=desk.pristine.fingerprint[:12],
        # (a trailing slash is another path, 404: the redirect Starlette sends was not JSON,
        # and its Location was built from the client's Host header; probe helper-79)
        redirect_slashes=False,
    )
    open_paths = ("/healthz", *DOCS_PATHS) if open_docs else ("/healthz",)
    app.add_middleware(_Guard, expected=f"Bearer {token}".encode(), open_paths=open_paths)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            message = "path: no such route"
        elif exc.status_code == 405:
            message = f"method: {request.method} is not allowed on this route"
        else:  # pragma: no cover - the routes raise no other HTTPException
            message = f"request: {exc.detail}"
        return _error(exc.status_code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("query", "path", "body")]
        return _error(422, f"{loc[-1] if loc else 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # pragma: no cover - a bug
        return _error(500, "server: internal error (logged)")

    def run(fn, *args):
        try:
            return fn(*args)
        except NotFound as exc:
            return _error(404, str(exc))
        except Conflict as exc:
            return _error(409, str(exc))
        except InputError as exc:
            return _error(_status_of(exc), str(exc))
        except RegisterBusy:
            raise  # the caller waits for the register off the event loop
        except RegisterUnavailable as exc:  # nothing was recorded: say so, never a 201
            return _error(503, str(exc))
        except LvplanError as exc:  # pragma: no cover - reported, never a 500
            return _error(503, f"service: {exc}")

    rlock_type = type(threading.RLock())

    async def off_loop(fn, *args, writes: bool = False):
        """``run(fn, *args)`` without ever blocking the event loop on the desk's lock or on
        another process's write to the register: inline when the lock is free (taken here, so
        nothing can slip in before ``fn`` re-enters it) and, for a write, the register's write
        lock is free at once; else in a worker thread that waits for them."""
        lock = getattr(desk, "lock", None)
        if isinstance(lock, rlock_type | IslandLocks) and lock.acquire(blocking=False):
            try:
                if not writes:
                    return run(fn, *args)
                try:
                    return run(functools.partial(fn, wait=False), *args)
                except RegisterBusy:
                    pass  # another process is writing: wait for it off the loop
            finally:
                lock.release()
        return await run_in_threadpool(run, fn, *args)

    def answer(app_obj, created: bool):
        status = 201 if created else 200
        return JSONResponse(
            status_code=status,
            content={"id": app_obj.id, "status": app_obj.status, "decision": app_obj.decision},
        )

    health_pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="lvplan-health")

    @app.get("/healthz")
    async def healthz():
        # a read (and, for SQLite, a stat of the file): no lock, no decision; read off the
        # loop: a database server's answer can take a connection's time-out, and a SQLite
        # file's a slow disk's (or a network share's) time
        # (in threads of its own: in the pool the capacity tables share, 133 tables in
        # flight kept /healthz waiting 3-4.6 s, and a balancer would mark the server down)
        loop = asyncio.get_running_loop()
        reg = await loop.run_in_executor(health_pool, desk.health)  # (and still its binding)
        body = {
            "ok": reg["ok"],
            "worker": WORKER,  # which server process answered (``serve --workers``)
            "network": desk.pristine.name,
            "fingerprint": desk.pristine.fingerprint,
            # how this process got its MV islands: "prepared", "cache" or "whole" (none)
            "islands": desk.prepared,
            "register": reg,
        }
        return JSONResponse(status_code=200 if reg["ok"] else 503, content=body)

    async def body_then(request: Request, fn, wrap, *, with_id: bool = False):
        writes = with_id  # an application (with its id) is recorded; a check is not
        """Read and parse the JSON body, then ``fn(body)`` off the loop; ``wrap`` shapes a
        success."""
        try:
            _json_body(request.headers)
            body = parse_body(await _read(request))
            if with_id and isinstance(body, dict) and "id" in body:
                check_id(body["id"])  # the desk checks it too, once it calls check_id
        except ClientDisconnect:
            return _error(400, "body: the client went away")
        except InputError as exc:
            status = _status_of(exc)
            unread = status in (408, 413)  # the rest of the body was not read: close
            return _error(status, str(exc), {"connection": "close"} if unread else None)
        out = await off_loop(fn, body, writes=writes)
        return out if isinstance(out, JSONResponse) else wrap(out)

    async def transition(app_id: str, action: str):
        out = await off_loop(desk.transition, app_id, action, writes=True)
        return out if isinstance(out, JSONResponse) else answer(out, False)

    @app.post("/v1/applications")
    async def post_application(request: Request):
        return await body_then(request, desk.apply, lambda out: answer(*out), with_id=True)

    @app.get("/v1/applications/{app_id}")
    def get_application(app_id: str):
        out = run(desk.get, app_id)
        return out if isinstance(out, JSONResponse) else answer(out, False)

    @app.post("/v1/applications/{app_id}/withdraw")
    async def withdraw(app_id: str):
        return await transition(app_id, "withdraw")

    @app.post("/v1/applications/{app_id}/energize")
    async def energize(app_id: str):
        return await transition(app_id, "energize")

    @app.post("/v1/check")
    async def post_check(request: Request):
        return await body_then(request, desk.check, lambda out: {"decision": out})

    @app.get("/v1/capacity/transformers")
    async def capacity_transformers():
        return await run_in_threadpool(run, desk.transformer_capacity)

    @app.get("/v1/capacity/buses")
    async def capacity_buses(transformer: str | None = None):
        if transformer is None:
            return _error(422, "transformer: query parameter required")
        # long: every bus is one check; a worker thread, so /healthz stays live
        return await run_in_threadpool(run, desk.bus_capacity, transformer)

    return app
