"""A thin HTTP shell over :class:`bots.http.Routes` (the local twin of the Lambda handler).

API Gateway shields the Lambda handler from slow, malformed and excessive clients; locally this
shell does it: a deep listen backlog (a burst of webhooks waits for ``accept``, never reset), a
cap on connections served at once (503 beyond it, from a small fixed pool of threads), a
deadline on every read (idle keep-alive, silent or truncated requests), and a body read only
when its ``Content-Length`` is well formed and within limits. Every error is JSON.

It also answers only its own clients (:mod:`bots.local.guard`: Host, Origin, content types and
the per-run token of ``/local/*`` and the playground), checked before any route runs, and binds
a request id to every log line: the client's ``X-Request-Id`` when it is short and plain, else a
fresh one.

Two things only the playground (:mod:`bots.playground`) uses: a route may take bodies above the
default limit (file uploads; the guard is then checked *before* the body is read, so nobody
without the token can make the server read megabytes), and a response may be a stream
(Server-Sent Events), written as it comes on a connection that is closed after it; a stream
ends when the server shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from bots.http import HttpRequest, HttpResponse, Routes
from bots.local.guard import HostGuard, host_name
from core.observability import bind

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
LISTEN_BACKLOG = 1024
MAX_CONNECTIONS = 256
REQUEST_TIMEOUT_SECONDS = 15.0
REFUSAL_TIMEOUT_SECONDS = 2.0  # how long an over-capacity client may take to send its request
METHODS = ("GET", "POST", "PUT", "DELETE")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,15}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        routes: Routes,
        *,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        allowed_hosts: Iterable[str] = (),
        token: str | None = None,
    ) -> None:
        """``allowed_hosts``: Host names answered besides loopback and the bound address;
        ``token``: the secret ``/local/*`` needs off loopback (default: a fresh random one)."""
        self.routes = routes
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._refusals = ThreadPoolExecutor(max_workers=2, thread_name_prefix="http-refusal")
        self.closing = threading.Event()  # set on shutdown: open streams end
        super().__init__(address, _Handler)
        host, port = self.server_address[:2]
        self.guard = HostGuard.for_address((str(host), int(port)), allowed_hosts, token)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """One thread per connection up to ``max_connections``; beyond that a 503 from the
        refusal pool, so a flood costs two threads, not one each."""
        if self._slots.acquire(blocking=False):
            try:
                super().process_request(request, client_address)
            except BaseException:
                self._slots.release()
                raise
            return
        log.warning("connection refused: at capacity", extra={"limit": self.max_connections})
        self._refusals.submit(self._refuse, request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket, client_address: object) -> None:
        try:
            _Refusal(request, client_address, self)
        except Exception:  # noqa: BLE001 - handle_error logs it with its trace, as socketserver does
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up mid-answer is routine; anything else is logged with its trace
        (the stdlib would print it to stderr)."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.info("client connection dropped")
        else:
            log.exception("http connection failed")

    def shutdown(self) -> None:
        self.closing.set()
        super().shutdown()

    def server_close(self) -> None:
        self.closing.set()
        super().server_close()
        self._refusals.shutdown(wait=False, cancel_futures=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def self_url(self) -> str:
        """How this process reaches itself: the bound address, or loopback when bound to every
        address (the playground's emulators are called at this URL by the bot's own clients)."""
        host, port = self.server_address[:2]
        host = str(host)
        if host in ("0.0.0.0", ""):  # noqa: S104 - reading the bound address, not binding
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://{host_name(host)}:{port}"


class _Refused(Exception):
    """A request the shell answers itself, without reading (the rest of) its body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = HttpResponse.error(status, message)


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # A deadline on every read: an idle keep-alive connection or a client that stops
        # mid-request is closed after this long instead of holding its thread for ever.
        self.connection.settimeout(self._read_timeout())

    def _read_timeout(self) -> float:
        return self.server.request_timeout

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        # A client's id goes into every log line: only a short, plain one is taken as it is.
        request_id = self.headers.get("x-request-id", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        with bind(request_id=request_id):
            response = self._respond()
            log.info(
                "http request",
                extra={
                    "method": self.command,
                    "path": urlsplit(self.path).path,
                    "status": response.status,
                },
            )
        self._send(response)

    def _send(self, response: HttpResponse) -> None:
        if response.stream is not None:
            self._send_stream(response)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _send_stream(self, response: HttpResponse) -> None:
        """A long-lived answer: no length, the connection closed when the stream ends (its
        source returns, the client hangs up, or the server shuts down)."""
        assert response.stream is not None
        self.close_connection = True
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        chunks = iter(response.stream)
        try:
            for chunk in chunks:
                if self.server.closing.is_set():
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
        except (ConnectionError, TimeoutError):
            log.info("stream client went away")
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (bad request line, headers too large, unknown method) as
        JSON like every other error; an unknown method is 405, not an HTML 501 page."""
        headers: dict[str, str] = {}
        if code == HTTPStatus.NOT_IMPLEMENTED:  # the stdlib's answer to a method without do_X
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed"
            headers["Allow"] = ", ".join(METHODS)
        error = HttpResponse.error(code, message or HTTPStatus(code).phrase)
        self.close_connection = True
        self._send(HttpResponse(error.status, error.body, {**error.headers, **headers}))

    def _respond(self) -> HttpResponse:
        parts = urlsplit(self.path)
        head = HttpRequest(
            method=self.command,
            path=parts.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            query=dict(parse_qsl(parts.query)),
        )
        limit = self.server.routes.max_body(self.command, parts.path)
        if limit is not None and limit > MAX_BODY_BYTES:
            # A large body is read only for a client the guard lets in (the token, mostly).
            refusal = self._refusal(head)
            if refusal is not None:
                self.close_connection = True
                return refusal
        try:
            body = self._read_body(max(limit or 0, MAX_BODY_BYTES))
        except _Refused as refused:
            # The body was not read (or not all of it): this connection cannot carry another.
            self.close_connection = True
            return refused.response
        request = HttpRequest(
            method=head.method, path=head.path, headers=head.headers, body=body, query=head.query
        )
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            return self.server.routes.dispatch(request)
        except Exception:
            log.exception("route failed", extra={"path": parts.path})
            return HttpResponse.error(500, "internal error")

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        if len(self.headers.get_all("Host") or []) > 1:
            return HttpResponse.error(400, "a request needs one valid Host header")
        return self.server.guard.check(request)

    def _read_body(self, max_bytes: int = MAX_BODY_BYTES) -> bytes:
        """Exactly ``Content-Length`` bytes, within one request deadline in all (so a client
        trickling a byte at a time cannot hold the thread either)."""
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding"):
            if lengths:
                raise _Refused(400, "Transfer-Encoding and Content-Length together")
            raise _Refused(411, "a request body needs a Content-Length")
        if not lengths:
            return b""
        values = {value.strip() for value in lengths}
        text = values.pop()
        if values or not _CONTENT_LENGTH.fullmatch(text):
            raise _Refused(400, "invalid Content-Length")
        length = int(text)
        if length > max_bytes:
            raise _Refused(413, f"request body over {max_bytes} bytes")
        timeout = self._read_timeout()
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        left = length
        try:
            while left:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.connection.settimeout(remaining)
                chunk = self.rfile.read1(min(left, 64 * 1024))
                if not chunk:
                    raise _Refused(400, "request body shorter than its Content-Length")
                chunks.append(chunk)
                left -= len(chunk)
        except TimeoutError:
            log.info("request body timed out", extra={"expected": length, "missing": left})
            raise _Refused(408, f"request body not received within {timeout:g} s") from None
        finally:
            self.connection.settimeout(timeout)
        return b"".join(chunks)

    def log_message(self, format: str, *args: object) -> None:
        """Silence the stdlib's unstructured access log; ``_serve`` logs structured lines."""


class _Refusal(_Handler):
    """Answers every request on an over-capacity connection with 503, then closes it."""

    def _read_timeout(self) -> float:
        return min(self.server.request_timeout, REFUSAL_TIMEOUT_SECONDS)

    def _serve(self) -> None:
        # Drained first, so that closing cannot reset the connection before the 503 is read;
        # a malformed or slow body gets the 503 all the same.
        with contextlib.suppress(_Refused):
            self._read_body()
        self.close_connection = True
        self._send(HttpResponse.error(503, "server busy: too many connections, try again"))
