"""A thin HTTP shell over :class:`bots.http.Routes` (the local twin of the Lambda handler)."""

from __future__ import annotations

import logging
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from bots.http import HttpRequest, HttpResponse, Routes
from core.observability import bind

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], routes: Routes) -> None:
        self.routes = routes
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        request_id = self.headers.get("x-request-id") or uuid.uuid4().hex
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
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def _respond(self) -> HttpResponse:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return HttpResponse.error(400, "invalid Content-Length")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return HttpResponse.error(413, f"request body over {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = HttpRequest(
            method=self.command,
            path=parts.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            query=dict(parse_qsl(parts.query)),
        )
        try:
            return self.server.routes.dispatch(request)
        except Exception:
            log.exception("route failed", extra={"path": parts.path})
            return HttpResponse.error(500, "internal error")

    def log_message(self, format: str, *args: object) -> None:
        """Silence the stdlib's unstructured access log; ``_serve`` logs structured lines."""
