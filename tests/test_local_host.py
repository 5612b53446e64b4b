"""The local host end to end: HTTP → ingress → in-process queue → worker → core → sink."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.local.app import LocalApp, build_local_app
from bots.local.queue import InProcessQueue
from bots.local.server import LocalServer
from core.assistant import Assistant
from core.config import Settings
from core.history.sqlite import SqliteHistoryStore
from core.jobs import JOB_FAILED_MESSAGE, Job
from core.models.offline import OFFLINE_BANNER
from core.pacer import PLACEHOLDER
from tests.fakes import ScriptedModel, timed_stream


def call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[str, LocalApp]]:
    settings = Settings(data_dir=tmp_path, edit_interval_seconds=0.01)
    app = build_local_app(settings)
    server = LocalServer(("127.0.0.1", 0), app.routes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url, app
    server.shutdown()
    server.server_close()
    app.close()


def test_healthz(host: tuple[str, LocalApp]) -> None:
    url, _ = host
    status, body = call(url + "/healthz")
    assert status == 200 and body["status"] == "ok" and body["llm"] == "offline"
    assert "local.message" in body["jobs"]


def test_a_message_is_answered_through_queue_worker_and_core(host: tuple[str, LocalApp]) -> None:
    url, app = host
    status, _ = call(
        url + "/local/messages",
        "POST",
        json.dumps({"text": "Our deploy day is Tuesday.", "thread": "t1"}).encode(),
    )
    assert status == 202
    status, accepted = call(
        url + "/local/messages",
        "POST",
        json.dumps({"text": "Which day do we deploy?", "thread": "t1"}).encode(),
    )
    assert status == 202 and accepted["conversation"] == "local#local#devchat#t1"
    assert app.queue.join(10)

    _, transcript = call(url + "/local/messages?thread=t1")
    messages = transcript["messages"]
    # People may send twice before the first answer lands; answers still come in order.
    assert sorted(m["author"] for m in messages) == [
        "assistant",
        "assistant",
        "local-user",
        "local-user",
    ]
    answer = [m for m in messages if m["author"] == "assistant"][-1]
    assert answer["final"] and answer["text"] != PLACEHOLDER
    assert (
        answer["text"].startswith(OFFLINE_BANNER) and "Our deploy day is Tuesday." in answer["text"]
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({"text": 5}).encode(), 400),
        (json.dumps({"text": "hi", "thread": "../etc"}).encode(), 400),
        (json.dumps({"text": "hi", "user": ""}).encode(), 400),
        (json.dumps({"text": "x" * 100_001}).encode(), 413),
    ],
)
def test_bad_requests_get_a_proper_status_and_enqueue_nothing(
    host: tuple[str, LocalApp], body: bytes, status: int
) -> None:
    url, app = host
    got, payload = call(url + "/local/messages", "POST", body)
    assert got == status and payload["error"]
    assert app.queue.join(5) and call(url + "/local/messages?thread=main")[1]["messages"] == []


def test_unknown_path_wrong_method_and_oversized_body(host: tuple[str, LocalApp]) -> None:
    url, _ = host
    assert call(url + "/nope")[0] == 404
    assert call(url + "/healthz", "POST", b"{}")[0] == 405
    # Refused from Content-Length alone, before a byte of the body is read.
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/local/messages")
    connection.putheader("Content-Length", str(1024 * 1024 + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()


def test_one_conversation_is_answered_in_order_with_its_history(tmp_path: Path) -> None:
    model = ScriptedModel(lambda p: timed_stream([f"answer to {p.question}"], first_delay=0.02))
    settings = Settings(data_dir=tmp_path, edit_interval_seconds=0.01)
    assistant = Assistant(
        settings=settings, history=SqliteHistoryStore(tmp_path / "h.db"), model=model
    )
    app = build_local_app(settings, assistant=assistant)
    server = LocalServer(("127.0.0.1", 0), app.routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for i in range(4):
            assert (
                call(
                    server.url + "/local/messages",
                    "POST",
                    json.dumps({"text": f"q{i}", "thread": "ordered"}).encode(),
                )[0]
                == 202
            )
        assert app.queue.join(10)
    finally:
        server.shutdown()
        server.server_close()
        app.close()
    assert [p.question for p in model.prompts] == ["q0", "q1", "q2", "q3"]
    assert [t.text for t in model.prompts[-1].history] == [
        "q0",
        "answer to q0",
        "q1",
        "answer to q1",
        "q2",
        "answer to q2",
    ]


def test_queue_runs_groups_in_parallel_but_each_group_in_order() -> None:
    release = threading.Event()
    ran: list[str] = []

    def handle(job: Job) -> None:
        if job.dedupe_id == "a1":
            release.wait(5)
        ran.append(job.dedupe_id)

    queue = InProcessQueue(handle, workers=2)
    queue.enqueue(Job("k", "A", "a1"))
    queue.enqueue(Job("k", "A", "a2"))
    queue.enqueue(Job("k", "B", "b1"))
    # b1 finishes while a1 is still blocked: groups do not wait for each other.
    for _ in range(500):
        if "b1" in ran:
            break
        threading.Event().wait(0.01)
    assert ran == ["b1"]
    release.set()
    assert queue.join(5)
    assert ran == ["b1", "a1", "a2"]
    queue.close()


def test_queue_drops_duplicates_and_survives_a_failing_handler() -> None:
    seen: list[str] = []

    def handle(job: Job) -> None:
        seen.append(job.dedupe_id)
        if job.dedupe_id == "boom":
            raise RuntimeError("handler bug")

    queue = InProcessQueue(handle)
    for job_id in ("e1", "e1", "boom", "e2", "e2"):
        queue.enqueue(Job("k", "G", job_id))
    assert queue.join(5)
    assert seen == ["e1", "boom", "e2"]
    assert queue.failures == 1
    queue.close()


def test_lazy_route_is_built_once_on_first_use() -> None:
    from bots.http import HttpRequest, HttpResponse, LazyRoute

    built: list[int] = []

    def build():  # type: ignore[no-untyped-def]
        built.append(1)
        return lambda request: HttpResponse.json(200, {"path": request.path})

    route = LazyRoute(build)
    assert built == []  # nothing imported or built until a request comes
    threads = [threading.Thread(target=route, args=(HttpRequest("POST", "/x"),)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert route(HttpRequest("POST", "/y")).status == 200
    assert built == [1]


def test_a_job_that_fails_ends_with_a_word_to_the_person_not_silence(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, edit_interval_seconds=0.01)

    class BuggyAssistant(Assistant):
        def answer(self, turn, sink):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug in the worker")

    assistant = BuggyAssistant(
        settings=settings,
        history=SqliteHistoryStore(tmp_path / "h.db"),
        model=ScriptedModel(lambda p: timed_stream(["never"])),
    )
    app = build_local_app(settings, assistant=assistant)
    server = LocalServer(("127.0.0.1", 0), app.routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = json.dumps({"text": "hello?", "thread": "oops"}).encode()
        assert call(server.url + "/local/messages", "POST", body)[0] == 202
        assert app.queue.join(10)
        status, transcript = call(server.url + "/local/messages?thread=oops")
    finally:
        server.shutdown()
        server.server_close()
        app.close()
    assert status == 200 and app.queue.failures == 1
    assert [(m["author"], m["text"]) for m in transcript["messages"]] == [
        ("local-user", "hello?"),
        ("assistant", JOB_FAILED_MESSAGE),
    ]
