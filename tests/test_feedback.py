"""Feedback on answers, through the core: the answer behind each final message is remembered,
a click is recorded once (a duplicate changes nothing, a changed mind replaces), each effective
click is counted once by the metrics observer, the log names ids and the rating, never text.

Real history stores (SQLite on a file, DynamoDB under moto), a scripted model and a recording
sink; the AWS worker's metrics are checked on the EMF lines Powertools prints.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Metrics
from moto import mock_aws

from bots.aws import metrics as names
from bots.aws.metrics import WorkerMetrics
from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey, Role, Turn
from core.errors import ModelThrottled, StoreError
from core.feedback import AnswerRef, Feedback, Rating
from core.history.base import HistoryStore
from core.history.dynamodb import DynamoDbHistoryStore, create_table
from core.history.sqlite import SqliteHistoryStore
from core.usage import AnswerUsage
from tests.fakes import RecordingSink, ScriptedModel, timed_stream

KEY = ConversationKey("teams", "tenant-1", "19:channel", "1700000000000")
MODEL_ID = "anthropic.claude-test-v1"
QUESTION = "What is the secret launch date of Project Falcon?"
ANSWER_TEXT = "Project Falcon launches on the 3rd of March."
NOW = time.time()


class Observer:
    """A usage observer that also counts feedback, like the AWS worker's metrics."""

    def __init__(self) -> None:
        self.usages: list[AnswerUsage] = []
        self.clicks: list[tuple[Rating, str, str]] = []

    def record(self, usage: AnswerUsage) -> None:
        self.usages.append(usage)

    def feedback(self, rating: Rating, model_id: str, platform: str) -> None:
        self.clicks.append((rating, model_id, platform))


@pytest.fixture(params=["sqlite", "dynamodb"])
def history(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HistoryStore]:
    if request.param == "sqlite":
        store: HistoryStore = SqliteHistoryStore(tmp_path / "history.db")
        yield store
        store.close()
        return
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name="us-east-1"), "history")
        yield DynamoDbHistoryStore("history", region="us-east-1")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, edit_interval_seconds=0.01)


@pytest.fixture
def observer() -> Observer:
    return Observer()


def model(*chunks: str, error: Exception | None = None) -> ScriptedModel:
    scripted = ScriptedModel(lambda p: timed_stream(list(chunks) or [ANSWER_TEXT], error=error))
    scripted.model_id = MODEL_ID
    return scripted


def assistant(
    settings: Settings,
    history: HistoryStore,
    observer: object = None,
    *,
    chat_model: ScriptedModel | None = None,
) -> Assistant:
    return Assistant(
        settings=settings,
        history=history,
        model=chat_model or model(),
        usage_observer=observer,  # type: ignore[arg-type]
    )


def question(turn_id: str = "1700000000001", user: str = "U-ADA") -> Turn:
    return Turn(KEY, turn_id, Role.USER, user, QUESTION, created_at=NOW)


def click(voter: str, rating: Rating, answer_id: str = "1700000000001") -> Feedback:
    return Feedback(AnswerRef(KEY, answer_id, MODEL_ID), voter, rating)


# --- the answer behind a message ----------------------------------------------------------


def test_an_answer_remembers_which_answer_its_final_message_carries(
    settings: Settings, history: HistoryStore
) -> None:
    bot = assistant(settings, history)
    reply = bot.answer(question(), RecordingSink())
    assert reply.complete and reply.message_id == "m0"
    assert bot.answer_for_message(KEY, "m0") == AnswerRef(KEY, "1700000000001", MODEL_ID)
    assert bot.answer_for_message(KEY, "m1") is None


def test_a_split_answer_is_found_from_its_last_message_only(
    settings: Settings, history: HistoryStore
) -> None:
    words = [f"word{i:03d} " for i in range(120)]  # 960 characters over 500-character messages
    bot = assistant(settings, history, chat_model=model(*words))
    sink = RecordingSink(max_chars=500)
    reply = bot.answer(question(), sink)
    last = [c.ref for c in sink.calls if c.op == "post"][-1]
    assert reply.complete and reply.message_id == last != "m0"
    assert bot.answer_for_message(KEY, last) == AnswerRef(KEY, "1700000000001", MODEL_ID)
    assert bot.answer_for_message(KEY, "m0") is None  # the buttons are on the last one only


