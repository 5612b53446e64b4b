"""Daily quotas: both backends (SQLite, DynamoDB under moto) pass the same tests, and the
assistant refuses a question past a limit with no model call, and answers when the quota store
is down.

moto applies an ``UpdateItem`` without holding a lock, so two threads can both pass its
condition; DynamoDB applies each ``UpdateItem`` atomically. The racing tests therefore serialise
moto's ``update_item`` (``atomic_moto``), as the service does, and test that our code relies on
nothing more than that guarantee.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey, Role, Turn
from core.errors import StoreError
from core.history.sqlite import SqliteHistoryStore
from core.models.base import StreamEnd, TextDelta
from core.quota.base import (
    COUNTER_DAYS,
    DAY_SECONDS,
    QuotaLimits,
    QuotaStore,
    user_key,
    workspace_key,
)
from core.quota.dynamodb import DynamoDbQuotaStore, create_table
from core.quota.sqlite import SqliteQuotaStore
from core.runtime import build_quota
from tests.fakes import RecordingSink, ScriptedModel, timed_stream

TABLE = "chatbot-quota-test"
REGION = "us-east-1"
START = 1_764_504_000.0  # 2025-11-30 12:00:00 UTC
DAY = "2025-11-30"


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client, TABLE)
        yield client


@pytest.fixture
def atomic_moto(aws: Any) -> Iterator[None]:
    """Each moto ``UpdateItem`` applied whole, as DynamoDB applies it."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()
    original = DynamoDBBackend.update_item

    def update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoDBBackend.update_item = original  # type: ignore[method-assign]


StoreFactory = Callable[..., QuotaStore]


