"""/summarize and the "Summarize thread" shortcut, through the real Bolt handlers, the queue and
worker, Slack history read from the stand-in with pagination, and the map-reduce summarizer."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.models.base import ModelEvent
from core.prompt import Prompt
from tests import files_factory as ff
from tests import slack_requests as sr
from tests.fakes import timed_stream
from tests.standins.slack import SlackStandIn
from tests.test_slack import Harness, build_harness
from tests.test_slack_files import share


def summarize_or_answer(prompt: Prompt) -> Iterator[ModelEvent]:
    if prompt.task == "summarize":
        seen = sorted({w for m in prompt.messages for w in m.text.split() if w.startswith("MARK-")})
        return timed_stream(["## Summary\n", f"Covered {len(seen)} marked messages."])
    return timed_stream(["an answer"])


@pytest.fixture
def slack(slack_standin: SlackStandIn, tmp_path: Path) -> Iterator[Harness]:
    slack_standin.add_user("U2", "Grace Hopper", "grace")
    harness = build_harness(slack_standin, tmp_path, summary_part_tokens=1000)
    harness.answer = summarize_or_answer
    yield harness
    harness.server.shutdown()
    harness.server.server_close()
    harness.app.close()


def seed(
    standin: SlackStandIn, count: int, *, channel: str = "C1", ago: float = 3600, prefix: str = ""
) -> list[str]:
    """``count`` messages from two people over the last ``ago`` seconds, each with a marker."""
    base = time.time() - ago
    stamps = []
    for i in range(count):
        ts = sr.micros_to_ts(int((base + i * ago / (count + 1)) * 1_000_000))
        user = "U1" if i % 2 else "U2"
        stamps.append(
            standin.add_message(channel, f"MARK-{prefix}{i:04d} note {i} <@U1>", user, ts=ts)
        )
    return stamps


def command(slack: Harness, text: str, channel: str = "C1") -> dict:  # type: ignore[type-arg]
    response_url = slack.standin.response_url(channel)
    request = sr.slash_command("/summarize", text=text, channel=channel, response_url=response_url)
    status, body = slack.send(request)
    assert status == 200
    slack.settle()
    return json.loads(body) if body else {}


def summary_prompts(slack: Harness) -> list[Prompt]:
    return [p for p in slack.model.prompts if p.task == "summarize"]


def markers(prompts: list[Prompt]) -> set[str]:
    return {w for p in prompts for m in p.messages for w in m.text.split() if w.startswith("MARK-")}


def top_level_bot_messages(slack: Harness, channel: str = "C1") -> list[dict]:  # type: ignore[type-arg]
    return [m for m in slack.standin.messages(channel) if m.get("bot_id")]


def test_summarize_a_busy_channel_covers_every_message_across_pages_and_rounds(
    slack: Harness,
) -> None:
    seed(slack.standin, 450)
    ack = command(slack, "")
    assert ack["response_type"] == "ephemeral" and "Summarizing" in ack["text"]

    history_calls = slack.standin.calls_to("conversations.history")
    assert len(history_calls) >= 3  # read page by page with the cursor
    prompts = summary_prompts(slack)
    assert len(prompts) > 3  # map-reduce: several parts, then a combine
    assert markers(prompts) >= {f"MARK-{i:04d}" for i in range(450)}  # every message reached it
    (summary,) = top_level_bot_messages(slack)
    assert summary["blocks"][0]["text"].startswith("## Summary")
    # Names resolved once per person, not once per message.
    assert slack.standin.users_info_count("U1") <= 1 and slack.standin.users_info_count("U2") <= 1
    labels = " ".join(m.text for p in prompts for m in p.messages)
    assert "grace, " in labels and "@ada" in labels  # display names, resolved from user ids


def test_summarize_respects_the_window_and_the_count(slack: Harness) -> None:
    old = seed(slack.standin, 5, ago=3 * 86400, prefix="old")  # over the last three days
    seed(slack.standin, 5, ago=3600)
    command(slack, "3")  # first: later summaries are channel messages too
    assert markers(summary_prompts(slack)) == {"MARK-0002", "MARK-0003", "MARK-0004"}
    slack.model.prompts.clear()
    command(slack, "")  # default: last 24 hours (the newest old one is exactly a day old)
    assert len(markers(summary_prompts(slack))) == 5
    slack.model.prompts.clear()
    command(slack, "7d")
    assert len(markers(summary_prompts(slack))) == 10
    assert old  # seeded


def test_summarize_a_thread_by_link_and_by_shortcut_posts_in_the_thread(slack: Harness) -> None:
    root = slack.standin.add_message("C1", "MARK-root planning thread", "U1")
    for i in range(4):
        slack.standin.add_message("C1", f"MARK-r{i} reply", "U2", thread_ts=root)
    link = f"https://standin.slack.com/archives/C1/p{root.replace('.', '')}"
    command(slack, link)
    in_thread = [m for m in slack.standin.messages("C1", root) if m.get("bot_id")]
    assert len(in_thread) == 1 and markers(summary_prompts(slack)) == {
        "MARK-root",
        "MARK-r0",
        "MARK-r1",
        "MARK-r2",
        "MARK-r3",
    }

    message = {
        "type": "message",
        "user": "U2",
        "text": "reply",
        "ts": sr.new_ts(),
        "thread_ts": root,
    }
    status, _ = slack.send(sr.message_shortcut(message=message))
    assert status == 200
    slack.settle()
    assert len([m for m in slack.standin.messages("C1", root) if m.get("bot_id")]) == 2


def test_summarize_a_shared_file(slack: Harness) -> None:
    pages = [f"MARK-p{i} page {i} text." for i in range(6)]
    share(slack, "F1", "plan.pdf", ff.make_pdf(pages), "application/pdf")
    slack.model.prompts.clear()
    command(slack, "file")
    assert markers(summary_prompts(slack)) == {f"MARK-p{i}" for i in range(6)}
    slack.model.prompts.clear()
    command(slack, "file plan.pdf")
    assert len(summary_prompts(slack)) >= 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("yesterday-ish", "summarize"), ("0", "summarize"), ("file nope.pdf", "nope.pdf")],
)
def test_bad_arguments_and_unknown_files_get_a_clear_private_answer(
    slack: Harness, text: str, expected: str
) -> None:
    ack = command(slack, text)
    private = [m["text"] for m in slack.standin.ephemeral_messages("C1")]
    said = (ack.get("text", "") + " ".join(private)).lower()
    assert expected.lower() in said
    assert top_level_bot_messages(slack) == []
    assert summary_prompts(slack) == []


def test_empty_channel_not_a_member_and_foreign_thread_links(slack: Harness) -> None:
    command(slack, "")  # nothing in the last 24 hours
    slack.standin.add_channel("C9", "private-stuff", member=False)
    command(slack, "", channel="C9")
    command(slack, "https://other.slack.com/archives/C77/p1700000000000100")
    private = [m["text"] for m in slack.standin.ephemeral_messages()]
    assert len(private) == 3
    assert "no messages" in private[0].lower()
    assert "invite" in private[1].lower()
    assert "can't see" in private[2].lower() or "another workspace" in private[2].lower()
    assert summary_prompts(slack) == []


def test_rate_limited_history_reads_are_explained(slack: Harness) -> None:
    seed(slack.standin, 3)
    slack.standin.fail_next(
        "conversations.history", status=429, error="ratelimited", retry_after=1, times=3
    )
    command(slack, "")
    private = [m["text"] for m in slack.standin.ephemeral_messages("C1")]
    assert private and "rate" in private[0].lower()


def test_a_thread_link_into_a_private_channel_needs_the_asker_to_be_a_member(
    slack: Harness,
) -> None:
    slack.standin.add_channel("G5", "secret-project")
    root = slack.standin.add_message("G5", "MARK-secret launch plan", "U1")
    slack.standin.add_message("G5", "MARK-secret2 details", "U1", thread_ts=root)
    slack.standin.on(
        "conversations.info", lambda p: {"channel": {"id": p["channel"], "is_private": True}}
    )
    slack.standin.on("conversations.members", lambda p: {"members": ["U1", "UBOT"]})
    link = f"https://standin.slack.com/archives/G5/p{root.replace('.', '')}"

    outsider = sr.slash_command(
        "/summarize", text=link, user="U2", response_url=slack.standin.response_url("C1")
    )
    slack.send(outsider)
    slack.settle()
    (refusal,) = slack.standin.ephemeral_messages("C1")
    assert "can't see" in refusal["text"]
    assert summary_prompts(slack) == [] and not [
        m for m in slack.standin.messages("G5", root) if m.get("bot_id")
    ]

    member = sr.slash_command(
        "/summarize", text=link, user="U1", response_url=slack.standin.response_url("C1")
    )
    slack.send(member)
    slack.settle()
    assert markers(summary_prompts(slack)) == {"MARK-secret", "MARK-secret2"}
    assert len([m for m in slack.standin.messages("G5", root) if m.get("bot_id")]) == 1
