"""One table of summarize requests, run through both platforms' entry points.

Slack: a signed ``/summarize`` slash command dispatched to the real Bolt app, as Slack sends it;
what it asks for is read from the job it enqueues (or the ephemeral ack that refuses it). Teams:
``TeamsWorker.handle_summarize`` on the job its ingress makes of a ``summarize ...`` message,
with a real knowledge store holding files whose names trip a careless parser (``name.pdf``
next to ``filename.pdf``, ``s.txt`` for ``files``), and stored turns spread over 40 days.

The grammar is core's (``core.summary_request``); what differs is stated per row: the bare
command (Slack: last 24 hours; Teams: everything stored), thread links (Slack only) and the
largest count (Slack 2,000; Teams 1,000 stored turns).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botbuilder.schema import Activity
from slack_bolt import BoltRequest

from bots.slack.ingress import SLACK_SUMMARIZE, build_bolt_app
from bots.slack.summary_args import ThreadRef
from bots.slack.summary_args import usage as slack_usage
from bots.teams.events import from_activity
from bots.teams.ingress import to_job
from bots.teams.sink import TeamsLimits
from bots.teams.worker import (
    SUMMARIZE_USAGE,
    WELCOME,
    TeamsWorker,
    parse_summarize_message,
)
from core.budget import LocalRateBudget
from core.config import Settings
from core.domain import ConversationKey, Role, Turn
from core.jobs import Job
from core.knowledge.base import FileRecord, StoredChunk
from core.knowledge.sqlite import SqliteKnowledgeStore
from core.summarize import SummaryRequest
from core.summary_request import ArgumentError, ChannelCount, ChannelWindow, FileTarget
from core.summary_sources import (
    SummaryUnavailable,
    conversation_excerpts,
    stored_conversation_request,
)
from tests import slack_requests as sr
from tests.standins import teams as tm

HOUR, DAY = 3600.0, 86400.0
NOW = 1_795_000_000.0  # the Teams worker's clock; Slack's ingress reads the real one
TEAMS_URL = "https://smba.trafficmanager.net/amer/"
# Shared in this order; the last is "the latest file".
FILES = (
    "name.pdf",
    "filename.pdf",
    "s.txt",
    "files.txt",
    "Q3 plan.pdf",
    "Budget 2026.csv",
    "latest.md",
)
LATEST = FILES[-1]
# Stored Teams turns, by age: a window keeps the younger ones, a count the newest.
TURN_AGES = (40 * DAY, 20 * DAY, 8 * DAY, 3 * DAY, 30 * HOUR, 2 * HOUR, 0.5 * HOUR)


# --- what a request should come to, on either platform --------------------------------------


@dataclass(frozen=True)
class Window:
    seconds: float
    label: str


@dataclass(frozen=True)
class Count:
    count: int


@dataclass(frozen=True)
class Everything:
    """Everything the bot stored of the conversation (the bare command in Teams)."""


@dataclass(frozen=True)
class File:
    name: str | None  # None: the latest file


@dataclass(frozen=True)
class Thread:
    channel: str
    ts: str


@dataclass(frozen=True)
class Usage:
    """Refused with the platform's usage line; ``says`` is also in the answer."""

    says: str = ""


Outcome = Window | Count | Everything | File | Thread | Usage


@dataclass(frozen=True)
class Case:
    """``text`` after the command; what it comes to in Slack, and in Teams when that differs."""

    text: str
    slack: Outcome
    teams: Outcome | None = None

    @property
    def in_teams(self) -> Outcome:
        return self.slack if self.teams is None else self.teams


LINK = "https://acme.slack.com/archives/C0123ABC/p1700000000000100"

CASES = [
    Case("", Window(DAY, "last 24 hours"), Everything()),
    Case("   ", Window(DAY, "last 24 hours"), Everything()),
    # files: the word "file", then the whole name (spaces kept, may itself start with "file")
    Case("file", File(None)),
    Case("FILE", File(None)),
    Case("file ", File(None)),
    Case("file filename.pdf", File("filename.pdf")),
    Case("file files.txt", File("files.txt")),
    Case("file name.pdf", File("name.pdf")),
    Case("file Q3 plan.pdf", File("Q3 plan.pdf")),
    Case('file: "Q3 plan.pdf"', File("Q3 plan.pdf")),
    # a whole name with a document extension is a file; it is never split after "file"
    Case("filename.pdf", File("filename.pdf")),
    Case("Budget 2026.csv", File("Budget 2026.csv")),
    # counts
    Case("3", Count(3)),
    Case("1,000", Count(1000)),
    Case("2000", Count(2000), Usage("1,000")),
    Case("0", Usage("between 1 and")),
    # windows
    Case("24h", Window(DAY, "last 24 hours")),
    Case("7 days", Window(7 * DAY, "last 7 days")),
    Case("2w", Window(14 * DAY, "last 2 weeks")),
    Case("90d", Window(30 * DAY, "last 30 days")),
    # links: a Slack thread; Teams has none
    Case(LINK, Thread("C0123ABC", "1700000000.000100"), Usage("link")),
    Case("https://example.com/archives/C1/p1700000000000100", Usage("link")),
    # junk
    Case("files", Usage("files")),
    Case("filefoo", Usage("filefoo")),
    Case("last week", Usage("last week")),
    Case("summary.exe", Usage("summary.exe")),
    Case("0d", Usage("longer than zero")),
]


