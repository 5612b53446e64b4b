"""Teams end to end on the local host: activities in over HTTP, botbuilder's real token
validation, the in-process queue and worker, the core, and replies through botbuilder's
BotFrameworkAdapter into the local connector stand-in reached through ``serviceUrl``."""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bots.http import Routes
from bots.local.queue import InProcessQueue
from bots.local.server import LocalServer
from bots.teams.ingress import MESSAGES_PATH, install_ingress
from bots.teams.stream import StreamSupport
from bots.teams.worker import SUMMARIZE_USAGE, install_worker
from core.assistant import Assistant
from core.config import Settings
from core.dedupe import DedupedHandler, build_persistence
from core.feedback import Rating
from core.history.sqlite import SqliteHistoryStore
from core.jobs import Job, JobRouter
from core.models.base import ModelEvent
from core.pacer import PLACEHOLDER
from core.prompt import Prompt
from core.runtime import build_knowledge
from core.summarize import Summarizer
from core.usage import AnswerUsage
from tests.fakes import ScriptedModel, timed_stream
from tests.standins import teams as tm
from tests.standins.teams import ConnectorStandIn, OutboundTokens, TokenIssuer


@dataclass
class Harness:
    connector: ConnectorStandIn
    server: LocalServer
    queue: InProcessQueue
    model: ScriptedModel
    enqueued: list[Job]
    answer: Callable[[Prompt], Iterator[ModelEvent]] = field(repr=False)
    history: SqliteHistoryStore | None = None
    observed: list[tuple[str, ...]] = field(default_factory=list)  # usage and feedback seen

    @property
    def service_url(self) -> str:
        return self.connector.service_url

    def send(self, body: dict[str, Any] | bytes, *, token: str | None = None) -> int:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        host, port = self.server.server_address[:2]
        connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
        connection.request("POST", MESSAGES_PATH, body=raw, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status

    def settle(self) -> None:
        assert self.queue.join(20), "the worker did not finish"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.queue.close()


def default_answer(prompt: Prompt) -> Iterator[ModelEvent]:
    return timed_stream(["**Answer** to: ", prompt.question], delay=0.01)


def build_harness(
    connector: ConnectorStandIn,
    tmp_path: Path,
    *,
    streaming: StreamSupport | None = None,
    **settings: Any,
) -> Harness:
    """The local host's wiring (routes, queue with durable dedupe, worker, assistant) with the
    Teams adapter installed the way the hosts install it (``streaming``: the process's
    streaming support, for a test that fakes its clock)."""
    config = Settings(data_dir=tmp_path / "data", edit_interval_seconds=0.05, **settings)
    holder: dict[str, Harness] = {}
    model = ScriptedModel(lambda p: holder["h"].answer(p))
    knowledge = build_knowledge(config)
    history = SqliteHistoryStore(config.data_dir / "h.sqlite3")
    observed: list[tuple[str, ...]] = []
    assistant = Assistant(
        settings=config,
        history=history,
        model=model,
        retriever=knowledge.retriever,
        usage_observer=_Observer(observed),
    )
    jobs = JobRouter()
    queue = InProcessQueue(DedupedHandler(jobs.handle, build_persistence(config)))
    enqueued: list[Job] = []

    def enqueue(job: Job) -> None:
        enqueued.append(job)
        queue.enqueue(job)

    routes = Routes()
    install_ingress(routes, enqueue, config, allow_unauthenticated=True)
    install_worker(
        jobs,
        assistant,
        config,
        knowledge.indexer,
        summarizer=Summarizer.from_settings(model, config),
        knowledge=knowledge.store,
        streaming=streaming,
    )
    server = LocalServer(("127.0.0.1", 0), routes)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    harness = Harness(connector, server, queue, model, enqueued, default_answer, history, observed)
    holder["h"] = harness
    return harness


@dataclass
class _Observer:
    """The metrics' place: each answer's usage and each effective feedback click."""

    seen: list[tuple[str, ...]]

    def record(self, usage: AnswerUsage) -> None:
        self.seen.append(("answer", usage.cause))

    def feedback(self, rating: Rating, model_id: str, platform: str) -> None:
        self.seen.append(("feedback", rating.value, model_id, platform))


@pytest.fixture
def teams(teams_connector: ConnectorStandIn, tmp_path: Path) -> Iterator[Harness]:
    harness = build_harness(teams_connector, tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def paced(teams_connector: ConnectorStandIn, tmp_path: Path) -> Iterator[Harness]:
    """Personal chats answered with paced edits (``CHATBOT_TEAMS_STREAMING=off``): the path
    group chats and channels always take, and the floor under native streaming
    (tests/test_teams_stream.py)."""
    harness = build_harness(teams_connector, tmp_path, teams_streaming="off")
    yield harness
    harness.close()


AUTH = {
    "microsoft_app_id": tm.APP_ID,
    "microsoft_app_password": "dummy-password",
    "microsoft_app_type": "SingleTenant",
    "microsoft_app_tenant_id": tm.TENANT_ID,
}


@pytest.fixture
def secured(
    teams_connector: ConnectorStandIn,
    tmp_path: Path,
    token_issuer: TokenIssuer,
    outbound_token: OutboundTokens,
) -> Iterator[Harness]:
    harness = build_harness(teams_connector, tmp_path, **AUTH)
    yield harness
    harness.close()


def bot_messages(teams: Harness, conversation_id: str) -> list[dict[str, Any]]:
    return teams.connector.messages(conversation_id)


# --- personal chat --------------------------------------------------------------------------


def test_personal_chat_gets_typing_then_progressive_edits_ending_in_the_whole_answer(
    paced: Harness,
) -> None:
    words = [f"word{i} " for i in range(30)]
    paced.answer = lambda p: timed_stream(words, delay=0.01, first_delay=0.05)
    question = tm.personal_message("What is our SLA?", service_url=paced.service_url)
    assert paced.send(question) == 202
    paced.settle()

    calls = paced.connector.calls
    assert calls[0].op == "reply" and calls[0].type == "typing"  # before any text
    assert calls[0].activity_id == question["id"]
    created = [c for c in calls if c.type == "message" and c.op == "reply"]
    assert len(created) == 1  # one message, created with its first text, then edited
    assert created[0].activity_id == question["id"]
    assert created[0].activity["replyToId"] == question["id"]
    assert created[0].text not in ("", PLACEHOLDER)
    updates = paced.connector.calls_to("update")
    assert len(updates) >= 2
    texts = [c.text for c in [created[0], *updates]]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    (message,) = bot_messages(paced, tm.PERSONAL_CONVERSATION)
    assert message["text"] == "".join(words)
    assert message["textFormat"] == "markdown"
    # Unauthenticated local mode: the SDK sends no token at all.
    assert all(c.authorization is None for c in calls)
    assert paced.model.prompts[0].question == "What is our SLA?"


def test_personal_chat_remembers_earlier_turns(teams: Harness) -> None:
    teams.send(tm.personal_message("My team is Payments.", service_url=teams.service_url))
    teams.settle()
    teams.send(tm.personal_message("Which team am I on?", service_url=teams.service_url))
    teams.settle()

    history = [t.text for t in teams.model.prompts[1].history]
    assert history == ["My team is Payments.", "**Answer** to: My team is Payments."]
    assert len(bot_messages(teams, tm.PERSONAL_CONVERSATION)) == 2


# --- channels and group chats ---------------------------------------------------------------


def test_channel_mention_is_stripped_and_answered_in_the_same_reply_chain(
    teams: Harness,
) -> None:
    post = tm.channel_message(
        "what does Chatbot know about our SLA?", service_url=teams.service_url
    )
    assert teams.send(post) == 202
    teams.settle()

    # The mention markup is gone; the bot's name used in the question itself stays.
    assert teams.model.prompts[0].question == "what does Chatbot know about our SLA?"
    chain = f"{tm.CHANNEL};messageid={post['id']}"
    (reply,) = bot_messages(teams, chain)
    assert reply["replyToId"] == post["id"]
    assert reply["text"] == "**Answer** to: what does Chatbot know about our SLA?"
    sends = teams.connector.calls_to("reply")
    assert all(c.conversation_id == chain and c.activity_id == post["id"] for c in sends)
    assert all(tm.encoded(chain) in c.path for c in sends)  # the id travels URL-encoded

    # A later mention inside the chain continues the same conversation.
    follow_up = tm.channel_message(
        "and for enterprise?", service_url=teams.service_url, root=post["id"]
    )
    teams.send(follow_up)
    teams.settle()
    assert teams.model.prompts[1].history[0].text == "what does Chatbot know about our SLA?"
    assert len(bot_messages(teams, chain)) == 2


def test_channel_messages_without_a_mention_of_the_bot_are_ignored(teams: Harness) -> None:
    plain = tm.channel_message("lunch?", service_url=teams.service_url, mentioned=False)
    other = tm.channel_message("ping", service_url=teams.service_url, mentioned=False)
    markup, entity = tm.mention({"id": tm.OTHER_USER["id"], "name": tm.OTHER_USER["name"]})
    other["text"] = f"{markup} ping"
    other["entities"].append(entity)
    assert teams.send(plain) == 200
    assert teams.send(other) == 200
    teams.settle()
    assert teams.enqueued == [] and teams.model.prompts == [] and teams.connector.calls == []


def test_group_chat_answers_mentions_only(teams: Harness) -> None:
    assert (
        teams.send(tm.group_message("chit chat", service_url=teams.service_url, mentioned=False))
        == 200
    )
    assert teams.send(tm.group_message("what is the plan?", service_url=teams.service_url)) == 202
    teams.settle()

    assert [p.question for p in teams.model.prompts] == ["what is the plan?"]
    (reply,) = bot_messages(teams, tm.GROUP_CHAT)
    assert reply["text"] == "**Answer** to: what is the plan?"


# --- welcome, summarize, redelivery ---------------------------------------------------------


def test_welcome_when_the_bot_is_added_and_nothing_when_someone_else_is(teams: Harness) -> None:
    assert teams.send(tm.conversation_update(service_url=teams.service_url)) == 202
    someone = tm.conversation_update(
        service_url=teams.service_url, members_added=[{"id": tm.OTHER_USER["id"]}]
    )
    assert teams.send(someone) == 200
    teams.settle()

    (welcome,) = bot_messages(teams, tm.PERSONAL_CONVERSATION)
    assert "mention me" in welcome["text"] and "1:1" in welcome["text"]
    (post,) = teams.connector.calls_to("send", "reply", type="message")
    assert post.op == "send"  # a new post, not a reply to the update
    assert teams.model.prompts == []


def test_welcome_in_a_team_channel_starts_a_new_post(teams: Harness) -> None:
    update = tm.conversation_update(
        service_url=teams.service_url, conversation_type="channel", conversation_id=tm.CHANNEL
    )
    teams.send(update)
    teams.settle()
    (post,) = teams.connector.calls_to("send")
    assert post.conversation_id == tm.CHANNEL and "mention me" in post.text


def test_summarize_in_a_chat_summarizes_what_was_said(teams: Harness) -> None:
    for text in ("We ship the billing migration on Friday.", "Ada owns the rollback plan."):
        teams.send(tm.personal_message(text, service_url=teams.service_url))
        teams.settle()
    teams.send(tm.personal_message("summarize", service_url=teams.service_url))
    teams.settle()

    summary_prompts = [p for p in teams.model.prompts if p.task == "summarize"]
    assert len(summary_prompts) == 1
    sent = "".join(m.text for m in summary_prompts[0].messages)
    assert "billing migration on Friday" in sent and "rollback plan" in sent
    assert "Ada Lovelace" in sent  # who said it
    assert teams.enqueued[-1].kind == "teams.summarize"
    assert len(bot_messages(teams, tm.PERSONAL_CONVERSATION)) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Summarize last 7 days", SUMMARIZE_USAGE), ("/summarize", "nothing in this conversation")],
)
def test_summarize_explains_what_it_cannot_do(teams: Harness, text: str, expected: str) -> None:
    post = tm.channel_message(text, service_url=teams.service_url)
    assert teams.send(post) == 202
    teams.settle()
    assert teams.model.prompts == []
    (reply,) = bot_messages(teams, f"{tm.CHANNEL};messageid={post['id']}")
    assert expected in reply["text"]


def test_a_redelivered_activity_is_answered_once(
    teams: Harness, teams_connector: ConnectorStandIn, tmp_path: Path
) -> None:
    question = tm.personal_message("status?", service_url=teams.service_url)
    teams.send(question)
    teams.settle()
    assert teams.send(question) == 202  # acknowledged again, answered not again
    teams.settle()
    assert len(teams.model.prompts) == 1
    assert len(bot_messages(teams, tm.PERSONAL_CONVERSATION)) == 1

    # After a restart the durable record still holds.
    teams.close()
    restarted = build_harness(teams_connector, tmp_path)
    try:
        restarted.send(question)
        restarted.settle()
        assert restarted.model.prompts == []
        assert len(bot_messages(restarted, tm.PERSONAL_CONVERSATION)) == 1
    finally:
        restarted.close()


def test_the_job_carries_what_the_worker_needs(teams: Harness) -> None:
    post = tm.channel_message("hello?", service_url=teams.service_url, root="1780000000001")
    teams.send(post)
    teams.settle()
    (job,) = teams.enqueued
    assert job.kind == "teams.message"
    assert (
        job.dedupe_id == f"teams:{tm.TENANT_ID}:{tm.CHANNEL};messageid=1780000000001:{post['id']}"
    )
    assert job.group == f"teams#{tm.TENANT_ID}#{tm.CHANNEL}#1780000000001"
    assert job.payload["service_url"] == teams.service_url
    assert job.payload["reply_to_id"] == post["id"]
    assert job.payload["conversation_type"] == "channel"
    reference = job.payload["reference"]
    assert reference["serviceUrl"] == teams.service_url
    assert reference["conversation"]["id"] == f"{tm.CHANNEL};messageid=1780000000001"
    assert reference["bot"]["id"] == tm.BOT_ID
    assert job.payload["turn"]["text"] == "hello?"
    json.dumps(job.payload)  # it must travel as JSON through SQS


# --- malformed and unknown activities -------------------------------------------------------


def test_signing_keys_that_cannot_be_fetched_answer_503_so_the_channel_retries(
    secured: Harness, token_issuer: TokenIssuer
) -> None:
    token = token_issuer.token(service_url=secured.service_url)
    token_issuer.stop()
    question = tm.personal_message("hi", service_url=secured.service_url)
    assert secured.send(question, token=token) == 503
    assert secured.enqueued == []


def test_malformed_bodies_are_refused_with_400(teams: Harness) -> None:
    question = tm.personal_message("hi", service_url=teams.service_url)
    no_service_url = {k: v for k, v in question.items() if k != "serviceUrl"}
    no_conversation = {k: v for k, v in question.items() if k != "conversation"}
    assert teams.send(b"{not json") == 400
    assert teams.send(b"[1, 2]") == 400
    assert teams.send(no_service_url) == 400
    assert teams.send(no_conversation) == 400
    assert teams.send(dict(question, timestamp="yesterday")) == 400
    teams.settle()
    assert teams.enqueued == [] and teams.connector.calls == []


@pytest.mark.parametrize("kind", ["messageReaction", "invoke", "typing", "messageUpdate", "event"])
def test_unhandled_activity_types_are_acknowledged_and_ignored(teams: Harness, kind: str) -> None:
    body = tm.personal_message("hi", service_url=teams.service_url)
    body["type"] = kind
    assert teams.send(body) == 200
    teams.settle()
    assert teams.enqueued == [] and teams.connector.calls == []


def test_the_bots_own_messages_are_ignored(teams: Harness) -> None:
    echo = tm.personal_message("an answer", service_url=teams.service_url)
    echo["from"] = {"id": tm.BOT_ID, "name": tm.BOT_NAME}
    assert teams.send(echo) == 200
    teams.settle()
    assert teams.enqueued == []


# --- tokens -----------------------------------------------------------------------------------


def test_a_valid_token_is_accepted_and_replies_carry_the_bots_own_token(
    secured: Harness, token_issuer: TokenIssuer, outbound_token: OutboundTokens
) -> None:
    question = tm.personal_message("hello?", service_url=secured.service_url)
    assert secured.send(question, token=token_issuer.token(service_url=secured.service_url)) == 202
    secured.settle()
    second = tm.personal_message("again?", service_url=secured.service_url)
    secured.send(second, token=token_issuer.token(service_url=secured.service_url))
    secured.settle()

    assert len(bot_messages(secured, tm.PERSONAL_CONVERSATION)) == 2
    calls = secured.connector.calls
    assert calls and all(c.authorization == f"Bearer {tm.OUTBOUND_TOKEN}" for c in calls)
    # One credentials object for the process, asking the single tenant's authority.
    assert len({r["credentials"] for r in outbound_token.requests}) == 1
    assert all(r["authority"].endswith(f"/{tm.TENANT_ID}") for r in outbound_token.requests)
    assert all(r["app_id"] == tm.APP_ID for r in outbound_token.requests)


def forged(token_issuer: TokenIssuer, service_url: str) -> str:
    return token_issuer.token(service_url=service_url, signing_key=TokenIssuer.forged_key())


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda issuer, url: None, id="none"),
        pytest.param(lambda issuer, url: "garbage.not.a-jwt", id="garbage"),
        pytest.param(
            lambda issuer, url: issuer.token(service_url=url, expires_in=-600), id="expired"
        ),
        pytest.param(
            lambda issuer, url: issuer.token(service_url=url, audience="someone-else"),
            id="wrong-audience",
        ),
        pytest.param(forged, id="wrong-signature"),
        pytest.param(
            lambda issuer, url: issuer.token(service_url=url, key_id="unknown-key"),
            id="unknown-key",
        ),
        pytest.param(
            lambda issuer, url: issuer.token(service_url=url, issuer="https://evil.example"),
            id="wrong-issuer",
        ),
        pytest.param(
            lambda issuer, url: issuer.token(service_url="https://elsewhere.example/"),
            id="wrong-service-url",
        ),
    ],
)
def test_bad_tokens_are_refused_with_401_and_nothing_is_enqueued(
    secured: Harness,
    token_issuer: TokenIssuer,
    make_token: Callable[[TokenIssuer, str], str | None],
) -> None:
    question = tm.personal_message("let me in", service_url=secured.service_url)
    assert secured.send(question, token=make_token(token_issuer, secured.service_url)) == 401
    secured.settle()
    assert secured.enqueued == [] and secured.connector.calls == []


