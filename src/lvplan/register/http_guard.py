"""The server's guard against clients that open a connection and never finish a request.

uvicorn times out an idle keep-alive connection, but not one that is reading a request: a
client that sends its headers a byte at a time (slowloris), or opens a socket and sends nothing,
holds a connection and a file descriptor for ever. A review opened 1,100 such sockets and
``/healthz`` stopped answering (the process ran out of descriptors). Here a connection has
``LVPLAN_REQUEST_READ_S`` seconds (``serve --request-timeout``, default 10) from its first byte,
or from being opened, to deliver a request's headers, then that plus ``BODY_SECONDS`` plus 5 s
for its body (the application answers 408 after ``BODY_SECONDS``; this closes a connection
whose body nobody reads); otherwise it is closed. The application's own time (a decision) is
not counted: the clock stops once the request is in.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lvplan.errors import InputError
from lvplan.register.service import BODY_SECONDS

#: environment variable carrying ``--request-timeout`` to the protocol (and to the workers)
READ_TIMEOUT_ENV = "LVPLAN_REQUEST_READ_S"
DEFAULT_READ_TIMEOUT_S = 10.0


def read_timeout_s() -> float:
    try:
        value = float(os.environ.get(READ_TIMEOUT_ENV, DEFAULT_READ_TIMEOUT_S))
    except ValueError:
        return DEFAULT_READ_TIMEOUT_S
    return value if value > 0 else DEFAULT_READ_TIMEOUT_S


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for reading each request."""

    _deadline: asyncio.TimerHandle | None = None
    #: requests read whole and being answered (pipelined ones too): never cut while any is
    #: (set per connection in connection_made)
    _answering: list[Any]
    #: the last look found an answer waiting for the client to read it
    _stalled_before: bool

    def _arm(self, seconds: float | None = None) -> None:
        if self._deadline is None:
            wait = read_timeout_s() if seconds is None else seconds
            self._deadline = self.loop.call_later(wait, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._watching = False

    def _too_slow(self) -> None:
        self._deadline = None
        self._answering = [c for c in self._answering if not c.response_complete]
        if not self._answering and self._watching and self._began is not None:
            # the watch's answers are all sent, and a request that began under it is being
            # read: that request has its own deadline, from its first byte (a pipelined one
            # was closed half read when the watch ran out: found by review)
            self._watching = False
            left = read_timeout_s() - (self.loop.time() - self._began)
            if left > 0:
                self._arm(left)
                return
        stalled = self._answering and self.flow is not None and self.flow.write_paused
        if self._answering and not (stalled and self._stalled_before):
            # a decision is being made (it may wait 30 s for the register): its answer is
            # never cut; look again later. Unless the answer waits for a client that does
            # not read it, for a whole period and more: then nobody would read it anyway
            self._stalled_before = bool(stalled)
            self._arm()
            return
        if stalled:  # (close() would wait for the client to read what is queued: for ever)
            for cycle in self._answering:  # as connection_lost does for the current one only:
                cycle.disconnected = True  # a pipelined answer then writes nothing more
                cycle.message_event.set()
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._answering = []
        self._stalled_before = False
        self._watching = False  # the deadline armed is the watch over answers being sent
        self._began: float | None = None  # when the request being read began (loop time)
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte

    def on_message_begin(self) -> None:
        if not any(not c.response_complete for c in self._answering):
            # the watch over answers (on_message_complete) once they are all sent: the new
            # request has its own deadline from its first byte (a keep-alive request begun
            # near the watch's end was closed half read: the deadline carried over)
            self._disarm()
        self._arm()  # the next request of a packet (pipelined) after one that completed
        self._began = self.loop.time()
        super().on_message_begin()

    def data_received(self, data: bytes) -> None:
        self._arm()  # (the request this byte belongs to; disarmed when it is complete)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        # the body: the application reads it with a deadline of its own and answers 408
        # (BODY_SECONDS); this one, later, closes a connection whose body nobody reads
        self._disarm()
        self._arm(read_timeout_s() + BODY_SECONDS + 5.0)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._began = None
        # (answered ones dropped here too: on a busy keep-alive connection the deadline
        # never fires, and the list held every cycle, headers and body, for good)
        self._answering = [c for c in self._answering if not c.response_complete]
        if self.cycle is not None and not self.cycle.response_complete:
            self._answering.append(self.cycle)
            self._arm()  # a watch: an answer a client never reads does not hold it for ever
            self._watching = True
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def check_port_free(host: str, port: int) -> None:
    """Refuse (InputError, one line) a ``--host``/``--port`` this process cannot listen on (in
    use, a privileged port, an unknown host), before the network is loaded; before, uvicorn
    said so in its own words after the whole start, and exited 3."""
    try:  # ('' is every interface, as asyncio's create_server takes it)
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError) as exc:
        raise InputError(f"--host {host}: {getattr(exc, 'strerror', None) or exc}") from None
    for family, kind, proto, _name, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio binds:
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # (IPv6 only)
            try:
                s.bind(addr)
            except OSError as exc:
                raise InputError(
                    f"--port {port}: cannot listen on {host}: {exc.strerror or exc}"
                ) from None