# --- Slack: the slash command through Bolt ----------------------------------------------------


def slack_outcome(text: str, tmp_path: Path) -> Outcome:
    """What ``/summarize <text>`` came to: the target of the job it enqueued, or a refusal."""
    settings = Settings(
        data_dir=tmp_path,
        slack_signing_secret=sr.DEFAULT_SIGNING_SECRET,
        slack_bot_token="xoxb-dummy",
        slack_api_url="http://127.0.0.1:9/api/",  # never called: parsing happens in the ack
    )
    jobs: list[Job] = []
    app = build_bolt_app(settings, jobs.append)
    body, headers = sr.slash_command("/summarize", text=text)
    asked = time.time()
    response = app.dispatch(
        BoltRequest(body=body.decode(), headers={k: [v] for k, v in headers.items()})
    )
    assert response.status == 200
    ack = json.loads(response.body) if response.body else {}
    if not jobs:
        assert ack.get("response_type") == "ephemeral"
        assert slack_usage() in ack["text"], ack
        return Usage(ack["text"])
    (job,) = jobs
    assert job.kind == SLACK_SUMMARIZE and "Summarizing" in ack["text"]
    kind, target = job.payload["target_type"], job.payload["target"]
    if kind == "FileTarget":
        return File(FileTarget(**target).name)
    if kind == "ChannelCount":
        return Count(ChannelCount(**target).count)
    if kind == "ThreadRef":
        thread = ThreadRef(**target)
        return Thread(thread.channel, thread.ts)
    assert kind == "ChannelWindow", kind
    window = ChannelWindow(**target)
    return Window(round((asked - window.oldest) / 60) * 60, window.label)  # to the minute


# --- Teams: the worker's summarize job ------------------------------------------------------


@dataclass
class FakeAssistant:
    turns: list[Turn]
    said: list[str] = field(default_factory=list)

    def conversation(self, key: ConversationKey, limit: int) -> list[Turn]:
        assert limit >= 1
        return [t for t in self.turns if t.key == key][-limit:]

    def notify(self, sink: Any, text: str, **_: Any) -> None:
        self.said.append(text)


@dataclass
class FakeSummarizer:
    requests: list[SummaryRequest] = field(default_factory=list)

    def summarize(self, request: SummaryRequest, sink: Any) -> None:
        self.requests.append(request)


@dataclass(frozen=True)
class Turns:
    """The stored turns a Teams summary covers (by age, oldest first), under its title."""

    ages: tuple[float, ...]
    title: str


def said_ago(age: float) -> str:
    return f"said {age / HOUR:g}h ago"


def teams_outcome(text: str) -> Outcome | Turns:
    event = from_activity(
        Activity().deserialize(tm.personal_message(f"summarize {text}", service_url=TEAMS_URL))
    )
    assert event.turn is not None
    key = event.turn.key
    store = SqliteKnowledgeStore(":memory:")
    for i, name in enumerate(FILES):
        chunk = StoredChunk(key.scope, f"F{i}", name, 0, "page 1", f"The text of {name}.")
        store.put_file(FileRecord(key.scope, f"F{i}", name, f"h{i}", 1, name, NOW + i), [chunk])
    turns = [
        Turn(key, f"t{i}", Role.USER, "U1", said_ago(age), NOW - age, (), "Ada")
        for i, age in enumerate(TURN_AGES)
    ]
    assistant, summarizer = FakeAssistant(turns), FakeSummarizer()
    worker = TeamsWorker(
        assistant,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]  # the connector: nothing is sent in this test
        TeamsLimits(LocalRateBudget()),
        summarizer=summarizer,  # type: ignore[arg-type]
        knowledge=store,
        clock=lambda: NOW,
    )
    worker.handle_summarize(to_job(event))

    if not summarizer.requests:
        (said,) = assistant.said
        assert SUMMARIZE_USAGE in said, said
        return Usage(said)
    (request,) = summarizer.requests
    assert assistant.said == []
    if request.kind == "document":
        return File(None if request.title == LATEST else request.title)
    covered = [e.text for e in request.excerpts]
    ages = tuple(age for age in TURN_AGES if said_ago(age) in covered)
    assert len(ages) == len(covered), covered
    return Turns(ages, request.title)