def test_a_token_not_endorsed_for_the_channel_is_refused(
    secured: Harness, token_issuer: TokenIssuer
) -> None:
    token_issuer.endorsements = ["webchat"]
    question = tm.personal_message("hi", service_url=secured.service_url)
    token = token_issuer.token(service_url=secured.service_url)
    assert secured.send(question, token=token) == 401


# --- connector failures -----------------------------------------------------------------------


def test_a_429_on_an_update_is_waited_out_and_the_answer_is_complete(paced: Harness) -> None:
    words = [f"w{i} " for i in range(40)]
    paced.answer = lambda p: timed_stream(words, delay=0.02)
    paced.connector.fail("update", 429, retry_after=1)
    paced.send(tm.personal_message("long one", service_url=paced.service_url))
    paced.settle()

    updates = paced.connector.calls_to("update")
    limited = next(i for i, c in enumerate(updates) if c.status == 429)
    assert updates[limited + 1].at - updates[limited].at >= 1.0 - 0.01  # Retry-After honoured
    (message,) = bot_messages(paced, tm.PERSONAL_CONVERSATION)
    assert message["text"] == "".join(words)


def test_a_refused_final_edit_is_sent_as_a_new_message(paced: Harness) -> None:
    answer = "The whole answer, in two parts."
    paced.answer = lambda p: timed_stream(["The whole answer, ", "in two parts."], delay=0.01)
    paced.connector.fail("update", 404, when=lambda a: a.get("text") == answer)
    paced.send(tm.personal_message("question", service_url=paced.service_url))
    paced.settle()

    messages = bot_messages(paced, tm.PERSONAL_CONVERSATION)
    assert messages[-1]["text"] == answer
    assert [c.status for c in paced.connector.calls_to("update")][-1] == 404


