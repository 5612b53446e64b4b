"""The local host under load and abuse: bursts, malformed and slow requests, odd methods, a wide
worker pool that keeps each conversation in order, and failed jobs that end with an apology."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from bots.http import HttpRequest, HttpResponse, Routes
from bots.local.app import build_local_app
from bots.local.queue import InProcessQueue
from bots.local.server import MAX_BODY_BYTES, LocalServer
from core.assistant import Assistant
from core.config import ConfigError, Settings
from core.history.sqlite import SqliteHistoryStore
from core.jobs import JOB_FAILED_MESSAGE, Job, JobRouter
from core.prompt import Prompt
from tests import slack_requests as sr
from tests.fakes import ScriptedModel
from tests.standins import teams as tm
from tests.standins.slack import SlackStandIn
from tests.standins.teams import ConnectorStandIn
from tests.test_slack import build_harness as build_slack_harness

# --- the HTTP shell ------------------------------------------------------------------------


def _routes() -> Routes:
    routes = Routes()
    routes.add("GET", "/ping", lambda _: HttpResponse.json(200, {"pong": True}))

    def echo(request: HttpRequest) -> HttpResponse:
        return HttpResponse.json(200, {"length": len(request.body)})

    routes.add("POST", "/echo", echo)
    return routes


def _start(**options: float | int) -> LocalServer:
    # The raw requests below name the host "x": allowed here, as CHATBOT_ALLOWED_HOSTS would.
    server = LocalServer(("127.0.0.1", 0), _routes(), allowed_hosts=("x",), **options)  # type: ignore[arg-type]
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


@pytest.fixture
def server() -> Iterator[LocalServer]:
    server = _start(request_timeout=0.5)
    yield server
    server.shutdown()
    server.server_close()


def _connect(server: LocalServer, timeout: float = 10.0) -> socket.socket:
    host, port = server.server_address[:2]
    return socket.create_connection((str(host), int(port)), timeout=timeout)


def _read_response(reader: socket.socket | BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One response (status, lower-case headers, body) read off a raw socket, or off a
    socket's reader when several responses in a row are read from one connection."""
    fp = reader.makefile("rb") if isinstance(reader, socket.socket) else reader
    status_line = fp.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {k.lower(): v for k, v in http.client.parse_headers(fp).items()}
    return int(status_line.split()[1]), headers, fp.read(int(headers["content-length"]))


