"""The assistant panel end to end: signed assistant-thread events and panel messages into the
local host's real ingress, the queue and worker, the Slack stand-in (with its assistant methods
and a channel directory, tests/standins/slack_assistant.py), and the map-reduce summarizer.

Longer than our 450-line mark on purpose: one panel harness (:class:`Panel`) serves the panel's
whole life (greeting, context, summaries, titles), and splitting it would copy the harness."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from slack_bolt import BoltRequest

from bots.slack import panel_jobs
from bots.slack.events import SlackTurn
from bots.slack.panel import (
    CHANNEL_HIDDEN,
    CONTEXT_EVENT,
    GREETING,
    MEMBERS_ONLY,
    NO_CONTEXT,
    OTHER_WORKSPACE,
    READING_STATUS,
)
from bots.slack.summary_args import ThreadRef
from core.config import ConfigError, Settings
from core.domain import ConversationKey, Role, Turn
from core.feedback import decode_answer
from core.jobs import JOB_FAILED_MESSAGE
from core.models.base import ChatModel
from core.pacer import PLACEHOLDER
from core.summary_request import ChannelCount, ChannelWindow
from tests import slack_requests as sr
from tests.fakes import ScriptedModel
from tests.standins.slack import SlackStandIn
from tests.standins.slack_assistant import AssistantSurface, thread_event
from tests.test_slack import Harness, build_harness
from tests.test_slack_summarize import markers, seed, summarize_or_answer, summary_prompts

STARTED, CHANGED = "assistant_thread_started", "assistant_thread_context_changed"


class Panel:
    def __init__(self, harness: Harness, surface: AssistantSurface) -> None:
        self.h = harness
        self.surface = surface
        self.standin = harness.standin

    def open(self, channel: str = "D1", user: str = "U1", **context: str | None) -> str:
        """A person opens a new panel thread (Slack posts its root, then the event)."""
        root = self.standin.add_message(channel, "New chat", user, subtype="assistant_app_thread")
        status, _ = self.h.send(
            sr.event_callback(thread_event(STARTED, root, channel=channel, user=user, **context))  # type: ignore[arg-type]
        )
        assert status == 200
        self.h.settle()
        return root

    def ask(self, root: str, text: str, channel: str = "D1", user: str = "U1") -> str:
        """The person writes in the thread (the stand-in keeps the message, Slack sends the
        event; one ts for both, as in Slack); returns the message's ts."""
        ts = self.standin.add_message(channel, text, user, thread_ts=root)
        event = sr.message(
            text, channel=channel, user=user, ts=ts, thread_ts=root, channel_type="im"
        )
        status, _ = self.h.send(sr.event_callback(event))
        assert status == 200
        self.h.settle()
        return ts

    def replies(self, root: str, channel: str = "D1") -> list[dict]:  # type: ignore[type-arg]
        return self.h.thread(root, channel)

    def said(self, root: str, channel: str = "D1") -> list[str]:
        return [m["text"] for m in self.replies(root, channel)]


@pytest.fixture
def panel(slack_standin: SlackStandIn, tmp_path: Path) -> Iterator[Panel]:
    yield from open_panel(slack_standin, tmp_path)


def open_panel(
    slack_standin: SlackStandIn, tmp_path: Path, summary_model: ChatModel | None = None
) -> Iterator[Panel]:
    slack_standin.add_user("U2", "Grace Hopper", "grace")
    surface = AssistantSurface(slack_standin)
    surface.add_channel("C1", "general", members=("U1", "U2"))
    surface.add_channel("D1", "dm-ada", is_im=True, members=("U1",))
    surface.add_channel("D2", "dm-grace", is_im=True, members=("U2",))
    harness = build_harness(
        slack_standin, tmp_path, summary_part_tokens=1000, summary_model=summary_model
    )
    harness.answer = summarize_or_answer
    yield Panel(harness, surface)
    harness.server.shutdown()
    harness.server.server_close()
    harness.app.close()


def context_of(message: dict) -> dict:  # type: ignore[type-arg]
    metadata = message.get("metadata") or {}
    assert metadata.get("event_type") == CONTEXT_EVENT
    return dict(metadata["event_payload"])


# --- a new thread ------------------------------------------------------------------------------


