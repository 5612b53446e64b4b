"""Native streaming end to end: signed events into the local host, the real worker, the core and
the streaming sink, against the Slack stand-in speaking ``chat.startStream`` /
``chat.appendStream`` / ``chat.stopStream`` and ``assistant.threads.setStatus``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.slack.feedback_blocks import FEEDBACK_ACTION_ID
from bots.slack.stream import LOADING_MESSAGES, STATUS
from core.domain import ConversationKey
from core.errors import ModelUnavailable
from core.feedback import AnswerRef, Rating, decode_answer
from core.models.base import ModelEvent
from core.pacer import PLACEHOLDER
from core.prompt import Prompt
from tests import slack_requests as sr
from tests.fakes import timed_stream
from tests.standins.slack import SlackStandIn
from tests.test_slack import Harness, build_harness

ANSWER_PARTS = ["**Answer** to: ", "the question", ", in three parts."]
ANSWER = "".join(ANSWER_PARTS)


def slow_answer(prompt: Prompt) -> Iterator[ModelEvent]:
    return timed_stream(ANSWER_PARTS, delay=0.15)


@pytest.fixture
def native(slack_standin: SlackStandIn, tmp_path: Path) -> Iterator[Harness]:
    harness = build_harness(slack_standin, tmp_path, slack_streaming="auto")
    harness.answer = slow_answer
    yield harness
    harness.server.shutdown()
    harness.server.server_close()
    harness.app.close()


def bot_replies(harness: Harness, thread_ts: str, channel: str = "C1") -> list[dict[str, Any]]:
    return harness.thread(thread_ts, channel=channel)


def feedback_values(message: dict[str, Any]) -> list[Any]:
    """The decoded values of the message's feedback buttons (none if it has none)."""
    found = []
    for block in message.get("blocks", []):
        if block.get("type") != "context_actions":
            continue
        for element in block["elements"]:
            assert element["type"] == "feedback_buttons"
            assert element["action_id"] == FEEDBACK_ACTION_ID
            for side in ("positive_button", "negative_button"):
                assert element[side]["accessibility_label"]
                found.append(decode_answer(element[side]["value"]))
    return found


def stream_methods(standin: SlackStandIn) -> list[str]:
    kinds = (
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
        "chat.update",
        "chat.postMessage",
    )
    return [c.method for c in standin.calls if c.method in kinds]


def test_a_channel_thread_answer_streams_natively_after_a_loading_status(
    native: Harness,
) -> None:
    standin = native.standin
    mention = sr.app_mention("<@UBOT> stream it please")
    assert native.send(sr.event_callback(mention))[0] == 200
    native.settle()

    # A status with loading messages in the thread, and no placeholder message.
    (status,) = [s for s in standin.status_history if s["status"]]
    assert (status["channel"], status["thread_ts"]) == ("C1", mention["ts"])
    assert status["status"] == STATUS and status["loading_messages"] == list(LOADING_MESSAGES)
    assert standin.calls_to("chat.postMessage") == []
    methods = stream_methods(standin)
    assert methods[0] == "chat.startStream" and methods[-1] == "chat.stopStream"
    assert "chat.appendStream" in methods and "chat.update" not in methods
    (start,) = standin.calls_to("chat.startStream")
    assert start.params["thread_ts"] == mention["ts"]
    assert (start.params["recipient_team_id"], start.params["recipient_user_id"]) == ("T1", "U1")
    assert ANSWER.startswith(start.params["markdown_text"])

    (reply,) = bot_replies(native, mention["ts"])
    assert reply["text"] == ANSWER and reply["blocks"][0]["text"] == ANSWER
    assert standin.stream_state("C1", reply["ts"]) == "stopped"
    assert standin.status("C1", mention["ts"]) is None  # the answer cleared the status
    key = ConversationKey("slack", "T1", "C1", mention["ts"])
    answer = AnswerRef(key, mention["ts"], "scripted")
    assert feedback_values(reply) == [(answer, Rating.GOOD), (answer, Rating.BAD)]


def test_a_slack_connect_guest_gets_the_stream_for_their_own_team(native: Harness) -> None:
    standin = native.standin
    mention = sr.app_mention("<@UBOT> from another org", user="U-GUEST")
    mention["user_team"] = "T-GUEST"  # Slack Connect: the asker's team is not the workspace
    assert native.send(sr.event_callback(mention))[0] == 200
    native.settle()

    (start,) = standin.calls_to("chat.startStream")
    assert (start.params["recipient_team_id"], start.params["recipient_user_id"]) == (
        "T-GUEST",
        "U-GUEST",
    )
    (reply,) = bot_replies(native, mention["ts"])
    assert reply["text"] == ANSWER