def teams_turns(expected: Window | Count | Everything) -> Turns:
    """The turns an expected outcome covers in Teams, and its title."""
    base = "this conversation (the messages I have seen)"
    if isinstance(expected, Everything):
        return Turns(TURN_AGES, base)
    if isinstance(expected, Count):
        label = "last message" if expected.count == 1 else f"last {expected.count:,} messages"
        return Turns(TURN_AGES[-expected.count :], f"{base}, {label}")
    kept = tuple(a for a in TURN_AGES if a <= expected.seconds)
    return Turns(kept, f"{base}, {expected.label}")


# --- the table, on both ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[repr(c.text) for c in CASES])
def test_slack_slash_command(case: Case, tmp_path: Path) -> None:
    outcome = slack_outcome(case.text, tmp_path)
    expected = case.slack
    if isinstance(expected, Usage):
        assert isinstance(outcome, Usage), outcome
        assert expected.says.lower() in outcome.says.lower()
    else:
        assert outcome == expected


@pytest.mark.parametrize("case", CASES, ids=[repr(c.text) for c in CASES])
def test_teams_summarize_message(case: Case) -> None:
    outcome = teams_outcome(case.text)
    expected = case.in_teams
    if isinstance(expected, Usage):
        assert isinstance(outcome, Usage), outcome
        assert expected.says.lower() in outcome.says.lower()
    elif isinstance(expected, Window | Count | Everything):
        assert outcome == teams_turns(expected)
    else:
        assert outcome == expected


# --- around the table -----------------------------------------------------------------------


def test_the_teams_welcome_offers_only_forms_that_work() -> None:
    assert "coming soon" not in WELCOME.lower()
    offered = re.findall(r"`([^`]+)`", WELCOME)
    assert "summarize" in offered and "summarize file" in offered
    assert "forget me" in offered  # the other command the welcome offers (tests/test_forget.py)
    for form in (f for f in offered if f != "forget me"):
        text = form if form.startswith("summarize") else f"summarize {form}"
        text = text.replace("<name>", "plan.pdf")
        assert not isinstance(parse_summarize_message(text, now=NOW), ArgumentError), form


def turn(n: int, *, role: Role = Role.USER, name: str = "Ada", at: float = NOW) -> Turn:
    key = ConversationKey("teams", "T", "C", "C")
    return Turn(key, f"t{n}", role, "U1", f"message {n}", at, (), name)


def test_conversation_excerpts_name_who_and_when() -> None:
    turns = [turn(1), turn(2, role=Role.ASSISTANT, name=""), turn(3, name=""), turn(4)]
    turns[3] = Turn(turns[3].key, "t4", Role.USER, "U1", "   ", NOW, (), "Ada")  # blank: skipped
    excerpts = conversation_excerpts(turns)
    assert [(e.text, e.label) for e in excerpts] == [
        ("message 1", "Ada, 2026-11-18 11:06 UTC"),
        ("message 2", "assistant, 2026-11-18 11:06 UTC"),
        ("message 3", "U1, 2026-11-18 11:06 UTC"),
    ]


def recent(turns: list[Turn]) -> Callable[[int], list[Turn]]:
    return lambda limit: turns[-limit:]


def test_the_stored_turn_limit_keeps_the_newest_and_says_so() -> None:
    turns = [turn(i, at=NOW - (20 - i) * 60) for i in range(20)]
    everything = stored_conversation_request(
        recent(turns), ChannelCount(10, ""), max_turns=10, title="this chat"
    )
    assert [e.text for e in everything.excerpts] == [f"message {i}" for i in range(10, 20)]
    assert everything.title == "this chat" and "latest 10 messages" in everything.limit_note
    asked = stored_conversation_request(
        recent(turns), ChannelCount(5, "last 5 messages"), max_turns=10, title="this chat"
    )
    assert len(asked.excerpts) == 5 and asked.limit_note == ""  # what was asked for, no note
    assert asked.title == "this chat, last 5 messages"
    window = stored_conversation_request(
        recent(turns), ChannelWindow(NOW - DAY, "last 24 hours"), max_turns=10, title="this chat"
    )
    assert len(window.excerpts) == 10 and "limit: 10 messages" in window.limit_note


def test_a_capped_or_empty_window_over_stored_turns_is_explained() -> None:
    target = parse_summarize_message("summarize 90d", now=NOW)
    assert isinstance(target, ChannelWindow) and target.note
    request = stored_conversation_request(
        recent([turn(1, at=NOW - 40 * DAY), turn(2)]), target, max_turns=10, title="this chat"
    )
    assert [e.text for e in request.excerpts] == ["message 2"]
    assert "90d" in request.limit_note and "30 days" in request.limit_note
    with pytest.raises(SummaryUnavailable) as refused:
        stored_conversation_request(
            recent([turn(1, at=NOW - 3 * DAY)]),
            ChannelWindow(NOW - DAY, "last 24 hours"),
            max_turns=10,
            title="this chat",
        )
    assert "nothing in this conversation from the last 24 hours" in refused.value.message