def test_a_new_thread_is_greeted_with_the_suggested_prompts_and_keeps_its_context(
    panel: Panel,
) -> None:
    root = panel.open(context_channel="C1")

    (greeting,) = panel.replies(root)
    assert greeting["text"] == GREETING
    assert context_of(greeting) == {"channel_id": "C1", "team_id": "T1"}
    (prompts,) = panel.surface.prompts
    assert (prompts["channel_id"], prompts["thread_ts"]) == ("D1", root)
    titles = [p["title"] for p in prompts["prompts"]]
    assert titles[0] == "Summarize this channel" and len(titles) == len(
        Settings().slack_suggested_prompts
    )
    assert {p["message"] for p in prompts["prompts"]} == {
        m for _, m in Settings().slack_suggested_prompts
    }
    assert panel.h.model.prompts == []  # nothing was asked of the model


def test_the_event_is_acked_before_the_greeting_job_runs(panel: Panel) -> None:
    root = panel.standin.add_message("D1", "New chat", "U1", subtype="assistant_app_thread")
    panel.surface.prompts_gate.clear()  # the greeting job stops inside setSuggestedPrompts
    try:
        status, body = panel.h.send(sr.event_callback(thread_event(STARTED, root)))
        assert (status, body) == (200, b"")
        assert panel.surface.prompts == []  # the job had not finished when the ack came
    finally:
        panel.surface.prompts_gate.set()
    panel.h.settle()
    assert len(panel.surface.prompts) == 1 and panel.said(root) == [GREETING]


def test_a_greeting_slack_refuses_is_logged_not_retried(
    panel: Panel, caplog: pytest.LogCaptureFixture
) -> None:
    root = panel.standin.add_message("D1", "New chat", "U1", subtype="assistant_app_thread")
    panel.standin.fail_next("chat.postMessage", error="channel_not_found")
    status, _ = panel.h.send(sr.event_callback(thread_event(STARTED, root)))
    panel.h.settle()
    assert status == 200 and panel.replies(root) == [] and panel.surface.prompts == []
    assert "assistant thread not greeted" in caplog.text and "job failed" not in caplog.text


def test_a_redelivered_thread_event_greets_once(panel: Panel) -> None:
    root = panel.standin.add_message("D1", "New chat", "U1", subtype="assistant_app_thread")
    event = thread_event(STARTED, root)
    event_id = sr.new_event_id()
    for retry in (None, 1):
        status, _ = panel.h.send(sr.event_callback(event, event_id=event_id, retry_num=retry))
        assert status == 200
    panel.h.settle()
    assert len(panel.replies(root)) == 1 and len(panel.surface.prompts) == 1


def test_suggested_prompts_come_from_the_setting(
    slack_standin: SlackStandIn, tmp_path: Path
) -> None:
    raw = json.dumps(["Plan my day", {"title": "Digest", "message": "Summarize this channel"}])
    prompts = Settings.from_env({"CHATBOT_SLACK_SUGGESTED_PROMPTS": raw}).slack_suggested_prompts
    assert prompts == (("Plan my day", "Plan my day"), ("Digest", "Summarize this channel"))
    surface = AssistantSurface(slack_standin)
    surface.add_channel("D1", "dm-ada", is_im=True, members=("U1",))
    harness = build_harness(slack_standin, tmp_path, slack_suggested_prompts=prompts)
    try:
        root = Panel(harness, surface).open()
        (call,) = surface.prompts
        assert call["prompts"] == [
            {"title": "Plan my day", "message": "Plan my day"},
            {"title": "Digest", "message": "Summarize this channel"},
        ]
        assert [m["text"] for m in harness.thread(root, "D1")] == [GREETING]
    finally:
        harness.server.shutdown()
        harness.server.server_close()
        harness.app.close()


def test_no_prompts_when_the_setting_is_an_empty_list(
    slack_standin: SlackStandIn, tmp_path: Path
) -> None:
    assert (
        Settings.from_env({"CHATBOT_SLACK_SUGGESTED_PROMPTS": "[]"}).slack_suggested_prompts == ()
    )
    surface = AssistantSurface(slack_standin)
    surface.add_channel("D1", "dm-ada", is_im=True, members=("U1",))
    harness = build_harness(slack_standin, tmp_path, slack_suggested_prompts=())
    try:
        root = Panel(harness, surface).open()
        assert surface.prompts == [] and len(harness.thread(root, "D1")) == 1
    finally:
        harness.server.shutdown()
        harness.server.server_close()
        harness.app.close()


@pytest.mark.parametrize(
    "raw",
    [
        "Summarize this channel",  # not JSON
        json.dumps(["a", "b", "c", "d", "e"]),  # more than Slack takes
        json.dumps([{"title": "no message"}]),
        json.dumps([""]),
        json.dumps({"title": "x", "message": "y"}),  # an object, not a list
    ],
)
def test_a_bad_prompts_setting_is_refused_by_name(raw: str) -> None:
    with pytest.raises(ConfigError, match="CHATBOT_SLACK_SUGGESTED_PROMPTS"):
        Settings.from_env({"CHATBOT_SLACK_SUGGESTED_PROMPTS": raw})


