"""A local Bedrock Runtime stand-in for ``ConverseStream``.

A real HTTP server on 127.0.0.1 that answers ``POST /model/{modelId}/converse-stream`` in the
AWS event-stream binary framing, so boto3's real serializer, parser and error handling run
unchanged: point ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` at :attr:`BedrockStandIn.url` and nothing
else differs from talking to AWS.

Each request consumes one scripted behaviour (:meth:`BedrockStandIn.script`), first in first
out; with none left it streams :data:`DEFAULT_ANSWER`. Every request is recorded.

Prompt caching is checked as Bedrock checks it: ``cachePoint`` blocks for a model without
prompt caching, or more than four in one request, are refused with a ``ValidationException``.
With :attr:`BedrockStandIn.prompt_cache` set to a :class:`PromptCache`, a successful stream's
usage is computed from the request the way Bedrock bills it (cache reads and writes included)
instead of the behaviour's fixed figures.

Responses use chunked transfer encoding with one HTTP chunk per event: urllib3 hands a chunked
body to botocore chunk by chunk as it arrives, whereas an unchunked body is read in 64 KiB
blocks, so events would not reach the client progressively.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

import pytest

from core.text import estimate_tokens
from tests.standins import LoopbackHttpService, TrackingHandler

DEFAULT_ANSWER: tuple[str, ...] = ("Hello", " from", " the", " stand-in.")

_PATH = re.compile(r"^/model/(?P<model_id>[^/?]+)/converse-stream/?(?:\?.*)?$")
_HEADER_STRING = 7  # event-stream header value type: UTF-8 string
_INVALID = "ValidationException"


# --- event-stream framing -----------------------------------------------------------------


def encode_headers(headers: dict[str, str]) -> bytes:
    """Header block: name length (1 byte), name, type 7, value length (2 bytes BE), value."""
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _HEADER_STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, prelude CRC32),
    headers, payload, and a CRC32 of everything before it. All integers big-endian."""
    header_bytes = encode_headers(headers)
    total_length = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total_length, len(header_bytes))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + header_bytes + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_message(event_type: str, body: dict[str, Any]) -> bytes:
    return encode_message(
        {
            ":message-type": "event",
            ":event-type": event_type,
            ":content-type": "application/json",
        },
        json.dumps(body).encode("utf-8"),
    )


def exception_message(exception_type: str, message: str) -> bytes:
    """An in-stream exception, e.g. ``throttlingException`` (lower camel case, as the service
    model names the members of the ``ConverseStreamOutput`` union)."""
    return encode_message(
        {
            ":message-type": "exception",
            ":exception-type": exception_type,
            ":content-type": "application/json",
        },
        json.dumps({"message": message}).encode("utf-8"),
    )


# --- behaviours ---------------------------------------------------------------------------


def _default_usage() -> dict[str, int]:
    return {"inputTokens": 42, "outputTokens": 7, "totalTokens": 49}


@dataclass(frozen=True)
class Stream:
    """A successful answer: one ``contentBlockDelta`` per chunk, ``delay`` seconds before each
    (and ``first_delay`` more before the first: the model reading the prompt), then
    ``contentBlockStop``, ``messageStop`` and ``metadata``."""

    chunks: list[str] = field(default_factory=lambda: list(DEFAULT_ANSWER))
    delay: float = 0.0
    first_delay: float = 0.0
    stop_reason: str = "end_turn"
    usage: dict[str, int] = field(default_factory=_default_usage)


@dataclass(frozen=True)
class HttpError:
    """An error before the stream starts: an HTTP status, ``x-amzn-ErrorType`` and a JSON body,
    the way the rest-json protocol reports e.g. ``ThrottlingException`` (429)."""

    status: int
    error_type: str
    message: str = "error from the stand-in"


@dataclass(frozen=True)
class StreamThenException:
    """HTTP 200, the chunks as deltas, then an in-stream exception event (``chunks=[]``: an
    error before any text)."""

    chunks: list[str]
    exception_type: str
    message: str = "in-stream error from the stand-in"


@dataclass(frozen=True)
class StreamThenDrop:
    """HTTP 200, the chunks as deltas, half of another event, then the socket closes with no
    end of the chunked body: what a dropped connection looks like to the client."""

    chunks: list[str]


Behaviour = Stream | HttpError | StreamThenException | StreamThenDrop


