"""How native streams end, whatever happens to the reply: the real pacer drives the streaming sink
against the Slack stand-in, and no message may be left streaming (a split answer, a final
refused or rate limited past its deadline, a start whose answer was lost). Also the stand-in's
own Slack limits that these paths rely on. Fake clocks throughout; nothing is timed."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bots.slack.feedback_blocks import FEEDBACK_ACTION_ID
from bots.slack.sink import SlackLimits
from bots.slack.stream import SlackStreamSink
from core.budget import LocalRateBudget
from core.domain import ConversationKey, Reply
from core.errors import BudgetSpent
from core.feedback import AnswerRef
from core.models.base import ModelEvent, StreamEnd, TextDelta
from core.pacer import LATE_NOTICE, PLACEHOLDER, ReplyPacer
from core.refusals import RefusalMemory
from tests.fakes import FakeClock as Clock
from tests.standins.slack import SlackStandIn

THREAD = "1700000000.000100"
ANSWER = AnswerRef(ConversationKey("slack", "T1", "C1", THREAD), THREAD, "model-x")


def make_sink(
    standin: SlackStandIn,
    clock: Clock,
    *,
    appends_per_minute: int = 100,
    support: RefusalMemory | None = None,
    team: str | None = None,
) -> SlackStreamSink:
    client = WebClient(token=standin.bot_token, base_url=standin.api_url)
    limits = SlackLimits(LocalRateBudget(clock=clock), 600, appends_per_minute=appends_per_minute)
    return SlackStreamSink(
        client,
        channel="C1",
        thread_ts=THREAD,
        workspace="T1",
        limits=limits,
        support=support or RefusalMemory(),
        recipient_user="U1",
        recipient_team=team,
        answer=ANSWER,
    )


def pacer_for(sink: SlackStreamSink, clock: Clock, *, final_wait: float = 150.0) -> ReplyPacer:
    return ReplyPacer(sink, interval=0.0, clock=clock, sleep=clock.sleep, final_wait=final_wait)


def events(parts: list[str]) -> list[ModelEvent]:
    return [*(TextDelta(p) for p in parts), StreamEnd("end_turn")]


def bot_messages(standin: SlackStandIn) -> list[dict[str, Any]]:
    return [m for m in standin.messages("C1", THREAD) if m.get("bot_id")]


def streaming_left(standin: SlackStandIn) -> list[str]:
    return [
        m["ts"] for m in bot_messages(standin) if standin.stream_state("C1", m["ts"]) == "streaming"
    ]


def has_feedback(message: dict[str, Any]) -> bool:
    return any(b.get("type") == "context_actions" for b in message.get("blocks", []))


@pytest.fixture
def thread(slack_standin: SlackStandIn) -> SlackStandIn:
    slack_standin.add_message("C1", "the question", "U1", ts=THREAD)
    return slack_standin


# -- a split answer ----------------------------------------------------------------------------


def test_a_split_answer_stops_every_stream_and_shows_the_whole_answer(
    thread: SlackStandIn,
) -> None:
    clock = Clock()
    sink = make_sink(thread, clock)
    sink.max_chars = 600  # a small message limit: the answer splits
    paragraphs = [
        f"Paragraph {i}: " + " ".join(f"word{i}-{j}" for j in range(40)) for i in range(6)
    ]
    answer = "\n\n".join(paragraphs)
    # Small deltas, then one that runs over several messages: continuations stream too.
    parts = [answer[i : i + 90] for i in range(0, 900, 90)] + [answer[900:]]

    reply = pacer_for(sink, clock).deliver(iter(events(parts)))

    assert reply.complete
    messages = bot_messages(thread)
    assert len(messages) >= 3
    streamed = [m for m in messages if thread.stream_state("C1", m["ts"]) is not None]
    assert len(streamed) >= 2  # continuations were streamed too, not only posted
    assert streaming_left(thread) == []
    assert " ".join(m["text"] for m in messages).split() == answer.split()
    assert has_feedback(messages[-1]) and not any(has_feedback(m) for m in messages[:-1])


# -- exits without a finish --------------------------------------------------------------------


def test_a_final_rate_limited_past_its_deadline_leaves_no_stream_open(
    thread: SlackStandIn,
) -> None:
    clock = Clock()
    # chat.stopStream is refused (429) until the pacer gives up and posts the answer anew.
    thread.fail_until("chat.stopStream", until="chat.postMessage", status=429, retry_after=1)
    sink = make_sink(thread, clock)
    reply = pacer_for(sink, clock, final_wait=5.0).deliver(
        iter(events(["Half ", "an answer, ", "then the rest."]))
    )

    assert reply.complete
    first, anew = bot_messages(thread)
    assert thread.stream_state("C1", first["ts"]) == "stopped"  # stopped at close
    assert anew["blocks"][0]["text"].startswith("Half an answer, then the rest.")
    assert LATE_NOTICE in anew["blocks"][0]["text"]
    assert streaming_left(thread) == []


def test_a_final_slack_refuses_for_good_leaves_no_stream_open(thread: SlackStandIn) -> None:
    clock = Clock()
    thread.fail_next("chat.stopStream", error="ekm_access_denied")
    reply = pacer_for(make_sink(thread, clock), clock).deliver(iter(events(["One ", "answer."])))

    assert reply.error == "slack_ekm_access_denied"
    (message,) = bot_messages(thread)
    assert thread.stream_state("C1", message["ts"]) == "stopped"
    stops = thread.calls_to("chat.stopStream")
    assert [c.ok for c in stops] == [False, True]  # the close's one, unbudgeted try


# -- a start whose answer was lost --------------------------------------------------------------


def test_a_lost_start_answer_never_makes_a_second_stream(thread: SlackStandIn) -> None:
    clock = Clock()
    thread.drop_answer("chat.startStream")  # Slack creates the stream; the answer never comes
    support = RefusalMemory()
    reply = pacer_for(make_sink(thread, clock, support=support), clock).deliver(
        iter(events(["A first line. ", "And the rest of it."]))
    )

    assert reply.complete
    assert len(thread.calls_to("chat.startStream")) == 1  # neither the SDK nor the sink retried
    (message,) = bot_messages(thread)  # the lost stream was found and became the answer
    assert thread.stream_state("C1", message["ts"]) == "stopped"
    assert message["blocks"][0]["text"] == "A first line. And the rest of it."
    assert has_feedback(message)
    assert reply.message_id == message["ts"]
    assert thread.calls_to("chat.postMessage") == []
    assert support.allowed("T1")  # a broken connection says nothing about streaming


def test_an_ambiguous_start_error_adopts_no_earlier_answer(thread: SlackStandIn) -> None:
    clock = Clock()
    earlier = pacer_for(make_sink(thread, clock), clock).deliver(iter(events(["Earlier."])))
    assert earlier.complete
    thread.clear_calls()

    thread.fail_next("chat.startStream", error="fatal_error")  # nothing was created
    reply = pacer_for(make_sink(thread, clock), clock).deliver(iter(events(["A new ", "answer."])))

    assert reply.complete
    assert thread.calls_to("conversations.replies")  # it looked for a lost stream
    first, second = bot_messages(thread)
    assert first["text"] == "Earlier." and first["ts"] == earlier.message_id
    assert second["blocks"][0]["text"] == "A new answer."
    assert len(thread.calls_to("chat.startStream")) == 1
    assert streaming_left(thread) == []


# -- budgets and recipients -----------------------------------------------------------------------


def test_appends_spent_leave_the_stop_its_own_tier(thread: SlackStandIn) -> None:
    """Appends (Tier 4) and stops (Tier 2) are counted apart, as Slack counts them: appends
    that ran out of room never hold back the stop, which was kept room when admitted."""
    clock = Clock()
    sink = make_sink(thread, clock, appends_per_minute=1)
    ref = sink.post(PLACEHOLDER)
    sink.update(ref, "First")  # chat.startStream shows it (a post, not a stream call)
    sink.update(ref, "First and more")  # the append scope's only slot
    with pytest.raises(BudgetSpent):
        sink.update(ref, "First and more, all")  # optional, and no room left for it
    sink.finish(ref, "First and more, all.", Reply("First and more, all."))
    sink.close()
    assert len(thread.calls_to("chat.appendStream")) == 1
    (stop,) = thread.calls_to("chat.stopStream")
    assert stop.params["markdown_text"] == ", all."  # the rest, with the stop
    (message,) = bot_messages(thread)
    assert message["text"] == "First and more, all."
    assert thread.stream_state("C1", message["ts"]) == "stopped"


def test_the_stream_goes_to_the_askers_own_team(thread: SlackStandIn) -> None:
    clock = Clock()
    sink = make_sink(thread, clock, team="T-GUEST")
    sink.update(sink.post(PLACEHOLDER), "Hello")
    (start,) = thread.calls_to("chat.startStream")
    assert (start.params["recipient_team_id"], start.params["recipient_user_id"]) == (
        "T-GUEST",
        "U1",
    )


# -- the stand-in's limits ----------------------------------------------------------------------


def test_the_standin_limits_a_streamed_message_to_12000_characters(
    thread: SlackStandIn,
) -> None:
    client = WebClient(token=thread.bot_token, base_url=thread.api_url)
    start = client.chat_startStream(
        channel="C1",
        thread_ts=THREAD,
        markdown_text="a" * 6000,
        recipient_team_id="T1",
        recipient_user_id="U1",
    )
    client.chat_appendStream(channel="C1", ts=start["ts"], markdown_text="b" * 5000)
    with pytest.raises(SlackApiError) as refused:
        client.chat_appendStream(channel="C1", ts=start["ts"], markdown_text="c" * 1001)
    assert refused.value.response["error"] == "msg_too_long"
    with pytest.raises(SlackApiError) as refused:
        client.chat_stopStream(channel="C1", ts=start["ts"], markdown_text="d" * 1001)
    assert refused.value.response["error"] == "msg_too_long"
    client.chat_stopStream(channel="C1", ts=start["ts"], markdown_text="d" * 1000)
    (message,) = bot_messages(thread)
    assert len(message["text"]) == 12_000


def good_feedback_block() -> dict[str, Any]:
    button = {"text": {"type": "plain_text", "text": "Good"}, "value": "v"}
    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": FEEDBACK_ACTION_ID,
                "positive_button": button,
                "negative_button": {**button, "value": "w"},
            }
        ],
    }


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b["elements"][0].update(type="feedback_button"),
        lambda b: b["elements"][0].pop("negative_button"),
        lambda b: b["elements"][0]["positive_button"].update(text="Good"),
        lambda b: b["elements"][0]["positive_button"]["text"].update(type="mrkdwn"),
        lambda b: b["elements"][0]["negative_button"].pop("value"),
        lambda b: b["elements"][0].update(action_id="x" * 256),
        lambda b: b.update(elements=[]),
    ],
)
@pytest.mark.parametrize("method", ["chat.postMessage", "chat.update", "chat.stopStream"])
def test_the_standin_checks_the_shape_of_feedback_buttons(
    thread: SlackStandIn, method: str, damage: Any
) -> None:
    client = WebClient(token=thread.bot_token, base_url=thread.api_url)
    text = [{"type": "markdown", "text": "An answer."}]

    def send(blocks: list[dict[str, Any]]) -> Any:
        if method == "chat.postMessage":
            return client.chat_postMessage(channel="C1", thread_ts=THREAD, text="x", blocks=blocks)
        if method == "chat.update":
            posted = client.chat_postMessage(channel="C1", thread_ts=THREAD, text="x", blocks=text)
            return client.chat_update(channel="C1", ts=posted["ts"], text="x", blocks=blocks)
        start = client.chat_startStream(
            channel="C1",
            thread_ts=THREAD,
            markdown_text="An answer.",
            recipient_team_id="T1",
            recipient_user_id="U1",
        )
        return client.chat_stopStream(channel="C1", ts=start["ts"], blocks=blocks)

    extra = [] if method == "chat.stopStream" else text
    assert send([*extra, good_feedback_block()])["ok"]
    bad = good_feedback_block()
    damage(bad)
    with pytest.raises(SlackApiError) as refused:
        send([*extra, bad])
    assert refused.value.response["error"] == "invalid_blocks"
