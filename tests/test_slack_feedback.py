"""Feedback clicks end to end: an answer's real feedback buttons, a signed ``block_actions``
click through the local host's ingress and Bolt, the queue and worker, and the real assistant
and history store; the click's ack never waits for the recording."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from bots.local.app import build_local_app
from bots.local.server import LocalServer
from bots.slack import feedback_blocks
from bots.slack.panel_jobs import FEEDBACK_ACTION_ID, feedback_job
from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey
from core.feedback import AnswerRef, Feedback, Rating, encode_answer
from core.history.sqlite import SqliteHistoryStore
from core.runtime import build_knowledge
from core.summarize import Summarizer
from core.usage import AnswerUsage
from tests import slack_requests as sr
from tests.fakes import ScriptedModel
from tests.standins.slack import SlackStandIn
from tests.test_slack import Harness, default_answer


class FeedbackMetrics:
    """A usage observer that also counts feedback, as the AWS worker's metrics do."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def record(self, usage: AnswerUsage) -> None:
        pass

    def feedback(self, rating: Rating, model_id: str, platform: str) -> None:
        self.counts[(rating.value, model_id, platform)] += 1


@dataclass
class Clicks:
    harness: Harness
    history: SqliteHistoryStore
    metrics: FeedbackMetrics
    gate: threading.Event
    results: list[bool] = field(default_factory=list)

    def click(self, value: str, **fields: Any) -> tuple[int, bytes]:
        return self.harness.send(sr.block_actions(FEEDBACK_ACTION_ID, value, **fields))

    def ratings(self, answer: AnswerRef) -> list[tuple[str, Rating]]:
        found = self.history.feedback_for_answer(answer.key, answer.answer_id)
        return [(f.voter, f.rating) for f in found]


