"""Slack over Socket Mode, end to end with no internet: ``start_socket_mode`` opens
``apps.connections.open`` through the app's WebClient (answered by the Slack stand-in, to the
app-level token only), slack_sdk's builtin client connects to the local WebSocket stand-in,
envelopes come in and are acked, and answers land in the thread through the same queue, worker
and core as over HTTP."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.errors import SlackApiError

from bots.slack.socket_mode import start_socket_mode
from tests import slack_requests as sr
from tests.standins.slack import SlackStandIn
from tests.standins.socket_mode import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    SocketModeStandIn,
    accept_key,
    encode_frame,
)
from tests.test_slack import Harness, build_harness

APP_TOKEN = "xapp-1-A0STANDIN-1-0123456789-dummy"
ANSWER = "**Answer** to: what is our *SLA*?"


def wait_until(check: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(0.02)
    return result


@pytest.fixture
def harness(slack_standin: SlackStandIn, tmp_path: Path) -> Iterator[Harness]:
    harness = build_harness(slack_standin, tmp_path)
    yield harness
    harness.server.shutdown()
    harness.server.server_close()
    harness.app.close()


@pytest.fixture
def socket_standin(slack_standin: SlackStandIn) -> Iterator[SocketModeStandIn]:
    with SocketModeStandIn(app_id=slack_standin.app_id) as standin:
        standin.answer_connections_open(slack_standin, APP_TOKEN)
        yield standin
    assert standin.errors == [], "the Socket Mode stand-in itself failed"


@pytest.fixture
def handler(harness: Harness, socket_standin: SocketModeStandIn) -> Iterator[SocketModeHandler]:
    handler = start_socket_mode(harness.app.slack_app, APP_TOKEN)
    yield handler
    handler.close()
    assert socket_standin.protocol_errors == [], "the client broke RFC 6455"


def mention_body(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ``app_mention`` and the ``event_callback`` body Slack wraps it in."""
    mention = sr.app_mention(text)
    body, _ = sr.event_callback(mention)
    return mention, json.loads(body)


def wait_for_answer(harness: Harness, thread_ts: str, text: str) -> list[dict[str, Any]]:
    harness.settle()
    harness.standin.wait_for_calls("chat.postMessage", 1, timeout=5)
    return wait_until(  # type: ignore[no-any-return]
        lambda: [r for r in harness.thread(thread_ts) if r.get("text") == text],
        what=f"the answer {text!r} in thread {thread_ts}",
    )


# --- end to end ---------------------------------------------------------------------------


def test_a_mention_over_socket_mode_is_acked_and_answered_in_its_thread(
    harness: Harness,
    slack_standin: SlackStandIn,
    socket_standin: SocketModeStandIn,
    handler: SocketModeHandler,
) -> None:
    # The WebSocket URL came from apps.connections.open, asked with the app-level token.
    (opened,) = slack_standin.calls_to("apps.connections.open")
    assert opened.headers["authorization"] == f"Bearer {APP_TOKEN}"
    assert opened.ok and opened.response["url"].startswith(f"ws://127.0.0.1:{socket_standin.port}/")
    connection = socket_standin.wait_connected()
    assert handler.client.is_connected()
    assert (
        connection.handshake is not None and connection.handshake.headers["upgrade"] == "websocket"
    )
    assert f"ticket={connection.ticket}" in opened.response["url"]
    assert socket_standin.sent[0]["type"] == "hello"
    # The client pings at once with "{session id}:{time}" and gets its pong.
    session = f"{handler.client.session_id()}:".encode()
    wait_until(lambda: any(p.startswith(session) for p in connection.pings), what="client ping")

    mention, body = mention_body("<@UBOT> what is our *SLA*?")
    envelope_id = socket_standin.send_events_api(body)

    assert socket_standin.wait_for_ack(envelope_id) == {"envelope_id": envelope_id}
    (reply,) = wait_for_answer(harness, mention["ts"], ANSWER)
    assert reply["blocks"][0] == {"type": "markdown", "text": ANSWER}
    assert harness.model.prompts[0].question == "what is our *SLA*?"
    (post,) = slack_standin.calls_to("chat.postMessage")
    assert post.params["thread_ts"] == mention["ts"] and post.params["channel"] == "C1"
    assert post.headers["authorization"] == f"Bearer {slack_standin.bot_token}"
    assert slack_standin.calls_to("chat.update")  # the placeholder was edited into the answer


def test_a_socket_mode_retry_of_the_same_event_is_acked_and_not_answered_twice(
    harness: Harness,
    slack_standin: SlackStandIn,
    socket_standin: SocketModeStandIn,
    handler: SocketModeHandler,
) -> None:
    mention, body = mention_body("<@UBOT> what is our *SLA*?")
    first = socket_standin.send_events_api(body)
    socket_standin.wait_for_ack(first)
    wait_for_answer(harness, mention["ts"], ANSWER)

    # Slack redelivers an unacked event in a new envelope with the same payload (and event_id).
    retry = socket_standin.send_events_api(body, retry_attempt=1, retry_reason="timeout")
    assert retry != first
    assert socket_standin.wait_for_ack(retry) == {"envelope_id": retry}
    harness.settle()  # the ack follows the enqueue (process_before_response), so this is enough

    assert len(slack_standin.calls_to("chat.postMessage")) == 1
    assert len(harness.model.prompts) == 1
    assert len(harness.thread(mention["ts"])) == 1