def test_an_assistant_thread_in_a_dm_streams_too(native: Harness) -> None:
    standin = native.standin
    standin.add_channel("D1", "dm", is_im=True)
    root = standin.add_message("D1", "earlier question", "U1")
    event = sr.message("what now?", channel="D1", thread_ts=root, channel_type="im")
    assert native.send(sr.event_callback(event))[0] == 200
    native.settle()

    (start,) = standin.calls_to("chat.startStream")
    assert start.params["channel"] == "D1" and start.params["thread_ts"] == root
    (reply,) = bot_replies(native, root, channel="D1")
    assert reply["text"] == ANSWER
    assert standin.calls_to("chat.postMessage") == []


def test_a_top_level_dm_answer_takes_the_paced_path(native: Harness) -> None:
    # Slack streams replies in threads only: a DM answered at the top level is paced.
    standin = native.standin
    standin.add_channel("D2", "dm", is_im=True)
    event = sr.message("hello there", channel="D2", channel_type="im")
    assert native.send(sr.event_callback(event))[0] == 200
    native.settle()

    assert standin.calls_to("chat.startStream") == []
    assert standin.calls_to("assistant.threads.setStatus") == []
    (placeholder, *_) = standin.calls_to("chat.postMessage")
    assert placeholder.params["blocks"][0]["text"] == PLACEHOLDER
    (reply,) = [m for m in standin.messages("D2") if m.get("bot_id")]
    assert reply["blocks"][0]["text"] == ANSWER
    assert len(feedback_values(reply)) == 2


def test_a_workspace_that_refuses_streaming_gets_paced_answers_and_is_remembered(
    native: Harness,
) -> None:
    standin = native.standin
    standin.streaming_enabled = False
    first = sr.app_mention("<@UBOT> first question")
    native.send(sr.event_callback(first))
    native.settle()

    assert len(standin.calls_to("chat.startStream")) == 1  # tried once, refused
    (reply,) = bot_replies(native, first["ts"])
    assert reply["blocks"][0]["text"] == ANSWER
    assert len(feedback_values(reply)) == 2
    # The text went out by chat.postMessage and chat.update: one message, never a placeholder.
    posts = standin.calls_to("chat.postMessage")
    assert len(posts) == 1 and posts[0].params["blocks"][0]["text"] != PLACEHOLDER
    assert ANSWER.startswith(posts[0].params["blocks"][0]["text"])

    second = sr.app_mention("<@UBOT> second question")
    native.send(sr.event_callback(second))
    native.settle()
    assert len(standin.calls_to("chat.startStream")) == 1  # remembered: not tried again
    (reply,) = bot_replies(native, second["ts"])
    assert reply["blocks"][0]["text"] == ANSWER


def test_a_stream_that_expires_midway_ends_as_one_message_by_chat_update(
    native: Harness,
) -> None:
    standin = native.standin

    def expiring(prompt: Prompt) -> Iterator[ModelEvent]:
        yield from timed_stream(ANSWER_PARTS[:1])
        standin.wait_for_calls("chat.startStream", 1, timeout=10)
        assert standin.expire_streams() == 1
        yield from timed_stream(ANSWER_PARTS[1:], delay=0.1)

    native.answer = expiring
    mention = sr.app_mention("<@UBOT> a slow one")
    native.send(sr.event_callback(mention))
    native.settle()

    refused = [c for c in standin.calls_to("chat.appendStream") if not c.ok]
    assert refused and refused[0].response["error"] == "message_not_in_streaming_state"
    (reply,) = bot_replies(native, mention["ts"])
    assert reply["blocks"][0]["text"] == ANSWER
    assert standin.calls_to("chat.update")[-1].params["ts"] == reply["ts"]
    assert len(feedback_values(reply)) == 2
    assert standin.calls_to("chat.postMessage") == []  # never a second message


def test_a_rate_limited_append_is_waited_out_and_the_answer_completes(native: Harness) -> None:
    standin = native.standin
    standin.fail_next("chat.appendStream", status=429, retry_after=1)
    mention = sr.app_mention("<@UBOT> under pressure")
    native.send(sr.event_callback(mention))
    native.settle()

    assert standin.pending_failures("chat.appendStream") == 0
    assert any(c.status == 429 for c in standin.calls_to("chat.appendStream"))
    (reply,) = bot_replies(native, mention["ts"])
    assert reply["text"] == ANSWER
    assert standin.calls_to("chat.update") == []  # a rate limit never leaves the stream


def test_a_refused_stop_finishes_the_same_message_by_chat_update(native: Harness) -> None:
    standin = native.standin
    standin.fail_next("chat.stopStream", error="streaming_state_conflict")
    mention = sr.app_mention("<@UBOT> stop refused")
    native.send(sr.event_callback(mention))
    native.settle()

    (reply,) = bot_replies(native, mention["ts"])
    assert reply["blocks"][0]["text"] == ANSWER
    assert len(feedback_values(reply)) == 2
    (update,) = standin.calls_to("chat.update")
    assert update.params["ts"] == reply["ts"]