def test_bolt_routes_the_panel_events_too_as_in_socket_mode(panel: Panel) -> None:
    root = panel.standin.add_message("D1", "New chat", "U1", subtype="assistant_app_thread")
    body, headers = sr.event_callback(thread_event(STARTED, root))
    response = panel.h.app.slack_app.dispatch(
        BoltRequest(body=body.decode(), headers={k: [v] for k, v in headers.items()})
    )
    assert response.status == 200
    panel.h.settle()
    assert panel.said(root) == [GREETING] and len(panel.surface.prompts) == 1


# --- context -----------------------------------------------------------------------------------


def test_a_context_change_is_kept_and_summarize_this_channel_follows_it(panel: Panel) -> None:
    panel.surface.add_channel("C2", "launch", members=("U1",))
    seed(panel.standin, 3, channel="C1", prefix="one-")
    seed(panel.standin, 4, channel="C2", prefix="two-")
    root = panel.open(context_channel="C1")
    status, _ = panel.h.send(sr.event_callback(thread_event(CHANGED, root, context_channel="C2")))
    assert status == 200
    panel.h.settle()
    (greeting,) = panel.replies(root)
    assert greeting["text"] == GREETING and context_of(greeting)["channel_id"] == "C2"

    panel.ask(root, "Summarize this channel")
    assert markers(summary_prompts(panel.h)) == {f"MARK-two-{i:04d}" for i in range(4)}
    texts = panel.said(root)
    assert len(texts) == 2 and "Covered 4 marked messages" in texts[1]
    assert [m for m in panel.standin.messages("C2") if m.get("bot_id")] == []  # not in C2


def test_a_context_change_in_a_thread_without_a_greeting_changes_nothing(panel: Panel) -> None:
    root = panel.standin.add_message("D1", "New chat", "U1", subtype="assistant_app_thread")
    status, _ = panel.h.send(sr.event_callback(thread_event(CHANGED, root, context_channel="C1")))
    assert status == 200
    panel.h.settle()
    assert panel.replies(root) == [] and panel.standin.calls_to("chat.update") == []


# --- summarize this channel ----------------------------------------------------------------


def test_summarize_this_channel_summarizes_the_viewed_channel_into_the_thread(
    panel: Panel,
) -> None:
    seed(panel.standin, 6, channel="C1")
    root = panel.open(context_channel="C1")
    panel.ask(root, "Summarize this channel")

    assert markers(summary_prompts(panel.h)) == {f"MARK-{i:04d}" for i in range(6)}
    greeting, summary = panel.replies(root)
    assert greeting["text"] == GREETING and "Covered 6 marked messages" in summary["text"]
    assert [m for m in panel.standin.messages("C1") if m.get("bot_id")] == []
    # A status while the channel is read, and no placeholder message at any point.
    statuses = [s for s in panel.standin.status_history if s["thread_ts"] == root]
    assert statuses and statuses[0]["status"] == READING_STATUS
    assert statuses[0]["loading_messages"]
    posted = [c.params for c in panel.standin.calls_to("chat.postMessage")]
    assert not [p for p in posted if PLACEHOLDER in json.dumps(p)]
    # The first question titles the thread.
    (title,) = panel.surface.titles
    assert (title["channel_id"], title["thread_ts"], title["title"]) == (
        "D1",
        root,
        "Summarize this channel",
    )


def test_a_panel_summarys_feedback_names_the_summarizers_model(
    slack_standin: SlackStandIn, tmp_path: Path
) -> None:
    """CHATBOT_SUMMARY_MODEL_ID may name another model than the assistant's: a rating of a
    summary is a rating of the model that wrote it."""
    summary_model = ScriptedModel(summarize_or_answer)
    summary_model.model_id = "summary-model-x"
    panels = open_panel(slack_standin, tmp_path, summary_model=summary_model)
    panel = next(panels)
    try:
        seed(panel.standin, 3, channel="C1")
        root = panel.open(context_channel="C1")
        panel.ask(root, "Summarize this channel")
        _, summary = panel.replies(root)
        values = [
            decode_answer(button["value"])
            for block in summary.get("blocks") or ()
            if block.get("type") == "context_actions"
            for element in block["elements"]
            for button in (element["positive_button"], element["negative_button"])
        ]
        assert values and all(v is not None and v[0].model_id == "summary-model-x" for v in values)
    finally:
        next(panels, None)