def test_closing_the_handler_drops_the_connection_and_does_not_reconnect(
    slack_standin: SlackStandIn,
    socket_standin: SocketModeStandIn,
    handler: SocketModeHandler,
) -> None:
    connection = socket_standin.wait_connected()
    client = handler.client
    runners = [client.current_session_runner, client.current_app_monitor, client.message_processor]
    threads = [runner.thread for runner in runners]
    assert all(thread.is_alive() for thread in threads)

    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 5

    assert connection.ended.wait(5), "the server still sees the connection"
    assert connection.close_code is None  # the builtin client drops the socket, no close frame
    assert not client.is_connected()
    assert not any(thread.is_alive() for thread in threads)
    assert len(slack_standin.calls_to("apps.connections.open")) == 1
    assert len(socket_standin.connections) == 1


def test_apps_connections_open_answers_the_app_token_only(
    harness: Harness, slack_standin: SlackStandIn, socket_standin: SocketModeStandIn
) -> None:
    client = harness.app.slack_app.client  # the client start_socket_mode uses
    refusals = {
        slack_standin.bot_token: "not_allowed_token_type",
        "xapp-1-A0OTHER-1-9876543210-dummy": "invalid_auth",
    }
    for token, error in refusals.items():
        with pytest.raises(SlackApiError) as refused:
            client.apps_connections_open(app_token=token)
        assert refused.value.response["error"] == error
    url = client.apps_connections_open(app_token=APP_TOKEN)["url"]
    assert urlsplit(url).port == socket_standin.port


# --- the stand-in itself ------------------------------------------------------------------


class RawClient:
    """Just enough of a WebSocket client to check the stand-in's framing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = bytearray()

    def _fill(self, ready: Callable[[], bool]) -> None:
        while not ready():
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk

    def _take(self, size: int) -> bytes:
        self._fill(lambda: len(self.buffer) >= size)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def upgrade(self, url: str) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(url)
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode("ascii"))
        self._fill(lambda: b"\r\n\r\n" in self.buffer)
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        return int(status_line.split(" ")[1]), headers, key

    def send(self, opcode: int, payload: bytes, *, masked: bool = True) -> None:
        self.sock.sendall(encode_frame(opcode, payload, mask=os.urandom(4) if masked else None))

    def frame(self) -> tuple[int, bytes]:
        b1, b2 = self._take(2)
        assert not b2 & 0x80, "server frames must not be masked"
        size = b2 & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._take(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._take(8))
        return b1 & 0x0F, self._take(size)

    def next(self, opcode: int) -> bytes:
        """The next frame with ``opcode``, skipping the server's keep-alive pings."""
        while True:
            got, payload = self.frame()
            if got == opcode:
                return payload
            assert got == OP_PING, f"unexpected opcode {got:#x}"

    def close(self) -> None:
        self.sock.close()


def test_the_standin_frames_every_length_form_answers_pings_and_closes(
    socket_standin: SocketModeStandIn,
) -> None:
    url = socket_standin.new_url()
    client = RawClient(socket_standin.port)
    try:
        status, headers, key = client.upgrade(url)
        assert status == 101 and headers["sec-websocket-accept"] == accept_key(key)
        assert json.loads(client.next(OP_TEXT))["type"] == "hello"
        for size in (10, 1_000, 70_000):  # 7-bit, 16-bit and 64-bit payload lengths
            message = {"size": size, "pad": "x" * size}
            client.send(OP_TEXT, json.dumps(message).encode())
            assert socket_standin.wait_for(lambda m, n=size: m.get("size") == n) == message
            socket_standin.send_json(message)
            assert json.loads(client.next(OP_TEXT)) == message
        client.send(OP_PING, b"are you there")
        assert client.next(OP_PONG) == b"are you there"
        client.send(OP_CLOSE, struct.pack("!H", 1000) + b"bye")
        assert client.next(OP_CLOSE)[:2] == struct.pack("!H", 1000)
    finally:
        client.close()
    (connection,) = socket_standin.connections
    assert connection.ended.wait(5) and connection.close_code == 1000

    reused = RawClient(socket_standin.port)  # a ticket is good for one connection
    try:
        assert reused.upgrade(url)[0] == 403
    finally:
        reused.close()

    unmasked = RawClient(socket_standin.port)
    try:
        assert unmasked.upgrade(socket_standin.new_url())[0] == 101
        assert json.loads(unmasked.next(OP_TEXT))["type"] == "hello"
        unmasked.send(OP_TEXT, b"{}", masked=False)
        assert unmasked.next(OP_CLOSE)[:2] == struct.pack("!H", 1002)
    finally:
        unmasked.close()
    assert socket_standin.protocol_errors == ["client frames must be masked"]