def test_a_message_deleted_while_streaming_is_answered_anew(native: Harness) -> None:
    standin = native.standin

    def deleting(prompt: Prompt) -> Iterator[ModelEvent]:
        yield from timed_stream(ANSWER_PARTS[:1])
        (start,) = standin.wait_for_calls("chat.startStream", 1, timeout=10)
        standin.delete_message("C1", start.response["ts"])
        yield from timed_stream(ANSWER_PARTS[1:], delay=0.1)

    native.answer = deleting
    mention = sr.app_mention("<@UBOT> deleted midway")
    native.send(sr.event_callback(mention))
    native.settle()

    (reply,) = bot_replies(native, mention["ts"])  # the deleted one is gone; one answer
    assert ANSWER in reply["blocks"][0]["text"]
    assert len(feedback_values(reply)) == 2
    (start,) = standin.calls_to("chat.startStream")
    assert reply["ts"] != start.response["ts"]  # posted anew by chat.postMessage
    assert any(c.response.get("error") == "message_not_found" for c in standin.calls)


def test_streaming_off_takes_the_paced_path_with_feedback_buttons(
    slack_standin: SlackStandIn, tmp_path: Path
) -> None:
    harness = build_harness(slack_standin, tmp_path)  # the harness runs with streaming "off"
    harness.answer = slow_answer
    try:
        mention = sr.app_mention("<@UBOT> paced please")
        harness.send(sr.event_callback(mention))
        harness.settle()
    finally:
        harness.server.shutdown()
        harness.server.server_close()
        harness.app.close()
    assert slack_standin.calls_to("chat.startStream") == []
    assert slack_standin.calls_to("assistant.threads.setStatus") == []
    assert slack_standin.calls_to("chat.postMessage")[0].params["blocks"][0]["text"] == (
        PLACEHOLDER
    )
    (reply,) = harness.thread(mention["ts"])
    assert reply["blocks"][0]["text"] == ANSWER
    key = ConversationKey("slack", "T1", "C1", mention["ts"])
    answer = AnswerRef(key, mention["ts"], "scripted")
    assert feedback_values(reply) == [(answer, Rating.GOOD), (answer, Rating.BAD)]


@pytest.mark.parametrize("streaming", ["auto", "off"])
def test_a_failed_answer_has_no_feedback_buttons(
    slack_standin: SlackStandIn, tmp_path: Path, streaming: str
) -> None:
    harness = build_harness(slack_standin, tmp_path, slack_streaming=streaming)
    harness.answer = lambda prompt: timed_stream(
        ANSWER_PARTS[:2], delay=0.1, error=ModelUnavailable("the model is down")
    )
    try:
        mention = sr.app_mention("<@UBOT> this will fail")
        harness.send(sr.event_callback(mention))
        harness.settle()
    finally:
        harness.server.shutdown()
        harness.server.server_close()
        harness.app.close()
    (reply,) = harness.thread(mention["ts"])
    assert reply["text"].startswith("".join(ANSWER_PARTS[:2]))
    assert "⚠️" in reply["text"]
    assert feedback_values(reply) == []
    assert all(b["type"] != "context_actions" for b in reply.get("blocks", []))


def test_twenty_native_answers_at_once_complete_within_slacks_tiers(
    slack_standin: SlackStandIn, tmp_path: Path
) -> None:
    standin = slack_standin
    standin.enforce_rate_limits(update_per_minute=50, post_per_second=1.0, post_burst=3)
    for n in range(10):
        standin.add_channel(f"C{100 + n}", f"team-{n}")
    harness = build_harness(
        standin, tmp_path, edit_interval_seconds=0.2, local_workers=32, slack_streaming="auto"
    )
    words = [f" w{i}" for i in range(30)]
    harness.answer = lambda p: timed_stream([f"Answer to {p.question}:", *words], delay=0.03)
    mentions = [
        sr.app_mention(f"<@UBOT> question {i}", channel=f"C{100 + i % 10}") for i in range(20)
    ]
    statuses: list[int] = [0] * len(mentions)
    barrier = threading.Barrier(len(mentions))

    def send(i: int) -> None:
        barrier.wait()
        statuses[i] = harness.send(sr.event_callback(mentions[i]))[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(mentions))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert statuses == [200] * 20
        assert harness.app.queue.join(120), "the answers did not finish"
    finally:
        harness.server.shutdown()
        harness.server.server_close()
        harness.app.close()

    for i, mention in enumerate(mentions):
        replies = harness.thread(mention["ts"], channel=mention["channel"])
        assert len(replies) == 1, f"answer {i}: {len(replies)} replies"
        assert replies[0]["text"] == f"Answer to question {i}:" + "".join(words)
        assert len(feedback_values(replies[0])) == 2
    assert sum(standin.rate_limited.values()) == 0  # the budget kept under Slack's tiers
    assert len(standin.calls_to("chat.startStream")) == 20
    assert len(standin.calls_to("chat.stopStream")) == 20
    assert standin.calls_to("chat.postMessage") == standin.calls_to("chat.update") == []
