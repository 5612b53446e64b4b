"""Local stand-ins for outside services (Bedrock, Slack, the Bot Framework connector).

Each one is a real HTTP server on 127.0.0.1 speaking the service's wire format, so the code
under test runs its real client path: only the address differs.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class LoopbackServer(ThreadingHTTPServer):
    """The HTTP server under a :class:`LoopbackHttpService`; ``standin`` points back at it."""

    daemon_threads = True
    standin: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client resetting or closing its connection (an abandoned stream, a pooled
        connection dropped) is normal here; anything else is printed as usual."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class TrackingHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive), quiet, and registering its connection so ``stop()`` can end it."""

    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def setup(self) -> None:
        super().setup()
        self.server.standin._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read what the stand-in recorded, not stderr."""


class LoopbackHttpService:
    """Lifecycle of a stand-in served by a :class:`LoopbackServer` on ``(host, 0)``.

    Subclasses set :attr:`handler_class` (or override :meth:`_make_server`), :attr:`thread_name`
    and :attr:`description`. Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    handler_class: type[BaseHTTPRequestHandler] = TrackingHandler
    thread_name = "loopback-standin"
    description = "the stand-in"  # as in "... is not running"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> LoopbackServer:
        return LoopbackServer((self._host, 0), self.handler_class)

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = self._make_server()
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=self.thread_name,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:  # keep-alive connections would otherwise idle on
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self.description} is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