@pytest.mark.parametrize(
    ("text", "count"), [("summarize this channel, last 3", 3), ("Summarise the last 2", 2)]
)
def test_free_typed_summary_requests_use_the_summarize_grammar(
    panel: Panel, text: str, count: int
) -> None:
    seed(panel.standin, 5, channel="C1")
    root = panel.open(context_channel="C1")
    panel.ask(root, text)
    assert markers(summary_prompts(panel.h)) == {f"MARK-{i:04d}" for i in range(5 - count, 5)}


def test_a_private_channel_is_summarized_for_its_members_only(panel: Panel) -> None:
    panel.surface.add_channel("G5", "secret-project", private=True, members=("U2",))
    seed(panel.standin, 2, channel="G5", prefix="secret-")

    outsider = panel.open(context_channel="G5")
    panel.ask(outsider, "Summarize this channel")
    greeting, refusal = panel.replies(outsider)
    assert (greeting["text"], refusal["text"]) == (GREETING, MEMBERS_ONLY)
    assert summary_prompts(panel.h) == []

    member = panel.open(channel="D2", user="U2", context_channel="G5")
    panel.ask(member, "Summarize this channel", channel="D2", user="U2")
    assert markers(summary_prompts(panel.h)) == {"MARK-secret-0000", "MARK-secret-0001"}
    assert len(panel.replies(member, "D2")) == 2


def test_a_channel_the_bot_is_not_in_gets_one_polite_line(panel: Panel) -> None:
    panel.surface.add_channel("C7", "random", bot_member=False, members=("U1",))
    panel.surface.add_channel("G8", "hidden", private=True, bot_member=False, members=("U1",))
    public = panel.open(context_channel="C7")
    panel.ask(public, "Summarize this channel")
    private = panel.open(context_channel="G8")
    panel.ask(private, "summarize")

    (_, public_line), (_, private_line) = panel.replies(public), panel.replies(private)
    assert "I'm not in" in public_line["text"] and "/invite @assistant" in public_line["text"]
    assert private_line["text"] == CHANNEL_HIDDEN.format(bot="assistant")
    for line in (public_line["text"], private_line["text"]):
        assert JOB_FAILED_MESSAGE not in line and "error" not in line.lower()
    assert summary_prompts(panel.h) == []


def test_no_context_asks_to_open_a_channel_and_another_workspace_is_refused(
    panel: Panel,
) -> None:
    nowhere = panel.open(context_channel=None)
    (greeting,) = panel.replies(nowhere)
    assert not greeting.get("metadata")  # nothing to keep
    panel.ask(nowhere, "Summarize this channel")
    assert panel.said(nowhere)[1:] == [NO_CONTEXT]

    elsewhere = panel.open(context_channel="C1", context_team="T9")
    panel.ask(elsewhere, "Summarize this channel")
    assert panel.said(elsewhere)[1:] == [OTHER_WORKSPACE]
    assert summary_prompts(panel.h) == [] and panel.h.model.prompts == []


def test_a_thread_link_from_the_panel_is_checked_as_summarize_checks_it(panel: Panel) -> None:
    panel.surface.add_channel("G5", "secret-project", private=True, members=("U2",))
    thread_root = panel.standin.add_message("G5", "MARK-secret plan", "U2")
    link = f"https://standin.slack.com/archives/G5/p{thread_root.replace('.', '')}"
    root = panel.open(context_channel="C1")
    panel.ask(root, f"summarize <{link}>")
    assert "can't see" in panel.said(root)[1] and summary_prompts(panel.h) == []


# --- questions and titles ----------------------------------------------------------------------


def test_questions_are_answered_in_the_thread_and_the_first_one_titles_it(panel: Panel) -> None:
    root = panel.open(context_channel="C1")
    question = "What is our on-call rotation, and who do I page at night when the build breaks?"
    panel.ask(root, question)
    panel.ask(root, "Summarize our conversation so far")  # not the channel: a question

    assert [p.question for p in panel.h.model.prompts] == [
        question,
        "Summarize our conversation so far",
    ]
    assert summary_prompts(panel.h) == []
    assert len(panel.replies(root)) == 3  # the greeting and two answers
    (title,) = panel.surface.titles  # once, from the first question
    assert title["title"].endswith("…") and len(title["title"]) <= panel_jobs.TITLE_CHARS
    assert question.startswith(title["title"][:-1])


