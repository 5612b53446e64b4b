"""The Slack sink's own rules: the shared per-workspace edit budget and Slack error mapping."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient

from bots.slack.sink import EditBudget, SlackReplySink, message_blocks, sources_line
from core.domain import Reply, SourceCitation
from core.errors import MessageTooLong, RateLimited, SinkError
from tests.standins.slack import SlackStandIn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_allows_a_burst_then_paces_to_the_per_minute_rate() -> None:
    clock = Clock()
    budget = EditBudget(45, clock=clock)
    assert [budget.take("T1") for _ in range(10)] == [0.0] * 10  # a short burst
    wait = budget.take("T1")
    assert wait == pytest.approx(60 / 45, rel=1e-6)  # then one edit per 1.33 s
    clock.now += wait
    assert budget.take("T1") == 0.0
    assert budget.take("T2") == 0.0  # each workspace has its own budget


def test_budget_over_a_minute_never_exceeds_the_rate_plus_the_burst() -> None:
    clock = Clock()
    budget = EditBudget(45, clock=clock)
    granted = 0
    for _ in range(6000):  # try every 10 ms for a minute
        if budget.take("T1") == 0.0:
            granted += 1
        clock.now += 0.01
    assert granted <= 45 + 10


def sink(standin: SlackStandIn, budget: EditBudget | None = None) -> SlackReplySink:
    client = WebClient(token=standin.bot_token, base_url=standin.api_url)
    return SlackReplySink(
        client, channel="C1", thread_ts=None, workspace="T1", budget=budget or EditBudget(600)
    )


def test_a_spent_budget_defers_the_edit_without_calling_slack(slack_standin: SlackStandIn) -> None:
    clock = Clock()
    s = sink(slack_standin, EditBudget(1, clock=clock))
    ref = s.post("placeholder")
    s.update(ref, "first edit")  # the single token
    with pytest.raises(RateLimited) as caught:
        s.update(ref, "second edit")
    assert caught.value.retry_after == pytest.approx(60.0)
    assert len(slack_standin.calls_to("chat.update")) == 1


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
    s = SlackReplySink(client, channel="C1", thread_ts=None, workspace="T1", budget=EditBudget(60))
    with pytest.raises(RateLimited) as caught:
        s.post("hello")
    assert caught.value.retry_after == 1.0