@pytest.fixture
def clicks(
    slack_standin: SlackStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Clicks]:
    settings = Settings(
        data_dir=tmp_path / "data",
        slack_signing_secret=sr.DEFAULT_SIGNING_SECRET,
        slack_bot_token=slack_standin.bot_token,
        slack_api_url=slack_standin.api_url,
        edit_interval_seconds=0.05,
    )
    model = ScriptedModel(default_answer)
    history = SqliteHistoryStore(settings.data_dir / "h.sqlite3")
    metrics = FeedbackMetrics()
    knowledge = build_knowledge(settings)
    assistant = Assistant(
        settings=settings,
        history=history,
        model=model,
        retriever=knowledge.retriever,
        usage_observer=metrics,
    )
    app = build_local_app(
        settings,
        assistant=assistant,
        knowledge=knowledge,
        summarizer=Summarizer.from_settings(model, settings),
    )
    server = LocalServer(("127.0.0.1", 0), app.routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    harness = Harness(slack_standin, app, server, model, default_answer)
    gate = threading.Event()
    gate.set()
    state = Clicks(harness, history, metrics, gate)
    record = assistant.record_feedback

    def gated(feedback: Feedback) -> bool:
        assert gate.wait(20), "the test never opened the gate"
        recorded = record(feedback)
        state.results.append(recorded)
        return recorded

    monkeypatch.setattr(assistant, "record_feedback", gated)
    yield state
    gate.set()
    server.shutdown()
    server.server_close()
    app.close()


def answered(clicks: Clicks, question: str = "<@UBOT> what is our SLA?") -> tuple[dict, AnswerRef]:  # type: ignore[type-arg]
    """Ask in C1; the answer's final message and the answer its buttons name."""
    mention = sr.app_mention(question)
    status, _ = clicks.harness.send(sr.event_callback(mention))
    assert status == 200
    clicks.harness.settle()
    *_, reply = clicks.harness.thread(mention["ts"])
    model = clicks.harness.model
    answer = AnswerRef(
        ConversationKey("slack", "T1", "C1", mention["ts"]),
        mention["ts"],
        model.model_id or model.name,
    )
    return reply, answer


def button_values(message: dict) -> dict[str, str]:  # type: ignore[type-arg]
    """The values of the feedback buttons on a message, by rating ("good"/"bad")."""
    for block in message.get("blocks") or ():
        for element in (
            block.get("elements") or () if block.get("type") == "context_actions" else ()
        ):
            if element.get("type") == "feedback_buttons":
                assert element["action_id"] == FEEDBACK_ACTION_ID
                return {
                    "good": element["positive_button"]["value"],
                    "bad": element["negative_button"]["value"],
                }
    raise AssertionError(f"no feedback buttons on {message.get('blocks')}")


def test_a_click_is_acked_at_once_recorded_once_and_counted(clicks: Clicks) -> None:
    reply, answer = answered(clicks)
    values = button_values(reply)
    posts_before = len(clicks.harness.standin.calls)

    clicks.gate.clear()  # recording waits until the test says so
    status, body = clicks.click(values["good"], message=reply)
    assert (status, body) == (200, b"")  # the ack came back while the job is held
    assert clicks.results == [] and clicks.ratings(answer) == []
    clicks.gate.set()
    clicks.harness.settle()
    assert clicks.results == [True]
    assert clicks.ratings(answer) == [("U1", Rating.GOOD)]
    assert clicks.metrics.counts == {("good", answer.model_id, "slack"): 1}

    # The same click again (a double click): nothing changes, nothing is counted.
    assert clicks.click(values["good"], message=reply)[0] == 200
    clicks.harness.settle()
    assert clicks.results == [True, False]
    assert clicks.ratings(answer) == [("U1", Rating.GOOD)]
    assert sum(clicks.metrics.counts.values()) == 1

    # A changed mind replaces the rating; another person's vote is their own.
    clicks.click(values["bad"], message=reply)
    clicks.click(values["good"], message=reply, user="U2")
    clicks.harness.settle()
    assert sorted(clicks.ratings(answer)) == [("U1", Rating.BAD), ("U2", Rating.GOOD)]
    assert clicks.metrics.counts[("bad", answer.model_id, "slack")] == 1
    # Nobody was told anything: Slack's buttons show the choice themselves.
    assert len(clicks.harness.standin.calls) == posts_before
    assert clicks.harness.standin.ephemeral_messages() == []


def test_a_click_on_a_deleted_message_still_records_and_shows_nothing(clicks: Clicks) -> None:
    reply, answer = answered(clicks)
    gone = {"type": "message", "ts": sr.new_ts(), "text": ""}  # no such message any more
    calls_before = len(clicks.harness.standin.calls)
    status, _ = clicks.click(button_values(reply)["bad"], message=gone)
    clicks.harness.settle()
    assert status == 200 and clicks.ratings(answer) == [("U1", Rating.BAD)]
    assert len(clicks.harness.standin.calls) == calls_before


def test_clicks_that_are_not_ours_to_record_are_acked_and_dropped(clicks: Clicks) -> None:
    reply, answer = answered(clicks)
    good = button_values(reply)["good"]
    foreign = encode_answer(
        AnswerRef(ConversationKey("teams", "T1", "C1", answer.answer_id), answer.answer_id, "m"),
        Rating.GOOD,
    )
    calls_before = len(clicks.harness.standin.calls)
    for value, fields in [
        (good, {"team": "T9"}),  # a click from another workspace
        (good, {"channel": "C2"}),  # a copy of the buttons in another channel
        ("not-json", {}),  # a value this service did not write
        ('{"r":"good"}', {}),
        ("", {}),
        (foreign, {}),  # another platform's answer
    ]:
        status, body = clicks.click(value, message=reply, **fields)
        assert (status, body) == (200, b"")
    clicks.harness.settle()
    assert clicks.results == [] and clicks.ratings(answer) == []
    assert sum(clicks.metrics.counts.values()) == 0
    assert len(clicks.harness.standin.calls) == calls_before  # nothing shown to anyone


def test_the_ingress_listens_for_the_action_id_the_buttons_carry() -> None:
    # The ingress keeps its own copy of the id (bots.slack.feedback_blocks imports slack_sdk,
    # which an event's cold start never loads): the two must not drift.
    assert FEEDBACK_ACTION_ID == feedback_blocks.FEEDBACK_ACTION_ID


def test_the_click_job_names_ids_and_rating_never_text() -> None:
    answer = AnswerRef(ConversationKey("slack", "T1", "C1", "1700000000.000100"), "17.1", "m-1")
    body, _ = sr.block_actions(FEEDBACK_ACTION_ID, encode_answer(answer, Rating.BAD))
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    payload["message"]["text"] = "SECRET ANSWER TEXT"
    job = feedback_job(payload)
    assert job is not None and "SECRET" not in json.dumps(job.payload)
    assert job.payload["voter"] == "U1" and job.payload["rating"] == "bad"
    assert (job.payload["answer_id"], job.payload["model_id"]) == ("17.1", "m-1")
    other = dict(payload, actions=[dict(payload["actions"][0], action_id="something_else")])
    assert feedback_job(other) is None
    for odd in ({}, {"actions": []}, {"actions": [1]}, {"actions": "x"}):
        assert feedback_job(odd) is None