def test_a_title_that_slack_refuses_never_fails_the_answer(
    panel: Panel, caplog: pytest.LogCaptureFixture
) -> None:
    root = panel.open(context_channel="C1")
    panel.standin.fail_next("assistant.threads.setTitle", error="invalid_thread")
    with caplog.at_level(logging.DEBUG, logger="bots.slack.panel"):
        panel.ask(root, "hello there")
    assert len(panel.replies(root)) == 2 and panel.surface.titles == []
    # Expected (a DM thread outside the panel is refused too): quiet, at debug level.
    said = [r for r in caplog.records if r.name == "bots.slack.panel" and "title" in r.message]
    assert said and all(r.levelno == logging.DEBUG for r in said)


def test_a_thread_is_never_titled_twice_even_when_its_dedupe_record_has_lapsed(
    panel: Panel,
) -> None:
    seed(panel.standin, 2, channel="C1")
    root = panel.open(context_channel="C1")
    panel.ask(root, "Summarize this channel")  # titles the thread; a summary leaves no history
    panel.ask(root, "Summarize the last 1")  # a second title job: one per thread, deduplicated
    assert len(panel.surface.titles) == 1

    # The thread's title job once more, as if its dedupe record had lapsed (a fresh dedupe id),
    # for a question the thread has no history of: Slack shows an earlier question, so no title.
    text = "What changed since?"
    later = panel.standin.add_message("D1", text, "U1", thread_ts=root)
    turn = Turn(ConversationKey("slack", sr.DEFAULT_TEAM, "D1", root), later, Role.USER, "U1", text)
    job = panel_jobs.title_job(SlackTurn(turn, "D1", root, True, dm_thread=True))
    assert job.payload["question_ts"] == later
    panel.h.app.queue.enqueue(replace(job, dedupe_id=job.dedupe_id + ":lapsed"))
    panel.h.settle()
    assert len(panel.standin.calls_to("assistant.threads.setTitle")) == 1
    (title,) = panel.surface.titles
    assert title["title"] == "Summarize this channel"


def test_summarize_in_a_dm_thread_outside_the_panel_asks_for_a_channel(
    panel: Panel, caplog: pytest.LogCaptureFixture
) -> None:
    # A thread under an ordinary DM message: no greeting, so no kept context. For an app with
    # the assistant view every DM thread is a panel thread, so the panel's answer stands.
    root = panel.standin.add_message("D1", "a note to self", "U1")
    panel.standin.fail_next("assistant.threads.setTitle", error="invalid_thread")
    with caplog.at_level(logging.DEBUG, logger="bots.slack.panel"):
        panel.ask(root, "summarize")
        panel.ask(root, "Summarize this channel")

    assert panel.said(root) == [NO_CONTEXT, NO_CONTEXT]
    assert summary_prompts(panel.h) == [] and panel.h.model.prompts == []
    assert len(panel.standin.calls_to("assistant.threads.setTitle")) == 1  # tried once only
    assert panel.surface.titles == []
    noisy = [r for r in caplog.records if r.name == "bots.slack.panel" and "title" in r.message]
    assert all(r.levelno == logging.DEBUG for r in noisy)


# --- the ingress's reading of panel messages ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Summarize this channel", ChannelWindow),
        ("summarize", ChannelWindow),
        ("Summarize this channel, last 7 days", ChannelWindow),
        ("please summarise the channel 200", ChannelCount),
        ("summarize <https://x.slack.com/archives/C1/p1700000000000100>", ThreadRef),
        ("summarize this: a long text to shorten", None),
        ("Summarize our conversation so far", None),
        ("what does summarize mean?", None),
        ("summarizer 7d", None),
    ],
)
def test_which_panel_messages_are_summary_requests(text: str, expected: type | None) -> None:
    target = panel_jobs.summary_target(text, now=time.time())
    assert (type(target) if target is not None else None) is expected


@pytest.mark.parametrize(
    "event",
    [
        {"type": STARTED},
        {"type": STARTED, "assistant_thread": []},
        {"type": STARTED, "assistant_thread": {"user_id": "U1", "channel_id": "D1"}},
        {
            "type": CHANGED,
            "assistant_thread": {"user_id": 1, "channel_id": "D1", "thread_ts": "1.2"},
        },
        {
            "type": STARTED,
            "assistant_thread": {"user_id": "U1", "channel_id": "D#1", "thread_ts": "1.2"},
        },
    ],
)
def test_assistant_thread_events_of_odd_shapes_make_no_job(event: dict) -> None:  # type: ignore[type-arg]
    assert panel_jobs.assistant_thread_job({"team_id": "T1", "event": event}) is None


def test_odd_panel_events_are_acknowledged_without_work(panel: Panel) -> None:
    status, _ = panel.h.send(sr.event_callback({"type": STARTED, "event_ts": sr.new_ts()}))
    panel.h.settle()
    assert status == 200 and panel.standin.calls_to("chat.postMessage") == []
