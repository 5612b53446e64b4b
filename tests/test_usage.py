"""What an answer cost: the pacer's delivery counts, the one usage log line, the observer."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey, Role, Turn
from core.errors import BudgetSpent, RateLimited
from core.history.sqlite import SqliteHistoryStore
from core.models.base import InferenceSettings, ModelEvent, StreamEnd, TextDelta
from core.pacer import ReplyPacer
from core.prompt import Prompt
from core.summarize import Excerpt, Summarizer, SummaryRequest
from core.usage import AnswerUsage, ReplyStats, TokenUsage
from tests.fakes import RecordingSink, ScriptedModel, timed_stream

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")
QUESTION = "What is the secret launch codename?"
ANSWER = ("The codename ", "is BLUEBIRD.")
USAGE = {
    "inputTokens": 120,
    "outputTokens": 9,
    "totalTokens": 2429,
    "cacheReadInputTokens": 2000,
    "cacheWriteInputTokens": 300,
}


class Recorder:
    """A UsageObserver that keeps what it was told."""

    def __init__(self) -> None:
        self.usages: list[AnswerUsage] = []

    def record(self, usage: AnswerUsage) -> None:
        self.usages.append(usage)


class Broken:
    def record(self, usage: AnswerUsage) -> None:
        raise RuntimeError("the metrics backend is down")


@pytest.fixture
def usage_lines() -> Iterator[list[logging.LogRecord]]:
    """Records written by core.usage (the usage line's logger), whatever the host configured."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    target = logging.getLogger("core.usage")
    handler, level = Keep(), target.level
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield records
    finally:
        target.removeHandler(handler)
        target.setLevel(level)


def slow_answer(prompt: Prompt) -> Iterator[ModelEvent]:
    time.sleep(0.05)  # the model thinks before its first token
    yield TextDelta(ANSWER[0])
    time.sleep(0.02)
    yield TextDelta(ANSWER[1])
    yield StreamEnd(usage=dict(USAGE))


def make(tmp_path: Path, model: ScriptedModel, observer: object = None) -> Assistant:
    return Assistant(
        settings=Settings(data_dir=tmp_path, edit_interval_seconds=0.01),
        history=SqliteHistoryStore(tmp_path / "h.sqlite3"),
        model=model,
        usage_observer=observer,  # type: ignore[arg-type]
    )


def ask(assistant: Assistant, sink: RecordingSink, turn_id: str = "1") -> object:
    turn = Turn(KEY, turn_id, Role.USER, "U1", QUESTION, user_name="Ada", created_at=time.time())
    return assistant.answer(turn, sink)


# -- the pacer counts what delivery took ---------------------------------------------------------


def test_pacer_counts_posts_edits_platform_429s_and_budget_waits() -> None:
    def fail(op: str, attempt: int) -> Exception | None:
        if op == "update" and attempt == 1:
            return RateLimited(0.01, "chat.update 429")  # the platform refused
        if op == "update" and attempt == 2:
            return BudgetSpent(0.01, "our own budget")  # no call was made
        return None

    sink = RecordingSink(fail=fail)
    stats = ReplyStats()
    pacer = ReplyPacer(sink, interval=0.01)
    reply = pacer.deliver(timed_stream(["a"] * 12, delay=0.02), stats=stats)

    assert reply.complete and sink.messages["m0"] == "a" * 12
    ops = sink.ops()
    assert ops.count("update!") == 2  # the two refusals really happened
    assert stats.platform_throttles == 1 and stats.budget_waits == 1
    assert stats.posts == ops.count("post") == 1
    assert stats.edits == ops.count("update") + ops.count("finish")
    assert stats.edits >= 3  # some edits went through after the refusals, and the final


def test_a_one_shot_message_is_counted_too() -> None:
    sink = RecordingSink()
    stats = ReplyStats()
    ReplyPacer(sink, interval=0.01).deliver_message("Nothing to do.", stats=stats)
    assert (stats.posts, stats.edits, stats.platform_throttles) == (1, 1, 0)


# -- one log line per answer, and the observer -----------------------------------------------------


def test_an_answer_writes_one_usage_line_with_tokens_and_times_and_no_text(
    tmp_path: Path, usage_lines: list[logging.LogRecord]
) -> None:
    recorder = Recorder()
    sink = RecordingSink()
    reply = ask(make(tmp_path, ScriptedModel(slow_answer), recorder), sink)

    assert getattr(reply, "complete", False)
    (line,) = [r for r in usage_lines if r.getMessage() == "answered"]
    fields = line.__dict__
    assert (
        fields["input_tokens"],
        fields["output_tokens"],
        fields["cache_read_tokens"],
        fields["cache_write_tokens"],
    ) == (120, 9, 2000, 300)
    assert fields["model_id"] == "scripted"  # no provider id: the model's name
    assert fields["usage_kind"] == "answer" and fields["model_calls"] == 1
    assert fields["complete"] is True and fields["cause"] == "ok"
    assert fields["time_to_first_token_ms"] >= 50  # the model's silence is in it
    assert fields["time_to_final_ms"] >= fields["time_to_first_token_ms"]
    ops = sink.ops()
    assert fields["edits"] == ops.count("update") + ops.count("finish") >= 1
    assert fields["posts"] == 1 and fields["platform_429s"] == 0
    assert fields["chars"] == len("".join(ANSWER))
    # No text of the question or of the answer anywhere on the line.
    logged = " ".join(str(v) for v in fields.values())
    for secret in ("codename", "BLUEBIRD", QUESTION):
        assert secret not in logged

    (usage,) = recorder.usages
    assert usage.tokens == TokenUsage(input=120, output=9, cache_read=2000, cache_write=300)
    assert usage.tokens.total_input == 2420
    assert usage.time_to_first_token is not None and usage.time_to_first_token >= 0.05
    assert usage.delivery.edits == fields["edits"]


def test_a_failing_observer_never_affects_the_answer(
    tmp_path: Path, usage_lines: list[logging.LogRecord]
) -> None:
    store_path = tmp_path / "h.sqlite3"
    sink = RecordingSink()
    reply = ask(make(tmp_path, ScriptedModel(slow_answer), Broken()), sink)

    assert getattr(reply, "complete", False) and getattr(reply, "error", "x") == ""
    assert sink.messages["m0"] == "".join(ANSWER)
    turns = SqliteHistoryStore(store_path).recent_turns(KEY, 10)
    assert [t.role for t in turns] == [Role.USER, Role.ASSISTANT]
    assert any(r.getMessage().startswith("usage observer failed") for r in usage_lines)
    assert any(r.getMessage() == "answered" for r in usage_lines)  # the line is still written


def test_a_failed_answer_reports_its_cause_and_no_first_token(
    tmp_path: Path, usage_lines: list[logging.LogRecord]
) -> None:
    from core.errors import ModelThrottled

    def throttled(prompt: Prompt) -> Iterator[ModelEvent]:
        raise ModelThrottled("ThrottlingException (HTTP 429): slow down")
        yield  # pragma: no cover - a generator

    recorder = Recorder()
    ask(make(tmp_path, ScriptedModel(throttled), recorder), RecordingSink())
    (usage,) = recorder.usages
    assert (usage.complete, usage.cause) == (False, "model_throttled")
    assert usage.time_to_first_token is None and usage.tokens == TokenUsage()
    (line,) = [r for r in usage_lines if r.getMessage() == "answered"]
    assert line.__dict__["time_to_first_token_ms"] is None


def test_a_summary_reports_the_tokens_of_all_its_model_calls(
    usage_lines: list[logging.LogRecord],
) -> None:
    def respond(prompt: Prompt) -> Iterator[ModelEvent]:
        yield TextDelta("A short summary.")
        yield StreamEnd(usage={"inputTokens": 1000, "outputTokens": 10})

    model = ScriptedModel(respond)
    recorder = Recorder()
    summarizer = Summarizer(
        model,
        part_tokens=3000,
        concurrency=2,
        inference=InferenceSettings(max_tokens=400),
        edit_interval=0.01,
        usage_observer=recorder,
    )
    excerpts = tuple(Excerpt("word " * 2000, f"page {n}") for n in range(1, 7))
    summarizer.summarize(SummaryRequest("plan.pdf", "document", excerpts), RecordingSink())

    calls = len(model.prompts)
    assert calls > 1  # map-reduce: several calls, one usage
    (usage,) = recorder.usages
    assert usage.kind == "summary" and usage.model_calls == calls
    assert usage.tokens == TokenUsage(input=1000 * calls, output=10 * calls)
    (line,) = [r for r in usage_lines if r.getMessage() == "summarized"]
    assert line.__dict__["input_tokens"] == 1000 * calls
    assert "word" not in " ".join(str(v) for v in line.__dict__.values() if v != line.msg)