@dataclass(frozen=True)
class RecordedRequest:
    model_id: str  # URL-decoded, as the client passed it
    body: dict[str, Any]
    headers: dict[str, str]  # names lower-cased


# --- prompt caching -----------------------------------------------------------------------

# Minimum prefix per cache point (Bedrock user guide, "Prompt caching"), by model family; the
# stand-in's own table, matched anywhere in the model id (region prefixes and ARNs work).
_CACHE_MINIMUMS: tuple[tuple[str, int], ...] = (
    ("claude-haiku-4-5", 4096),
    ("claude-opus-4-5", 4096),
    ("claude-opus-4-6", 4096),
    ("claude-3-5-haiku", 2048),
    ("claude-sonnet-4", 1024),
    ("claude-opus-4", 1024),
    ("claude-3-7-sonnet", 1024),
    ("amazon.nova-", 1000),
)
MAX_CACHE_POINTS = 4


def cache_minimum(model_id: str) -> int | None:
    """The model's minimum cacheable prefix, or None when it has no prompt caching."""
    for name, minimum in _CACHE_MINIMUMS:
        if name in model_id:
            return minimum
    return None


def count_cache_points(body: dict[str, Any]) -> int:
    blocks = list(body.get("system") or [])
    for message in body.get("messages") or []:
        blocks += message.get("content") or []
    return sum(1 for block in blocks if "cachePoint" in block)


@dataclass
class PromptCache:
    """Bedrock's prompt cache as its user guide describes it, per model id.

    The request is read in order (system blocks, then each message's role and blocks). At each
    ``cachePoint`` the prefix before it (the blocks' JSON, cache points left out) is a cache
    entry if its tokens reach the model's minimum. The longest prefix found in the cache, not
    older than ``ttl`` seconds since its last use, is read; every entry at or under the last
    cache point is then written or refreshed. Billing: ``cacheReadInputTokens`` is the read
    prefix, ``cacheWriteInputTokens`` what lies between it and the last cache point that
    reached the minimum, ``inputTokens`` the rest of the request (Bedrock counts input besides
    the cached tokens). Tokens of a text block: :func:`core.text.estimate_tokens`, the same for
    every request whether it has cache points or not; output tokens likewise from the text
    streamed back. Thread-safe.
    """

    ttl: float = 300.0
    clock: Callable[[], float] = time.monotonic
    count_tokens: Callable[[str], int] = estimate_tokens
    _entries: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def usage(self, model_id: str, body: dict[str, Any], output: str) -> dict[str, int]:
        points, total = self._cache_points(body)
        minimum = cache_minimum(model_id) or 0
        now = self.clock()
        read = write_to = 0
        with self._lock:
            eligible = [(digest, tokens) for digest, tokens in points if tokens >= minimum]
            for digest, tokens in eligible:
                if self._entries.get((model_id, digest), float("-inf")) > now:
                    read = max(read, tokens)
            for digest, tokens in eligible:
                self._entries[(model_id, digest)] = now + self.ttl
                write_to = max(write_to, tokens)
        write = max(0, write_to - read)
        output_tokens = self.count_tokens(output) if output else 0
        return {
            "inputTokens": total - read - write,
            "outputTokens": output_tokens,
            "totalTokens": total + output_tokens,
            "cacheReadInputTokens": read,
            "cacheWriteInputTokens": write,
        }

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _cache_points(self, body: dict[str, Any]) -> tuple[list[tuple[str, int]], int]:
        """(prefix digest, prefix tokens) at each cache point, and the request's tokens."""
        digest = hashlib.sha256()
        tokens = 0
        points: list[tuple[str, int]] = []

        def walk(blocks: list[dict[str, Any]]) -> None:
            nonlocal tokens
            for block in blocks:
                if "cachePoint" in block:
                    points.append((digest.copy().hexdigest(), tokens))
                    continue
                digest.update(json.dumps(block, sort_keys=True).encode("utf-8"))
                text = block.get("text")
                if isinstance(text, str):
                    tokens += self.count_tokens(text)

        walk(list(body.get("system") or []))
        for message in body.get("messages") or []:
            digest.update(f"\x00{message.get('role')}\x00".encode())
            walk(list(message.get("content") or []))
        return points, tokens


# --- the server ---------------------------------------------------------------------------