def test_a_failed_answer_is_not_offered_for_feedback(
    settings: Settings, history: HistoryStore
) -> None:
    bot = assistant(settings, history, chat_model=model("half", error=ModelThrottled("slow")))
    reply = bot.answer(question(), RecordingSink())
    assert not reply.complete and reply.message_id == "m0"
    assert bot.answer_for_message(KEY, "m0") is None


class NoAnswerRecords(SqliteHistoryStore):
    def remember_answer(self, answer: AnswerRef, message_id: str, *, asker: str = "") -> None:
        raise StoreError("table unavailable")

    def answer_for_message(self, key: ConversationKey, message_id: str) -> AnswerRef | None:
        raise StoreError("table unavailable")


def test_an_answer_record_that_cannot_be_written_never_fails_the_answer(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bot = assistant(settings, NoAnswerRecords(tmp_path / "h.db"))
    sink = RecordingSink()
    reply = bot.answer(question(), sink)
    assert reply.complete and sink.messages["m0"] == ANSWER_TEXT
    assert "could not record the answer's message" in caplog.messages
    assert bot.answer_for_message(KEY, "m0") is None  # a store error reads as "unknown"
    assert "answer record unavailable" in caplog.messages


# --- clicks --------------------------------------------------------------------------------


def test_each_effective_click_is_recorded_and_counted_once(
    settings: Settings, history: HistoryStore, observer: Observer
) -> None:
    bot = assistant(settings, history, observer)
    bot.answer(question(), RecordingSink())
    answer = bot.answer_for_message(KEY, "m0")
    assert answer is not None

    assert bot.record_feedback(Feedback(answer, "U-BOB", Rating.GOOD)) is True
    assert observer.clicks == [(Rating.GOOD, MODEL_ID, "teams")]

    # A double click, a redelivered request: nothing changes, nothing is counted.
    assert bot.record_feedback(Feedback(answer, "U-BOB", Rating.GOOD)) is False
    assert bot.record_feedback(Feedback(answer, "U-BOB", Rating.GOOD)) is False
    assert observer.clicks == [(Rating.GOOD, MODEL_ID, "teams")]

    # A changed mind replaces the rating and is counted.
    assert bot.record_feedback(Feedback(answer, "U-BOB", Rating.BAD)) is True
    assert observer.clicks[1:] == [(Rating.BAD, MODEL_ID, "teams")]
    (stored,) = history.feedback_for_answer(KEY, answer.answer_id)
    assert (stored.voter, stored.rating, stored.answer) == ("U-BOB", Rating.BAD, answer)

    # Another person's click on the same answer is theirs.
    assert bot.record_feedback(Feedback(answer, "U-ADA", Rating.GOOD)) is True
    assert len(observer.clicks) == 3
    assert len(history.feedback_for_answer(KEY, answer.answer_id)) == 2


def test_the_log_names_ids_and_the_rating_never_text(
    settings: Settings, history: HistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bot = assistant(settings, history)
    bot.answer(question(), RecordingSink())
    caplog.clear()

    bot.record_feedback(click("U-BOB", Rating.BAD))
    bot.record_feedback(click("U-BOB", Rating.BAD))

    lines = [r for r in caplog.records if r.name.startswith("core")]
    assert [r.getMessage() for r in lines] == [
        "feedback recorded",
        "feedback unchanged (duplicate click)",
    ]
    assert all(r.levelno == logging.INFO for r in lines)
    first = lines[0].__dict__
    assert (first["rating"], first["model_id"], first["voter"]) == ("bad", MODEL_ID, "U-BOB")
    assert (first["answer_id"], first["conversation_id"]) == ("1700000000001", KEY.id)
    for record in lines:
        everything = json.dumps({k: str(v) for k, v in record.__dict__.items()})
        assert "Falcon" not in everything and "launch" not in everything


def test_a_store_failure_loses_the_click_not_the_request(
    settings: Settings, tmp_path: Path, observer: Observer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(SqliteHistoryStore):
        def record_feedback(self, feedback: Feedback, user_of_answer: str | None) -> bool:
            raise StoreError("ProvisionedThroughputExceededException")

    bot = assistant(settings, Broken(tmp_path / "h.db"), observer)
    assert bot.record_feedback(click("U-BOB", Rating.GOOD)) is False
    assert observer.clicks == []
    (warning,) = [r for r in caplog.records if r.getMessage() == "feedback could not be recorded"]
    assert warning.levelno == logging.WARNING and warning.__dict__["cause"] == "store_error"


def test_a_failing_observer_never_affects_the_click(
    settings: Settings, history: HistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(Observer):
        def feedback(self, rating: Rating, model_id: str, platform: str) -> None:
            raise RuntimeError("metrics backend down")

    bot = assistant(settings, history, Failing())
    assert bot.record_feedback(click("U-BOB", Rating.GOOD)) is True
    assert "feedback observer failed; the feedback is recorded" in caplog.messages
    assert len(history.feedback_for_answer(KEY, "1700000000001")) == 1


def test_an_observer_without_a_feedback_method_is_left_alone(
    settings: Settings, history: HistoryStore
) -> None:
    class UsageOnly:
        def record(self, usage: AnswerUsage) -> None:
            pass

    bot = assistant(settings, history, UsageOnly())
    assert bot.record_feedback(click("U-BOB", Rating.GOOD)) is True


def test_forgetting_the_voter_forgets_their_ratings(
    settings: Settings, history: HistoryStore
) -> None:
    bot = assistant(settings, history)
    bot.answer(question(user="U-ADA"), RecordingSink())
    bot.record_feedback(click("U-BOB", Rating.BAD))
    bot.record_feedback(click("U-ADA", Rating.GOOD))

    assert bot.forget("teams", "tenant-1", "U-BOB").records == 1
    assert [f.voter for f in history.feedback_for_answer(KEY, "1700000000001")] == ["U-ADA"]
    # Ada: her question, the answer, the reply record, the answer record and her rating.
    assert bot.forget("teams", "tenant-1", "U-ADA").records == 5
    assert history.feedback_for_answer(KEY, "1700000000001") == []
    assert bot.answer_for_message(KEY, "m0") is None


# --- the AWS worker's metrics --------------------------------------------------------------


def emf_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_the_worker_counts_feedback_overall_and_per_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = WorkerMetrics(Metrics(namespace=names.NAMESPACE, service=names.SERVICE))
    capsys.readouterr()
    metrics.feedback(Rating.GOOD, MODEL_ID, "slack")
    metrics.feedback(Rating.BAD, MODEL_ID, "slack")
    metrics.feedback(Rating.GOOD, "", "teams")  # no model id: counted overall only
    per_model = emf_lines(capsys.readouterr().out)  # written at once, one line per click
    metrics.flush()
    (overall,) = emf_lines(capsys.readouterr().out)

    assert {names.FEEDBACK_POSITIVE, names.FEEDBACK_NEGATIVE} <= names.EMITTED
    (directive,) = overall["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == names.NAMESPACE
    assert directive["Dimensions"] == [["service"]] and overall["service"] == names.SERVICE
    assert overall[names.FEEDBACK_POSITIVE] == [1.0, 1.0]
    assert overall[names.FEEDBACK_NEGATIVE] in ([1.0], 1.0)  # Powertools' single value

    expected = [names.FEEDBACK_POSITIVE, names.FEEDBACK_NEGATIVE]
    for line, name in zip(per_model, expected, strict=True):
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == names.NAMESPACE
        assert directive["Dimensions"] == [["service", names.MODEL_DIMENSION]]
        assert [m["Name"] for m in directive["Metrics"]] == [name]
        assert (line["service"], line[names.MODEL_DIMENSION]) == (names.SERVICE, MODEL_ID)


def test_an_invocation_that_counted_nothing_writes_no_metrics(
    capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    """A batch of jobs that counted nothing (a repeated click, a file removal) writes no empty
    EMF line and raises no Powertools warning in the function's logs."""
    metrics = WorkerMetrics(Metrics(namespace=names.NAMESPACE, service=names.SERVICE))
    capsys.readouterr()
    metrics.flush()
    assert emf_lines(capsys.readouterr().out) == []
    assert not [w for w in recwarn if "metrics" in str(w.message).lower()]
