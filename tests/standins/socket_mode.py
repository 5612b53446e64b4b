"""A local Slack Socket Mode stand-in: the WebSocket end of an ``apps.connections.open`` URL.

A minimal RFC 6455 server on 127.0.0.1, stdlib only, so slack_sdk's builtin Socket Mode client
(and Bolt's ``SocketModeHandler`` on top of it) runs unchanged. Wire it to the Slack Web API
stand-in with :meth:`SocketModeStandIn.answer_connections_open`: ``apps.connections.open`` then
answers, to the app-level token only, a one-use ``ws://127.0.0.1:{port}/link/?ticket=...`` URL
on this server. Like Slack, the server greets every connection with a ``hello`` message; tests
push envelopes (:meth:`SocketModeStandIn.send_events_api`, :meth:`SocketModeStandIn.send_json`)
and read what the client sent back (:attr:`SocketModeStandIn.received`,
:meth:`SocketModeStandIn.wait_for_ack`).

What slack_sdk's builtin client does on the wire (slack_sdk 3.48, ``socket_mode/builtin``):

- TLS only when the URL's port is 443 (the scheme is not looked at); any other port gets a plain
  socket with a 3 s timeout, so ``ws://127.0.0.1:{port}`` works. The handshake sends
  ``GET {path}?{query}`` with ``Host`` (no port), ``Upgrade``, ``Connection``,
  ``Sec-WebSocket-Key`` and ``Sec-WebSocket-Version: 13``, checks ``Sec-WebSocket-Accept``,
  and reads the answer up to the ``\\r`` of its blank line (the last ``\\n`` is skipped later).
- It pings at once after the handshake and every ``ping_interval`` (Bolt: 10 s), with the
  payload ``"{session_id}:{unix time}"``, and expects that payload back in a pong: without
  pongs it calls the connection stale after four intervals and reconnects.
- Its frame reader cannot unmask server frames, which RFC 6455 forbids anyway: frames from
  here are unmasked. It answers a close frame by reconnecting (``apps.connections.open``
  again) unless it is closing itself; its own ``close()`` drops the socket without a close
  frame, and waits for a blocking ``recv`` (up to its 3 s socket timeout) to return first,
  which is why this server pings every :attr:`SocketModeStandIn.ping_every` seconds.
- An acknowledgement is a text frame ``{"envelope_id": ...}``, plus ``"payload"`` when the
  listener's ack carried a body.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import select
import socket
import struct
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

from tests.standins.slack import SlackStandIn

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

CONNECTIONS_OPEN = "apps.connections.open"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_HANDSHAKE_LIMIT = 16 * 1024
_HANDSHAKE_TIMEOUT = 5.0
_SEND_TIMEOUT = 5.0
_POLL = 0.05  # how often blocked loops look at the stop flag
_JOIN_TIMEOUT = 5.0


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key + WS_GUID).encode("ascii"), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_frame(
    opcode: int, payload: bytes, *, mask: bytes | None = None, fin: bool = True
) -> bytes:
    """One frame, with the 7-bit, 16-bit or 64-bit length form its size needs; masked with
    ``mask`` (4 bytes) as a client sends, unmasked as a server sends."""
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask is not None else 0
    size = len(payload)
    if size <= 125:
        head += bytes([mask_bit | size])
    elif size <= 0xFFFF:
        head += struct.pack("!BH", mask_bit | 126, size)
    else:
        head += struct.pack("!BQ", mask_bit | 127, size)
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask`` (masking and unmasking alike)."""
    if not data:
        return data
    key = (mask * (len(data) // 4 + 1))[: len(data)]
    xored = int.from_bytes(data, "big") ^ int.from_bytes(key, "big")
    return xored.to_bytes(len(data), "big")


class _Ended(Exception):
    """The connection is over: end of stream, a close frame, a protocol error or stop()."""


@dataclass(frozen=True)
class Handshake:
    """One upgrade request as the server saw it (header names lower-cased)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    status: int


class Connection:
    """One client connection: its handshake, and what it sent."""

    def __init__(self, standin: SocketModeStandIn, sock: socket.socket) -> None:
        self.standin = standin
        self.sock = sock
        self.handshake: Handshake | None = None
        self.opened = threading.Event()  # the 101 went out
        self.ended = threading.Event()  # the socket is closed
        self.close_code: int | None = None  # from the client's close frame; None: just dropped
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self._buffer = bytearray()
        self._send_lock = threading.Lock()
        self._closing = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="socket-mode-conn")

    @property
    def ticket(self) -> str:
        return self.handshake.query.get("ticket", "") if self.handshake else ""

    # sending

    def send_frame(self, opcode: int, payload: bytes) -> None:
        with self._send_lock:
            if self._closing and opcode != OP_CLOSE:
                raise ConnectionError("the connection is closing")
            self.sock.sendall(encode_frame(opcode, payload))

    def send_text(self, text: str) -> None:
        self.send_frame(OP_TEXT, text.encode("utf-8"))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (the client answers by reconnecting, unless it is closing)."""
        with self._send_lock:
            if self._closing:
                return
            self._closing = True
            with contextlib.suppress(OSError):
                self.sock.sendall(encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()))

    # reading

    def _run(self) -> None:
        try:
            if self._handshake():
                self.standin._opened(self)  # the hello goes out before anyone can send
                self.opened.set()
                self.standin._notify()
                self._read_frames()
        except _Ended:
            pass
        except OSError:
            pass  # reset by the client: the connection is over like any other end
        except Exception as exc:  # a bug in the stand-in: fail the test later
            traceback.print_exc()
            self.standin.errors.append(f"connection: {exc!r}")
        finally:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.ended.set()
            self.standin._notify()

    def _fill(self, size: int, deadline: float | None = None) -> None:
        while len(self._buffer) < size:
            if self.standin._stopping.is_set():
                raise _Ended("server stopping")
            if deadline is not None and time.monotonic() > deadline:
                raise _Ended("handshake timed out")
            readable, _, _ = select.select([self.sock], [], [], _POLL)
            if not readable:
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise _Ended("end of stream")
            self._buffer += chunk

    def _take(self, size: int) -> bytes:
        self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _handshake(self) -> bool:
        deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _HANDSHAKE_LIMIT:
                self._refuse(431, "Request Header Fields Too Large", "", {}, {})
                return False
            self._fill(len(self._buffer) + 1, deadline)
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        method, target, version = [*request_line.split(" "), "", "", ""][:3]
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        key = headers.get("sec-websocket-key", "")
        try:
            key_ok = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            key_ok = False
        upgrade_ok = (
            method == "GET"
            and version == "HTTP/1.1"
            and headers.get("upgrade", "").lower() == "websocket"
            and "upgrade" in headers.get("connection", "").lower()
            and headers.get("sec-websocket-version") == "13"
            and key_ok
        )
        if not upgrade_ok:
            self._refuse(400, "Bad Request", parts.path, query, headers)
            return False
        if not self.standin._use_ticket(query.get("ticket", "")):
            self._refuse(403, "Forbidden", parts.path, query, headers)
            return False
        self.handshake = Handshake(parts.path, query, headers, 101)
        self.standin._record_handshake(self.handshake)
        response = (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
        )
        with self._send_lock:
            self.sock.sendall(response.encode("ascii"))
        return True

    def _refuse(
        self,
        status: int,
        reason: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
    ) -> None:
        self.standin._record_handshake(Handshake(path, query, headers, status))
        body = reason.encode("ascii")
        response = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        with contextlib.suppress(OSError), self._send_lock:
            self.sock.sendall(response + body)

    def _read_frames(self) -> None:
        fragments: list[bytes] | None = None
        fragments_opcode = OP_TEXT
        while True:
            b1, b2 = self._take(2)
            fin, rsv, opcode = bool(b1 & 0x80), b1 & 0x70, b1 & 0x0F
            masked, size = bool(b2 & 0x80), b2 & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", self._take(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", self._take(8))
            if rsv or not masked:  # RFC 6455 5.1: a server must close on an unmasked frame
                self._fail(1002, "reserved bits set" if rsv else "client frames must be masked")
            if size > MAX_MESSAGE_BYTES:
                self._fail(1009, "message too big")
            mask = self._take(4)
            payload = apply_mask(self._take(size), mask)
            if opcode >= 0x8:
                if not fin or size > 125:
                    self._fail(1002, "bad control frame")
                self._control(opcode, payload)
                continue
            if opcode == OP_CONTINUATION:
                if fragments is None:
                    self._fail(1002, "continuation without a start")
                fragments.append(payload)
            elif opcode in (OP_TEXT, OP_BINARY):
                if fragments is not None:
                    self._fail(1002, "new message inside a fragmented one")
                fragments, fragments_opcode = [payload], opcode
            else:
                self._fail(1002, f"unknown opcode {opcode:#x}")
            if fin and fragments is not None:
                message, fragments = b"".join(fragments), None
                if len(message) > MAX_MESSAGE_BYTES:
                    self._fail(1009, "message too big")
                self._deliver(fragments_opcode, message)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.pings.append(payload)
            self.standin._notify()
            with contextlib.suppress(ConnectionError):
                self.send_frame(OP_PONG, payload)
        elif opcode == OP_PONG:
            self.pongs.append(payload)
            self.standin._notify()
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.close(self.close_code if len(payload) >= 2 else 1000)  # echo, then end
            raise _Ended("closed by the client")
        else:
            self._fail(1002, f"unknown control opcode {opcode:#x}")

    def _deliver(self, opcode: int, message: bytes) -> None:
        if opcode == OP_BINARY:
            self.standin._received_binary(message)
            return
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(1007, "text frame is not UTF-8")
        self.standin._received_text(self, text)

    def _fail(self, code: int, reason: str) -> NoReturn:
        self.standin.protocol_errors.append(reason)
        self.close(code, reason)
        raise _Ended(reason)