@pytest.fixture(params=["sqlite", "dynamodb"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[StoreFactory]:
    """Builds stores of one backend over the same counters (one file, one table): each call is
    another process's store."""
    stores: list[QuotaStore] = []
    if request.param == "dynamodb":
        request.getfixturevalue("atomic_moto")

    def factory(limits: QuotaLimits) -> QuotaStore:
        store: QuotaStore
        if request.param == "sqlite":
            store = SqliteQuotaStore(tmp_path / "quota.sqlite3", limits, clock=clock)
        else:
            store = DynamoDbQuotaStore(TABLE, limits, region=REGION, clock=clock)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.close()


# --------------------------------------------------------------------------- the contract


def test_the_nth_question_is_allowed_and_the_next_refused_per_person(
    make_store: StoreFactory,
) -> None:
    store = make_store(QuotaLimits(questions_per_user=3))
    assert [store.admit("slack", "T1", "U1") for _ in range(3)] == [None, None, None]
    refused = store.admit("slack", "T1", "U1")
    assert refused is not None
    assert (refused.scope, refused.unit, refused.limit) == ("user", "questions", 3)
    assert refused.message == (
        "You've reached today's limit of 3 questions; it resets at 00:00 UTC (in 12 h)."
    )
    assert store.used(user_key("slack", "T1", "U1"), DAY).questions == 3  # refusal not counted
    # Another person, and the same person in another workspace, have their own counters.
    assert store.admit("slack", "T1", "U2") is None
    assert store.admit("slack", "T2", "U1") is None
    assert store.admit("teams", "T1", "U1") is None


def test_the_workspace_limit_counts_everyone_and_gives_back_the_persons_question(
    make_store: StoreFactory,
) -> None:
    store = make_store(QuotaLimits(questions_per_user=5, questions_per_workspace=2))
    assert store.admit("slack", "T1", "U1") is None
    assert store.admit("slack", "T1", "U2") is None
    refused = store.admit("slack", "T1", "U3")
    assert refused is not None and (refused.scope, refused.limit) == ("workspace", 2)
    assert refused.message.startswith("This workspace has reached today's limit of 2 questions;")
    # U3's question was refused: nothing of it stays counted, for them or the workspace.
    assert store.used(user_key("slack", "T1", "U3"), DAY).questions == 0
    assert store.used(workspace_key("slack", "T1"), DAY).questions == 2
    assert store.admit("slack", "T2", "U3") is None  # another workspace


def test_tokens_are_added_and_refuse_the_next_question_at_the_limit(
    make_store: StoreFactory,
) -> None:
    store = make_store(QuotaLimits(tokens_per_user=1000, tokens_per_workspace=5000))
    assert store.admit("slack", "T1", "U1") is None
    store.add_tokens("slack", "T1", "U1", 999)
    assert store.admit("slack", "T1", "U1") is None  # 999 < 1000: still allowed
    store.add_tokens("slack", "T1", "U1", 400)  # the answer that crosses it is not cut short
    refused = store.admit("slack", "T1", "U1")
    assert refused is not None and (refused.scope, refused.unit) == ("user", "tokens")
    assert "limit of 1,000 tokens" in refused.message
    assert store.used(user_key("slack", "T1", "U1"), DAY).tokens == 1399
    assert store.used(workspace_key("slack", "T1"), DAY).tokens == 1399
    assert store.admit("slack", "T1", "U2") is None  # the workspace still has room


def test_a_new_utc_day_starts_again(make_store: StoreFactory, clock: FakeClock) -> None:
    store = make_store(QuotaLimits(questions_per_user=1))
    clock.now = START + 11 * 3600 + 59 * 60 + 30  # 23:59:30
    assert store.admit("slack", "T1", "U1") is None
    refused = store.admit("slack", "T1", "U1")
    assert refused is not None and "(in less than a minute)" in refused.message
    clock.now = START + 12 * 3600  # 00:00 the next day
    assert store.admit("slack", "T1", "U1") is None


def test_erasing_a_person_removes_every_day_of_theirs_and_nothing_else(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = make_store(QuotaLimits(questions_per_user=9, questions_per_workspace=9))
    store.admit("slack", "T1", "U1")
    store.admit("slack", "T1", "U2")
    store.admit("slack", "T2", "U1")
    clock.now += DAY_SECONDS
    store.admit("slack", "T1", "U1")

    assert store.erase_user("slack", "T1", "U1") == 2  # two days of U1 in T1
    assert store.erase_user("slack", "T1", "U1") == 0
    assert store.used(user_key("slack", "T1", "U1"), DAY) == store.used("nobody", DAY)
    assert store.used(user_key("slack", "T1", "U2"), DAY).questions == 1
    assert store.used(user_key("slack", "T2", "U1"), DAY).questions == 1
    assert store.used(workspace_key("slack", "T1"), DAY).questions == 2


def test_no_limits_means_no_counters(make_store: StoreFactory) -> None:
    store = make_store(QuotaLimits())
    assert store.admit("slack", "T1", "U1") is None
    store.add_tokens("slack", "T1", "U1", 50)
    assert store.used(user_key("slack", "T1", "U1"), DAY).questions == 0


@pytest.mark.parametrize("scope", ["user", "workspace"])
def test_two_stores_racing_never_count_past_the_limit(make_store: StoreFactory, scope: str) -> None:
    """Two processes' stores over one file (or one table), eight threads each, 80 questions
    for a limit of 25: exactly 25 get through, and the counters say 25."""
    limit = 25
    limits = (
        QuotaLimits(questions_per_user=limit)
        if scope == "user"
        else QuotaLimits(questions_per_user=1000, questions_per_workspace=limit)
    )
    stores = [make_store(limits), make_store(limits)]
    start = threading.Barrier(16)

    def ask(i: int) -> bool:
        if i < 16:
            start.wait()
        user = "U1" if scope == "user" else f"U{i % 7}"
        return stores[i % 2].admit("slack", "T1", user) is None

    with ThreadPoolExecutor(max_workers=16) as pool:
        admitted = sum(pool.map(ask, range(80)))

    assert admitted == limit
    key = user_key("slack", "T1", "U1") if scope == "user" else workspace_key("slack", "T1")
    assert stores[0].used(key, DAY).questions == limit
    if scope == "workspace":
        people = sum(
            stores[1].used(user_key("slack", "T1", f"U{n}"), DAY).questions for n in range(7)
        )
        assert people == limit  # every refused question was given back


def test_dynamodb_counters_carry_their_ttl(aws: Any, clock: FakeClock) -> None:
    store = DynamoDbQuotaStore(TABLE, QuotaLimits(questions_per_user=2), region=REGION, clock=clock)
    store.admit("slack", "T1", "U1")
    item = aws.get_item(
        TableName=TABLE, Key={"pk": {"S": user_key("slack", "T1", "U1")}, "sk": {"S": DAY}}
    )["Item"]
    day_start = START - 12 * 3600
    assert int(item["expires_at"]["N"]) == day_start + COUNTER_DAYS * DAY_SECONDS
    ttl = aws.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_sqlite_deletes_expired_counters(tmp_path: Path, clock: FakeClock) -> None:
    store = SqliteQuotaStore(tmp_path / "q.sqlite3", QuotaLimits(questions_per_user=2), clock=clock)
    store.admit("slack", "T1", "U1")
    clock.now += COUNTER_DAYS * DAY_SECONDS
    store.admit("slack", "T1", "U2")  # counting purges what has expired
    assert store.used(user_key("slack", "T1", "U1"), DAY).questions == 0
    store.close()


def test_a_missing_table_is_a_store_error(aws: Any) -> None:
    store = DynamoDbQuotaStore("no-such-table", QuotaLimits(questions_per_user=1), region=REGION)
    with pytest.raises(StoreError, match="ResourceNotFoundException"):
        store.admit("slack", "T1", "U1")


def test_build_quota_follows_the_settings(tmp_path: Path) -> None:
    assert build_quota(Settings(data_dir=tmp_path)) is None  # no limit: nothing is counted
    sqlite = build_quota(Settings(data_dir=tmp_path, quota_tokens_per_workspace=10))
    assert isinstance(sqlite, SqliteQuotaStore)
    assert sqlite.limits == QuotaLimits(tokens_per_workspace=10)
    assert (tmp_path / "quota.sqlite3").exists()
    dynamo = build_quota(Settings(store="dynamodb", quota_questions_per_user=3, quota_table="q"))
    assert isinstance(dynamo, DynamoDbQuotaStore)


@pytest.mark.parametrize(
    "name",
    [
        "CHATBOT_QUOTA_QUESTIONS_PER_USER",
        "CHATBOT_QUOTA_QUESTIONS_PER_WORKSPACE",
        "CHATBOT_QUOTA_TOKENS_PER_USER",
        "CHATBOT_QUOTA_TOKENS_PER_WORKSPACE",
    ],
)
def test_a_negative_limit_is_refused_naming_the_setting(name: str) -> None:
    from core.config import ConfigError

    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "-1"})
    assert Settings.from_env({name: "7"}).redacted()[name] == 7


# --------------------------------------------------------------------------- the assistant

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")


def question(text: str, turn_id: str, user: str = "U1") -> Turn:
    return Turn(key=KEY, turn_id=turn_id, role=Role.USER, user_id=user, text=text)


def answering_model(usage: dict[str, int] | None = None) -> ScriptedModel:
    def make(prompt: Any) -> Iterator[Any]:
        yield TextDelta(f"About {prompt.question}")
        yield StreamEnd(usage=dict(usage or {}))

    return ScriptedModel(make)


def assistant_with(tmp_path: Path, quota: QuotaStore | None, model: ScriptedModel) -> Assistant:
    return Assistant(
        settings=Settings(data_dir=tmp_path, edit_interval_seconds=0.01),
        history=SqliteHistoryStore(tmp_path / "h.sqlite3"),
        model=model,
        quota=quota,
    )


def test_question_n_is_answered_and_n_plus_one_refused_without_a_model_call(
    tmp_path: Path, clock: FakeClock
) -> None:
    quota = SqliteQuotaStore(tmp_path / "q.sqlite3", QuotaLimits(questions_per_user=2), clock=clock)
    model = answering_model()
    assistant = assistant_with(tmp_path, quota, model)
    for n in (1, 2):
        assert assistant.answer(question(f"q{n}", str(n)), RecordingSink()).complete
    sink = RecordingSink()
    reply = assistant.answer(question("q3", "3"), sink)

    assert len(model.prompts) == 2  # the third never reached the model
    assert (reply.complete, reply.error) == (False, "quota_exceeded")
    assert reply.text == (
        "You've reached today's limit of 2 questions; it resets at 00:00 UTC (in 12 h)."
    )
    assert sink.visible_text() == reply.text  # one message, no placeholder left behind
    # Someone else in the workspace is still answered.
    assert assistant.answer(question("q4", "4", user="U2"), RecordingSink()).complete
    assert len(model.prompts) == 3


def test_the_workspace_limit_refuses_everyone_once_reached(
    tmp_path: Path, clock: FakeClock
) -> None:
    quota = SqliteQuotaStore(
        tmp_path / "q.sqlite3", QuotaLimits(questions_per_workspace=2), clock=clock
    )
    model = answering_model()
    assistant = assistant_with(tmp_path, quota, model)
    assistant.answer(question("a", "1", user="U1"), RecordingSink())
    assistant.answer(question("b", "2", user="U2"), RecordingSink())
    reply = assistant.answer(question("c", "3", user="U3"), RecordingSink())
    assert reply.error == "quota_exceeded" and reply.text.startswith("This workspace has reached")
    assert len(model.prompts) == 2


def test_the_answers_tokens_count_and_refuse_once_the_limit_is_reached(
    tmp_path: Path, clock: FakeClock
) -> None:
    quota = SqliteQuotaStore(tmp_path / "q.sqlite3", QuotaLimits(tokens_per_user=1000), clock=clock)
    usage = {
        "inputTokens": 300,
        "outputTokens": 150,
        "cacheReadInputTokens": 100,
        "cacheWriteInputTokens": 50,
    }
    model = answering_model(usage)
    assistant = assistant_with(tmp_path, quota, model)
    assistant.answer(question("a", "1"), RecordingSink())
    assert quota.used(user_key("slack", "T1", "U1"), DAY).tokens == 600
    assistant.answer(question("b", "2"), RecordingSink())  # 600 < 1000: answered
    reply = assistant.answer(question("c", "3"), RecordingSink())  # 1200 >= 1000
    assert reply.error == "quota_exceeded" and "1,000 tokens" in reply.text
    assert len(model.prompts) == 2


class BrokenQuota(QuotaStore):
    def __init__(self, error: Exception) -> None:
        super().__init__(QuotaLimits(questions_per_user=1))
        self.error = error

    def used(self, key: str, day: str) -> Any:
        raise self.error

    def _count_question(self, *args: Any) -> Any:
        raise self.error

    def _uncount_question(self, *args: Any) -> None:
        raise self.error

    def _add_tokens(self, *args: Any) -> None:
        raise self.error

    def _erase(self, key: str) -> int:
        raise self.error


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        (
            StoreError("DynamoDB UpdateItem failed with ProvisionedThroughputExceededException"),
            "quota unavailable",
        ),
        (RuntimeError("a bug"), "quota check raised unexpectedly"),
    ],
)
def test_a_quota_store_that_fails_lets_the_answer_through_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, error: Exception, logged: str
) -> None:
    model = ScriptedModel(
        lambda p: timed_stream(["answered"])  # StreamEnd without usage
    )
    assistant = assistant_with(tmp_path, BrokenQuota(error), model)
    with caplog.at_level(logging.WARNING, logger="core.assistant"):
        for n in range(3):  # over the limit of 1, had the store worked
            reply = assistant.answer(question("q", str(n)), RecordingSink())
            assert reply.complete and reply.text == "answered"
    assert len(model.prompts) == 3
    assert sum(r.getMessage().startswith(logged) for r in caplog.records) == 3


def test_forget_erases_history_and_counters_and_says_so(tmp_path: Path, clock: FakeClock) -> None:
    quota = SqliteQuotaStore(tmp_path / "q.sqlite3", QuotaLimits(questions_per_user=5), clock=clock)
    assistant = assistant_with(tmp_path, quota, answering_model())
    assistant.answer(question("a", "1"), RecordingSink())
    assistant.answer(question("b", "2"), RecordingSink())
    assistant.answer(question("c", "3", user="U2"), RecordingSink())

    forgotten = assistant.forget("slack", "T1", "U1")
    # Two questions and two answers, and the two reply records: six; one daily counter.
    assert (forgotten.records, forgotten.counters) == (6, 1)
    assert forgotten.message.startswith(
        "I've forgotten what I stored about you in this workspace: 6 records of your messages"
    )
    assert [t.user_id for t in assistant.conversation(KEY, 10)] == ["U2", "U2"]
    assert quota.used(user_key("slack", "T1", "U2"), DAY).questions == 1

    again = assistant.forget("slack", "T1", "U1")
    assert (again.records, again.counters) == (0, 0)
    assert again.message == "I had nothing stored about you in this workspace."
