"""Teams' native streaming in personal chats, end to end on the local host: activities in over
HTTP, the in-process queue and worker, the core, and replies through botbuilder's real
BotFrameworkAdapter into the connector stand-in, which speaks Teams' streaming protocol
(``streaminfo`` entities, sequence numbers, the 2-minute cap, refusals, throttling).

Clocks that matter are shifted, not waited for: :class:`ShiftedClock` is the real monotonic
clock plus an offset a test moves forward (the stand-in's, for Teams' own cap; the worker's,
for the sink's cap and the memory of refusals).

Longer than our 450-line mark on purpose: every test here drives one harness (its fixtures and
helpers above) through one protocol, from the first request to Stop and the cap."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.teams.connector import ConnectorRefused
from bots.teams.sink import TeamsReplySink
from bots.teams.stream import (
    INFORMATIVE_TEXT,
    StreamSupport,
    TeamsStreamSink,
    refusal_key,
    refuses_streaming,
)
from core.config import ConfigError, Settings
from core.domain import ConversationKey
from core.models.base import ModelEvent, StreamEnd, TextDelta
from core.pacer import PLACEHOLDER
from core.prompt import Prompt
from core.refusals import RefusalMemory
from tests.fakes import timed_stream
from tests.standins import teams as tm
from tests.standins.teams import ConnectorCall, ConnectorStandIn, stream_info, stream_type
from tests.test_teams import Harness, build_harness

PERSONAL_KEY = ConversationKey(
    "teams", tm.TENANT_ID, tm.PERSONAL_CONVERSATION, tm.PERSONAL_CONVERSATION
)
MIN_GAP = 0.1  # the sink's pace between a stream's requests (Teams': 1 s)
WORDS = [f"word{i} " for i in range(12)]
ANSWER = "".join(WORDS)


class ShiftedClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def support(clock: ShiftedClock) -> StreamSupport:
    return StreamSupport(
        min_gap=MIN_GAP, refusals=RefusalMemory(memory=600.0, clock=clock), clock=clock
    )


@pytest.fixture
def teams(
    teams_connector: ConnectorStandIn, tmp_path: Path, support: StreamSupport
) -> Iterator[Harness]:
    harness = build_harness(teams_connector, tmp_path, streaming=support)
    harness.answer = lambda p: timed_stream(WORDS, delay=0.03)
    yield harness
    harness.close()


def ask(teams: Harness, question: str = "What is our SLA?", **kw: Any) -> dict[str, Any]:
    activity = tm.personal_message(question, service_url=teams.service_url, **kw)
    assert teams.send(activity) == 202
    teams.settle()
    return activity


def streamed(teams: Harness) -> list[ConnectorCall]:
    return [c for c in teams.connector.calls if stream_info(c.activity) is not None]


def the_message(teams: Harness, conversation: str = tm.PERSONAL_CONVERSATION) -> dict[str, Any]:
    (message,) = teams.connector.messages(conversation)
    return message


def feedback_enabled(message: dict[str, Any]) -> bool:
    return tm.feedback_enabled(message)


# --- the streamed answer ----------------------------------------------------------------------


def test_a_personal_chat_answer_streams_informative_then_cumulative_chunks_then_the_final(
    teams: Harness,
) -> None:
    question = ask(teams)

    calls = streamed(teams)
    assert all(c.ok for c in calls), [(c.status, c.response) for c in calls]
    informative, *chunks, final = calls
    assert informative.type == "typing" and stream_type(informative.activity) == "informative"
    assert informative.text == INFORMATIVE_TEXT
    assert stream_info(informative.activity) == {
        "type": "streaminfo",
        "streamType": "informative",
        "streamSequence": 1,
    }
    stream_id = informative.response["id"]
    assert chunks and all(stream_type(c.activity) == "streaming" for c in chunks)
    assert all(c.type == "typing" for c in chunks)
    sequences = [stream_info(c.activity)["streamSequence"] for c in [informative, *chunks]]  # type: ignore[index]
    assert sequences == list(range(1, len(chunks) + 2))
    assert all(stream_info(c.activity)["streamId"] == stream_id for c in chunks)  # type: ignore[index]
    texts = [c.text for c in chunks]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert final.type == "message" and stream_info(final.activity) == {
        "type": "streaminfo",
        "streamType": "final",
        "streamId": stream_id,
    }
    assert final.text == ANSWER and final.activity["channelData"] == {"feedbackLoopEnabled": True}
    # Every request answers the question, and keeps Teams' pace of one request per gap.
    assert all(c.activity_id == question["id"] for c in calls)
    assert all(b.at - a.at >= MIN_GAP - 0.01 for a, b in itertools.pairwise(calls[1:]))
    # One message, the stream's, showing the whole answer; nothing was edited or typed.
    message = the_message(teams)
    assert message["id"] == stream_id and message["text"] == ANSWER and feedback_enabled(message)
    assert not teams.connector.calls_to("update")
    assert not [c for c in teams.connector.calls if c not in calls]
    (stream,) = teams.connector.streams
    assert stream.final is not None and stream.text == texts[-1]
    # The answer is remembered under the message the feedback buttons are on.
    assert teams.history is not None
    turns = teams.history.recent_turns(PERSONAL_KEY, 10)
    assert [t.text for t in turns] == ["What is our SLA?", ANSWER]
    answer = teams.history.answer_for_message(PERSONAL_KEY, stream_id)
    assert answer is not None and answer.answer_id == question["id"]


def test_a_group_chat_answer_is_paced_edits_with_feedback_on_the_final(teams: Harness) -> None:
    post = tm.group_message("what is our SLA?", service_url=teams.service_url)
    assert teams.send(post) == 202
    teams.settle()

    assert not streamed(teams)  # no streaming request at all: group chats refuse it
    assert teams.connector.calls[0].type == "typing"
    assert teams.connector.calls_to("update")
    message = the_message(teams, tm.GROUP_CHAT)
    assert message["text"] == ANSWER and feedback_enabled(message)
    # Only the final carries the buttons.
    flagged = [c for c in teams.connector.calls if (c.activity.get("channelData") or {})]
    assert flagged == [teams.connector.calls[-1]]


def test_notices_in_a_personal_chat_carry_no_feedback_buttons(teams: Harness) -> None:
    ask(teams, "summarize")  # nothing seen yet: a one-line notice, paced

    assert not streamed(teams)
    message = the_message(teams)
    assert not feedback_enabled(message)


def test_an_answer_that_failed_gets_no_feedback_buttons(teams: Harness) -> None:
    def broken(prompt: Prompt) -> Iterator[ModelEvent]:
        yield TextDelta("Half an ans")
        raise RuntimeError("the model broke")

    teams.answer = broken
    ask(teams)

    message = the_message(teams)
    assert message["text"].startswith("Half an ans") and "⚠️" in message["text"]
    assert not feedback_enabled(message)


# --- refusals and fallbacks -------------------------------------------------------------------


def test_a_tenant_refusing_streaming_gets_paced_edits_and_is_remembered_until_the_ttl(
    teams: Harness, clock: ShiftedClock
) -> None:
    teams.connector.refuse_streaming = 400
    ask(teams, "first")

    refused = streamed(teams)
    assert [(c.status, stream_type(c.activity)) for c in refused] == [(400, "informative")]
    message = the_message(teams)
    assert message["text"] == ANSWER and feedback_enabled(message)
    assert teams.connector.calls_to("update")  # the paced path: one message, edited

    before = len(teams.connector.calls)
    ask(teams, "second")
    assert not streamed(teams)[1:]  # remembered: no second attempt
    assert len(teams.connector.messages(tm.PERSONAL_CONVERSATION)) == 2
    assert len(teams.connector.calls) > before

    teams.connector.refuse_streaming = None
    clock.offset += 601  # past the memory's TTL: streaming is tried again, and works
    ask(teams, "third")
    again = streamed(teams)[1:]
    assert again and all(c.ok for c in again)
    assert stream_type(again[-1].activity) == "final"
    last = teams.connector.messages(tm.PERSONAL_CONVERSATION)[-1]
    assert last["text"] == ANSWER and feedback_enabled(last)


def test_method_not_allowed_falls_back_for_this_reply(teams: Harness) -> None:
    teams.connector.refuse_streaming = 405
    ask(teams)
    assert [c.status for c in streamed(teams)] == [405]
    assert the_message(teams)["text"] == ANSWER


def test_streaming_off_never_streams(teams_connector: ConnectorStandIn, tmp_path: Path) -> None:
    harness = build_harness(teams_connector, tmp_path, teams_streaming="off")
    try:
        harness.answer = lambda p: timed_stream(WORDS, delay=0.01)
        ask(harness)
        assert not streamed(harness)
        assert the_message(harness)["text"] == ANSWER
    finally:
        harness.close()


def test_the_streaming_setting_takes_auto_or_off() -> None:
    assert Settings.from_env({"CHATBOT_TEAMS_STREAMING": "off"}).teams_streaming == "off"
    assert Settings.from_env({}).teams_streaming == "auto"
    with pytest.raises(ConfigError, match="CHATBOT_TEAMS_STREAMING"):
        Settings.from_env({"CHATBOT_TEAMS_STREAMING": "always"})


def stalls_then(
    shift: ShiftedClock, seconds: float, after: int = 4, *also: tuple[ShiftedClock, float]
) -> Any:  # a model that jumps clocks forward mid-answer
    def answer(prompt: Prompt) -> Iterator[ModelEvent]:
        for n, word in enumerate(WORDS):
            if n == after:
                time.sleep(2 * MIN_GAP)  # the words before have been streamed
                shift.offset += seconds
                for other, more in also:
                    other.offset += more
            time.sleep(0.03)
            yield TextDelta(word)
        yield StreamEnd("end_turn")

    return answer


def test_teams_closing_the_stream_at_its_cap_mid_answer_still_ends_in_one_whole_answer(
    teams: Harness, clock: ShiftedClock
) -> None:
    # Teams' cap comes before the sink's own (its clock is ahead: 121 s against the sink's
    # 105 s, short of the sink's 110 s but too late for the person's Stop).
    teams_clock = ShiftedClock()
    teams.connector.clock = teams_clock
    teams.answer = stalls_then(teams_clock, 121, 4, (clock, 105))
    ask(teams)

    calls = teams.connector.calls
    closed = [c for c in calls if c.status == 403]
    assert closed and closed[0].response["error"]["code"] == "ContentStreamNotAllowed"
    message = the_message(teams)  # the stream's message, carried on by edits
    stream_id = streamed(teams)[0].response["id"]
    assert message["id"] == stream_id
    assert message["text"] == ANSWER and feedback_enabled(message)
    edits = teams.connector.calls_to("update")
    assert edits and all(c.activity_id == stream_id and c.ok for c in edits)
    assert edits[-1].at > closed[0].at
    assert teams.connector.streams[0].over == "time cap"
    assert teams.history is not None
    assert teams.history.answer_for_message(PERSONAL_KEY, stream_id) is not None


def test_the_sink_ends_the_stream_itself_before_the_cap_and_goes_on_with_edits(
    teams: Harness, clock: ShiftedClock
) -> None:
    teams.answer = stalls_then(clock, 111)  # past the sink's 110 s, inside Teams' 120 s
    ask(teams)

    calls = streamed(teams)
    assert all(c.ok for c in calls)  # no request was refused
    finals = [c for c in calls if stream_type(c.activity) == "final"]
    assert len(finals) == 1 and finals[0].text != ANSWER  # the text so far ended the stream
    assert not (finals[0].activity.get("channelData") or {})  # not complete: no buttons yet
    edits = teams.connector.calls_to("update")
    assert edits and all(c.ok for c in edits)
    assert edits[-1].text == ANSWER and edits[-1].activity["channelData"] == {
        "feedbackLoopEnabled": True
    }
    message = the_message(teams)
    assert message["text"] == ANSWER and feedback_enabled(message)


def test_a_chunk_refused_mid_stream_ends_in_one_whole_answer(teams: Harness) -> None:
    teams.connector.fail(
        "reply", 400, code="BadArgument", when=lambda a: stream_type(a) == "streaming", times=1
    )
    ask(teams)

    message = the_message(teams)
    assert message["text"] == ANSWER and feedback_enabled(message)
    assert [c.status for c in streamed(teams)].count(400) == 1


def test_a_final_refused_near_the_cap_is_delivered_by_editing_the_streamed_message(
    teams: Harness, clock: ShiftedClock
) -> None:
    teams.answer = stalls_then(clock, 105)  # near the cap: the refusal is not the person's Stop
    teams.connector.fail(
        "reply",
        403,
        code="ContentStreamNotAllowed",
        when=lambda a: stream_type(a) == "final",
        times=None,
    )
    ask(teams)

    message = the_message(teams)
    assert message["text"] == ANSWER and feedback_enabled(message)
    assert teams.connector.calls_to("update")[-1].activity_id == message["id"]


def test_a_stream_whose_message_is_gone_ends_as_one_new_message(
    teams: Harness, clock: ShiftedClock
) -> None:
    # The final is refused near the cap and its message cannot be edited either (404): a new
    # message.
    teams.answer = stalls_then(clock, 105)
    teams.connector.fail(
        "reply",
        403,
        code="ContentStreamNotAllowed",
        times=None,
        when=lambda a: stream_type(a) == "final",
    )
    teams.connector.fail("update", 404, times=None)
    ask(teams)

    messages = teams.connector.messages(tm.PERSONAL_CONVERSATION)
    assert messages[-1]["text"] == ANSWER and feedback_enabled(messages[-1])
    assert sum(m["text"] == ANSWER for m in messages) == 1


# --- the person presses Stop -------------------------------------------------------------------


def stopped_after(teams: Harness, after: int) -> tuple[Any, dict[str, Any]]:
    """A model that, before its word ``after`` (``len(WORDS)``: before it ends), waits until
    the stream shows every word so far and then has the person press Stop; ``seen`` records
    the stream's id, how many connector calls came before Stop, and the text it showed."""
    seen: dict[str, Any] = {}
    connector = teams.connector

    def shows(text: str) -> bool:
        return any(m["text"] == text for m in connector.messages(tm.PERSONAL_CONVERSATION))

    def press_stop(text: str) -> None:
        assert connector.wait_for(lambda: shows(text)), "the stream never showed the words"
        seen["stream_id"] = connector.press_stop(tm.PERSONAL_CONVERSATION)
        seen["calls"] = len(connector.calls)
        seen["shown"] = text

    def answer(prompt: Prompt) -> Iterator[ModelEvent]:
        for n, word in enumerate(WORDS):
            if n == after:
                press_stop("".join(WORDS[:n]))
            time.sleep(0.02)
            yield TextDelta(word)
        if after == len(WORDS):
            press_stop(ANSWER)
        yield StreamEnd("end_turn")

    return answer, seen