class _Handler(TrackingHandler):  # HTTP/1.1: keep-alive and chunked transfer encoding
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        match = _PATH.match(self.path)
        if match is None:
            self._send_json(404, {"message": f"no route for {self.path}"}, "UnknownOperation")
            return
        try:
            body = json.loads(raw_body or b"{}")
        except ValueError:
            body = {"_raw": raw_body.decode("utf-8", errors="replace")}
        standin: BedrockStandIn = self.server.standin
        standin._record(
            RecordedRequest(
                model_id=unquote(match.group("model_id")),
                body=body,
                headers={k.lower(): v for k, v in self.headers.items()},
            )
        )
        points = count_cache_points(body)
        if points and cache_minimum(unquote(match.group("model_id"))) is None:
            self._send_json(400, {"message": "This model doesn't support caching."}, _INVALID)
            return
        if points > MAX_CACHE_POINTS:
            refusal = f"At most {MAX_CACHE_POINTS} cache points, not {points}."
            self._send_json(400, {"message": refusal}, _INVALID)
            return
        behaviour = standin._next_behaviour()
        if isinstance(behaviour, Stream) and standin.prompt_cache is not None:
            usage = standin.prompt_cache.usage(
                unquote(match.group("model_id")), body, "".join(behaviour.chunks)
            )
            behaviour = replace(behaviour, usage=usage)
        try:
            self._perform(behaviour)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (closed its stream early)

    def _perform(self, behaviour: Behaviour) -> None:
        if isinstance(behaviour, HttpError):
            self._send_json(behaviour.status, {"message": behaviour.message}, behaviour.error_type)
            return
        self._start_stream()
        self._write_chunk(event_message("messageStart", {"role": "assistant"}))
        delay = behaviour.delay if isinstance(behaviour, Stream) else 0.0
        if isinstance(behaviour, Stream) and behaviour.first_delay:
            time.sleep(behaviour.first_delay)
        for chunk in behaviour.chunks:
            if delay:
                time.sleep(delay)
            self._write_chunk(
                event_message(
                    "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": chunk}}
                )
            )
        if isinstance(behaviour, StreamThenDrop):
            partial = event_message(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "lost"}}
            )
            self._write_chunk(partial[: len(partial) // 2])
            self._drop()
            return
        if isinstance(behaviour, StreamThenException):
            self._write_chunk(exception_message(behaviour.exception_type, behaviour.message))
        else:
            self._write_chunk(event_message("contentBlockStop", {"contentBlockIndex": 0}))
            self._write_chunk(event_message("messageStop", {"stopReason": behaviour.stop_reason}))
            self._write_chunk(
                event_message("metadata", {"usage": behaviour.usage, "metrics": {"latencyMs": 5}})
            )
        self._end_stream()

    def _send_json(self, status: int, body: dict[str, Any], error_type: str) -> None:
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header(
            "x-amzn-ErrorType", f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        )
        self.send_header("x-amzn-RequestId", "standin-request")
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amzn-RequestId", "standin-request")
        self.end_headers()
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class BedrockStandIn(LoopbackHttpService):
    """A scriptable Bedrock Runtime on 127.0.0.1; see the module docstring.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Thread-safe: the server
    answers each connection on its own thread.
    """

    handler_class = _Handler
    thread_name = "bedrock-standin"
    description = "the Bedrock stand-in"

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self._lock = threading.Lock()
        self._behaviours: deque[Behaviour] = deque()
        self._requests: list[RecordedRequest] = []
        self.default_behaviour: Behaviour = Stream()
        # Set to a PromptCache to have usage computed from each request, cache included.
        self.prompt_cache: PromptCache | None = None

    # scripting and inspection

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each request consumes the next one."""
        with self._lock:
            self._behaviours.extend(behaviours)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """How many scripted behaviours are still unused."""
        with self._lock:
            return len(self._behaviours)

    def reset(self) -> None:
        with self._lock:
            self._behaviours.clear()
            self._requests.clear()

    # used by the handler

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviours.popleft() if self._behaviours else self.default_behaviour

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)


@pytest.fixture
def bedrock_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockStandIn]:
    """A running stand-in, with ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` pointing at it.

    Build boto3 clients (and so models) after this fixture: boto3 reads the variable when a
    client is created.
    """
    with BedrockStandIn() as standin:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", standin.url)
        yield standin