def _raw(server: LocalServer, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    with _connect(server) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return _read_response(sock)


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed its end (EOF), with nothing else sent."""
    return sock.recv(1024) == b""


def test_a_burst_of_100_simultaneous_connections_is_answered_without_a_reset() -> None:
    server = _start()
    try:
        assert server.request_queue_size >= 100
        count = 100
        barrier = threading.Barrier(count)
        results: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def client() -> None:
            try:
                barrier.wait(10)
                host, port = server.server_address[:2]
                connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
                connection.request("GET", "/ping")
                response = connection.getresponse()
                status, body = response.status, json.loads(response.read())
                connection.close()
                assert body == {"pong": True}
                with lock:
                    results.append(status)
            except BaseException as exc:
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert results == [200] * count
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("length", ["-1", "abc", "+5", "5 5", "0x10", "١٢"])
def test_a_malformed_or_negative_content_length_gets_400(server: LocalServer, length: str) -> None:
    status, headers, body = _raw(
        server, f"POST /echo HTTP/1.1\nHost: x\nContent-Length: {length}\n", b"hello"
    )
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "invalid Content-Length"}
    assert headers["connection"] == "close"


def test_two_different_content_lengths_get_400(server: LocalServer) -> None:
    status, _, body = _raw(
        server, "POST /echo HTTP/1.1\nHost: x\nContent-Length: 2\nContent-Length: 5\n", b"hello"
    )
    assert status == 400 and json.loads(body)["error"] == "invalid Content-Length"


def test_an_over_limit_body_gets_413_before_it_is_sent(server: LocalServer) -> None:
    status, headers, body = _raw(
        server, f"POST /echo HTTP/1.1\nHost: x\nContent-Length: {MAX_BODY_BYTES + 1}\n"
    )
    assert status == 413 and "error" in json.loads(body)
    assert headers["connection"] == "close"


def test_exactly_the_declared_length_is_read(server: LocalServer) -> None:
    """Keep-alive: the bytes after the body are the next request, not part of this body."""
    first = b'{"a": 1}'
    with _connect(server) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(first), first)
            + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        stream = sock.makefile("rb")
        status, _, body = _read_response(stream)
        assert (status, json.loads(body)) == (200, {"length": len(first)})
        status, _, body = _read_response(stream)
        assert (status, json.loads(body)) == (200, {"pong": True})


def test_a_chunked_body_without_a_length_gets_411(server: LocalServer) -> None:
    status, headers, body = _raw(
        server,
        "POST /echo HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert status == 411 and "Content-Length" in json.loads(body)["error"]
    assert headers["connection"] == "close"


def test_a_truncated_body_gets_408_and_the_connection_is_closed(server: LocalServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        status, headers, body = _read_response(sock)  # the client sends nothing more
        assert status == 408 and "not received" in json.loads(body)["error"]
        assert headers["connection"] == "close"
        assert _closed_by_server(sock)


def test_a_silent_client_and_an_idle_keep_alive_connection_are_closed(
    server: LocalServer,
) -> None:
    with _connect(server) as silent:
        silent.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        assert _closed_by_server(silent)
    with _connect(server) as idle:
        idle.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_response(idle)[0] == 200
        assert _closed_by_server(idle)  # kept alive, then closed once idle past the timeout


@pytest.mark.parametrize("method", ["OPTIONS", "PATCH", "PROPFIND", "TRACE"])
def test_unsupported_methods_get_a_json_405(server: LocalServer, method: str) -> None:
    status, headers, body = _raw(server, f"{method} /ping HTTP/1.1\nHost: x\n")
    assert status == 405
    assert headers["content-type"] == "application/json"
    assert headers["allow"] == "GET, POST, PUT, DELETE"
    assert json.loads(body) == {"error": f"method {method} not allowed"}


def test_head_gets_405_headers_and_no_body(server: LocalServer) -> None:
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    connection.request("HEAD", "/ping")
    response = connection.getresponse()
    assert response.status == 405
    assert response.getheader("Content-Type") == "application/json"
    assert response.read() == b""
    connection.close()


def test_connections_over_the_cap_get_503_and_a_freed_slot_serves_again() -> None:
    server = _start(request_timeout=5.0, max_connections=2)
    try:
        held = [_connect(server), _connect(server)]
        time.sleep(0.2)  # both accepted and holding a slot, each waiting for its request
        status, headers, body = _raw(server, "GET /ping HTTP/1.1\nHost: x\n")
        assert status == 503 and "too many connections" in json.loads(body)["error"]
        assert headers["connection"] == "close"
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5
        while True:  # the slots free as soon as the server sees the two connections close
            status = _raw(server, "GET /ping HTTP/1.1\nHost: x\n")[0]
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200
    finally:
        server.shutdown()
        server.server_close()


# --- the in-process queue ------------------------------------------------------------------


def test_twenty_conversations_run_at_once() -> None:
    """Each job waits for all twenty to be running: impossible with a pool of four."""
    barrier = threading.Barrier(20)
    passed: list[str] = []

    def handle(job: Job) -> None:
        barrier.wait(10)
        passed.append(job.group)

    queue = InProcessQueue(handle)
    for i in range(20):
        queue.enqueue(Job("k", f"G{i}", f"e{i}"))
    assert queue.join(15)
    queue.close()
    assert not barrier.broken
    assert sorted(passed) == sorted(f"G{i}" for i in range(20))


def test_a_pool_of_four_cannot_run_twenty_conversations_at_once() -> None:
    """The test above can fail: with the old pool size the barrier breaks."""
    barrier = threading.Barrier(20)
    broken: list[str] = []

    def handle(job: Job) -> None:
        try:
            barrier.wait(0.5)
        except threading.BrokenBarrierError:
            broken.append(job.group)

    queue = InProcessQueue(handle, workers=4)
    for i in range(20):
        queue.enqueue(Job("k", f"G{i}", f"e{i}"))
    assert queue.join(15)
    queue.close()
    assert len(broken) == 20


def test_each_conversation_still_runs_in_order_on_the_wide_pool() -> None:
    ran: dict[str, list[int]] = {}
    lock = threading.Lock()
    running: set[str] = set()
    overlaps: list[str] = []

    def handle(job: Job) -> None:
        with lock:
            if job.group in running:
                overlaps.append(job.group)
            running.add(job.group)
        time.sleep(0.002 * (hash(job.dedupe_id) % 5))
        with lock:
            ran.setdefault(job.group, []).append(int(job.payload["n"]))
            running.discard(job.group)

    queue = InProcessQueue(handle)
    for n in range(15):
        for group in ("A", "B", "C", "D"):
            queue.enqueue(Job("k", group, f"{group}{n}", {"n": n}))
    assert queue.join(15)
    queue.close()
    assert overlaps == []
    assert ran == {group: list(range(15)) for group in ("A", "B", "C", "D")}


def test_the_dedupe_window_is_unchanged() -> None:
    now = [1000.0]
    seen: list[str] = []
    queue = InProcessQueue(lambda job: seen.append(job.dedupe_id), clock=lambda: now[0])
    queue.enqueue(Job("k", "G", "e1"))
    now[0] += 299.0
    queue.enqueue(Job("k", "G", "e1"))  # inside five minutes: dropped
    now[0] += 2.0
    queue.enqueue(Job("k", "G", "e1"))  # over five minutes since it was first seen: runs
    assert queue.join(5)
    queue.close()
    assert seen == ["e1", "e1"]


def test_a_failed_job_is_reported_once_before_the_group_goes_on() -> None:
    events: list[str] = []
    reported: list[Job] = []

    def handle(job: Job) -> None:
        events.append(f"run {job.dedupe_id}")
        if job.dedupe_id == "boom":
            raise RuntimeError("handler bug")

    def on_failure(job: Job) -> None:
        events.append(f"report {job.dedupe_id}")
        reported.append(job)

    queue = InProcessQueue(handle, on_failure=on_failure)
    boom = Job("k", "G", "boom", {"x": 1})
    for job in (Job("k", "G", "ok1"), boom, Job("k", "G", "ok2")):
        queue.enqueue(job)
    assert queue.join(5)
    queue.close()
    assert reported == [boom]
    assert events == ["run ok1", "run boom", "report boom", "run ok2"]
    assert queue.failures == 1


def test_a_failure_report_that_raises_does_not_stop_the_group() -> None:
    seen: list[str] = []

    def handle(job: Job) -> None:
        seen.append(job.dedupe_id)
        if job.dedupe_id == "boom":
            raise RuntimeError("handler bug")

    def on_failure(job: Job) -> None:
        raise RuntimeError("hook bug")

    queue = InProcessQueue(handle, on_failure=on_failure)
    for job_id in ("boom", "next"):
        queue.enqueue(Job("k", "G", job_id))
    assert queue.join(5)
    queue.close()
    assert seen == ["boom", "next"]


def test_router_reports_a_failure_through_the_kinds_hook(caplog: pytest.LogCaptureFixture) -> None:
    router = JobRouter()
    told: list[Job] = []
    router.register("k", lambda job: None, on_failure=told.append)
    router.register("quiet", lambda job: None)

    def broken_hook(job: Job) -> None:
        raise OSError("chat API down")

    router.register("broken", lambda job: None, on_failure=broken_hook)
    job = Job("k", "G", "e1")
    assert router.report_failure(job) is True
    assert told == [job]
    assert router.report_failure(Job("quiet", "G", "e2")) is False
    with caplog.at_level(logging.ERROR):
        assert router.report_failure(Job("broken", "G", "e3")) is False
    assert "failure hook raised" in caplog.text
    assert told == [job]


def test_local_workers_setting(tmp_path: Path) -> None:
    assert Settings().local_workers == 64
    assert Settings.from_env({"CHATBOT_LOCAL_WORKERS": "8"}).local_workers == 8
    with pytest.raises(ConfigError, match="CHATBOT_LOCAL_WORKERS"):
        Settings.from_env({"CHATBOT_LOCAL_WORKERS": "0"})
    app = build_local_app(Settings(data_dir=tmp_path, local_workers=7))
    try:
        assert app.queue.workers == 7
    finally:
        app.close()


# --- failed jobs end with an apology, through the real local paths --------------------------


def _explode(prompt: Prompt) -> Iterator[object]:
    raise RuntimeError("a bug before the reply starts")


def test_a_failed_slack_answer_ends_with_an_apology_in_its_thread(
    slack_standin: SlackStandIn, tmp_path: Path
) -> None:
    slack = build_slack_harness(slack_standin, tmp_path)
    try:
        slack.answer = _explode  # type: ignore[assignment]
        mention = sr.app_mention("<@UBOT> what is our SLA?")
        status, _ = slack.send(sr.event_callback(mention))
        assert status == 200
        slack.settle()
        assert slack.app.queue.failures == 1
        (apology,) = slack.thread(mention["ts"])
        assert apology["text"] == JOB_FAILED_MESSAGE
        posts = slack.standin.calls_to("chat.postMessage")
        assert len(posts) == 1
        assert posts[0].params["channel"] == "C1"
        assert posts[0].params["thread_ts"] == mention["ts"]
    finally:
        slack.server.shutdown()
        slack.server.server_close()
        slack.app.close()


def test_a_failed_slack_summary_is_explained_privately(
    slack_standin: SlackStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bots.slack.worker import SUMMARY_FAILED
    from core.summarize import Summarizer

    def broken(self: Summarizer, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the summarizer")

    slack = build_slack_harness(slack_standin, tmp_path)
    try:
        slack_standin.add_message("C1", "we ship on Friday", "U1")
        monkeypatch.setattr(Summarizer, "summarize", broken)
        response_url = slack_standin.response_url("C1")
        request = sr.slash_command("/summarize", text="", channel="C1", response_url=response_url)
        assert slack.send(request)[0] == 200
        slack.settle()
        assert slack.app.queue.failures == 1
        texts = [m["text"] for m in slack_standin.ephemeral_messages("C1")]
        assert texts == [SUMMARY_FAILED]
        assert slack.thread(None) == []  # nothing said in the channel itself
    finally:
        slack.server.shutdown()
        slack.server.server_close()
        slack.app.close()


def test_a_failed_teams_answer_ends_with_an_apology_in_its_conversation(
    teams_connector: ConnectorStandIn, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, edit_interval_seconds=0.01)
    assistant = Assistant(
        settings=settings,
        history=SqliteHistoryStore(tmp_path / "h.sqlite3"),
        model=ScriptedModel(_explode),  # type: ignore[arg-type]
    )
    app = build_local_app(settings, assistant=assistant)
    server = LocalServer(("127.0.0.1", 0), app.routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        question = tm.personal_message("What is our SLA?", service_url=teams_connector.service_url)
        host, port = server.server_address[:2]
        connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
        connection.request(
            "POST",
            "/api/messages",
            body=json.dumps(question).encode(),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 202
        assert app.queue.join(20)
        assert app.queue.failures == 1
        (apology,) = teams_connector.messages(tm.PERSONAL_CONVERSATION)
        assert apology["text"] == JOB_FAILED_MESSAGE
        (sent,) = teams_connector.calls_to("reply", "send", type="message")
        assert sent.activity_id == question["id"]  # a reply to the message that asked
    finally:
        server.shutdown()
        server.server_close()
        app.close()
