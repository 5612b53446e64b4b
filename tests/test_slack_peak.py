"""Many answers at once in one workspace, through the real Slack adapter on the local host,
against a Slack stand-in that enforces Slack's rate tiers (chat.update about 50 a minute per
workspace, chat.postMessage about one a second per channel) and answers 429 over them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.models.base import ModelEvent
from core.pacer import PLACEHOLDER
from core.prompt import Prompt
from tests import slack_requests as sr
from tests.fakes import timed_stream
from tests.standins.slack import SlackStandIn
from tests.test_slack import Harness, build_harness

WORDS = 30


def answer_for(question: str) -> str:
    return f"Answer to {question}:" + "".join(f" w{i}" for i in range(WORDS))


def streamed_answer(prompt: Prompt) -> Iterator[ModelEvent]:
    head = f"Answer to {prompt.question}:"
    return timed_stream([head] + [f" w{i}" for i in range(WORDS)], delay=0.03)


def burst(harness: Harness, requests: list[sr.Request]) -> list[int]:
    statuses: list[int] = [0] * len(requests)
    barrier = threading.Barrier(len(requests))

    def send(i: int) -> None:
        barrier.wait()
        statuses[i] = harness.send(requests[i])[0]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return statuses


@pytest.fixture
def peak(slack_standin: SlackStandIn, tmp_path: Path) -> Iterator[Harness]:
    slack_standin.enforce_rate_limits(update_per_minute=50, post_per_second=1.0, post_burst=3)
    for n in range(10):
        slack_standin.add_channel(f"C{100 + n}", f"team-{n}")
    harness = build_harness(slack_standin, tmp_path, edit_interval_seconds=0.2, local_workers=32)
    harness.answer = streamed_answer
    yield harness
    harness.server.shutdown()
    harness.server.server_close()
    harness.app.close()


def test_twenty_answers_at_once_each_complete_exactly_once_within_slacks_tiers(
    peak: Harness,
) -> None:
    standin = peak.standin
    mentions = [
        sr.app_mention(f"<@UBOT> question {i}", channel=f"C{100 + i % 10}") for i in range(20)
    ]
    statuses = burst(peak, [sr.event_callback(m) for m in mentions])
    assert statuses == [200] * 20
    assert peak.app.queue.join(120), "the answers did not finish"

    for i, mention in enumerate(mentions):
        replies = peak.thread(mention["ts"], channel=mention["channel"])
        assert len(replies) == 1, f"answer {i}: {len(replies)} replies"
        assert replies[0]["blocks"][0]["text"] == answer_for(f"question {i}")
        assert replies[0]["text"] != PLACEHOLDER
    assert sum(standin.rate_limited.values()) == 0  # the budget kept under Slack's tiers
    updates = standin.calls_to("chat.update")
    assert len(updates) <= 50  # one workspace's minute of chat.update, and no more
    first_texts = {c.params["ts"] for c in updates}
    assert len(first_texts) == 20  # every answer was edited, none posted twice


def test_finals_refused_with_retry_after_still_complete(peak: Harness) -> None:
    standin = peak.standin
    standin.fail_next("chat.update", error="ratelimited", status=429, retry_after=1, times=12)
    mentions = [
        sr.app_mention(f"<@UBOT> question {i}", channel=f"C{100 + i % 10}") for i in range(10)
    ]
    statuses = burst(peak, [sr.event_callback(m) for m in mentions])
    assert statuses == [200] * 10
    assert peak.app.queue.join(120), "the answers did not finish"
    assert standin.pending_failures("chat.update") == 0  # every scripted 429 was met
    for i, mention in enumerate(mentions):
        (reply,) = peak.thread(mention["ts"], channel=mention["channel"])
        assert reply["blocks"][0]["text"] == answer_for(f"question {i}")
