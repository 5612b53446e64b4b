"""Teams replies from many worker threads at once.

The local host's in-process queue (and a Lambda container's pool) answers several conversations
at the same moment, each worker thread running botbuilder's coroutines on its own event loop,
all through the one ``TeamsConnector`` of the process and the one ``ConnectorClient`` it keeps
per ``serviceUrl``. These tests drive that shape against the connector stand-in: first the
connector alone, then the whole local host path.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from botbuilder.schema import Activity, ActivityTypes, ConversationReference

from bots.http import Routes
from bots.local.queue import InProcessQueue
from bots.local.server import LocalServer
from bots.teams.auth import BotIdentity
from bots.teams.connector import TeamsConnector, TransientFailure
from bots.teams.ingress import MESSAGES_PATH, install_ingress
from bots.teams.worker import install_worker
from core.assistant import Assistant
from core.config import Settings
from core.dedupe import DedupedHandler, build_persistence
from core.history.sqlite import SqliteHistoryStore
from core.jobs import JobRouter
from core.models.base import ModelEvent
from core.pacer import PLACEHOLDER
from core.prompt import Prompt
from core.runtime import build_knowledge
from core.summarize import Summarizer
from tests.fakes import ScriptedModel, timed_stream
from tests.standins import teams as tm
from tests.standins.teams import ConnectorStandIn

THREADS = 10
T = TypeVar("T")


def reference_to(service_url: str, conversation_id: str) -> ConversationReference:
    return ConversationReference().deserialize(
        {
            "conversation": {"id": conversation_id, "conversationType": "personal"},
            "serviceUrl": service_url,
            "channelId": "msteams",
            "bot": {"id": tm.BOT_ID, "name": tm.BOT_NAME},
            "user": dict(tm.USER),
        }
    )


def message(text: str, activity_id: str | None = None) -> Activity:
    return Activity(type=ActivityTypes.message, text=text, text_format="markdown", id=activity_id)


def at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(i)`` on ``count`` fresh threads released together; results in order of ``i``.
    Fresh threads each time: a thread's first connector call is the one that used to break."""
    barrier = threading.Barrier(count)

    def start(i: int) -> T:
        barrier.wait(timeout=10)
        return work(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(start, i) for i in range(count)]
        return [f.result(timeout=30) for f in futures]


# --- the connector alone ------------------------------------------------------------------------


def test_one_connector_sends_and_updates_from_many_threads_at_once(
    teams_connector: ConnectorStandIn,
) -> None:
    connector = TeamsConnector(BotIdentity())
    url = teams_connector.service_url

    def converse(i: int) -> str:
        reference = reference_to(url, f"a:1chat-{i}")
        sent = connector.send(reference, message(f"draft {i}"), reply_to_id=f"question-{i}")
        connector.update(reference, message(f"final answer {i}", sent))
        return sent

    first_round = at_once(THREADS, converse)
    second_round = at_once(THREADS, converse)  # new threads, clients already cached

    ids = first_round + second_round
    assert all(ids) and len(set(ids)) == 2 * THREADS
    for i in range(THREADS):
        shown = teams_connector.messages(f"a:1chat-{i}")
        assert [m["text"] for m in shown] == [f"final answer {i}"] * 2
        assert all(m["edits"] == 1 and m["replyToId"] == f"question-{i}" for m in shown)
    calls = teams_connector.calls
    assert len(calls) == 4 * THREADS and all(c.ok for c in calls)
    assert sorted(c.op for c in calls) == ["reply"] * 2 * THREADS + ["update"] * 2 * THREADS


@pytest.mark.parametrize("status", [502, 503])
def test_status_failures_reach_the_pacer_unretried_from_every_thread(
    teams_connector: ConnectorStandIn, status: int
) -> None:
    """The HTTP stack retries no status code, not even an idempotent PUT with Retry-After:
    the pacer sees each failure once, from whichever thread meets it."""
    connector = TeamsConnector(BotIdentity())
    url = teams_connector.service_url
    ids = at_once(
        THREADS,
        lambda i: connector.send(
            reference_to(url, f"a:1chat-{i}"), message(f"draft {i}"), reply_to_id=None
        ),
    )
    teams_connector.fail("update", status, retry_after="0", times=THREADS)

    def update(i: int) -> BaseException | None:
        try:
            connector.update(reference_to(url, f"a:1chat-{i}"), message(f"final {i}", ids[i]))
        except TransientFailure as exc:
            return exc
        return None

    failures = at_once(THREADS, update)

    assert all(isinstance(f, TransientFailure) and f.status == status for f in failures)
    updates = teams_connector.calls_to("update")
    assert len(updates) == THREADS and all(c.status == status for c in updates)
    shown = sorted(m["text"] for m in teams_connector.messages())
    assert shown == sorted(f"draft {i}" for i in range(THREADS))


def test_the_thread_that_creates_the_client_does_not_retry_status_codes_either(
    teams_connector: ConnectorStandIn,
) -> None:
    """The client's first requests session is made while the client is built: it must already
    carry the connect-only retry policy (msrest's default retries a PUT on 5xx)."""
    connector = TeamsConnector(BotIdentity())
    reference = reference_to(teams_connector.service_url, "a:1chat")
    sent = connector.send(reference, message("draft"), reply_to_id=None)
    teams_connector.fail("update", 502)

    with pytest.raises(TransientFailure):
        connector.update(reference, message("final", sent))

    assert [c.status for c in teams_connector.calls_to("update")] == [502]
    connector.update(reference, message("final", sent))  # the pacer's retry
    assert [m["text"] for m in teams_connector.messages("a:1chat")] == ["final"]


