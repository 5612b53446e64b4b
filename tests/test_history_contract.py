"""The history store contract, run against every backend, then each backend's own promises.

DynamoDB runs under moto (``mock_aws``) on a table made by ``create_table``; SQLite runs on a
file in ``tmp_path``. Both get the same fake clock, so expiry is tested without waiting.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from core.domain import ConversationKey, FileRef, Role, Turn
from core.errors import StoreError, TurnAlreadyStored
from core.feedback import AnswerRef, Feedback, Rating
from core.history.base import HistoryStore
from core.history.dynamodb import DynamoDbHistoryStore, create_table, table_definition
from core.history.sqlite import SqliteHistoryStore

DAY = 86_400.0
START = 1_700_000_000.0
TABLE = "chatbot-history-test"
REGION = "us-east-1"

KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_turn(
    turn_id: str,
    created_at: float,
    *,
    key: ConversationKey = KEY,
    role: Role = Role.USER,
    user_id: str = "U1",
    text: str | None = None,
    **extra: Any,
) -> Turn:
    return Turn(
        key=key,
        turn_id=turn_id,
        role=role,
        user_id=user_id,
        text=f"message {turn_id}" if text is None else text,
        created_at=created_at,
        **extra,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def aws() -> Iterator[Any]:
    """A moto DynamoDB with the history table made the way operators make it."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client, TABLE)
        yield client


StoreFactory = Callable[..., HistoryStore]