def test_a_final_edit_failing_with_412_again_and_again_ends_as_a_new_message(
    paced: Harness,
) -> None:
    answer = "Alpha beta gamma."
    paced.answer = lambda p: timed_stream(["Alpha ", "beta ", "gamma."], delay=0.01)
    paced.connector.fail("update", 412, times=None)
    paced.send(tm.personal_message("question", service_url=paced.service_url))
    paced.settle()

    messages = bot_messages(paced, tm.PERSONAL_CONVERSATION)
    assert messages[-1]["text"] == answer
    assert len(paced.connector.calls_to("update")) >= 3  # retried before giving up on the edit


def test_a_conversation_the_bot_was_removed_from_is_logged_once(
    teams: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    teams.connector.fail("reply", 403, times=None)
    teams.send(tm.personal_message("anyone?", service_url=teams.service_url))
    teams.settle()

    assert len(teams.connector.calls) == 1  # the typing indicator; nothing retried
    assert any(getattr(r, "cause", "") == "teams_http_403" for r in caplog.records)


def test_a_long_answer_is_split_into_messages_that_fit(teams: Harness) -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 900 for i in range(12)]  # ~55,000 characters
    answer = "\n\n".join(p.strip() for p in paragraphs)
    teams.answer = lambda p: timed_stream(
        [answer[i : i + 4000] for i in range(0, len(answer), 4000)]
    )
    teams.send(tm.personal_message("tell me everything", service_url=teams.service_url))
    teams.settle()

    texts = [m["text"] for m in bot_messages(teams, tm.PERSONAL_CONVERSATION)]
    assert len(texts) >= 3
    assert all(len(t) <= 24_000 for t in texts)
    assert "\n\n".join(texts).split() == answer.split()


def test_a_413_below_the_advertised_limit_is_split_smaller(teams: Harness) -> None:
    teams.connector.max_body_bytes = 9_000
    answer = " ".join(f"token{i}" for i in range(2500))  # ~21,000 characters
    teams.answer = lambda p: timed_stream(
        [answer[i : i + 3000] for i in range(0, len(answer), 3000)]
    )
    teams.send(tm.personal_message("go", service_url=teams.service_url))
    teams.settle()

    texts = [m["text"] for m in bot_messages(teams, tm.PERSONAL_CONVERSATION)]
    assert len(texts) >= 3 and PLACEHOLDER not in texts
    assert " ".join(texts).split() == answer.split()
