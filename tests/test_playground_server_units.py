"""The playground's parts on their own: the change hub's bounds, Slack's text markup, the
routing additions, and ``chatbot serve`` printing the one URL that leads to the page."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bots.http import HttpRequest, HttpResponse, Routes
from bots.playground import hub as hub_module
from bots.playground.hub import Hub
from bots.playground.slack_wire import slack_text


def frames(stream: object, count: int) -> list[dict[str, object]]:
    """The next ``count`` data events of a hub stream (skipping retry and comment lines)."""
    found: list[dict[str, object]] = []
    iterator = iter(stream)  # type: ignore[call-overload]
    while len(found) < count:
        chunk = next(iterator).decode()
        for line in chunk.splitlines():
            if line.startswith("data: "):
                found.append(json.loads(line[6:]))
    return found


def test_a_new_stream_beyond_the_limit_ends_the_oldest_telling_it_why() -> None:
    hub = Hub(max_clients=2)
    streams = [hub.stream() for _ in range(3)]
    for stream in streams:
        assert frames(stream, 1)[0]["type"] == "hello"
    assert hub.clients == 2
    # The page obeys "evicted" by not reconnecting (which would evict another tab in turn).
    assert frames(streams[0], 1) == [{"type": "evicted"}]
    assert list(streams[0]) == []  # then ended: nothing more, no wait
    hub.publish({"type": "reset"})
    assert frames(streams[2], 1) == [{"type": "reset"}]


def test_closing_the_hub_ends_every_stream_and_refuses_new_ones() -> None:
    hub = Hub()
    streams = [hub.stream() for _ in range(3)]
    for stream in streams:
        frames(stream, 1)
    hub.close()
    assert all(list(stream) == [] for stream in streams)
    assert list(hub.stream()) == [] and hub.clients == 0


def test_an_idle_stream_sends_keep_alive_comments() -> None:
    hub = Hub(heartbeat_seconds=0.01)
    stream = iter(hub.stream())
    assert next(stream).startswith(b"retry: ")
    next(stream)  # hello
    assert next(stream) == b": keep-alive\n\n"
    hub.close()


def test_a_client_too_far_behind_is_told_to_resync(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(hub_module, "CLIENT_QUEUE", 3)
    hub = Hub()
    stream = hub.stream()
    frames(stream, 1)
    for i in range(5):
        hub.publish({"type": "n", "i": i})
    (resync,) = frames(stream, 1)
    assert resync["type"] == "hello" and resync["resync"] is True
    assert list(stream) == []


def test_replay_covers_only_what_the_buffer_still_holds(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(hub_module, "REPLAY_EVENTS", 2)
    hub = Hub()
    for i in range(5):
        hub.publish({"type": "n", "i": i})
    assert frames(hub.stream(f"{hub.run}:4"), 2)[1] == {"type": "n", "i": 4}
    assert frames(hub.stream(f"{hub.run}:1"), 1)[0]["resync"] is True  # 2 and 3 are gone
    assert frames(hub.stream(f"{hub.run}:99"), 1)[0]["resync"] is True  # not of this run
    assert frames(hub.stream("garbage"), 1)[0]["resync"] is True


def test_the_replay_buffer_is_bounded_by_bytes_too(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(hub_module, "REPLAY_BYTES", 10_000)
    hub = Hub()
    for i in range(4):  # a streamed message, published whole at every append
        hub.publish({"type": "slack.message", "i": i, "text": "x" * 4_000})
    kept = hub._replay_bytes
    assert 0 < kept <= 10_000 and len(hub._replay) == 2
    assert kept == sum(len(frame) for _, frame in hub._replay)
    (hello, third, fourth) = frames(hub.stream(f"{hub.run}:2"), 3)
    assert hello["resync"] is False and (third["i"], fourth["i"]) == (2, 3)
    assert frames(hub.stream(f"{hub.run}:1"), 1)[0]["resync"] is True  # 2 is gone
    hub.publish({"type": "huge", "text": "y" * 20_000})  # one change over the cap is kept
    assert [n for n, _ in hub._replay] == [5]


def test_base64_size_agrees_with_decoding() -> None:
    import base64
    import binascii

    import pytest

    from bots.playground.slack_wire import BadInput, base64_size

    for data in (b"", b"a", b"ab", b"abc", b"abcd", bytes(range(256)) * 3):
        assert base64_size(base64.b64encode(data).decode()) == len(data)
    for bad in ("%%%", "abc", "a===", "ab=c", "ab\n==", "=abc"):
        with pytest.raises(BadInput):
            base64_size(bad)
        with pytest.raises((binascii.Error, ValueError)):
            base64.b64decode(bad, validate=True)


def test_slack_text_escapes_like_slack_and_marks_mentions_of_the_bot() -> None:
    assert slack_text("@assistant is 1 < 2 & 3 > 2?") == "<@UPLAYBOT> is 1 &lt; 2 &amp; 3 &gt; 2?"
    assert slack_text("hi <@UPLAYBOT>") == "hi <@UPLAYBOT>"
    assert slack_text("mail me@assistant.example") == "mail me@assistant.example"
    assert slack_text("@assistants are fine") == "@assistants are fine"
    assert slack_text("<script>") == "&lt;script&gt;"


def test_prefix_routes_match_the_longest_prefix_and_exact_paths_first() -> None:
    routes = Routes()
    routes.add("GET", "/a/", lambda r: HttpResponse(200, b"a"), prefix=True)
    routes.add("GET", "/a/b/", lambda r: HttpResponse(200, b"ab"), prefix=True, max_body=10)
    routes.add("GET", "/a/b/c", lambda r: HttpResponse(200, b"exact"))
    body = {p: routes.dispatch(HttpRequest("GET", p)).body for p in ("/a/x", "/a/b/x", "/a/b/c")}
    assert body == {"/a/x": b"a", "/a/b/x": b"ab", "/a/b/c": b"exact"}
    assert routes.dispatch(HttpRequest("POST", "/a/x")).status == 405
    assert routes.dispatch(HttpRequest("GET", "/b")).status == 404
    assert routes.max_body("GET", "/a/b/q") == 10 and routes.max_body("GET", "/a/q") is None
    assert "GET /a/b/*" in routes.paths


def test_chatbot_serve_prints_one_url_that_opens_the_playground(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**env, "CHATBOT_DATA_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr = proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in stderr], daemon=True)
    reader.start()
    seen: list[str] = []
    url = ""
    try:
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]+)", line)
            url = found.group(1) if found else ""
        assert url, "".join(seen)
        assert url.startswith(f"http://127.0.0.1:{port}/?token=")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        token = url.rsplit("=", 1)[1]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/playground/state",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            state = json.loads(response.read())
        assert state["slack"]["enabled"] and state["teams"]["enabled"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
    while not lines.empty():
        seen.append(lines.get())
    assert proc.returncode == 0, "".join(seen)
    plain = [line for line in seen if not line.startswith("{")]
    assert sum(url in line for line in plain) == 1
    assert not any(token in line for line in seen if line.startswith("{"))  # never logged
