"""The local host answers its own clients only: Host, Origin, content types, the per-run token
of ``/local/*`` off loopback, bounded transcripts and bounded request ids."""

from __future__ import annotations

import http.client
import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bots.local.app import LocalApp, build_local_app
from bots.local.devchat import Transcripts, TranscriptSink
from bots.local.server import LocalServer
from core.assistant import Assistant
from core.config import ConfigError, Settings
from core.history.sqlite import SqliteHistoryStore
from core.observability import configure_logging
from tests import slack_requests as sr
from tests.fakes import ScriptedModel, timed_stream
from tests.standins import teams as tm
from tests.standins.slack import SlackStandIn
from tests.standins.teams import ConnectorStandIn
from tests.test_slack import build_harness as build_slack_harness

JSON = {"Content-Type": "application/json"}
MESSAGE = json.dumps({"text": "Our deploy day is Tuesday.", "thread": "t1"}).encode()


def send(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One request to 127.0.0.1, with ``Host: 127.0.0.1:<port>`` unless ``headers`` says."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@dataclass
class Host:
    app: LocalApp
    server: LocalServer
    model: ScriptedModel

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        return send(self.port, method, path, body, headers)

    def settled(self) -> bool:
        return self.app.queue.join(10)


def _start(tmp_path: Path, bind: str = "127.0.0.1", **options: Any) -> Host:
    settings = Settings(data_dir=tmp_path, edit_interval_seconds=0.01, host=bind)
    model = ScriptedModel(lambda p: timed_stream([f"answer to {p.question}"]))
    assistant = Assistant(
        settings=settings, history=SqliteHistoryStore(tmp_path / "h.db"), model=model
    )
    app = build_local_app(settings, assistant=assistant)
    server = LocalServer((bind, 0), app.routes, **options)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Host(app, server, model)


def _stop(host: Host) -> None:
    host.server.shutdown()
    host.server.server_close()
    host.app.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    started = _start(tmp_path)
    yield started
    _stop(started)


# --- cross-site requests from a browser ----------------------------------------------------

BROWSER_CSRF = {
    "Content-Type": "text/plain",
    "Origin": "http://evil.example",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
}


def test_a_cross_site_post_to_the_dev_chat_is_refused_and_nothing_is_enqueued(
    host: Host,
) -> None:
    status, body = host.send("POST", "/local/messages", MESSAGE, BROWSER_CSRF)
    assert status == 403 and body["error"]
    # Origin alone is enough, whatever the content type.
    assert (
        host.send("POST", "/local/messages", MESSAGE, {**JSON, "Origin": "http://x.test"})[0] == 403
    )
    assert host.settled()
    assert host.app.transcripts.read("t1") == [] and host.model.prompts == []


def test_a_cross_site_post_to_teams_is_refused_and_nothing_is_enqueued(
    host: Host, teams_connector: ConnectorStandIn
) -> None:
    activity = tm.personal_message("What is our SLA?", service_url=teams_connector.service_url)
    raw = json.dumps(activity).encode()
    assert host.send("POST", "/api/messages", raw, BROWSER_CSRF)[0] == 403
    assert host.send("POST", "/api/messages", raw, {**JSON, "Origin": "null"})[0] == 403
    assert host.settled() and host.model.prompts == []
    # The same activity from Bot Framework (no Origin, JSON) is taken: the refusal was the guard.
    assert host.send("POST", "/api/messages", raw, JSON)[0] == 202
    assert host.settled() and [p.question for p in host.model.prompts] == ["What is our SLA?"]


def test_sec_fetch_site_cross_site_is_refused_even_without_origin(host: Host) -> None:
    headers = {**JSON, "Sec-Fetch-Site": "cross-site"}
    assert host.send("POST", "/local/messages", MESSAGE, headers)[0] == 403
    assert (
        host.send("GET", "/local/messages?thread=t1", headers={"Sec-Fetch-Site": "cross-site"})[0]
        == 403
    )


def test_the_servers_own_origin_is_accepted(host: Host) -> None:
    for origin in (f"http://127.0.0.1:{host.port}", f"http://localhost:{host.port}"):
        headers = {**JSON, "Origin": origin, "Sec-Fetch-Site": "same-origin"}
        assert host.send("POST", "/local/messages", MESSAGE, headers)[0] == 202
    for foreign in (
        f"http://localhost:{host.port + 1}",  # another local server is another origin
        f"https://localhost:{host.port}",
        f"http://evil.example:{host.port}",
        "http://localhost",
    ):
        assert host.send("POST", "/local/messages", MESSAGE, {**JSON, "Origin": foreign})[0] == 403


def test_requests_without_origin_are_accepted(host: Host) -> None:
    assert host.send("POST", "/local/messages", MESSAGE, JSON)[0] == 202
    assert host.settled()
    status, body = host.send("GET", "/local/messages?thread=t1")
    assert status == 200 and [m["author"] for m in body["messages"]] == ["local-user", "assistant"]


# --- DNS rebinding: a foreign Host ---------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["evil.example", "evil.example:3000", "localhost.evil.example", "127.0.0.2", "[::2]"]
)
def test_a_foreign_host_is_refused_everywhere(host: Host, name: str) -> None:
    assert host.send("POST", "/local/messages", MESSAGE, JSON)[0] == 202
    assert host.settled()
    foreign = {"Host": name}
    status, body = host.send("GET", "/local/messages?thread=t1", headers=foreign)
    assert status == 421 and "messages" not in body and "CHATBOT_ALLOWED_HOSTS" in body["error"]
    assert host.send("GET", "/healthz", headers=foreign)[0] == 421
    assert host.send("POST", "/local/messages", MESSAGE, {**JSON, **foreign})[0] == 421
    assert host.send("POST", "/api/messages", b"{}", {**JSON, **foreign})[0] == 421
    assert host.send("POST", "/slack/events", b"{}", {**JSON, **foreign})[0] == 421
    assert host.settled() and len(host.app.transcripts.read("t1")) == 2