# --- the local host, ten personal chats at once ---------------------------------------------------


@dataclass
class LocalHost:
    """``chatbot serve``'s wiring for Teams (unauthenticated local mode), with a queue wide
    enough to answer every conversation of the test at the same time."""

    server: LocalServer
    queue: InProcessQueue
    model: ScriptedModel

    def post(self, body: dict[str, Any]) -> int:
        host, port = self.server.server_address[:2]
        connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
        try:
            connection.request(
                "POST",
                MESSAGES_PATH,
                body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()


def answer_to(question: str) -> list[str]:
    return [f"Answer to {question}: "] + [f"part{i} " for i in range(12)] + ["done."]


def streamed_answer(prompt: Prompt) -> Iterator[ModelEvent]:
    return timed_stream(answer_to(prompt.question), delay=0.03, first_delay=0.05)


@pytest.fixture
def local_host(tmp_path: Path) -> Iterator[LocalHost]:
    config = Settings(data_dir=tmp_path / "data", edit_interval_seconds=0.05)
    model = ScriptedModel(streamed_answer)
    knowledge = build_knowledge(config)
    assistant = Assistant(
        settings=config,
        history=SqliteHistoryStore(config.data_dir / "h.sqlite3"),
        model=model,
        retriever=knowledge.retriever,
    )
    jobs = JobRouter()
    queue = InProcessQueue(
        DedupedHandler(jobs.handle, build_persistence(config)), workers=THREADS + 2
    )
    routes = Routes()
    install_ingress(routes, queue.enqueue, config, allow_unauthenticated=True)
    install_worker(
        jobs,
        assistant,
        config,
        knowledge.indexer,
        summarizer=Summarizer.from_settings(model, config),
        knowledge=knowledge.store,
    )
    server = LocalServer(("127.0.0.1", 0), routes)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield LocalHost(server, queue, model)
    server.shutdown()
    server.server_close()
    queue.close()


def test_ten_personal_chats_asking_at_once_each_get_their_whole_answer(
    local_host: LocalHost, teams_connector: ConnectorStandIn
) -> None:
    url = teams_connector.service_url
    chats = [f"a:1personal-chat-{i}" for i in range(THREADS)]
    questions = [f"question {i} from chat {i}" for i in range(THREADS)]
    activities = [
        tm.personal_message(
            questions[i],
            service_url=url,
            conversation_id=chats[i],
            sender={"id": f"29:user{i}", "name": f"User {i}", "aadObjectId": f"aad-{i}"},
        )
        for i in range(THREADS)
    ]

    statuses = at_once(THREADS, lambda i: local_host.post(activities[i]))
    assert statuses == [202] * THREADS
    assert local_host.queue.join(20), "the worker did not finish"

    assert local_host.queue.failures == 0
    assert sorted(p.question for p in local_host.model.prompts) == sorted(questions)
    calls = teams_connector.calls
    assert calls and all(c.ok for c in calls), [(c.op, c.status) for c in calls if not c.ok]
    assert {c.conversation_id for c in calls} == set(chats)
    for i, chat in enumerate(chats):
        created = [
            c
            for c in calls
            if c.conversation_id == chat and c.type == "message" and c.op != "update"
        ]
        assert len(created) == 1, f"{chat}: {len(created)} messages created"
        assert created[0].activity_id == activities[i]["id"]  # a reply to the question
        (shown,) = teams_connector.messages(chat)
        assert shown["text"] == "".join(answer_to(questions[i]))
        assert shown["text"] != PLACEHOLDER and PLACEHOLDER not in shown["text"]
        updates = [c for c in calls if c.conversation_id == chat and c.op == "update"]
        assert all(c.activity_id == shown["id"] for c in updates)
    assert not any(m["text"] == PLACEHOLDER for m in teams_connector.messages())
    # Each personal chat's answer was streamed natively, each in its own stream ending in its
    # final: the message each chat shows is its stream's.
    streams = {stream.conversation_id: stream for stream in teams_connector.streams}
    assert set(streams) == set(chats)
    for i, chat in enumerate(chats):
        assert streams[chat].final is not None
        assert streams[chat].final["text"] == "".join(answer_to(questions[i]))
        assert teams_connector.messages(chat)[0]["id"] == streams[chat].id
    # The chats were answered side by side, not one after another.
    spans = {chat: [n for n, c in enumerate(calls) if c.conversation_id == chat] for chat in chats}
    assert any(
        spans[a][0] < spans[b][-1] and spans[b][0] < spans[a][-1]
        for a in chats
        for b in chats
        if a != b
    )


def test_an_unreachable_connector_is_a_transient_failure_on_every_thread() -> None:
    """Connection failures are retried briefly in the HTTP stack, then handed to the pacer."""
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = TeamsConnector(BotIdentity())
    url = f"http://127.0.0.1:{port}/amer/"

    def send(i: int) -> BaseException | None:
        try:
            connector.send(reference_to(url, f"a:1chat-{i}"), message("hi"), reply_to_id=None)
        except TransientFailure as exc:
            return exc
        return None

    failures = at_once(4, send)
    assert all(isinstance(f, TransientFailure) and f.status is None for f in failures)