class SocketModeStandIn:
    """Slack's Socket Mode WebSocket server on 127.0.0.1; see the module docstring.

    Use as a context manager, or :meth:`start` and :meth:`stop`. Thread-safe. Every text message
    a client sends is kept (:attr:`texts`; parsed, in :attr:`received`); every message sent to a
    client too (:attr:`sent`).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        app_id: str = "A0STANDIN",
        send_hello: bool = True,
        ping_every: float | None = 0.25,
    ) -> None:
        self.app_id = app_id
        self.send_hello = send_hello
        self.ping_every = ping_every
        self.errors: list[str] = []  # stand-in bugs: the test should fail on any
        self.protocol_errors: list[str] = []  # client frames that broke RFC 6455
        self._host = host
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._tickets: dict[str, bool] = {}  # ticket -> used
        self._connections: list[Connection] = []
        self._handshakes: list[Handshake] = []
        self._texts: list[str] = []
        self._received: list[Any] = []
        self._binary: list[bytes] = []
        self._sent: list[Any] = []
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._unpatch: Callable[[], None] | None = None

    # lifecycle

    def start(self) -> SocketModeStandIn:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self._host, 0))
        listener.listen(8)
        self._listener = listener
        self._spawn(self._accept_loop, "socket-mode-accept")
        if self.ping_every:
            self._spawn(self._ping_loop, "socket-mode-ping")
        return self

    def stop(self) -> None:
        """Close every socket and join every thread (bounded); idempotent."""
        if self._unpatch is not None:
            self._unpatch()
            self._unpatch = None
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads + [c.thread for c in connections]:
            if thread.is_alive():
                thread.join(_JOIN_TIMEOUT)
                if thread.is_alive():
                    self.errors.append(f"thread {thread.name} did not stop")
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sock.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> SocketModeStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("the Socket Mode stand-in is not started")
        return int(self._listener.getsockname()[1])

    # wiring to the Web API stand-in

    def new_url(self) -> str:
        """A one-use WebSocket URL, shaped like the ones ``apps.connections.open`` returns."""
        ticket = uuid.uuid4().hex
        with self._lock:
            self._tickets[ticket] = False
        return f"ws://{self._host}:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    def answer_connections_open(self, slack: SlackStandIn, app_token: str) -> None:
        """Make ``slack`` answer ``apps.connections.open`` with :meth:`new_url`, and only to
        ``Authorization: Bearer {app_token}``: no header is ``not_authed``, a bot or user token
        ``not_allowed_token_type``, another app token ``invalid_auth``.

        The Web API stand-in authenticates every method with its bot token before a handler
        added with ``on`` runs; this method takes the app-level token instead, so the check
        happens here, in front of it, and is undone by :meth:`stop`."""
        slack.on(CONNECTIONS_OPEN, lambda params: {"url": self.new_url()})
        original = slack._answer

        def answer(method: str, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
            if method != CONNECTIONS_OPEN:
                return original(method, params, headers)
            authorization = headers.get("authorization", "")
            token = authorization.removeprefix("Bearer ").strip()
            if not authorization.startswith("Bearer ") or not token:
                return {"ok": False, "error": "not_authed"}
            if token.startswith("xox"):
                return {"ok": False, "error": "not_allowed_token_type"}
            if token != app_token:
                return {"ok": False, "error": "invalid_auth"}
            as_bot = {**headers, "authorization": f"Bearer {slack.bot_token}"}
            return original(method, params, as_bot)

        slack._answer = answer  # type: ignore[method-assign]

        def unpatch() -> None:
            slack._answer = original  # type: ignore[method-assign]

        self._unpatch = unpatch

    # pushing to the client

    def send_json(self, message: Any, timeout: float = 5.0) -> None:
        """Send ``message`` as a text frame to the newest open connection (waiting for one)."""
        connection = self.wait_connected(timeout=timeout)
        connection.send_text(json.dumps(message))
        with self._lock:
            self._sent.append(message)

    def hello(self, connection: Connection | None = None) -> dict[str, Any]:
        message = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {
                "host": "applink-standin",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        if connection is None:
            self.send_json(message)
        else:
            connection.send_text(json.dumps(message))
            with self._lock:
                self._sent.append(message)
        return message

    def send_events_api(
        self,
        body: dict[str, Any],
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        accepts_response_payload: bool = False,
        timeout: float = 5.0,
    ) -> str:
        """Deliver an Events API ``event_callback`` body in an ``events_api`` envelope, as
        Slack does (a retry keeps the body and gets a new envelope id); returns the
        envelope id."""
        envelope_id = envelope_id or str(uuid.uuid4())
        self.send_json(
            {
                "envelope_id": envelope_id,
                "type": "events_api",
                "accepts_response_payload": accepts_response_payload,
                "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
                "payload": body,
            },
            timeout=timeout,
        )
        return envelope_id

    # inspection

    @property
    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    @property
    def handshakes(self) -> list[Handshake]:
        with self._lock:
            return list(self._handshakes)

    @property
    def texts(self) -> list[str]:
        with self._lock:
            return list(self._texts)

    @property
    def received(self) -> list[Any]:
        """Every JSON text message the clients sent, parsed, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def sent(self) -> list[Any]:
        with self._lock:
            return list(self._sent)

    def wait_until(self, check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
        """Block until ``check()`` is truthy (re-checked on every change, and every 50 ms);
        return its value, or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := check()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out waiting for {what or check}")
                self._changed.wait(min(remaining, _POLL))
            return result

    def wait_connected(self, timeout: float = 5.0) -> Connection:
        """The newest connection whose handshake succeeded and which is still open."""

        def newest_open() -> Connection | None:
            live = [c for c in self._connections if c.opened.is_set() and not c.ended.is_set()]
            return live[-1] if live else None

        return self.wait_until(newest_open, timeout, "an open connection")  # type: ignore[no-any-return]

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        """The first received message matching ``predicate``."""

        def first() -> list[Any]:
            return [m for m in self._received if predicate(m)][:1]

        return self.wait_until(first, timeout, "a matching client message")[0]

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        def is_ack(message: Any) -> bool:
            return isinstance(message, dict) and message.get("envelope_id") == envelope_id

        return self.wait_for(is_ack, timeout)  # type: ignore[no-any-return]

    # used by the connections

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, daemon=True, name=name)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([listener], [], [], _POLL)
                if not readable:
                    continue
                sock, _ = listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            sock.settimeout(_SEND_TIMEOUT)
            connection = Connection(self, sock)
            with self._lock:
                self._connections.append(connection)
            connection.thread.start()

    def _ping_loop(self) -> None:
        assert self.ping_every
        while not self._stopping.wait(self.ping_every):
            for connection in self.connections:
                if connection.opened.is_set() and not connection.ended.is_set():
                    with contextlib.suppress(OSError):
                        connection.send_frame(OP_PING, f"standin:{time.time()}".encode())

    def _use_ticket(self, ticket: str) -> bool:
        with self._lock:
            if self._tickets.get(ticket) is not False:
                return False  # never issued, or used already
            self._tickets[ticket] = True
            return True

    def _record_handshake(self, handshake: Handshake) -> None:
        with self._changed:
            self._handshakes.append(handshake)
            self._changed.notify_all()

    def _opened(self, connection: Connection) -> None:
        if self.send_hello:
            self.hello(connection)

    def _received_text(self, connection: Connection, text: str) -> None:
        with self._changed:
            self._texts.append(text)
            with contextlib.suppress(ValueError):
                self._received.append(json.loads(text))
            self._changed.notify_all()

    def _received_binary(self, message: bytes) -> None:
        with self._changed:
            self._binary.append(message)
            self._changed.notify_all()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()