@pytest.mark.parametrize(
    "name", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST:3000", "[::1]:8080"]
)
def test_loopback_names_are_accepted_with_or_without_a_port(host: Host, name: str) -> None:
    assert host.send("GET", "/healthz", headers={"Host": name})[0] == 200


def test_a_missing_malformed_or_doubled_host_gets_400(host: Host) -> None:
    def raw(head: bytes) -> int:
        with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
            sock.sendall(head + b"\r\n")
            return int(sock.makefile("rb").readline().split()[1])

    assert raw(b"GET /healthz HTTP/1.1\r\n") == 400
    assert raw(b"GET /healthz HTTP/1.1\r\nHost: local host\r\n") == 400
    assert raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n") == 400


def test_allowed_hosts_are_answered_and_their_dev_chat_needs_the_token(tmp_path: Path) -> None:
    started = _start(tmp_path, allowed_hosts=("tunnel.example",), token="t0ken")
    try:
        tunnel = {"Host": "tunnel.example"}
        assert started.send("GET", "/healthz", headers=tunnel)[0] == 200
        origin = {**JSON, **tunnel, "Origin": "https://tunnel.example"}
        # Reached through the tunnel, the dev chat is on the internet: it needs the token.
        assert started.send("POST", "/local/messages", MESSAGE, origin)[0] == 401
        authorized = {**origin, "Authorization": "Bearer t0ken"}
        assert started.send("POST", "/local/messages", MESSAGE, authorized)[0] == 202
        # From this machine it does not.
        assert started.send("POST", "/local/messages", MESSAGE, JSON)[0] == 202
    finally:
        _stop(started)


def test_the_allowed_hosts_setting() -> None:
    assert Settings().allowed_hosts == ()
    env = {"CHATBOT_ALLOWED_HOSTS": " Tunnel.Example , 192.168.1.5,,[::1] "}
    assert Settings.from_env(env).allowed_hosts == ("tunnel.example", "192.168.1.5", "[::1]")
    for bad in ("https://tunnel.example", "tunnel.example:443", "a b", "*.example"):
        with pytest.raises(ConfigError, match="CHATBOT_ALLOWED_HOSTS"):
            Settings.from_env({"CHATBOT_ALLOWED_HOSTS": bad})