class Collected(logging.Handler):
    """The records of one logger tree, whatever handlers the hosts gave it (they route bots.*
    logs to their own JSON handler, without propagation)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def teams_logs() -> Iterator[Collected]:
    collected = Collected()
    target = logging.getLogger("bots.teams")
    target.addHandler(collected)
    try:
        yield collected
    finally:
        target.removeHandler(collected)


def test_stop_mid_answer_ends_the_reply_with_what_the_stream_shows(
    teams: Harness, teams_logs: Collected
) -> None:
    teams.answer, seen = stopped_after(teams, 4)
    ask(teams)

    # After Stop, the one request that learnt of it (refused), and nothing else: no chunk, no
    # final, no edit, no continuation message.
    (learnt,) = teams.connector.calls[seen["calls"] :]
    assert learnt.status == 403 and learnt.response["error"]["code"] == "ContentStreamNotAllowed"
    assert stream_type(learnt.activity) in ("streaming", "final")
    assert not teams.connector.calls_to("update")
    # The person keeps the text the stream showed when they pressed Stop.
    message = the_message(teams)
    assert message["id"] == seen["stream_id"] and message["text"] == seen["shown"]
    assert seen["shown"] and ANSWER.startswith(seen["shown"]) and seen["shown"] != ANSWER
    assert not feedback_enabled(message)
    (stream,) = teams.connector.streams
    assert stream.over == "stopped" and stream.final is None
    assert any("stopped by the person" in r.getMessage() for r in teams_logs.records)
    # Stop is the person's choice, not a failure: nothing about it is logged as an error.
    assert not [r for r in teams_logs.records if r.levelno >= logging.ERROR]
    # No feedback buttons on that message, so no answer is remembered under it.
    assert teams.history is not None
    assert teams.history.answer_for_message(PERSONAL_KEY, seen["stream_id"]) is None


def test_stop_before_the_final_keeps_the_streamed_text_and_sends_no_final(teams: Harness) -> None:
    teams.answer, seen = stopped_after(teams, len(WORDS))
    ask(teams)

    (refused,) = teams.connector.calls[seen["calls"] :]
    assert stream_type(refused.activity) == "final" and refused.status == 403
    assert not teams.connector.calls_to("update")
    message = the_message(teams)
    assert message["text"] == ANSWER and not feedback_enabled(message)
    (stream,) = teams.connector.streams
    assert stream.over == "stopped" and stream.final is None


def test_stop_before_a_continuation_message_posts_no_more_parts(
    teams: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An answer longer than one message: Stop before the stream's part is complete ends the
    # reply; the parts the pacer goes on to split off are not posted.
    monkeypatch.setattr(TeamsStreamSink, "max_chars", 60)
    monkeypatch.setattr(TeamsReplySink, "max_chars", 60)
    teams.answer, seen = stopped_after(teams, 3)
    ask(teams)

    (learnt,) = teams.connector.calls[seen["calls"] :]
    assert learnt.status == 403
    assert not teams.connector.calls_to("update")
    message = the_message(teams)
    assert message["text"] == seen["shown"]


# --- pace and throttling ----------------------------------------------------------------------


def test_a_429_on_a_chunk_and_on_the_final_is_honoured(teams: Harness) -> None:
    waits = {"streaming": 0.5, "final": 0.3}
    for kind, wait in waits.items():
        teams.connector.fail(
            "reply", 429, retry_after=wait, when=lambda a, k=kind: stream_type(a) == k, times=1
        )
    ask(teams)

    calls = streamed(teams)
    limited = [i for i, c in enumerate(calls) if c.status == 429]
    assert sorted(stream_type(calls[i].activity) for i in limited) == ["final", "streaming"]
    for i in limited:
        wait = waits[stream_type(calls[i].activity)]
        assert calls[i + 1].at - calls[i].at >= wait - 0.01  # Retry-After honoured
    finals = [c for c in calls if stream_type(c.activity) == "final" and c.ok]
    assert len(finals) == 1
    assert the_message(teams)["text"] == ANSWER


def test_the_sink_keeps_the_stream_pace_so_teams_never_throttles_it(teams: Harness) -> None:
    teams.connector.stream_min_gap = MIN_GAP  # the stand-in answers 429 to anything faster
    teams.answer = lambda p: timed_stream(WORDS, delay=0.01)
    ask(teams)

    assert [c.status for c in streamed(teams) if not c.ok] == []
    assert the_message(teams)["text"] == ANSWER


def test_the_placeholder_never_shows(teams: Harness) -> None:
    ask(teams)
    assert all(PLACEHOLDER not in c.text for c in teams.connector.calls)


def test_an_answer_longer_than_one_message_ends_its_stream_and_continues_in_messages(
    teams: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TeamsStreamSink, "max_chars", 120)
    monkeypatch.setattr(TeamsReplySink, "max_chars", 120)
    words = [f"sentence{i} is here. " for i in range(20)]  # about 400 characters
    teams.answer = lambda p: timed_stream(words, delay=0.02)
    ask(teams)

    messages = teams.connector.messages(tm.PERSONAL_CONVERSATION)
    assert len(messages) >= 3
    stream_id = streamed(teams)[0].response["id"]
    assert messages[0]["id"] == stream_id  # the stream's message holds the first part
    assert all(len(m["text"]) <= 120 for m in messages)
    assert " ".join(m["text"].strip() for m in messages) == "".join(words).strip()
    assert feedback_enabled(messages[-1])
    finals = [c for c in streamed(teams) if stream_type(c.activity) == "final"]
    assert len(finals) == 1 and all(c.ok for c in streamed(teams))


def test_a_refusal_is_remembered_per_tenant_and_bot() -> None:
    # The shared memory (core.refusals) keeps one entry per tenant's bot: another tenant, or
    # another bot of the same tenant, still streams.
    memory = StreamSupport().refusals
    memory.refuse(refusal_key("tenant-a", "28:bot"), "400 BadArgument")
    assert not memory.allowed(refusal_key("tenant-a", "28:bot"))
    assert memory.allowed(refusal_key("tenant-b", "28:bot"))
    assert memory.allowed(refusal_key("tenant-a", "28:other"))
    assert StreamSupport().refusals is not memory  # each instance its own memory


@pytest.mark.parametrize(
    ("status", "code", "refuses"),
    [
        (400, "BadArgument", True),
        (405, "BadArgument", True),
        (403, "ContentStreamNotAllowed", True),
        (403, "BotNotInConversationRoster", False),  # removed from the chat: not about streams
        (404, "ActivityNotFound", False),
    ],
)
def test_which_refusals_of_the_first_request_mean_no_streaming(
    status: int, code: str, refuses: bool
) -> None:
    assert refuses_streaming(ConnectorRefused("x", status=status, code=code)) is refuses


def test_content_stream_not_allowed_on_the_first_request_falls_back_by_its_error_code(
    teams: Harness,
) -> None:
    # The connector's error code is read from the SDK's exception: a 403 that means "no
    # streaming" falls back to paced edits; a 403 of another code would end the reply.
    teams.connector.fail(
        "reply",
        403,
        code="ContentStreamNotAllowed",
        when=lambda a: stream_type(a) == "informative",
    )
    ask(teams)
    assert [c.status for c in streamed(teams)] == [403]
    message = the_message(teams)
    assert message["text"] == ANSWER and feedback_enabled(message)