@pytest.fixture(params=["sqlite", "dynamodb"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[StoreFactory]:
    """Builds stores of one backend over the same data, with the shared fake clock."""
    stores: list[HistoryStore] = []
    if request.param == "sqlite":

        def factory(**kwargs: Any) -> HistoryStore:
            store = SqliteHistoryStore(tmp_path / "history.db", clock=clock, **kwargs)
            stores.append(store)
            return store

        yield factory
    else:
        request.getfixturevalue("aws")

        def factory(**kwargs: Any) -> HistoryStore:
            store = DynamoDbHistoryStore(TABLE, region=REGION, clock=clock, **kwargs)
            stores.append(store)
            return store

        yield factory
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> HistoryStore:
    return make_store()


# --- The contract ---------------------------------------------------------------------------


def test_append_then_read_back_every_field(store: HistoryStore) -> None:
    files = (
        FileRef("F1", "report.pdf", "application/pdf", 123_456, "https://files.example/F1"),
        FileRef("F2", "notes — été.txt"),
    )
    turns = [
        make_turn("1", START - 50.25, user_name="Zoë", files=files, text="Hello 👋 café ☕"),
        make_turn("2", START - 40.5, role=Role.ASSISTANT, text="line one\nline two\n\n• three"),
        make_turn("3", START - 30.125, text="x" * 30_000, user_name="Bob"),
        make_turn("4", START - 20.000001, text="日本語のテキスト 🇯🇵 \t tabs"),
    ]
    for turn in turns:
        store.append_turn(turn)

    assert list(store.recent_turns(KEY, 10)) == turns


def test_order_is_oldest_first_by_created_at_even_when_appended_out_of_order(
    store: HistoryStore,
) -> None:
    for turn_id, created_at in [
        ("c", START - 10),
        ("a", START - 30),
        ("d", START),
        ("b", START - 20),
    ]:
        store.append_turn(make_turn(turn_id, created_at))

    read = store.recent_turns(KEY, 10)

    assert [t.turn_id for t in read] == ["a", "b", "c", "d"]


def test_limit_returns_the_newest_turns(store: HistoryStore) -> None:
    for i in range(10):
        store.append_turn(make_turn(f"t{i}", START - 100 + i))

    assert [t.turn_id for t in store.recent_turns(KEY, 3)] == ["t7", "t8", "t9"]
    assert [t.turn_id for t in store.recent_turns(KEY, 1)] == ["t9"]
    assert len(store.recent_turns(KEY, 50)) == 10
    assert list(store.recent_turns(KEY, 0)) == []


@pytest.mark.parametrize("field", ["platform", "workspace", "channel", "thread"])
def test_conversations_are_isolated(store: HistoryStore, field: str) -> None:
    other = replace(KEY, **{field: getattr(KEY, field) + "-other"})
    store.append_turn(make_turn("mine", START - 2, key=KEY))
    store.append_turn(make_turn("theirs", START - 1, key=other))

    assert [t.turn_id for t in store.recent_turns(KEY, 10)] == ["mine"]
    assert [t.turn_id for t in store.recent_turns(other, 10)] == ["theirs"]
    assert all(t.key == other for t in store.recent_turns(other, 10))


def test_a_redelivered_turn_is_refused_and_the_original_kept(store: HistoryStore) -> None:
    original = make_turn("1700000001.000200", START - 5, text="the original")
    store.append_turn(original)

    with pytest.raises(TurnAlreadyStored):
        store.append_turn(replace(original, text="a redelivery", user_name="someone"))

    assert list(store.recent_turns(KEY, 10)) == [original]


def test_the_same_turn_id_in_another_conversation_is_stored(store: HistoryStore) -> None:
    other = replace(KEY, thread="1700000999.000100")
    store.append_turn(make_turn("same", START - 5, key=KEY, text="here"))
    store.append_turn(make_turn("same", START - 5, key=other, text="there"))

    assert [t.text for t in store.recent_turns(KEY, 10)] == ["here"]
    assert [t.text for t in store.recent_turns(other, 10)] == ["there"]


def test_turns_past_retention_are_not_returned(make_store: StoreFactory, clock: FakeClock) -> None:
    store = make_store(retention_days=30)
    store.append_turn(make_turn("old", START - 10 * DAY))
    store.append_turn(make_turn("new", START))

    clock.advance(20 * DAY - 60)  # "old" is a minute short of 30 days
    assert [t.turn_id for t in store.recent_turns(KEY, 10)] == ["old", "new"]

    clock.advance(120)  # "old" is now a minute past 30 days
    assert [t.turn_id for t in store.recent_turns(KEY, 10)] == ["new"]

    clock.advance(10 * DAY)
    assert list(store.recent_turns(KEY, 10)) == []


def test_delete_user_data_erases_one_person_in_one_workspace(store: HistoryStore) -> None:
    thread2 = replace(KEY, thread="1700000500.000100")
    other_workspace = replace(KEY, workspace="T2")
    other_platform = ConversationKey("teams", "T1", "C1", "reply-chain-1")
    alice = "U-ALICE"
    turns = [
        make_turn("a1", START - 60, user_id=alice),
        make_turn("a1-answer", START - 59, user_id=alice, role=Role.ASSISTANT),
        make_turn("b1", START - 50, user_id="U-BOB"),
        make_turn("b1-answer", START - 49, user_id="U-BOB", role=Role.ASSISTANT),
        make_turn("a2", START - 40, user_id=alice, key=thread2),
        make_turn("a2-answer", START - 39, user_id=alice, role=Role.ASSISTANT, key=thread2),
        make_turn("a3", START - 30, user_id=alice, key=other_workspace),
        make_turn("a4", START - 20, user_id=alice, key=other_platform),
    ]
    for turn in turns:
        store.append_turn(turn)

    deleted = store.delete_user_data("slack", "T1", alice)

    assert deleted == 4
    assert [t.turn_id for t in store.recent_turns(KEY, 10)] == ["b1", "b1-answer"]
    assert list(store.recent_turns(thread2, 10)) == []
    assert [t.turn_id for t in store.recent_turns(other_workspace, 10)] == ["a3"]
    assert [t.turn_id for t in store.recent_turns(other_platform, 10)] == ["a4"]
    assert store.delete_user_data("slack", "T1", alice) == 0


def test_delete_user_data_for_an_unknown_person_deletes_nothing(store: HistoryStore) -> None:
    store.append_turn(make_turn("1", START - 1, user_id="U1"))

    assert store.delete_user_data("slack", "T1", "U-NOBODY") == 0
    assert [t.turn_id for t in store.recent_turns(KEY, 10)] == ["1"]


# --- SQLite -----------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "folder" / "history.db"


def test_sqlite_creates_the_folder_and_uses_wal(db_path: Path, clock: FakeClock) -> None:
    store = SqliteHistoryStore(db_path, clock=clock)
    store.append_turn(make_turn("1", START))
    store.close()

    assert db_path.is_file()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_reads_invalid_utf8_as_replacement_characters(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteHistoryStore(db_path, clock=clock)
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute(
            "INSERT INTO turns (conv_id, platform, workspace, channel, thread, turn_id, role,"
            " user_id, user_name, text, files, created_at, expires_at) VALUES"
            " (?, ?, ?, ?, ?, 'bad', 'user', 'U1', CAST(X'416EFE' AS TEXT),"
            " CAST(X'66FF6F' AS TEXT), '[]', ?, ?)",
            (KEY.id, KEY.platform, KEY.workspace, KEY.channel, KEY.thread, START, START + DAY),
        )
    raw.close()

    (turn,) = store.recent_turns(KEY, 10)

    assert turn.text == "f\ufffdo"
    assert turn.user_name == "An\ufffd"
    store.close()


def test_sqlite_concurrent_appends_from_eight_threads_all_land(
    db_path: Path, clock: FakeClock
) -> None:
    store = SqliteHistoryStore(db_path, clock=clock)
    per_thread = 25
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                store.append_turn(make_turn(f"w{n}-{i}", START - 1000 + n * per_thread + i))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    read = store.recent_turns(KEY, 1000)
    assert len(read) == 8 * per_thread
    assert {t.turn_id for t in read} == {f"w{n}-{i}" for n in range(8) for i in range(per_thread)}
    store.close()


def test_sqlite_data_survives_reopening(db_path: Path, clock: FakeClock) -> None:
    turn = make_turn("1", START, files=(FileRef("F1", "a.txt", "text/plain", 3),))
    first = SqliteHistoryStore(db_path, clock=clock)
    first.append_turn(turn)
    first.close()

    second = SqliteHistoryStore(db_path, clock=clock)

    assert list(second.recent_turns(KEY, 10)) == [turn]
    with pytest.raises(TurnAlreadyStored):
        second.append_turn(turn)
    second.close()


def test_sqlite_in_memory_works(clock: FakeClock) -> None:
    store = SqliteHistoryStore(":memory:", clock=clock)
    store.append_turn(make_turn("1", START))

    assert [t.turn_id for t in store.recent_turns(KEY, 10)] == ["1"]
    store.close()


def test_sqlite_purges_expired_rows_on_append(db_path: Path, clock: FakeClock) -> None:
    store = SqliteHistoryStore(db_path, retention_days=1, clock=clock)
    store.append_turn(make_turn("old", START))
    clock.advance(2 * DAY)
    store.append_turn(make_turn("new", clock.now))

    with sqlite3.connect(db_path) as raw:
        ids = [r[0] for r in raw.execute("SELECT turn_id FROM turns ORDER BY seq")]
    assert ids == ["new"]
    store.close()


def test_sqlite_failures_become_store_errors(clock: FakeClock) -> None:
    store = SqliteHistoryStore(":memory:", clock=clock)
    store.close()

    with pytest.raises(StoreError) as excinfo:
        store.append_turn(make_turn("1", START))

    assert not isinstance(excinfo.value, TurnAlreadyStored)
    assert isinstance(excinfo.value.__cause__, sqlite3.Error)
    assert "appending turn 1" in str(excinfo.value)
    with pytest.raises(StoreError, match="reading recent turns"):
        store.recent_turns(KEY, 10)


def test_sqlite_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    with pytest.raises(StoreError, match="opening history database"):
        SqliteHistoryStore(blocker / "history.db")


# --- DynamoDB ---------------------------------------------------------------------------------


def test_dynamodb_table_has_the_documented_schema(aws: Any) -> None:
    table = aws.describe_table(TableName=TABLE)["Table"]
    ttl = aws.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]

    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-user"
    assert index["Projection"]["ProjectionType"] == "ALL"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["gsi1pk", "gsi1sk"]
    assert table_definition(TABLE)["SSESpecification"] == {"Enabled": True}
    assert ttl["TimeToLiveStatus"] == "ENABLED"
    assert ttl["AttributeName"] == "expires_at"


def test_dynamodb_item_layout_and_expiry(aws: Any, clock: FakeClock) -> None:
    store = DynamoDbHistoryStore(TABLE, region=REGION, retention_days=7, clock=clock)
    created_at = 1_700_000_123.456
    store.append_turn(make_turn("1700000123.456789", created_at, user_id="U9", user_name="Ann"))

    (item,) = aws.scan(TableName=TABLE)["Items"]
    sk = "TURN#001700000123456#1700000123.456789"
    assert item["pk"] == {"S": "CONV#slack#T1#C1#1700000000.000100"}
    assert item["sk"] == {"S": sk}
    assert item["gsi1pk"] == {"S": "USER#slack#T1#U9"}
    assert item["gsi1sk"] == {"S": sk}
    assert float(item["expires_at"]["N"]) == pytest.approx(created_at + 7 * DAY, abs=1)
    assert float(item["expires_at"]["N"]) >= created_at + 7 * DAY  # never expires early
    assert float(item["created_at"]["N"]) == created_at
    fetched = aws.get_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
    assert fetched["Item"]["user_name"] == {"S": "Ann"}


def test_dynamodb_item_expiry_is_exact_for_whole_seconds(aws: Any, clock: FakeClock) -> None:
    store = DynamoDbHistoryStore(TABLE, region=REGION, clock=clock)
    store.append_turn(make_turn("1", START))

    (item,) = aws.scan(TableName=TABLE)["Items"]
    assert item["expires_at"] == {"N": str(int(START + 30 * DAY))}


class CountingClient:
    """Passes every call to the real (moto) client and counts them by name."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(*args, **kwargs)

        return counted


def test_dynamodb_reads_past_a_page_of_expired_turns(aws: Any, clock: FakeClock) -> None:
    # Retention was shortened: the newest turns were written with 1 day, older ones with 30.
    # The first pages hold only expired turns, so the store has to keep paging.
    long_lived = DynamoDbHistoryStore(TABLE, region=REGION, retention_days=30, clock=clock)
    short_lived = DynamoDbHistoryStore(TABLE, region=REGION, retention_days=1, clock=clock)
    for i in range(6):
        long_lived.append_turn(make_turn(f"kept{i}", START - 100 + i))
    for i in range(7):
        short_lived.append_turn(make_turn(f"gone{i}", START - 50 + i))
    clock.advance(2 * DAY)
    counting = CountingClient(aws)
    reader = DynamoDbHistoryStore(TABLE, region=REGION, client=counting, clock=clock)

    read = reader.recent_turns(KEY, 4)

    assert [t.turn_id for t in read] == ["kept2", "kept3", "kept4", "kept5"]
    assert counting.calls["query"] >= 3


def test_dynamodb_many_turns_newest_n(aws: Any, clock: FakeClock) -> None:
    store = DynamoDbHistoryStore(TABLE, region=REGION, clock=clock)
    for i in range(60):
        store.append_turn(make_turn(f"t{i:02d}", START - 1000 + i))

    read = store.recent_turns(KEY, 40)

    assert [t.turn_id for t in read] == [f"t{i:02d}" for i in range(20, 60)]


def test_dynamodb_delete_spans_query_pages_and_batches(
    aws: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DynamoDbHistoryStore(TABLE, region=REGION, clock=clock)
    for i in range(60):
        store.append_turn(make_turn(f"t{i:02d}", START - 1000 + i, user_id="U-ALICE"))
    store.append_turn(make_turn("bob", START, user_id="U-BOB"))
    counting = CountingClient(aws)
    real_query = aws.query

    def small_pages(**kwargs: Any) -> Any:
        return real_query(**kwargs, Limit=7)

    monkeypatch.setattr(aws, "query", small_pages)
    eraser = DynamoDbHistoryStore(TABLE, region=REGION, client=counting, clock=clock)

    assert eraser.delete_user_data("slack", "T1", "U-ALICE") == 60
    assert counting.calls["query"] >= 9
    assert counting.calls["batch_write_item"] == 3
    assert [t.turn_id for t in store.recent_turns(KEY, 100)] == ["bob"]


class Throttled(CountingClient):
    """For its first ``times`` calls, batch_write_item processes only the first ``processed``
    requests of a batch and hands the rest back as UnprocessedItems, as DynamoDB does when
    throttled."""

    def __init__(self, client: Any, times: int, processed: int = 1) -> None:
        super().__init__(client)
        self.times = times
        self.processed = processed

    def batch_write_item(self, RequestItems: dict[str, Any]) -> Any:
        self.calls["batch_write_item"] = self.calls.get("batch_write_item", 0) + 1
        ((table, requests),) = RequestItems.items()
        if self.times <= 0:
            return self._client.batch_write_item(RequestItems=RequestItems)
        self.times -= 1
        done, rest = requests[: self.processed], requests[self.processed :]
        if done:
            self._client.batch_write_item(RequestItems={table: done})
        return {"UnprocessedItems": {table: rest} if rest else {}}


def test_dynamodb_delete_retries_unprocessed_items(
    aws: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.history.dynamodb.time.sleep", lambda _s: None)
    store = DynamoDbHistoryStore(TABLE, region=REGION, clock=clock)
    for i in range(5):
        store.append_turn(make_turn(f"t{i}", START - 10 + i, user_id="U-ALICE"))
    flaky = Throttled(aws, times=2)
    eraser = DynamoDbHistoryStore(TABLE, region=REGION, client=flaky, clock=clock)

    assert eraser.delete_user_data("slack", "T1", "U-ALICE") == 5
    assert flaky.calls["batch_write_item"] == 3
    assert list(store.recent_turns(KEY, 10)) == []


def test_dynamodb_delete_gives_up_on_persistent_unprocessed_items(
    aws: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.history.dynamodb.time.sleep", lambda _s: None)
    store = DynamoDbHistoryStore(TABLE, region=REGION, clock=clock)
    for i in range(5):
        store.append_turn(make_turn(f"t{i}", START - 10 + i, user_id="U-ALICE"))
    stuck = Throttled(aws, times=1000, processed=0)
    eraser = DynamoDbHistoryStore(TABLE, region=REGION, client=stuck, clock=clock)

    with pytest.raises(StoreError, match="unprocessed"):
        eraser.delete_user_data("slack", "T1", "U-ALICE")
    assert 2 <= stuck.calls["batch_write_item"] <= 10
    assert len(store.recent_turns(KEY, 10)) == 5


def test_dynamodb_client_errors_become_store_errors(aws: Any, clock: FakeClock) -> None:
    store = DynamoDbHistoryStore("no-such-table", region=REGION, clock=clock)

    with pytest.raises(StoreError, match="ResourceNotFoundException") as excinfo:
        store.append_turn(make_turn("1", START))
    assert not isinstance(excinfo.value, TurnAlreadyStored)
    assert isinstance(excinfo.value.__cause__, ClientError)
    assert "PutItem" in str(excinfo.value)
    with pytest.raises(StoreError, match=r"Query.*ResourceNotFoundException"):
        store.recent_turns(KEY, 10)
    with pytest.raises(StoreError, match="ResourceNotFoundException"):
        store.delete_user_data("slack", "T1", "U1")


class Unreachable:
    def __getattr__(self, name: str) -> Any:
        def fail(**_kwargs: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

        return fail


def test_dynamodb_connection_errors_become_store_errors(clock: FakeClock) -> None:
    store = DynamoDbHistoryStore(TABLE, region=REGION, client=Unreachable(), clock=clock)

    with pytest.raises(StoreError, match="EndpointConnectionError") as excinfo:
        store.recent_turns(KEY, 10)
    assert isinstance(excinfo.value.__cause__, EndpointConnectionError)
    with pytest.raises(StoreError, match="EndpointConnectionError"):
        store.append_turn(make_turn("1", START))


def test_dynamodb_client_honours_the_endpoint_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4566")

    store = DynamoDbHistoryStore(TABLE, region="eu-west-1")

    assert store._client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert store._client.meta.region_name == "eu-west-1"


def test_the_message_carrying_a_reply_is_remembered_per_question(store: HistoryStore) -> None:
    question = make_turn("q1", START - 5, user_id="U-ALICE")
    assert store.reply_message(KEY, "q1") is None
    store.remember_reply(question, "1700000000.000200")
    assert store.reply_message(KEY, "q1") == "1700000000.000200"
    store.remember_reply(question, "1700000000.000300")  # a later attempt's message wins
    assert store.reply_message(KEY, "q1") == "1700000000.000300"
    assert store.reply_message(KEY, "q2") is None
    assert store.reply_message(replace(KEY, channel="C2"), "q1") is None  # per conversation
    store.append_turn(question)
    assert [t.turn_id for t in store.recent_turns(KEY, 10)] == ["q1"]  # not a turn


def test_reply_records_expire_within_a_day_and_go_with_the_persons_data(
    store: HistoryStore, clock: FakeClock
) -> None:
    store.remember_reply(make_turn("q1", START, user_id="U-ALICE"), "m1")
    store.remember_reply(make_turn("q2", START, user_id="U-BOB"), "m2")
    assert store.delete_user_data("slack", "T1", "U-ALICE") == 1
    assert store.reply_message(KEY, "q1") is None
    assert store.reply_message(KEY, "q2") == "m2"
    clock.advance(DAY + 1)
    assert store.reply_message(KEY, "q2") is None


# --- Answers and feedback ---------------------------------------------------------------------

ANSWER = AnswerRef(KEY, "1700000000.000200", "anthropic.claude-test")


def vote(voter: str, rating: Rating, *, answer: AnswerRef = ANSWER, at: float = START) -> Feedback:
    return Feedback(answer=answer, voter=voter, rating=rating, at=at)


def test_the_answer_behind_a_final_message_is_remembered_per_conversation(
    store: HistoryStore,
) -> None:
    assert store.answer_for_message(KEY, "1700000000.000300") is None
    store.remember_answer(ANSWER, "1700000000.000300", asker="U-ALICE")
    assert store.answer_for_message(KEY, "1700000000.000300") == ANSWER
    assert store.answer_for_message(KEY, "1700000000.000301") is None
    assert store.answer_for_message(replace(KEY, channel="C2"), "1700000000.000300") is None
    later = AnswerRef(KEY, "1700000000.000200", "another-model")
    store.remember_answer(later, "1700000000.000300", asker="U-ALICE")  # a redelivery's
    assert store.answer_for_message(KEY, "1700000000.000300") == later


def test_answer_records_last_as_long_as_the_history(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = make_store(retention_days=30)
    store.remember_answer(ANSWER, "m1", asker="U-ALICE")
    clock.advance(30 * DAY - 60)
    assert store.answer_for_message(KEY, "m1") == ANSWER  # far past the reply record's day
    clock.advance(120)
    assert store.answer_for_message(KEY, "m1") is None


def test_a_rating_is_recorded_once_and_a_duplicate_changes_nothing(store: HistoryStore) -> None:
    assert store.record_feedback(vote("U-BOB", Rating.GOOD, at=START), "U-ALICE") is True
    assert store.record_feedback(vote("U-BOB", Rating.GOOD, at=START + 5), "U-ALICE") is False
    assert store.feedback_for_answer(KEY, ANSWER.answer_id) == [
        vote("U-BOB", Rating.GOOD, at=START)  # the first click's time: nothing was rewritten
    ]


def test_a_changed_mind_replaces_the_rating(store: HistoryStore) -> None:
    assert store.record_feedback(vote("U-BOB", Rating.GOOD, at=START), None)
    assert store.record_feedback(vote("U-BOB", Rating.BAD, at=START + 5), None) is True
    assert store.feedback_for_answer(KEY, ANSWER.answer_id) == [
        vote("U-BOB", Rating.BAD, at=START + 5)
    ]
    assert store.record_feedback(vote("U-BOB", Rating.BAD, at=START + 9), None) is False
    assert store.record_feedback(vote("U-BOB", Rating.GOOD, at=START + 9), None) is True
    assert [f.rating for f in store.feedback_for_answer(KEY, ANSWER.answer_id)] == [Rating.GOOD]


def test_ratings_are_per_voter_per_answer_per_conversation(store: HistoryStore) -> None:
    other_answer = AnswerRef(KEY, "1700000000.000900", ANSWER.model_id)
    elsewhere = AnswerRef(replace(KEY, workspace="T2"), ANSWER.answer_id, ANSWER.model_id)
    assert store.record_feedback(vote("U-BOB", Rating.GOOD), None)
    assert store.record_feedback(vote("U-CAROL", Rating.GOOD), None)  # another voter
    assert store.record_feedback(vote("U-BOB", Rating.GOOD, answer=other_answer), None)
    assert store.record_feedback(vote("U-BOB", Rating.GOOD, answer=elsewhere), None)
    assert {f.voter for f in store.feedback_for_answer(KEY, ANSWER.answer_id)} == {
        "U-BOB",
        "U-CAROL",
    }
    assert store.feedback_for_answer(KEY, other_answer.answer_id) == [
        vote("U-BOB", Rating.GOOD, answer=other_answer)
    ]
    assert len(store.feedback_for_answer(elsewhere.key, ANSWER.answer_id)) == 1
    assert store.feedback_for_answer(KEY, "1700000000.000201") == []  # no prefix matches


def test_an_expired_rating_can_be_given_again(make_store: StoreFactory, clock: FakeClock) -> None:
    store = make_store(retention_days=1)
    assert store.record_feedback(vote("U-BOB", Rating.GOOD), None)
    clock.advance(DAY + 1)
    assert store.feedback_for_answer(KEY, ANSWER.answer_id) == []
    assert store.record_feedback(vote("U-BOB", Rating.GOOD, at=clock.now), None) is True
    assert store.feedback_for_answer(KEY, ANSWER.answer_id) == [
        vote("U-BOB", Rating.GOOD, at=clock.now)
    ]


def test_sqlite_simultaneous_duplicate_clicks_are_recorded_exactly_once(
    db_path: Path, clock: FakeClock
) -> None:
    # Two stores (two connections: two processes' worth) and eight threads click at once. In
    # DynamoDB the conditional PutItem is atomic in the service (the duplicate tests above show
    # the condition refusing); moto does not serialise racing writes, so no threaded run there.
    stores = [SqliteHistoryStore(db_path, clock=clock), SqliteHistoryStore(db_path, clock=clock)]
    start = threading.Barrier(8)
    results: list[bool] = []
    errors: list[BaseException] = []

    def click(n: int) -> None:
        start.wait()
        try:
            results.append(stores[n % 2].record_feedback(vote("U-BOB", Rating.BAD), None))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=click, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    assert sorted(results) == [False] * 7 + [True]
    assert len(stores[0].feedback_for_answer(KEY, ANSWER.answer_id)) == 1
    for store in stores:
        store.close()


def test_feedback_and_answer_records_are_never_read_as_turns(store: HistoryStore) -> None:
    question = make_turn(ANSWER.answer_id, START - 5, user_id="U-ALICE")
    store.append_turn(question)
    store.remember_reply(question, "m1")
    store.remember_answer(ANSWER, "m1", asker="U-ALICE")
    store.record_feedback(vote("U-ALICE", Rating.GOOD), "U-ALICE")
    store.record_feedback(vote("U-BOB", Rating.BAD), "U-ALICE")
    assert list(store.recent_turns(KEY, 10)) == [question]
    assert list(store.recent_turns(KEY, 1)) == [question]


def test_erasing_a_person_erases_the_ratings_they_gave_and_their_answer_records(
    store: HistoryStore,
) -> None:
    question = make_turn(ANSWER.answer_id, START - 5, user_id="U-ALICE")
    store.append_turn(question)
    store.remember_answer(ANSWER, "m1", asker="U-ALICE")
    store.record_feedback(vote("U-ALICE", Rating.GOOD), "U-ALICE")
    store.record_feedback(vote("U-BOB", Rating.BAD), "U-ALICE")
    bobs_elsewhere = AnswerRef(replace(KEY, workspace="T2"), "q9", "m")
    store.record_feedback(vote("U-BOB", Rating.GOOD, answer=bobs_elsewhere), None)

    assert store.delete_user_data("slack", "T1", "U-BOB") == 1  # Bob's rating, this workspace
    assert store.feedback_for_answer(KEY, ANSWER.answer_id) == [vote("U-ALICE", Rating.GOOD)]
    assert len(store.feedback_for_answer(bobs_elsewhere.key, "q9")) == 1
    assert store.answer_for_message(KEY, "m1") == ANSWER  # Alice's, not Bob's

    # Alice: her question, the answer record of its message, and her own rating.
    assert store.delete_user_data("slack", "T1", "U-ALICE") == 3
    assert store.feedback_for_answer(KEY, ANSWER.answer_id) == []
    assert store.answer_for_message(KEY, "m1") is None
    assert list(store.recent_turns(KEY, 10)) == []
    assert store.delete_user_data("slack", "T1", "U-ALICE") == 0


def test_dynamodb_feedback_item_layout_holds_ids_and_no_text(aws: Any, clock: FakeClock) -> None:
    store = DynamoDbHistoryStore(TABLE, region=REGION, retention_days=7, clock=clock)
    store.record_feedback(vote("U-BOB", Rating.BAD, at=START - 3), "U-ALICE")
    store.remember_answer(ANSWER, "1700000000.000300", asker="U-ALICE")

    items = {item["sk"]["S"]: item for item in aws.scan(TableName=TABLE)["Items"]}
    feedback = items["FEEDBACK#1700000000.000200#U-BOB"]
    assert feedback["pk"] == {"S": "CONV#slack#T1#C1#1700000000.000100"}
    assert feedback["gsi1pk"] == {"S": "USER#slack#T1#U-BOB"}  # the voter: erased with them
    assert feedback["gsi1sk"] == feedback["sk"]
    assert feedback["rating"] == {"S": "bad"} and feedback["user_id"] == {"S": "U-BOB"}
    assert feedback["model_id"] == {"S": ANSWER.model_id}
    assert float(feedback["at"]["N"]) == START - 3
    assert float(feedback["expires_at"]["N"]) >= START + 7 * DAY
    assert set(feedback) == {
        "pk", "sk", "gsi1pk", "gsi1sk", "answer_id", "user_id", "rating", "model_id", "at",
        "expires_at",
    }  # fmt: skip
    answer = items["ANSWER#1700000000.000300"]
    assert answer["gsi1pk"] == {"S": "USER#slack#T1#U-ALICE"}  # the asker: erased with them
    assert answer["answer_id"] == {"S": ANSWER.answer_id}
    assert "U-ALICE" not in str(feedback)  # the asker is not stored in someone else's rating


def test_an_answer_record_without_an_asker_has_no_user_key(aws: Any, clock: FakeClock) -> None:
    store = DynamoDbHistoryStore(TABLE, region=REGION, clock=clock)
    store.remember_answer(ANSWER, "m1")
    (item,) = aws.scan(TableName=TABLE)["Items"]
    assert "gsi1pk" not in item and "gsi1sk" not in item  # sparse in the index
    assert store.answer_for_message(KEY, "m1") == ANSWER


def test_sqlite_keeps_feedback_out_of_the_turns_table(db_path: Path, clock: FakeClock) -> None:
    store = SqliteHistoryStore(db_path, clock=clock)
    store.remember_answer(ANSWER, "m1", asker="U-ALICE")
    store.record_feedback(vote("U-BOB", Rating.GOOD), "U-ALICE")
    store.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM turns").fetchone() == (0,)
        assert conn.execute("SELECT user_id, rating FROM feedback").fetchall() == [
            ("U-BOB", "good")
        ]
        assert conn.execute("SELECT answer_id, user_id FROM answers").fetchall() == [
            (ANSWER.answer_id, "U-ALICE")
        ]