# --- content types -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/local/messages", "/api/messages"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml", None]
)
def test_json_endpoints_take_json_only(host: Host, path: str, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, body = host.send("POST", path, MESSAGE, headers)
    assert status == 415 and "application/json" in body["error"]
    assert host.settled() and host.model.prompts == []
    assert host.app.transcripts.read("t1") == []


def test_json_with_a_charset_is_json(host: Host) -> None:
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert host.send("POST", "/local/messages", MESSAGE, headers)[0] == 202


def test_the_readme_curl_examples_still_work(host: Host) -> None:
    """``curl -d`` sends ``application/x-www-form-urlencoded``: taken from a non-browser client
    on the dev chat (a browser sends Origin or Sec-Fetch-Site, and then it is 415)."""
    curl = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "curl/8.5.0"}
    assert (
        host.send("POST", "/local/messages", MESSAGE, {**curl, "Host": "localhost:3000"})[0] == 202
    )
    own = {**curl, "Origin": f"http://localhost:{host.port}"}
    assert host.send("POST", "/local/messages", MESSAGE, own)[0] == 415
    fetch = {**curl, "Sec-Fetch-Site": "same-origin"}
    assert host.send("POST", "/local/messages", MESSAGE, fetch)[0] == 415
    assert host.send("POST", "/api/messages", b"{}", curl)[0] == 415
    assert host.settled()
    status, body = host.send("GET", "/local/messages?thread=t1", headers={"Host": "localhost:3000"})
    assert status == 200 and len(body["messages"]) == 2


def test_slack_keeps_its_own_content_types(slack_standin: SlackStandIn, tmp_path: Path) -> None:
    slack = build_slack_harness(slack_standin, tmp_path)
    try:
        command = sr.slash_command("/summarize", text="7d")  # form-encoded, as Slack posts it
        assert command[1]["Content-Type"] == "application/x-www-form-urlencoded"
        status, body = slack.send(command)
        assert status == 200 and "Summarizing" in json.loads(body)["text"]
        event_body, event_headers = sr.event_callback(sr.app_mention("<@UBOT> hi"))
        assert event_headers["Content-Type"] == "application/json"
        plain = dict(event_headers, **{"Content-Type": "text/plain"})
        assert slack.send((event_body, plain))[0] == 415
        assert slack.send((event_body, event_headers))[0] == 200
        slack.settle()
        assert [p.question for p in slack.model.prompts] == ["hi"]
    finally:
        slack.server.shutdown()
        slack.server.server_close()
        slack.app.close()


# --- off loopback, /local/* needs this run's token -----------------------------------------


def test_bound_off_loopback_the_dev_chat_needs_the_token(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    started = _start(tmp_path, bind="0.0.0.0")  # noqa: S104 - reached through 127.0.0.1 only
    try:
        token = started.server.guard.token
        assert len(token) >= 32 and started.server.guard.needs_token
        assert started.send("POST", "/local/messages", MESSAGE, JSON)[0] == 401
        status, body = started.send("GET", "/local/messages?thread=t1")
        assert status == 401 and "messages" not in body
        for wrong in ("Bearer nope", f"Basic {token}", "Bearer", f"Bearer {token}x"):
            headers = {**JSON, "Authorization": wrong}
            assert started.send("POST", "/local/messages", MESSAGE, headers)[0] == 401
        bearer = {**JSON, "Authorization": f"Bearer {token}"}
        assert started.send("POST", "/local/messages", MESSAGE, bearer)[0] == 202
        header = {**JSON, "X-Chatbot-Token": token}
        assert started.send("POST", "/local/messages", MESSAGE, header)[0] == 202
        assert started.settled()
        status, body = started.send("GET", "/local/messages?thread=t1", headers=header)
        assert status == 200 and len(body["messages"]) == 4
        # The address it is bound to is one of its own names; health needs no token.
        assert started.send("GET", "/healthz", headers={"Host": "0.0.0.0"})[0] == 200  # noqa: S104
    finally:
        _stop(started)
        configure_logging("INFO")
    assert "http request" in stream.getvalue() and token not in stream.getvalue()


def test_bound_to_loopback_the_dev_chat_needs_no_token(host: Host) -> None:
    assert not host.server.guard.needs_token
    assert host.send("POST", "/local/messages", MESSAGE, JSON)[0] == 202


def test_chatbot_serve_prints_the_token_once_and_never_logs_it(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "serve", "--host", "0.0.0.0", "--port", str(port)],  # noqa: S104
        cwd=tmp_path,
        env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr = proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in stderr], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        token = ""
        deadline = time.monotonic() + 30
        while not token and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            if "Authorization: Bearer " in line:
                token = line.rsplit("Bearer ", 1)[1].strip()
        assert token, "".join(seen)
        assert send(port, "POST", "/local/messages", MESSAGE, JSON)[0] == 401
        bearer = {**JSON, "Authorization": f"Bearer {token}"}
        assert send(port, "POST", "/local/messages", MESSAGE, bearer)[0] == 202
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
    while not lines.empty():
        seen.append(lines.get())
    assert proc.returncode == 0, "".join(seen)
    assert sum(token in line for line in seen) == 1  # printed once...
    logged = [line for line in seen if line.startswith("{")]
    assert any("http request" in line for line in logged)
    assert not any(token in line for line in logged)  # ...and never logged


