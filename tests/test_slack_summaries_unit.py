"""The ``/summarize`` path's Slack modules (``summary_args``, ``history_reader``,
``history_api``, ``user_names``, ``markup``): command parsing, history reads against the Slack
stand-in through the real ``slack_sdk.WebClient``, display names, errors, and shared files as
excerpts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk import WebClient

from bots.slack.history_api import RATE_LIMITED
from bots.slack.history_reader import HistoryResult, SlackHistory
from bots.slack.summary_args import ThreadRef, parse_summarize_args, thread_of_message
from bots.slack.user_names import UserNames
from core.files.chunking import split_text
from core.knowledge.base import FileRecord, StoredChunk
from core.knowledge.sqlite import SqliteKnowledgeStore
from core.pacer import PLACEHOLDER
from core.summary_request import ArgumentError, ChannelCount, ChannelWindow, FileTarget
from core.summary_sources import SummaryUnavailable, file_by_name, file_excerpts, latest_file
from tests.slack_requests import micros_to_ts
from tests.standins.slack import SlackStandIn

NOW = 1_795_000_000.0  # 2026-11-18
DAY = 86400.0

# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ChannelWindow(NOW - DAY, "last 24 hours")),
        ("   ", ChannelWindow(NOW - DAY, "last 24 hours")),
        ("24h", ChannelWindow(NOW - DAY, "last 24 hours")),
        ("7d", ChannelWindow(NOW - 7 * DAY, "last 7 days")),
        ("7D", ChannelWindow(NOW - 7 * DAY, "last 7 days")),
        ("7 days", ChannelWindow(NOW - 7 * DAY, "last 7 days")),
        ("90m", ChannelWindow(NOW - 90 * 60, "last 90 minutes")),
        ("1h", ChannelWindow(NOW - 3600, "last hour")),
        ("2w", ChannelWindow(NOW - 14 * DAY, "last 2 weeks")),
        ("30d", ChannelWindow(NOW - 30 * DAY, "last 30 days")),
        ("200", ChannelCount(200, "last 200 messages")),
        ("1", ChannelCount(1, "last message")),
        ("2000", ChannelCount(2000, "last 2,000 messages")),
        ("1,000", ChannelCount(1000, "last 1,000 messages")),
        (
            "https://acme.slack.com/archives/C0123ABC/p1700000000000100",
            ThreadRef("C0123ABC", "1700000000.000100"),
        ),
        (
            "https://acme.slack.com/archives/C0123ABC/p1700000000000200"
            "?thread_ts=1700000000.000100&cid=C0123ABC",
            ThreadRef("C0123ABC", "1700000000.000100"),
        ),
        (
            "<https://acme.slack.com/archives/C0123ABC/p1700000000000200"
            "?thread_ts=1700000000.000100&amp;cid=C0123ABC>",
            ThreadRef("C0123ABC", "1700000000.000100"),
        ),
        (
            "<https://acme.enterprise.slack.com/archives/G01/p1700000000000100|the thread>",
            ThreadRef("G01", "1700000000.000100"),
        ),
        ("file", FileTarget(None)),
        ("FILE", FileTarget(None)),
        ("file plan.pdf", FileTarget("plan.pdf")),
        ("file: Q3 plan", FileTarget("Q3 plan")),
        ('file "Q3 Plan.PDF"', FileTarget("Q3 Plan.PDF")),
        ("notes.md", FileTarget("notes.md")),
        ("Budget 2026.csv", FileTarget("Budget 2026.csv")),
        ("page.html", FileTarget("page.html")),
        ("report.docx", FileTarget("report.docx")),
        ("readme.txt", FileTarget("readme.txt")),
    ],
)
def test_accepted_forms(text: str, expected: object) -> None:
    assert parse_summarize_args(text, now=NOW) == expected


def test_a_period_over_30_days_is_capped_and_says_so() -> None:
    target = parse_summarize_args("90d", now=NOW)
    assert isinstance(target, ChannelWindow)
    assert target.oldest == NOW - 30 * DAY and target.label == "last 30 days"
    assert "90d" in target.note and "30 days" in target.note
    assert parse_summarize_args("5w", now=NOW) == ChannelWindow(
        NOW - 30 * DAY, "last 30 days", target.note.replace("90d", "5w")
    )


@pytest.mark.parametrize(
    "text",
    [
        "yesterday-ish",
        "-5",
        "0",
        "99999999",
        "2001",
        "0d",
        "7x",
        "7 fortnights",
        "last week",
        "https://example.com/archives/C1/p1700000000000100",
        "https://acme.slack.com/archives/C1/p170000000000",  # too few digits
        "https://acme.slack.com/files/U1/F1/plan.pdf",
        "<#C1|general>",
        "summary.exe",
        "help",
    ],
)
def test_rejected_forms_get_one_line_listing_what_is_accepted(text: str) -> None:
    result = parse_summarize_args(text, now=NOW)
    assert isinstance(result, ArgumentError), result
    assert "\n" not in result.message
    for form in ("24h", "7d", "thread link", "file", "2,000"):
        assert form in result.message


def test_the_count_bound_follows_the_configured_maximum() -> None:
    assert parse_summarize_args("500", now=NOW, max_count=500) == ChannelCount(
        500, "last 500 messages"
    )
    rejected = parse_summarize_args("501", now=NOW, max_count=500)
    assert isinstance(rejected, ArgumentError) and "500" in rejected.message


def test_a_message_shortcut_names_its_thread() -> None:
    assert thread_of_message("C1", {"ts": "1.000002", "thread_ts": "1.000001"}) == ThreadRef(
        "C1", "1.000001"
    )
    assert thread_of_message("C1", {"ts": "1.000002"}) == ThreadRef("C1", "1.000002")


# --- reading history -----------------------------------------------------------------------


def ts_at(seconds: float, n: int = 0) -> str:
    return micros_to_ts(int(seconds) * 1_000_000 + n)


@pytest.fixture
def client(slack_standin: SlackStandIn) -> WebClient:
    return WebClient(token=slack_standin.bot_token, base_url=slack_standin.api_url)


@pytest.fixture
def names(client: WebClient) -> UserNames:
    return UserNames(client)


def history(client: WebClient, names: UserNames, **kwargs: Any) -> SlackHistory:
    kwargs.setdefault("max_messages", 2000)
    return SlackHistory(client, user_names=names, bot_name="chatbot", **kwargs)


def texts(result: HistoryResult) -> list[str]:
    return [e.text for e in result.excerpts]


def test_a_window_is_read_across_pages_in_chronological_order(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_user("U2", "Grace Hopper", "grace")
    start = time.time() - DAY + 600
    for i in range(20):  # before the window
        slack_standin.add_message("C1", f"old {i}", ts=ts_at(start - 2 * DAY + i))
    for i in range(450):
        user = "U1" if i % 2 == 0 else "U2"
        slack_standin.add_message("C1", f"msg {i}", user=user, ts=ts_at(start + i * 100, i))

    result = history(client, names).channel_window("C1", time.time() - DAY, label="last 24 hours")

    assert texts(result) == [f"msg {i}" for i in range(450)]
    assert result.limit_note == ""
    assert result.oldest_ts == ts_at(start, 0) and result.newest_ts == ts_at(start + 44900, 449)
    calls = slack_standin.calls_to("conversations.history")
    assert len(calls) == 3
    assert all(c.params["limit"] == "200" for c in calls)
    assert "cursor" not in calls[0].params and calls[1].params["cursor"]
    assert result.excerpts[0].label.startswith("ada, ")  # profile.display_name is preferred
    assert result.excerpts[1].label.startswith("grace, ")
    assert result.excerpts[0].label.endswith(" UTC")
    assert slack_standin.users_info_count("U1") == 1
    assert slack_standin.users_info_count("U2") == 1


def test_labels_carry_the_time(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_message("C1", "hello", ts="1795000440.000100")
    result = history(client, names).channel_count("C1", 5)
    assert [e.label for e in result.excerpts] == ["ada, 2026-11-18 11:14 UTC"]
    request = result.request("#general, last 5 messages")
    assert request.kind == "conversation" and request.excerpts == result.excerpts


def test_the_last_n_messages_skip_joins_and_placeholders_and_name_bots(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_message("C1", "first")
    slack_standin.add_message("C1", "second")
    slack_standin.add_message("C1", "<@U1> has joined the channel", subtype="channel_join")
    slack_standin.add_message("C1", "third")
    slack_standin.add_message("C1", PLACEHOLDER, user="UBOT", bot_id="BBOT")
    posted = client.chat_postMessage(channel="C1", text="Deploy finished")  # has bot_profile
    slack_standin.add_message("C1", "set the topic", subtype="channel_topic")

    result = history(client, names).channel_count("C1", 3)

    assert texts(result) == ["second", "third", "Deploy finished"]
    assert result.excerpts[-1].label.startswith("chatbot, ")
    assert result.newest_ts == posted["ts"]
    assert result.limit_note == ""


def test_a_channel_summary_includes_thread_replies_after_their_parent(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    root = slack_standin.add_message("C1", "incident: api down")
    slack_standin.add_message("C1", "unrelated")
    slack_standin.add_message("C1", "looking", thread_ts=root)
    slack_standin.add_message("C1", "fixed", thread_ts=root)

    result = history(client, names).channel_count("C1", 10)

    assert texts(result) == ["incident: api down", "looking", "fixed", "unrelated"]
    assert result.excerpts[1].label.endswith("(thread reply)")
    assert not result.excerpts[3].label.endswith("(thread reply)")
    assert result.limit_note == ""


def test_replies_are_left_out_when_turned_off(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    root = slack_standin.add_message("C1", "question")
    slack_standin.add_message("C1", "answer", thread_ts=root)
    result = history(client, names, include_replies=False).channel_count("C1", 10)
    assert texts(result) == ["question"]
    assert slack_standin.calls_to("conversations.replies") == []


def test_a_thread_is_read_across_pages_with_the_parent_once(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.replies_parent_on_every_page = True
    root = slack_standin.add_message("C1", "root")
    for i in range(450):
        slack_standin.add_message("C1", f"reply {i}", thread_ts=root)

    result = history(client, names).thread("C1", root)

    assert texts(result) == ["root"] + [f"reply {i}" for i in range(450)]
    assert len(slack_standin.calls_to("conversations.replies")) == 3
    assert result.limit_note == "" and result.oldest_ts == root


def test_a_link_to_a_reply_summarizes_its_whole_thread(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    root = slack_standin.add_message("C1", "root")
    reply = slack_standin.add_message("C1", "reply", thread_ts=root)
    target = ThreadRef("C1", reply)
    result = history(client, names).read(target, channel="C9", channel_name="other")
    assert texts(result) == ["root", "reply"]


def test_a_long_thread_is_covered_from_its_start_and_says_so(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    root = slack_standin.add_message("C1", "root")
    for i in range(30):
        slack_standin.add_message("C1", f"reply {i}", thread_ts=root)
    result = history(client, names, max_messages=10).thread("C1", root)
    assert texts(result) == ["root"] + [f"reply {i}" for i in range(9)]
    assert "first 10 messages of this thread" in result.limit_note
    assert "later replies are not included" in result.limit_note


def test_the_message_limit_keeps_the_latest_and_says_what_was_covered(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    start = time.time() - 5 * DAY
    for i in range(250):
        slack_standin.add_message("C1", f"msg {i}", ts=ts_at(start + i * 60, i))
    target = parse_summarize_args("7d", now=time.time())
    assert isinstance(target, ChannelWindow)

    result = history(client, names, max_messages=100).read(
        target, channel="C1", channel_name="general"
    )

    assert texts(result) == [f"msg {i}" for i in range(150, 250)]
    assert result.limit_note.startswith("Covers the latest 100 messages (from ")
    assert "older messages from the last 7 days are not included" in result.limit_note
    assert "limit: 100 messages" in result.limit_note
    assert len(slack_standin.calls_to("conversations.history")) == 1  # no page read in vain


def test_replies_fill_only_what_the_message_limit_leaves(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    old_root = slack_standin.add_message("C1", "old thread")
    for i in range(3):
        slack_standin.add_message("C1", f"old reply {i}", thread_ts=old_root)
    new_root = slack_standin.add_message("C1", "new thread")
    for i in range(4):
        slack_standin.add_message("C1", f"new reply {i}", thread_ts=new_root)

    result = history(client, names, max_messages=5).channel_count("C1", 10)

    assert texts(result) == [
        "old thread",
        "new thread",
        "new reply 0",
        "new reply 1",
        "new reply 2",
    ]
    assert result.limit_note == (
        "Not all thread replies are included (limit: 5 messages): "
        "about 4 replies in 2 threads are left out."
    )


def test_a_count_above_the_limit_is_cut_and_says_so(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    for i in range(5):
        slack_standin.add_message("C1", f"m{i}")
    result = history(client, names, max_messages=3).channel_count("C1", 5)
    assert texts(result) == ["m2", "m3", "m4"]
    assert "You asked for 5 messages" in result.limit_note


def test_mentions_links_and_escapes_are_rewritten(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_user("U2", "Grace Hopper")  # no display name: real name
    slack_standin.add_message(
        "C1",
        "<@U2> see <https://example.com/x?a=1&amp;b=2|the doc> in <#C9|random>, "
        "<https://example.com/raw>, <mailto:a@example.com|a@example.com> <!here> "
        "<!subteam^S1|@eng> &lt;b&gt; R&amp;D <@U404|ghost>",
    )
    (excerpt,) = history(client, names).channel_count("C1", 1).excerpts
    assert excerpt.text == (
        "@Grace Hopper see the doc (https://example.com/x?a=1&b=2) in #random, "
        "https://example.com/raw, a@example.com @here @eng <b> R&D @ghost"
    )


def test_shared_files_are_named_in_the_message(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_file("F1", "plan.pdf", b"%PDF", "application/pdf")
    slack_standin.add_message("C1", "", files=["F1"])
    slack_standin.add_message("C1", "here it is", files=["F1"])
    assert texts(history(client, names).channel_count("C1", 5)) == [
        "[shared plan.pdf]",
        "here it is\n[shared plan.pdf]",
    ]


# --- display names -------------------------------------------------------------------------


def test_names_are_looked_up_once_per_user_and_cached_for_the_ttl(
    slack_standin: SlackStandIn, client: WebClient
) -> None:
    now = [0.0]
    names = UserNames(client, ttl_seconds=3600, clock=lambda: now[0])
    slack_standin.add_user("U2", "Grace Hopper", "grace")
    for i in range(60):
        slack_standin.add_message("C1", f"<@U2> {i}", user="U1" if i % 2 else "U2")
    reader = history(client, names)
    reader.channel_count("C1", 60)
    reader.channel_count("C1", 60)
    assert slack_standin.users_info_count("U1") == 1
    assert slack_standin.users_info_count("U2") == 1

    now[0] = 3601.0
    reader.channel_count("C1", 1)
    assert slack_standin.users_info_count("U2") == 2


def test_a_failing_lookup_falls_back_to_the_id_without_retrying_each_message(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    for i in range(10):
        slack_standin.add_message("C1", f"m{i}", user="UGONE")
    result = history(client, names).channel_count("C1", 10)
    assert all(e.label.startswith("UGONE, ") for e in result.excerpts)
    assert slack_standin.users_info_count("UGONE") == 1

    slack_standin.fail_next("users.info", status=429, retry_after=30)
    assert names.name("U1") == "U1"
    assert names.name("U1") == "U1"
    assert len(slack_standin.calls_to("users.info")) == 2  # UGONE, then U1 once


def test_concurrent_lookups_of_one_user_make_one_call(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.set_latency("users.info", 0.2)
    results: list[str] = []
    workers = [threading.Thread(target=lambda: results.append(names.name("U1"))) for _ in range(5)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert results == ["ada"] * 5
    assert slack_standin.users_info_count("U1") == 1


# --- errors --------------------------------------------------------------------------------


def raises(fn: Callable[[], object]) -> SummaryUnavailable:
    with pytest.raises(SummaryUnavailable) as info:
        fn()
    return info.value


def test_not_in_channel_says_how_to_invite_the_bot(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_channel("C2", "random", member=False)
    error = raises(lambda: history(client, names).channel_count("C2", 5, channel_name="random"))
    assert error.message == "I'm not in #random — invite me with /invite @chatbot and try again."
    assert error.cause == "slack_not_in_channel"
    unnamed = raises(lambda: history(client, names).channel_window("C2", NOW))
    assert unnamed.message.startswith("I'm not in <#C2> — ")


def test_a_thread_in_a_channel_the_bot_cannot_see(client: WebClient, names: UserNames) -> None:
    error = raises(lambda: history(client, names).thread("C404", "1700000000.000100"))
    assert error.message.startswith(
        "That thread is in a channel I can't see, or in another workspace."
    )
    channel = raises(lambda: history(client, names).channel_count("C404", 5))
    assert "private channel" in channel.message and "/invite @chatbot" in channel.message


def test_a_thread_that_does_not_exist(client: WebClient, names: UserNames) -> None:
    error = raises(lambda: history(client, names).thread("C1", "1700000000.000100"))
    assert error.cause == "slack_thread_not_found"
    assert "couldn't find that thread" in error.message


def test_nothing_to_summarize(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    reader = history(client, names)
    empty = raises(lambda: reader.channel_count("C1", 5, channel_name="general"))
    assert empty.message == "There are no messages to summarize in #general."
    slack_standin.add_message("C1", "ancient", ts=ts_at(NOW - 10 * DAY))
    slack_standin.add_message("C1", "joined", subtype="channel_join")
    since = time.time() - DAY
    window = raises(
        lambda: reader.channel_window("C1", since, channel_name="general", label="last 24 hours")
    )
    assert window.message == (
        "There are no messages to summarize in #general from the last 24 hours."
    )
    assert window.cause == "empty"


def test_a_missing_scope_is_named(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.fail_next("conversations.history", error="missing_scope")
    error = raises(lambda: history(client, names).channel_count("C1", 5))
    assert error.cause == "slack_missing_scope" and "permission" in error.message


def test_a_429_is_waited_out_once_then_read(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_message("C1", "hello")
    slack_standin.fail_next("conversations.history", status=429, retry_after=2)
    waits: list[float] = []
    result = history(client, names, sleep=waits.append).channel_count("C1", 5)
    assert texts(result) == ["hello"]
    assert waits == [2.0]
    assert [c.status for c in slack_standin.calls_to("conversations.history")] == [429, 200]


def test_a_real_wait_honours_retry_after(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_message("C1", "hello")
    slack_standin.fail_next("conversations.history", status=429, retry_after=1)
    started = time.monotonic()
    assert texts(history(client, names).channel_count("C1", 5)) == ["hello"]
    assert 1.0 <= time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    ("failure", "waits_expected"),
    [
        ({"status": 429, "retry_after": 60}, []),  # Tier 1: longer than a read may wait
        ({"status": 429, "retry_after": 1, "times": 2}, [1.0]),  # one retry only
        ({"error": "ratelimited", "times": 2}, [1.0]),  # HTTP 200 answer, no Retry-After
    ],
)
def test_rate_limiting_that_persists_is_reported(
    slack_standin: SlackStandIn,
    client: WebClient,
    names: UserNames,
    failure: dict[str, Any],
    waits_expected: list[float],
) -> None:
    slack_standin.add_message("C1", "hello")
    slack_standin.fail_next("conversations.history", **failure)
    waits: list[float] = []
    error = raises(lambda: history(client, names, sleep=waits.append).channel_count("C1", 5))
    assert error.message == RATE_LIMITED and error.cause == "rate_limited"
    assert waits == waits_expected


class SecondPageRateLimited(WebClient):
    """Makes the stand-in answer the second history page (and later replies) with a 429."""

    standin: SlackStandIn
    history_calls = 0

    def conversations_history(self, **kwargs: Any) -> Any:  # type: ignore[override]
        self.history_calls += 1
        if self.history_calls == 2:
            self.standin.fail_next("conversations.history", status=429, retry_after=60)
        return super().conversations_history(**kwargs)


def test_a_read_cut_short_by_the_rate_limit_says_what_it_covers(
    slack_standin: SlackStandIn, names: UserNames
) -> None:
    client = SecondPageRateLimited(token=slack_standin.bot_token, base_url=slack_standin.api_url)
    client.standin = slack_standin
    start = time.time() - DAY / 2
    for i in range(230):
        slack_standin.add_message("C1", f"msg {i}", ts=ts_at(start + i * 60, i))

    result = history(client, names).channel_window(
        "C1", time.time() - DAY, channel_name="general", label="last 24 hours"
    )

    assert texts(result) == [f"msg {i}" for i in range(30, 230)]
    assert result.limit_note.startswith(
        "Slack rate-limited reading #general: this covers only the latest 200 messages (from "
    )
    assert "older messages from the last 24 hours were not read" in result.limit_note

    strict = history(client, names, partial_on_rate_limit=False)
    client.history_calls = 0
    error = raises(lambda: strict.channel_window("C1", time.time() - DAY))
    assert error.message == RATE_LIMITED


def test_rate_limited_replies_are_noted_not_fatal(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    first = slack_standin.add_message("C1", "thread one")
    slack_standin.add_message("C1", "r1", thread_ts=first)
    second = slack_standin.add_message("C1", "thread two")
    slack_standin.add_message("C1", "r2", thread_ts=second)
    slack_standin.add_message("C1", "r3", thread_ts=second)
    slack_standin.fail_next("conversations.replies", status=429, retry_after=60)

    result = history(client, names).channel_count("C1", 10)

    assert texts(result) == ["thread one", "thread two"]
    assert result.limit_note == (
        "Not all thread replies are included (Slack rate-limited reading threads): "
        "about 3 replies in 2 threads are left out."
    )


# --- shared files --------------------------------------------------------------------------

SCOPE = "slack#T1#C1"


def put(store: SqliteKnowledgeStore, file_id: str, name: str, added: float, *pages: str) -> None:
    """Chunked as the indexer does: overlapping windows within each page, never across."""
    chunks: list[StoredChunk] = []
    for number, page in enumerate(pages, start=1):
        for piece in split_text(page, 1200, 200):
            chunks.append(StoredChunk(SCOPE, file_id, name, len(chunks), f"page {number}", piece))
    record = FileRecord(SCOPE, file_id, name, f"h{file_id}", len(chunks), name, added)
    store.put_file(record, chunks)


@pytest.fixture
def store() -> SqliteKnowledgeStore:
    return SqliteKnowledgeStore(":memory:")


def test_files_are_found_latest_exact_or_by_prefix(store: SqliteKnowledgeStore) -> None:
    no_file = raises(lambda: latest_file(store, SCOPE))
    assert no_file.message.startswith("No file has been shared here yet")

    put(store, "F1", "Plan-v1.pdf", 1.0, "one")
    put(store, "F2", "plan-v2.pdf", 2.0, "two")
    put(store, "F3", "notes.md", 3.0, "three")
    put(store, "F4", "plan.pdf", 0.5, "four")

    assert latest_file(store, SCOPE).file_id == "F3"
    assert file_by_name(store, SCOPE, "PLAN.PDF").file_id == "F4"  # exact beats prefix
    assert file_by_name(store, SCOPE, "notes").file_id == "F3"
    assert file_by_name(store, SCOPE, "plan-v2").file_id == "F2"
    ambiguous = raises(lambda: file_by_name(store, SCOPE, "plan-"))
    assert "Plan-v1.pdf" in ambiguous.message and "plan-v2.pdf" in ambiguous.message
    unknown = raises(lambda: file_by_name(store, SCOPE, "budget.csv"))
    assert unknown.message == (
        "No file named budget.csv has been shared here; files I know here: "
        "notes.md, plan-v2.pdf, Plan-v1.pdf, plan.pdf."
    )
    assert raises(lambda: file_by_name(store, "slack#T1#C2", "x.pdf")).cause == "no_file"


def test_file_excerpts_read_the_whole_file_once_with_locations(
    store: SqliteKnowledgeStore,
) -> None:
    words = [f"word{i}" for i in range(2500)]
    sentences = [" ".join(words[i : i + 12]) + "." for i in range(0, len(words), 12)]
    pages = [" ".join(sentences[:120]), " ".join(sentences[120:])]
    text = " ".join(pages)
    put(store, "F1", "long.txt", 1.0, *pages)
    record = latest_file(store, SCOPE)
    chunks = store.file_chunks(SCOPE, "F1")
    assert len(chunks) > 6

    excerpts = file_excerpts(store, record)

    assert [e.label for e in excerpts] == [c.location for c in chunks]
    assert " ".join(e.text for e in excerpts).split() == text.split()  # overlap read once
    assert sum(len(e.text) for e in excerpts) < sum(len(c.text) for c in chunks)


def test_a_capped_period_states_the_cap_in_the_limit_note(
    slack_standin: SlackStandIn, client: WebClient, names: UserNames
) -> None:
    slack_standin.add_message("C1", "recent")
    target = parse_summarize_args("90d", now=time.time())
    assert isinstance(target, ChannelWindow)
    result = history(client, names).read(target, channel="C1", channel_name="general")
    assert texts(result) == ["recent"]
    assert result.limit_note == target.note
