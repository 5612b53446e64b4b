"""The native streaming sink's own rules, against the Slack stand-in: what it calls when, how a
refusal falls back to paced edits, what the workspace memory remembers and for how long, and the
rate budgets it keeps. Fake clocks drive the memory and the budgets; nothing is timed."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient

from bots.slack.sink import SlackLimits
from bots.slack.stream import SlackStreamSink
from core.budget import LocalRateBudget
from core.domain import ConversationKey, Reply
from core.errors import BudgetSpent, RateLimited, SinkError
from core.feedback import AnswerRef, Rating, decode_answer
from core.models.base import ModelEvent, StreamEnd, TextDelta
from core.pacer import PLACEHOLDER, ReplyPacer
from core.refusals import RefusalMemory
from tests.fakes import FakeClock as Clock
from tests.standins.slack import SlackStandIn

THREAD = "1700000000.000100"
ANSWER = AnswerRef(ConversationKey("slack", "T1", "C1", THREAD), THREAD, "model-x")


def make_sink(
    standin: SlackStandIn,
    *,
    support: RefusalMemory | None = None,
    limits: SlackLimits | None = None,
    channel: str = "C1",
    user: str | None = "U1",
    thread_ts: str | None = THREAD,
) -> SlackStreamSink:
    client = WebClient(token=standin.bot_token, base_url=standin.api_url)
    return SlackStreamSink(
        client,
        channel=channel,
        thread_ts=thread_ts,
        workspace="T1",
        limits=limits or SlackLimits(LocalRateBudget(clock=Clock()), 600),
        support=support or RefusalMemory(),
        recipient_user=user,
        answer=ANSWER,
    )


def methods(standin: SlackStandIn) -> list[str]:
    return [c.method for c in standin.calls]


def test_the_native_sequence_status_start_append_stop(slack_standin: SlackStandIn) -> None:
    sink = make_sink(slack_standin)
    ref = sink.post(PLACEHOLDER)
    assert sink.message_id(ref) is None  # a status, no message yet
    sink.update(ref, "Hello")
    sink.update(ref, "Hello, world")
    sink.update(ref, "Hello, world")  # nothing new: no call
    sink.finish(ref, "Hello, world. Done.", Reply("Hello, world. Done."))
    sink.close()

    assert methods(slack_standin) == [
        "assistant.threads.setStatus",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    ]
    append, stop = slack_standin.calls[2], slack_standin.calls[3]
    assert append.params["markdown_text"] == ", world"  # only the new text
    assert stop.params["markdown_text"] == ". Done."
    (message,) = [m for m in slack_standin.messages("C1", THREAD) if m.get("bot_id")]
    assert sink.message_id(ref) == message["ts"]
    assert message["text"] == "Hello, world. Done."
    values = [
        decode_answer(element[side]["value"])
        for element in message["blocks"][-1]["elements"]
        for side in ("positive_button", "negative_button")
    ]
    assert values == [(ANSWER, Rating.GOOD), (ANSWER, Rating.BAD)]


def test_an_answer_done_before_its_first_edit_is_posted_whole(slack_standin: SlackStandIn) -> None:
    sink = make_sink(slack_standin)
    ref = sink.post(PLACEHOLDER)
    sink.finish(ref, "Quick.", Reply("Quick."))
    assert methods(slack_standin) == ["assistant.threads.setStatus", "chat.postMessage"]
    (post,) = slack_standin.calls_to("chat.postMessage")
    assert [b["type"] for b in post.params["blocks"]] == ["markdown", "context_actions"]
    assert sink.message_id(ref) == post.response["ts"]
    assert slack_standin.status("C1", THREAD) is None  # the message cleared the status


def test_a_refusal_falls_back_and_the_workspace_is_remembered_for_an_hour(
    slack_standin: SlackStandIn,
) -> None:
    slack_standin.streaming_enabled = False
    slack_standin.streaming_refusal = "unknown_method"
    clock = Clock()
    support = RefusalMemory(memory=3600.0, clock=clock)

    first = make_sink(slack_standin, support=support)
    ref = first.post(PLACEHOLDER)
    first.update(ref, "Some text")
    first.finish(ref, "Some text, all of it.", Reply("Some text, all of it."))
    assert methods(slack_standin)[1:] == ["chat.startStream", "chat.postMessage", "chat.update"]
    assert slack_standin.calls_to("chat.postMessage")[0].params["blocks"][0]["text"] == (
        "Some text"
    )
    assert not support.allowed("T1") and support.allowed("T2")

    slack_standin.clear_calls()
    second = make_sink(slack_standin, support=support)
    second.post(PLACEHOLDER)  # paced at once: a placeholder message, no status
    assert methods(slack_standin) == ["chat.postMessage"]

    clock.now += 3600.0
    slack_standin.streaming_enabled = True
    slack_standin.clear_calls()
    third = make_sink(slack_standin, support=support)
    ref = third.post(PLACEHOLDER)
    third.update(ref, "Streaming again")
    assert methods(slack_standin) == ["assistant.threads.setStatus", "chat.startStream"]


@pytest.mark.parametrize(
    "error",
    [
        "method_not_supported_for_channel_type",
        "messaging_processing_failed",
        "service_unavailable",
        "request_timeout",
        "missing_recipient_team_id",
        "user_not_found",
        "message_limit_exceeded",
    ],
)
def test_a_refusal_that_is_not_about_streaming_paces_this_reply_only(
    slack_standin: SlackStandIn, error: str
) -> None:
    support = RefusalMemory()
    slack_standin.fail_next("chat.startStream", error=error)
    sink = make_sink(slack_standin, support=support)
    ref = sink.post(PLACEHOLDER)
    sink.update(ref, "Text")
    assert methods(slack_standin)[-2:] == ["chat.startStream", "chat.postMessage"]
    assert slack_standin.calls_to("chat.postMessage")[0].params["blocks"][0]["text"] == "Text"
    assert support.allowed("T1")  # the next reply streams again


@pytest.mark.parametrize(
    "error",
    ["unknown_method", "missing_scope", "not_allowed_token_type", "method_deprecated"],
)
def test_a_refusal_meaning_no_streaming_here_is_remembered(
    slack_standin: SlackStandIn, error: str
) -> None:
    support = RefusalMemory()
    slack_standin.fail_next("chat.startStream", error=error)
    sink = make_sink(slack_standin, support=support)
    sink.update(sink.post(PLACEHOLDER), "Text")
    assert not support.allowed("T1") and support.allowed("T2")


def test_outside_a_dm_the_recipient_must_be_known_to_stream(slack_standin: SlackStandIn) -> None:
    sink = make_sink(slack_standin, user=None)
    assert sink.post(PLACEHOLDER) == slack_standin.calls_to("chat.postMessage")[0].response["ts"]
    assert slack_standin.calls_to("assistant.threads.setStatus") == []


@pytest.mark.parametrize(
    ("method", "error", "status", "expected"),
    [
        ("chat.startStream", "ratelimited", 429, RateLimited),
        ("chat.startStream", "channel_not_found", 200, SinkError),
        ("chat.startStream", "not_in_channel", 200, SinkError),
        ("chat.appendStream", "ratelimited", 429, RateLimited),
        ("chat.appendStream", "is_archived", 200, SinkError),
    ],
)
def test_rate_limits_and_dead_channels_are_raised_not_fallen_back_from(
    slack_standin: SlackStandIn, method: str, error: str, status: int, expected: type[Exception]
) -> None:
    sink = make_sink(slack_standin)
    ref = sink.post(PLACEHOLDER)
    if method == "chat.appendStream":
        sink.update(ref, "First")
    slack_standin.fail_next(method, error=error, status=status, retry_after=7)
    with pytest.raises(expected) as caught:
        sink.update(ref, "First and more")
    if expected is RateLimited:
        assert caught.value.retry_after == 7  # type: ignore[attr-defined]
    else:
        assert caught.value.cause == f"slack_{error}"  # type: ignore[attr-defined]
    assert slack_standin.calls_to("chat.postMessage") == []


def test_text_that_does_not_extend_the_stream_stops_it_and_edits(
    slack_standin: SlackStandIn,
) -> None:
    sink = make_sink(slack_standin)
    ref = sink.post(PLACEHOLDER)
    sink.update(ref, "```python\nprint(1)")
    sink.update(ref, "```python\nprint(1)\n```")  # extends: appended
    sink.update(ref, "```python\nprint(1)\n```\n")  # extends
    sink.finish(ref, "A head that differs", Reply("A head that differs"))
    assert methods(slack_standin)[-2:] == ["chat.stopStream", "chat.update"]
    assert "markdown_text" not in slack_standin.calls_to("chat.stopStream")[0].params
    (message,) = [m for m in slack_standin.messages("C1", THREAD) if m.get("bot_id")]
    assert message["blocks"][0]["text"] == "A head that differs"


def test_a_resumed_message_is_stopped_then_edited(slack_standin: SlackStandIn) -> None:
    dead = make_sink(slack_standin)
    ref = dead.post(PLACEHOLDER)
    dead.update(ref, "Half an ans")
    message_id = dead.message_id(ref)
    assert message_id is not None  # the run dies here, its stream open

    sink = make_sink(slack_standin)
    ref = sink.adopt(message_id)
    sink.finish(ref, "The whole answer.", Reply("The whole answer."))
    assert methods(slack_standin)[-2:] == ["chat.stopStream", "chat.update"]
    (message,) = [m for m in slack_standin.messages("C1", THREAD) if m.get("bot_id")]
    assert message["ts"] == message_id and message["blocks"][0]["text"] == "The whole answer."
    assert slack_standin.stream_state("C1", message_id) == "stopped"


def test_appends_thin_out_and_the_stop_has_its_own_room(slack_standin: SlackStandIn) -> None:
    clock = Clock()
    limits = SlackLimits(LocalRateBudget(clock=clock), 600, appends_per_minute=2)
    sink = make_sink(slack_standin, limits=limits)
    ref = sink.post(PLACEHOLDER)
    sink.update(ref, "a")  # startStream: counted per channel and in the start scope
    sink.update(ref, "ab")  # an optional append: the start showed the first text
    sink.update(ref, "abc")  # one more optional append: the append scope is full
    with pytest.raises(BudgetSpent):
        sink.update(ref, "abcd")
    sink.finish(ref, "abcde", Reply("abcde"))  # the stop: its own scope, room kept since admitted
    assert [c.method for c in slack_standin.calls][-3:] == [
        "chat.appendStream",
        "chat.appendStream",
        "chat.stopStream",
    ]
    (message,) = [m for m in slack_standin.messages("C1", THREAD) if m.get("bot_id")]
    assert message["text"] == "abcde"


def test_a_reply_that_never_posted_clears_its_status(slack_standin: SlackStandIn) -> None:
    sink = make_sink(slack_standin)
    ref = sink.post(PLACEHOLDER)
    assert slack_standin.status("C1", THREAD) is not None
    slack_standin.fail_next("chat.startStream", error="channel_not_found")
    with pytest.raises(SinkError):
        sink.update(ref, "text")
    sink.close()
    assert slack_standin.status("C1", THREAD) is None


def test_a_status_slack_refuses_is_replaced_by_a_placeholder_message(
    slack_standin: SlackStandIn,
) -> None:
    """Without the status nothing would show that the question landed until the first text:
    the reply takes the paced path at once, a placeholder message then edits."""
    slack_standin.fail_next("assistant.threads.setStatus", error="missing_scope")
    seen: list[str] = []
    pacer = ReplyPacer(make_sink(slack_standin), interval=0.0, sleep=lambda _: None)
    events: list[ModelEvent] = [TextDelta("All "), TextDelta("good."), StreamEnd("end_turn")]
    reply = pacer.deliver(iter(events), on_message=seen.append)
    assert reply.complete and reply.text == "All good."
    assert methods(slack_standin)[:2] == ["assistant.threads.setStatus", "chat.postMessage"]
    (placeholder,) = slack_standin.calls_to("chat.postMessage")
    assert placeholder.params["blocks"][0]["text"] == PLACEHOLDER
    assert seen == [placeholder.response["ts"]]  # a message existed before the first text
    assert slack_standin.calls_to("chat.startStream") == []
    (message,) = [m for m in slack_standin.messages("C1", THREAD) if m.get("bot_id")]
    assert message["ts"] == placeholder.response["ts"] and message["text"] == "All good."


def test_the_pacer_falls_back_mid_reply_with_one_message(slack_standin: SlackStandIn) -> None:
    """Through the real pacer: a refused start ends as one message showing the whole answer."""
    slack_standin.streaming_enabled = False
    pacer = ReplyPacer(make_sink(slack_standin), interval=0.0, sleep=lambda _: None)
    events: list[ModelEvent] = [TextDelta("One "), TextDelta("answer."), StreamEnd("end_turn")]
    reply = pacer.deliver(iter(events))
    assert reply.complete
    (message,) = [m for m in slack_standin.messages("C1", THREAD) if m.get("bot_id")]
    assert message["blocks"][0]["text"] == "One answer."
    assert reply.message_id == message["ts"]