# --- bounded memory and log lines ----------------------------------------------------------


def test_transcripts_keep_at_most_so_many_threads_least_recently_used_dropped() -> None:
    transcripts = Transcripts(max_threads=3, max_messages=10)
    for thread in ("a", "b", "c"):
        transcripts.add(thread, "u", f"hello {thread}", final=True)
    assert transcripts.read("a")  # "a" is now the most recently used
    transcripts.add("d", "u", "hello d", final=True)
    assert transcripts.read("b") == []
    assert [bool(transcripts.read(t)) for t in ("a", "c", "d")] == [True, True, True]


def test_transcripts_keep_the_newest_messages_of_a_thread() -> None:
    transcripts = Transcripts(max_threads=3, max_messages=4)
    sink = TranscriptSink(transcripts, "t")
    first = sink.post("placeholder")
    for i in range(10):
        transcripts.add("t", "u", f"m{i}", final=True)
    assert [m["text"] for m in transcripts.read("t")] == ["m6", "m7", "m8", "m9"]
    sink.update(first, "late edit of a dropped message")  # ignored, not an error
    last = sink.post("newest")
    sink.update(last, "edited")
    assert [m["text"] for m in transcripts.read("t")] == ["m7", "m8", "m9", "edited"]


def test_a_dropped_thread_does_not_take_edits_meant_for_its_old_messages() -> None:
    transcripts = Transcripts(max_threads=1, max_messages=4)
    old = transcripts.add("t", "assistant", "placeholder", final=False)
    transcripts.add("other", "u", "pushes t out", final=True)
    transcripts.add("t", "u", "a new t", final=True)
    transcripts.edit(old, "stale", final=True)
    assert [m["text"] for m in transcripts.read("t")] == ["a new t"]


def test_the_dev_chat_uses_the_bounded_defaults(host: Host) -> None:
    from bots.local import devchat

    assert (devchat.MAX_THREADS, devchat.MAX_MESSAGES_PER_THREAD) == (1_000, 500)
    assert host.app.transcripts._max_threads == devchat.MAX_THREADS


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("req-1.a:b_C", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("id with spaces", False),
        ('{"forged": "json"}', False),
        ("ümlaut", False),
    ],
)
def test_request_ids_are_kept_only_when_short_and_plain(host: Host, given: str, kept: bool) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
        connection.putrequest("GET", "/healthz")
        connection.putheader("X-Request-Id", given.encode())
        connection.endheaders()
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        configure_logging("INFO")
    (line,) = [
        json.loads(ln)
        for ln in stream.getvalue().splitlines()
        if ln.startswith("{") and json.loads(ln).get("message") == "http request"
    ]
    if kept:
        assert line["request_id"] == given
    else:
        assert len(line["request_id"]) == 32 and line["request_id"] != given
        assert given not in stream.getvalue()


def test_behind_a_tunnel_name_teams_is_never_unauthenticated(tmp_path: Path) -> None:
    """An allowed host name (a tunnel's) puts the local host on the internet: the Emulator's
    unauthenticated mode is off there, even on a loopback bind."""
    from bots.http import HttpRequest
    from bots.local.app import TEAMS_NEEDS_AUTH

    settings = Settings(data_dir=tmp_path, allowed_hosts=("tunnel.example",))
    app = build_local_app(settings)
    try:
        activity = json.dumps(tm.personal_message("hi", service_url="http://127.0.0.1:9/")).encode()
        response = app.routes.dispatch(
            HttpRequest("POST", "/api/messages", {"content-type": "application/json"}, activity)
        )
    finally:
        app.close()
    assert response.status == 503 and TEAMS_NEEDS_AUTH in response.body.decode()
