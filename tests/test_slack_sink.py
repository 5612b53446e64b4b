"""The Slack sink's own rules: the shared per-workspace edit budget and Slack error mapping."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient

from bots.slack.sink import SlackLimits, SlackReplySink, message_blocks, sources_line
from core.budget import LocalRateBudget
from core.domain import Reply, SourceCitation
from core.errors import MessageTooLong, RateLimited, SinkError
from tests.standins.slack import SlackStandIn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(per_minute: int = 600, clock: Clock | None = None) -> SlackLimits:
    return SlackLimits(LocalRateBudget(clock=clock or Clock()), per_minute)


def sink(
    standin: SlackStandIn, budget: SlackLimits | None = None, channel: str = "C1"
) -> SlackReplySink:
    client = WebClient(token=standin.bot_token, base_url=standin.api_url)
    return SlackReplySink(
        client, channel=channel, thread_ts=None, workspace="T1", limits=budget or limits()
    )


def test_edits_count_per_workspace_and_keep_room_for_the_final(
    slack_standin: SlackStandIn,
) -> None:
    slack_standin.add_channel("C2", "random")
    clock = Clock()
    shared = limits(3, clock)
    s = sink(slack_standin, shared)
    ref = s.post("placeholder")
    s.update(ref, "first text")  # the first text may take any free slot
    s.update(ref, "more text")  # leaves one slot: this reply's final
    with pytest.raises(RateLimited) as caught:
        s.update(ref, "even more")  # would take the final's slot
    assert caught.value.retry_after == pytest.approx(61.0)
    s.finish(ref, "the answer", Reply("the answer"))  # the final takes it
    assert [c.params["blocks"][0]["text"] for c in slack_standin.calls_to("chat.update")] == [
        "first text",
        "more text",
        "the answer",
    ]
    other = sink(slack_standin, shared, channel="C2")  # same workspace, other channel
    other_ref = other.post("placeholder")  # posts count per channel: not held up
    with pytest.raises(RateLimited):
        other.finish(other_ref, "late", Reply("late"))  # edits count per workspace
    clock.now += 61.5
    other.finish(other_ref, "late", Reply("late"))


def test_posts_count_per_channel_with_a_short_burst(slack_standin: SlackStandIn) -> None:
    slack_standin.add_channel("C2", "random")
    clock = Clock()
    shared = limits(clock=clock)
    in_c1 = sink(slack_standin, shared)
    for _ in range(3):
        in_c1.post("hello")
    with pytest.raises(RateLimited) as caught:
        in_c1.post("hello")
    assert caught.value.retry_after == pytest.approx(4.0)
    sink(slack_standin, shared, channel="C2").post("hello")  # another channel is not held up
    assert len(slack_standin.calls_to("chat.postMessage")) == 4


def test_a_final_edit_that_repeats_what_is_shown_is_not_sent(slack_standin: SlackStandIn) -> None:
    s = sink(slack_standin)
    ref = s.post("placeholder")
    s.update(ref, "the whole answer")
    s.finish(ref, "the whole answer", Reply("the whole answer"))
    assert len(slack_standin.calls_to("chat.update")) == 1
    sources = (SourceCitation("S1", "runbook.md"),)
    s.finish(ref, "the whole answer", Reply("the whole answer", sources))  # sources: a change
    assert len(slack_standin.calls_to("chat.update")) == 2


@pytest.mark.parametrize(
    ("error", "status", "expected"),
    [
        ("ratelimited", 429, RateLimited),
        ("msg_too_long", 200, MessageTooLong),
        ("channel_not_found", 200, SinkError),
        ("not_in_channel", 200, SinkError),
        ("invalid_auth", 200, SinkError),
    ],
)
def test_slack_errors_map_to_what_the_pacer_understands(
    slack_standin: SlackStandIn, error: str, status: int, expected: type[Exception]
) -> None:
    s = sink(slack_standin)
    slack_standin.fail_next(
        "chat.postMessage", error=error, status=status, retry_after=7 if status == 429 else None
    )
    with pytest.raises(expected) as caught:
        s.post("hello")
    if expected is RateLimited:
        assert caught.value.retry_after == 7  # type: ignore[attr-defined]
    elif expected is SinkError:
        assert caught.value.cause == f"slack_{error}"  # type: ignore[attr-defined]


def test_final_message_carries_sources_with_links_and_escaped_titles(
    slack_standin: SlackStandIn,
) -> None:
    s = sink(slack_standin)
    ref = s.post("placeholder")
    sources = (
        SourceCitation("S1", "Q3 <plan> & notes.pdf", "page 4", "https://files.example/F1"),
        SourceCitation("S2", "runbook.md", "section Deploys"),
    )
    s.finish(ref, "The answer [S1].", Reply("The answer [S1].", sources))
    (message,) = slack_standin.messages("C1")
    assert message["blocks"][0] == {"type": "markdown", "text": "The answer [S1]."}
    context = message["blocks"][1]["elements"][0]["text"]
    assert "<https://files.example/F1|Q3 &lt;plan&gt; &amp; notes.pdf, page 4>" in context
    assert "[S2] runbook.md, section Deploys" in context


def test_blocks_never_send_an_empty_markdown_block() -> None:
    assert message_blocks("", ())[0]["text"].strip() == ""
    assert message_blocks("", ())[0]["text"] != ""
    assert sources_line((SourceCitation("S1", "a"),)) == "*Sources:* [S1] a"


def test_a_network_failure_is_a_short_retry_for_the_pacer_not_a_crash() -> None:
    # Nothing listens on this port: the connection is refused.
    client = WebClient(token="xoxb-test-dummy", base_url="http://127.0.0.1:9/api/", timeout=2)
    s = SlackReplySink(client, channel="C1", thread_ts=None, workspace="T1", limits=limits())
    with pytest.raises(RateLimited) as caught:
        s.post("hello")
    assert caught.value.retry_after == 1.0
