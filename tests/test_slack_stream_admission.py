"""Admission of native streams: Slack allows about 20 ``chat.stopStream`` a minute per workspace
(Tier 2), so a reply streams only if its stop fits now beside every open stream's stop and a
``chat.startStream`` is free; any other reply goes the paced way at once, and nothing is
remembered for the workspace. Unit tests drive the sink on a fake clock; the end-to-end test
sends a burst of mentions through the real host to a stand-in enforcing the tiers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bots.slack.sink import SlackLimits
from bots.slack.stream import SlackStreamSink
from core.budget import LocalRateBudget, Priority
from core.domain import ConversationKey, Reply
from core.errors import BudgetSpent
from core.feedback import AnswerRef
from core.pacer import PLACEHOLDER
from core.refusals import RefusalMemory
from tests import slack_requests as sr
from tests.fakes import FakeClock as Clock
from tests.fakes import timed_stream
from tests.standins.slack import SlackStandIn
from tests.test_slack import build_harness
from tests.test_slack_stream import feedback_values

THREAD = "1700000000.000100"


class Workspace:
    """Many replies in workspace T1, each in its own channel (posts are limited per channel),
    sharing one budget on a fake clock and one refusal memory."""

    def __init__(self, standin: SlackStandIn, limits: SlackLimits | None = None) -> None:
        self.standin = standin
        self.clock = Clock()
        self.limits = limits or SlackLimits(LocalRateBudget(clock=self.clock))
        self.support = RefusalMemory()
        self.client = WebClient(token=standin.bot_token, base_url=standin.api_url)
        self.count = 0

    def sink(self) -> tuple[SlackStreamSink, str]:
        channel = f"C{100 + self.count}"
        self.count += 1
        self.standin.add_channel(channel, channel.lower())
        self.standin.add_message(channel, "the question", "U1", ts=THREAD)
        key = ConversationKey("slack", "T1", channel, THREAD)
        sink = SlackStreamSink(
            self.client,
            channel=channel,
            thread_ts=THREAD,
            workspace="T1",
            limits=self.limits,
            support=self.support,
            recipient_user="U1",
            answer=AnswerRef(key, THREAD, "model-x"),
        )
        return sink, channel

    def started(self, channel: str) -> bool:
        return any(
            c.params.get("channel") == channel for c in self.standin.calls_to("chat.startStream")
        )

    def replies(self, channel: str) -> list[dict[str, object]]:
        return [m for m in self.standin.messages(channel, THREAD) if m.get("bot_id")]


def begin(sink: SlackStreamSink, text: str = "First words") -> str:
    ref = sink.post(PLACEHOLDER)
    sink.update(ref, text)
    return ref


def test_twenty_streams_are_admitted_and_the_next_reply_goes_paced(
    slack_standin: SlackStandIn,
) -> None:
    ws = Workspace(slack_standin)
    sinks = [ws.sink() for _ in range(21)]
    refs = [begin(sink) for sink, _ in sinks]

    assert [ws.started(channel) for _, channel in sinks] == [True] * 20 + [False]
    late, late_channel = sinks[20]
    (post,) = slack_standin.calls_to("chat.postMessage")  # its first text, as a message
    assert post.params["channel"] == late_channel and post.params["text"] == "First words"
    late.update(refs[20], "First words and more")
    late.finish(refs[20], "First words and more.", Reply("First words and more."))
    late.close()
    assert [c.params["channel"] for c in slack_standin.calls_to("chat.update")] == [
        late_channel
    ] * 2
    assert ws.support.allowed("T1")  # not admitted is not "no streaming here": nothing remembered

    for (sink, _), ref in zip(sinks[:20], refs[:20], strict=True):
        sink.finish(ref, "First words, all.", Reply("First words, all."))
        sink.close()
    assert len(slack_standin.calls_to("chat.stopStream")) == 20  # every admitted stop went at once
    for _, channel in sinks:
        (reply,) = ws.replies(channel)
        assert str(reply["text"]).startswith("First words") and str(reply["text"]).endswith(".")

    # Twenty stops in the window: the next reply is paced too, until the window slides.
    sink, channel = ws.sink()
    begin(sink)
    assert not ws.started(channel)
    ws.clock.now += 61.0
    sink, channel = ws.sink()
    begin(sink)
    assert ws.started(channel)


def test_a_reply_that_ends_early_frees_its_admission(slack_standin: SlackStandIn) -> None:
    ws = Workspace(slack_standin, SlackLimits(LocalRateBudget(clock=Clock()), stops_per_minute=1))
    first, _ = ws.sink()
    begin(first)
    second, channel = ws.sink()
    begin(second)
    assert not ws.started(channel)  # the one stop of the window is owed to the first stream
    first.close()  # it ended early: stopped outside the budget, its room given back
    third, channel = ws.sink()
    begin(third)
    assert ws.started(channel)


def test_no_free_start_means_paced_without_waiting(slack_standin: SlackStandIn) -> None:
    ws = Workspace(slack_standin, SlackLimits(LocalRateBudget(clock=Clock()), starts_per_minute=1))
    first, _ = ws.sink()
    begin(first)
    second, channel = ws.sink()
    begin(second)  # no BudgetSpent: the start scope is full, so this reply is paced at once
    assert not ws.started(channel)
    assert [c.params["channel"] for c in slack_standin.calls_to("chat.postMessage")] == [channel]
    # Its refused start left no reservation behind: only the first stream's stop is owed.
    stops = ws.limits.stream_stops("T1")
    assert all(ws.limits.budget.admit(stops, f"other-{i}") for i in range(19))
    assert not ws.limits.budget.admit(stops, "one-too-many")


def test_an_admitted_start_waiting_for_its_channel_keeps_its_admission(
    slack_standin: SlackStandIn,
) -> None:
    """A start refused by the channel's post budget waits (the pacer comes back); the admission
    and the start it took are not asked for again."""
    clock = Clock()
    ws = Workspace(slack_standin, SlackLimits(LocalRateBudget(clock=clock), starts_per_minute=1))
    sink, channel = ws.sink()
    posts = ws.limits.posts("T1", channel)
    for _ in range(3):  # three other posts fill the channel's burst
        assert ws.limits.budget.take(posts, "other", Priority.REQUIRED) == 0.0
    ref = sink.post(PLACEHOLDER)
    with pytest.raises(BudgetSpent):
        sink.update(ref, "First words")
    clock.now += 5.0
    sink.update(ref, "First words")  # the only start of the minute was its own already
    assert ws.started(channel)
    sink.finish(ref, "First words.", Reply("First words."))
    (reply,) = ws.replies(channel)
    assert reply["text"] == "First words."


# -- end to end -----------------------------------------------------------------------------------


def test_a_burst_over_the_stop_tier_streams_twenty_and_paces_the_rest(
    slack_standin: SlackStandIn, tmp_path: Path
) -> None:
    standin = slack_standin
    standin.enforce_rate_limits()  # Slack's tiers, chat.stopStream and startStream at 20 a minute
    n = 30
    for c in range(n // 2):  # at most two answers per channel: posts are limited per channel
        standin.add_channel(f"C{200 + c}", f"team-{c}")
    harness = build_harness(
        standin, tmp_path, edit_interval_seconds=0.2, local_workers=n + 2, slack_streaming="auto"
    )
    words = [f" w{i}" for i in range(30)]
    # Long enough (about 2 s) that every answer shows text before it ends.
    harness.answer = lambda p: timed_stream([f"Answer to {p.question}:", *words], delay=0.06)
    mentions = [
        sr.app_mention(f"<@UBOT> question {i}", channel=f"C{200 + i % (n // 2)}") for i in range(n)
    ]
    statuses = [0] * n
    barrier = threading.Barrier(n)

    def send(i: int) -> None:
        barrier.wait()
        statuses[i] = harness.send(sr.event_callback(mentions[i]))[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert statuses == [200] * n
        assert harness.app.queue.join(180), "the answers did not finish"
    finally:
        harness.server.shutdown()
        harness.server.server_close()
        harness.app.close()

    streamed = set()
    for start in standin.calls_to("chat.startStream"):
        assert start.status == 200
        streamed.add((start.params["channel"], start.params["thread_ts"]))
    assert len(streamed) == 20  # one window's worth of stops: admitted, and no more
    for i, mention in enumerate(mentions):
        replies = harness.thread(mention["ts"], channel=mention["channel"])
        assert len(replies) == 1, f"answer {i}: {len(replies)} replies (posted anew?)"
        assert replies[0]["text"] == f"Answer to question {i}:" + "".join(words)
        assert len(feedback_values(replies[0])) == 2
    assert sum(standin.rate_limited.values()) == 0, dict(standin.rate_limited)
    assert len(standin.calls_to("chat.stopStream")) == 20
    posted = {
        (c.params["channel"], c.params["thread_ts"]) for c in standin.calls_to("chat.postMessage")
    }
    assert len(posted) == n - 20 and not posted & streamed  # the rest paced, one message each
    assert len(standin.calls_to("chat.postMessage")) == n - 20


# -- the stand-in's Tier 2 ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["chat.stopStream", "chat.startStream"])
def test_the_standin_limits_stream_starts_and_stops_to_twenty_a_minute(
    slack_standin: SlackStandIn, method: str
) -> None:
    clock = Clock()
    slack_standin.clock = clock
    slack_standin.enforce_rate_limits(post_burst=100, post_per_second=100.0)
    client = WebClient(token=slack_standin.bot_token, base_url=slack_standin.api_url)
    client.retry_handlers = []
    slack_standin.add_message("C1", "the question", "U1", ts=THREAD)

    def call() -> tuple[int, str | None]:
        try:
            if method == "chat.startStream":
                client.chat_startStream(
                    channel="C1",
                    thread_ts=THREAD,
                    markdown_text="hi",
                    recipient_team_id="T1",
                    recipient_user_id="U1",
                )
            else:  # a stop refused as already stopped still counts: it was accepted by the tier
                client.chat_stopStream(channel="C1", ts=THREAD)
        except SlackApiError as exc:
            headers = exc.response.headers
            return exc.response.status_code, headers.get("Retry-After") or headers.get(
                "retry-after"
            )
        return 200, None

    for _ in range(20):
        clock.now += 1.0
        assert call()[0] != 429
    assert call() == (429, "41")  # the first call (at +1 s) leaves the window at +61 s
    assert slack_standin.rate_limited[method] == 1
    clock.now += 40.5
    assert call()[0] == 429  # not yet
    clock.now += 0.5
    assert call()[0] != 429


def test_a_reply_not_admitted_shows_its_text_at_once_and_its_edits_are_optional(
    slack_standin: SlackStandIn,
) -> None:
    """The paced way from a status posts the first text itself: no edit is owed for it, so
    later edits thin out first and the workspace's ``chat.update`` budget goes to finals."""
    clock = Clock()
    limits = SlackLimits(LocalRateBudget(clock=clock), 1, starts_per_minute=1)
    ws = Workspace(slack_standin, limits)
    begin(ws.sink()[0])  # takes the minute's only start
    sink, channel = ws.sink()
    ref = begin(sink)
    assert not ws.started(channel)
    with pytest.raises(BudgetSpent):  # optional: the minute's one edit is owed to the final
        sink.update(ref, "First words and more")
    sink.finish(ref, "First words and more.", Reply("First words and more."))
    (reply,) = ws.replies(channel)
    assert reply["text"] == "First words and more."
    assert len(slack_standin.calls_to("chat.update")) == 1  # the final only
