"""The knowledge store contract, run against every backend, then each backend's own promises.

Backends:

- ``sqlite-bm25``: SQLite with no embeddings (FTS5 BM25), on a file in ``tmp_path``.
- ``sqlite-vectors``: the same store given chunk and query embeddings (cosine fused with BM25).
- ``s3vectors``: :class:`S3VectorsKnowledgeStore` on :class:`FakeS3Vectors`, a fake client with
  the same four methods, which validates every request against botocore's own service model and
  answers by computing cosine distance over what was put (moto's S3 Vectors does not implement
  QueryVectors, and the Stubber can only replay canned answers, which cannot test ranking or
  isolation). Its file records live in DynamoDB under moto. Exact request shapes are checked
  separately below with botocore's Stubber.

Embeddings come from :func:`embed`, a deterministic hashed bag of words: texts sharing words
point the same way, so the ranking tests mean the same thing for every backend.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import math
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from botocore.validate import validate_parameters
from moto import mock_aws

from core.domain import Passage
from core.errors import StoreError
from core.knowledge.base import FileRecord, KnowledgeStore, StoredChunk
from core.knowledge.dynamodb_records import (
    DynamoDbFileRecords,
    create_records_table,
    records_table_definition,
)
from core.knowledge.fts import fts_query, query_terms, scope_tag
from core.knowledge.records import IndexedFile, RecordConflict
from core.knowledge.s3vectors import (
    NEEDS_EMBEDDINGS,
    NON_FILTERABLE_METADATA_KEYS,
    S3VectorsKnowledgeStore,
    build_s3vectors_store,
    index_definition,
    vector_key,
)
from core.knowledge.sqlite import SqliteKnowledgeStore

REGION = "us-east-1"
TABLE = "chatbot-knowledge-test"
BUCKET = "chatbot-vectors"
INDEX = "knowledge"
DIMENSIONS = 64

SCOPE = "slack#T1#C1"
START = 1_700_000_000.0

# A Teams attachment without a uniqueId is known by its name. 340 CJK characters are 1,020
# bytes of UTF-8: as "FILE#" + name, past DynamoDB's 1,024-byte sort key limit.
LONG_NAME = ("第三四半期の売上報告と来期の見通し" * 21)[:340]

TOPICS = [
    "The deploy pipeline runs nightly and promotes a build to staging when every check passes.",
    "Database backups are retained for thirty five days in a separate account.",
    "The on-call rotation changes every Monday at nine in the morning.",
    "Expense reports must be filed within two weeks of travel, with receipts attached.",
    "The office wifi password is rotated quarterly by the IT helpdesk.",
]

INJECTIONS = [
    '"',
    '""',
    "*",
    "backup*",
    "NEAR(",
    "NEAR(backups retained, 2)",
    "OR AND",
    "AND",
    "NOT",
    "-",
    "-backups",
    ":",
    "text: backups",
    "scope_tag: anything",
    '"unbalanced quote',
    "unbalanced) (paren",
    "^",
    "{text}: x",
    "🎉🔥 emoji only 🎉",
    "🎉",
    "x" * 5000,
    "'; DROP TABLE knowledge_chunks; --",
    "\x00\x01 control",
]


def embed(text: str) -> list[float]:
    """A deterministic unit vector: a hashed bag of the text's searchable words, plus a small
    constant component so that no text (emoji only, say) embeds to zero."""
    vector = [0.0] * DIMENSIONS
    vector[0] = 0.05
    for term in query_terms(text):
        digest = hashlib.sha256(term.encode()).digest()
        vector[1 + digest[0] % (DIMENSIONS - 1)] += 1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


# --- the fake S3 Vectors client ---------------------------------------------------------------


class FakeS3Vectors:
    """``put_vectors``, ``query_vectors``, ``get_vectors`` and ``delete_vectors`` over a dict.

    Requests are validated against botocore's service model, the limits the store relies on are
    enforced (500 vectors a call, top-K at most 100, 2 KB of filterable metadata on an index made
    with :func:`index_definition`), and query results are ranked by cosine distance after the
    ``$eq`` filter, the way the service does. ``fail_on`` makes a put fail part-way: vectors
    before the failing one in the same call are kept, as a real partial failure might.
    """

    def __init__(self) -> None:
        self._model = _s3vectors_model()
        self.vectors: dict[str, tuple[list[float], dict[str, Any]]] = {}
        self.calls: list[str] = []
        self.fail_on: Callable[[dict[str, Any]], bool] | None = None

    def _validate(self, operation: str, params: dict[str, Any]) -> None:
        self.calls.append(operation)
        validate_parameters(params, self._model.operation_model(operation).input_shape)
        assert params["vectorBucketName"] == BUCKET and params["indexName"] == INDEX

    @staticmethod
    def _error(operation: str, code: str, status: int = 400) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": code},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            operation,
        )

    def put_vectors(self, **params: Any) -> dict[str, Any]:
        self._validate("PutVectors", params)
        if len(params["vectors"]) > 500:
            raise self._error("PutVectors", "ValidationException")
        for vector in params["vectors"]:
            if self.fail_on is not None and self.fail_on(vector):
                raise self._error("PutVectors", "ServiceUnavailableException", 503)
            metadata = vector["metadata"]
            filterable = {
                k: v for k, v in metadata.items() if k not in NON_FILTERABLE_METADATA_KEYS
            }
            if len(repr(filterable).encode()) > 2048:
                raise self._error("PutVectors", "ValidationException")
            values = vector["data"]["float32"]
            assert len(values) == DIMENSIONS
            self.vectors[vector["key"]] = (list(values), copy.deepcopy(metadata))
        return {}

    def query_vectors(self, **params: Any) -> dict[str, Any]:
        self._validate("QueryVectors", params)
        if params["topK"] > 100:
            raise self._error("QueryVectors", "ValidationException")
        ((field, condition),) = params["filter"].items()
        assert field not in NON_FILTERABLE_METADATA_KEYS
        ((operator, wanted),) = condition.items()
        assert operator == "$eq"
        query = params["queryVector"]["float32"]
        scored = []
        for key, (values, metadata) in self.vectors.items():
            if metadata.get(field) != wanted:
                continue
            scored.append((1.0 - _cosine(query, values), key, metadata))
        scored.sort(key=lambda item: (item[0], item[1]))
        out = []
        for distance, key, metadata in scored[: params["topK"]]:
            hit: dict[str, Any] = {"key": key}
            if params.get("returnDistance"):
                hit["distance"] = distance
            if params.get("returnMetadata"):
                hit["metadata"] = copy.deepcopy(metadata)
            out.append(hit)
        return {"vectors": out, "distanceMetric": "cosine"}

    def get_vectors(self, **params: Any) -> dict[str, Any]:
        self._validate("GetVectors", params)
        if len(params["keys"]) > 100:
            raise self._error("GetVectors", "ValidationException")
        out = []
        for key in params["keys"]:
            if key in self.vectors:
                values, metadata = self.vectors[key]
                hit: dict[str, Any] = {"key": key}
                if params.get("returnMetadata"):
                    hit["metadata"] = copy.deepcopy(metadata)
                if params.get("returnData"):
                    hit["data"] = {"float32": list(values)}
                out.append(hit)
        return {"vectors": out}

    def delete_vectors(self, **params: Any) -> dict[str, Any]:
        self._validate("DeleteVectors", params)
        if len(params["keys"]) > 500:
            raise self._error("DeleteVectors", "ValidationException")
        for key in params["keys"]:
            self.vectors.pop(key, None)
        return {}


@functools.cache
def _s3vectors_model() -> Any:
    return boto3.client("s3vectors", region_name=REGION).meta.service_model


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


# --- backends ---------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    store: KnowledgeStore
    uses_vectors: bool
    break_put_at: Callable[[int], None]  # the next puts fail when they reach this chunk index
    heal: Callable[[], None]

    def embed(self, texts: Sequence[str]) -> list[list[float]] | None:
        return [embed(t) for t in texts] if self.uses_vectors else None

    def put(
        self,
        scope: str,
        file_id: str,
        texts: Sequence[str],
        *,
        added_at: float = START,
        name: str | None = None,
        indexes: Sequence[int] | None = None,
    ) -> FileRecord:
        name = name or f"{file_id}.txt"
        indexes = list(indexes) if indexes is not None else list(range(len(texts)))
        chunks = [
            StoredChunk(
                scope=scope,
                file_id=file_id,
                file_name=name,
                index=i,
                location=f"part {i + 1}",
                text=text,
                url=f"https://files.example/{file_id}#{i}",
            )
            for i, text in zip(indexes, texts, strict=True)
        ]
        record = FileRecord(
            scope=scope,
            file_id=file_id,
            file_name=name,
            content_hash=hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            chunks=len(chunks),
            description=f"{name} ({len(chunks)} parts)",
            added_at=added_at,
        )
        self.store.put_file(record, chunks, self.embed(texts))
        return record

    def search(self, scope: str, query: str, limit: int = 5) -> list[Passage]:
        query_embedding = embed(query) if self.uses_vectors else None
        return self.store.search(scope, query, limit=limit, query_embedding=query_embedding)


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_records_table(client, TABLE)
        yield client


def _sqlite_backend(name: str, path: Path, uses_vectors: bool) -> Backend:
    store = SqliteKnowledgeStore(path)

    def break_put_at(index: int) -> None:
        with sqlite3.connect(path) as raw:
            raw.execute(
                "CREATE TRIGGER inject_failure BEFORE INSERT ON knowledge_chunks"
                f" WHEN NEW.idx = {int(index)} BEGIN SELECT RAISE(ABORT, 'injected'); END"
            )

    def heal() -> None:
        with sqlite3.connect(path) as raw:
            raw.execute("DROP TRIGGER IF EXISTS inject_failure")

    return Backend(name, store, uses_vectors, break_put_at, heal)


def _s3vectors_backend(fake: FakeS3Vectors) -> Backend:
    records = DynamoDbFileRecords(TABLE, region=REGION)
    store = S3VectorsKnowledgeStore(BUCKET, INDEX, region=REGION, records=records, client=fake)

    def break_put_at(index: int) -> None:
        fake.fail_on = lambda vector: vector["metadata"]["idx"] == index

    def heal() -> None:
        fake.fail_on = None

    return Backend("s3vectors", store, True, break_put_at, heal)


@pytest.fixture(params=["sqlite-bm25", "sqlite-vectors", "s3vectors"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "s3vectors":
        request.getfixturevalue("aws")
        made = _s3vectors_backend(FakeS3Vectors())
    else:
        made = _sqlite_backend(
            request.param, tmp_path / "knowledge.db", request.param == "sqlite-vectors"
        )
    yield made
    made.store.close()


def texts_of(passages: Sequence[Passage]) -> list[str]:
    return [p.text for p in passages]


# --- the contract -----------------------------------------------------------------------------


def test_the_passage_with_the_query_terms_ranks_first(backend: Backend) -> None:
    backend.put(SCOPE, "F1", TOPICS, name="handbook.pdf")

    passages = backend.search(SCOPE, "How long are database backups retained?", limit=3)

    assert passages[0].text == TOPICS[1]
    first = passages[0].source
    assert (first.source_id, first.title, first.location) == ("S1", "handbook.pdf", "part 2")
    assert first.url == "https://files.example/F1#1"
    assert [p.source.source_id for p in passages] == [f"S{i}" for i in range(1, len(passages) + 1)]
    assert all(a.score >= b.score for a, b in itertools.pairwise(passages))
    assert len(passages) <= 3


def test_search_finds_the_best_file_among_several(backend: Backend) -> None:
    for n, text in enumerate(TOPICS):
        backend.put(SCOPE, f"F{n}", [text], added_at=START + n)

    (best,) = backend.search(SCOPE, "expense receipts travel", limit=1)

    assert best.text == TOPICS[3]
    assert best.source.title == "F3.txt"


def test_a_canary_in_one_scope_is_never_returned_in_another(backend: Backend) -> None:
    canary = "The canary phrase is periwinkle xylophone marmalade."
    backend.put(SCOPE, "F1", [canary, TOPICS[0]])
    others = [
        "slack#T1#C10",  # the scope is a string prefix of this one
        "slack#T1#C",  # ... and this one is a prefix of it
        "slack#T10#C1",
        "slack#T1#C1x",
        "teams#T1#C1",
        "slack#T1#c1",
    ]
    for other in others:
        backend.put(other, "F1", [TOPICS[2]])  # the same file id, other content

    assert texts_of(backend.search(SCOPE, "periwinkle xylophone", limit=5))[0] == canary
    for other in others:
        found = texts_of(backend.search(other, canary, limit=100))
        assert canary not in found
        assert set(found) <= {TOPICS[2]}
    assert backend.search("slack#T9#C9", canary, limit=10) == []


def test_putting_a_file_again_replaces_it(backend: Backend) -> None:
    backend.put(SCOPE, "F1", ["The zebra quarterly report, first draft."], added_at=START)
    backend.put(SCOPE, "F2", ["Unrelated notes about lunch."], added_at=START + 1)
    second = backend.put(
        SCOPE,
        "F1",
        ["The giraffe annual report, final.", "Appendix on giraffes."],
        added_at=START + 2,
    )

    assert "zebra" not in " ".join(texts_of(backend.search(SCOPE, "zebra quarterly", limit=10)))
    assert texts_of(backend.search(SCOPE, "giraffe annual report", limit=1)) == [
        "The giraffe annual report, final."
    ]
    assert backend.store.get_file(SCOPE, "F1") == second
    assert [c.text for c in backend.store.file_chunks(SCOPE, "F1")] == [
        "The giraffe annual report, final.",
        "Appendix on giraffes.",
    ]
    assert [r.file_id for r in backend.store.list_files(SCOPE)] == ["F1", "F2"]


def test_remove_file_removes_only_that_file_in_that_scope(backend: Backend) -> None:
    backend.put(SCOPE, "F1", ["Budget figures for the lighthouse project.", "More budget."])
    backend.put(SCOPE, "F2", ["Lighthouse maintenance schedule."])
    backend.put("slack#T1#C2", "F1", ["Budget figures for the lighthouse project."])

    assert backend.store.remove_file(SCOPE, "F1") == 2

    assert texts_of(backend.search(SCOPE, "lighthouse budget", limit=10)) == [
        "Lighthouse maintenance schedule."
    ]
    assert backend.store.get_file(SCOPE, "F1") is None
    assert backend.store.file_chunks(SCOPE, "F1") == []
    assert [r.file_id for r in backend.store.list_files(SCOPE)] == ["F2"]
    assert backend.store.get_file("slack#T1#C2", "F1") is not None
    assert texts_of(backend.search("slack#T1#C2", "lighthouse budget", limit=10)) == [
        "Budget figures for the lighthouse project."
    ]
    assert backend.store.remove_file(SCOPE, "F1") == 0
    assert backend.store.remove_file(SCOPE, "never-there") == 0


def test_remove_file_everywhere_covers_one_workspace_only(backend: Backend) -> None:
    text = ["Quarterly objectives for the orchard team.", "Second page of objectives."]
    for scope in ("slack#T1#C1", "slack#T1#C2", "slack#T1#D9"):
        backend.put(scope, "F1", text)
    for scope in ("slack#T10#C1", "teams#T1#C1", "slack#T2#C1"):
        backend.put(scope, "F1", text)
    backend.put("slack#T1#C1", "F2", ["Orchard harvest dates."])

    assert backend.store.remove_file_everywhere("slack#T1", "F1") == 6

    for scope in ("slack#T1#C1", "slack#T1#C2", "slack#T1#D9"):
        assert backend.store.get_file(scope, "F1") is None
        assert "objectives" not in " ".join(texts_of(backend.search(scope, "orchard objectives")))
    for scope in ("slack#T10#C1", "teams#T1#C1", "slack#T2#C1"):
        assert backend.store.get_file(scope, "F1") is not None
        assert texts_of(backend.search(scope, "orchard objectives", limit=1)) == [text[0]]
    assert [r.file_id for r in backend.store.list_files("slack#T1#C1")] == ["F2"]
    assert backend.store.remove_file_everywhere("slack#T1", "F1") == 0


def test_list_files_is_newest_first(backend: Backend) -> None:
    for file_id, added_at in [("B", START + 20), ("A", START + 10), ("D", START + 40)]:
        backend.put(SCOPE, file_id, [f"Contents of file {file_id}."], added_at=added_at)
    backend.put("slack#T1#C10", "C", ["Another scope's file."], added_at=START + 30)

    records = backend.store.list_files(SCOPE)

    assert [r.file_id for r in records] == ["D", "B", "A"]
    assert records[0] == FileRecord(
        scope=SCOPE,
        file_id="D",
        file_name="D.txt",
        content_hash=hashlib.sha256(b"Contents of file D.").hexdigest(),
        chunks=1,
        description="D.txt (1 parts)",
        added_at=START + 40,
    )
    assert backend.store.list_files("slack#T1#C99") == []


def test_file_chunks_come_back_in_order_with_every_field(backend: Backend) -> None:
    texts = ["third part", "first part", "second part", "fourth part — café ☕ 日本語"]
    backend.put(SCOPE, "F1", texts, indexes=[2, 0, 1, 3], name="notes — été.txt")

    chunks = backend.store.file_chunks(SCOPE, "F1")

    assert [c.index for c in chunks] == [0, 1, 2, 3]
    assert [c.text for c in chunks] == ["first part", "second part", "third part", texts[3]]
    assert chunks[3] == StoredChunk(
        scope=SCOPE,
        file_id="F1",
        file_name="notes — été.txt",
        index=3,
        location="part 4",
        text=texts[3],
        url="https://files.example/F1#3",
    )
    assert backend.store.file_chunks(SCOPE, "missing") == []


def test_a_failed_put_leaves_the_old_version_and_nothing_of_the_new(backend: Backend) -> None:
    old = backend.put(SCOPE, "F1", ["The original walrus policy, version one."], added_at=START)
    new_texts = [f"Replacement narwhal policy, section {i}." for i in range(600)]
    backend.break_put_at(550)  # S3 Vectors: the second PutVectors call fails part-way

    with pytest.raises(StoreError):
        backend.put(SCOPE, "F1", new_texts, added_at=START + 5)

    assert "narwhal" not in " ".join(texts_of(backend.search(SCOPE, "narwhal policy", limit=10)))
    assert texts_of(backend.search(SCOPE, "walrus policy", limit=10)) == [
        "The original walrus policy, version one."
    ]
    assert backend.store.get_file(SCOPE, "F1") == old
    assert [c.text for c in backend.store.file_chunks(SCOPE, "F1")] == [
        "The original walrus policy, version one."
    ]

    backend.heal()
    backend.put(SCOPE, "F1", new_texts, added_at=START + 6)
    assert len(backend.store.file_chunks(SCOPE, "F1")) == 600
    assert "walrus" not in " ".join(texts_of(backend.search(SCOPE, "walrus", limit=700)))


def test_a_failed_first_put_leaves_nothing(backend: Backend) -> None:
    backend.break_put_at(3)

    with pytest.raises(StoreError):
        backend.put(SCOPE, "F1", [f"Octopus chapter {i}." for i in range(5)])

    assert backend.search(SCOPE, "octopus chapter", limit=10) == []
    assert backend.store.get_file(SCOPE, "F1") is None
    assert backend.store.list_files(SCOPE) == []


def test_hostile_query_text_never_raises_and_stays_in_scope(backend: Backend) -> None:
    backend.put(SCOPE, "F1", TOPICS)
    backend.put("slack#T1#C10", "F1", ["Secret text of another channel: backups retained."])

    for query in INJECTIONS:
        passages = backend.search(SCOPE, query, limit=10)
        assert set(texts_of(passages)) <= set(TOPICS), query
    assert texts_of(backend.search(SCOPE, 'NEAR("backups" retained', limit=1)) == [TOPICS[1]]


def test_an_empty_query_returns_nothing(backend: Backend) -> None:
    backend.put(SCOPE, "F1", TOPICS)

    for query in ["", " ", "\n\t  "]:
        assert backend.search(SCOPE, query) == [], repr(query)


def test_limit_is_respected(backend: Backend) -> None:
    backend.put(SCOPE, "F1", [f"Penguin fact number {i} about penguins." for i in range(30)])

    assert len(backend.search(SCOPE, "penguin facts", limit=7)) == 7
    assert backend.search(SCOPE, "penguin facts", limit=0) == []
    assert len(backend.search(SCOPE, "penguin facts", limit=500)) == 30


def test_a_file_with_no_chunks_is_recorded(backend: Backend) -> None:
    record = backend.put(SCOPE, "EMPTY", [])

    assert backend.store.get_file(SCOPE, "EMPTY") == record
    assert backend.store.file_chunks(SCOPE, "EMPTY") == []
    assert backend.store.remove_file(SCOPE, "EMPTY") == 0
    assert backend.store.get_file(SCOPE, "EMPTY") is None


def test_chunks_that_do_not_belong_to_the_record_are_refused(backend: Backend) -> None:
    record = FileRecord(SCOPE, "F1", "a.txt", "h", 1, "a.txt", START)
    stray = StoredChunk("slack#T1#C2", "F1", "a.txt", 0, "", "text")
    duplicate = StoredChunk(SCOPE, "F1", "a.txt", 0, "", "text")
    embeddings = backend.embed(["text", "text"])

    with pytest.raises(ValueError, match="belong"):
        backend.store.put_file(record, [stray], embeddings[:1] if embeddings else None)
    with pytest.raises(ValueError, match="same index"):
        backend.store.put_file(record, [duplicate, duplicate], embeddings)

    assert backend.store.get_file(SCOPE, "F1") is None


def test_embeddings_that_disagree_with_the_chunks_are_refused(backend: Backend) -> None:
    record = FileRecord(SCOPE, "F1", "a.txt", "h", 2, "a.txt", START)
    chunks = [StoredChunk(SCOPE, "F1", "a.txt", i, "", f"text {i}") for i in range(2)]

    with pytest.raises(ValueError, match="1 embeddings for 2 chunks"):
        backend.store.put_file(record, chunks, [embed("text")])
    with pytest.raises(ValueError, match="same size"):
        backend.store.put_file(record, chunks, [embed("text"), embed("text")[:-1]])

    assert backend.store.get_file(SCOPE, "F1") is None


def test_remove_file_everywhere_wants_platform_and_workspace(backend: Backend) -> None:
    backend.put("slack#T1#C1", "F1", ["Notes on the quarterly plan."])

    for wrong in ("slack", "slack#T1#C1", "#T1", "slack#", ""):
        with pytest.raises(ValueError, match="platform#workspace"):
            backend.store.remove_file_everywhere(wrong, "F1")
    assert backend.store.get_file("slack#T1#C1", "F1") is not None
    assert backend.store.remove_file_everywhere("slack#T1#", "F1") == 1  # a trailing '#' is fine


def test_a_file_known_by_a_long_name_is_shared_found_listed_and_removed(backend: Backend) -> None:
    assert len(f"FILE#{LONG_NAME}".encode()) > 1024
    texts = ["The heron census counted forty nests.", "Appendix: nest locations."]
    record = backend.put(SCOPE, LONG_NAME, texts, name=LONG_NAME, added_at=START)
    backend.put(SCOPE, "F2", ["Unrelated notes about lunch."], added_at=START + 1)
    backend.put("slack#T1#C2", LONG_NAME, ["A copy in another channel."], name=LONG_NAME)

    assert backend.store.get_file(SCOPE, LONG_NAME) == record
    assert [r.file_id for r in backend.store.list_files(SCOPE)] == ["F2", LONG_NAME]
    best = backend.search(SCOPE, "heron census nests", limit=3)[0]
    assert (best.text, best.source.title) == (texts[0], LONG_NAME)
    assert [c.text for c in backend.store.file_chunks(SCOPE, LONG_NAME)] == texts

    replaced = backend.put(SCOPE, LONG_NAME, ["The heron census, revised."], name=LONG_NAME)
    assert backend.store.get_file(SCOPE, LONG_NAME) == replaced
    assert backend.store.remove_file(SCOPE, LONG_NAME) == 1
    assert backend.store.get_file(SCOPE, LONG_NAME) is None
    assert "heron" not in " ".join(texts_of(backend.search(SCOPE, "heron census", limit=10)))
    assert [r.file_id for r in backend.store.list_files(SCOPE)] == ["F2"]
    assert backend.store.remove_file_everywhere("slack#T1", LONG_NAME) == 1
    assert backend.store.get_file("slack#T1#C2", LONG_NAME) is None


# --- SQLite -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", INJECTIONS)
def test_fts_queries_hold_only_quoted_words(text: str) -> None:
    query = fts_query(SCOPE, text)
    if not query:
        return
    prefix = f'scope_tag : "{scope_tag(SCOPE)}" AND text : ('
    assert query.startswith(prefix) and query.endswith(")")
    for term in query[len(prefix) : -1].split(" OR "):
        assert term.startswith('"') and term.endswith('"')
        assert term[1:-1].isalnum(), term


def test_query_terms_drop_stop_words_and_duplicates() -> None:
    assert query_terms("What is the Backup policy for the BACKUP servers?") == [
        "backup",
        "policy",
        "servers",
    ]
    assert query_terms("what is it?") == []
    assert query_terms("snake_case and-dashes") == ["snake", "case", "dashes"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == 24


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "knowledge.db"


def _put(store: KnowledgeStore, scope: str, file_id: str, texts: Sequence[str], **kw: Any) -> None:
    Backend("x", store, kw.pop("vectors", False), lambda _: None, lambda: None).put(
        scope, file_id, texts, **kw
    )


def test_sqlite_stop_words_alone_search_nothing_in_words_mode(db_path: Path) -> None:
    store = SqliteKnowledgeStore(db_path)
    _put(store, SCOPE, "F1", ["What is it that we do here?"])

    assert store.search(SCOPE, "what is it", limit=5) == []
    store.close()


def test_sqlite_matches_across_accents_and_word_forms(db_path: Path) -> None:
    store = SqliteKnowledgeStore(db_path)
    _put(store, SCOPE, "F1", ["Le café est ouvert.", "Deployments happen nightly."])

    assert texts_of(store.search(SCOPE, "cafe", limit=5)) == ["Le café est ouvert."]
    assert texts_of(store.search(SCOPE, "deployment", limit=5)) == ["Deployments happen nightly."]
    store.close()


def test_sqlite_data_survives_reopening_and_uses_wal(db_path: Path) -> None:
    first = SqliteKnowledgeStore(db_path)
    _put(first, SCOPE, "F1", TOPICS)
    first.close()

    second = SqliteKnowledgeStore(db_path)
    assert texts_of(second.search(SCOPE, "backups retained", limit=1)) == [TOPICS[1]]
    second.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_in_memory_works() -> None:
    store = SqliteKnowledgeStore(":memory:")
    _put(store, SCOPE, "F1", TOPICS)

    assert texts_of(store.search(SCOPE, "wifi password", limit=1)) == [TOPICS[4]]
    store.close()


def test_sqlite_fts_index_stays_in_step_with_deletes(db_path: Path) -> None:
    store = SqliteKnowledgeStore(db_path)
    for n in range(5):
        _put(store, SCOPE, "F1", [f"Version {n} of the manatee memo."])
    store.remove_file(SCOPE, "F1")
    _put(store, SCOPE, "F2", ["A memo about otters."])
    store.close()

    with sqlite3.connect(db_path) as raw:
        raw.execute(
            "INSERT INTO knowledge_chunks_fts (knowledge_chunks_fts) VALUES ('integrity-check')"
        )
        (hits,) = raw.execute(
            "SELECT count(*) FROM knowledge_chunks_fts WHERE knowledge_chunks_fts MATCH 'manatee'"
        ).fetchone()
    assert hits == 0


def test_sqlite_vectors_fuse_with_words_and_keep_unembedded_chunks(db_path: Path) -> None:
    store = SqliteKnowledgeStore(db_path)
    _put(store, SCOPE, "OLD", ["Legacy wiki page on the heron migration."])  # no vectors
    _put(
        store,
        SCOPE,
        "NEW",
        ["The heron migration starts in March.", "Parking rules."],
        vectors=True,
    )

    found = texts_of(
        store.search(SCOPE, "heron migration", limit=5, query_embedding=embed("heron migration"))
    )

    assert set(found[:2]) == {
        "Legacy wiki page on the heron migration.",
        "The heron migration starts in March.",
    }
    # Emoji only: no words to search, but the vector still finds the scope's embedded chunks.
    assert store.search(SCOPE, "🎉", limit=5, query_embedding=embed("heron"))
    store.close()


def test_sqlite_ignores_vectors_of_another_size(db_path: Path) -> None:
    store = SqliteKnowledgeStore(db_path)
    _put(store, SCOPE, "F1", ["Pelican notes."], vectors=True)

    assert store.search(SCOPE, "pelican", limit=5, query_embedding=[1.0, 0.0, 0.0]) != []
    assert store.search(SCOPE, "zzz", limit=5, query_embedding=[1.0, 0.0, 0.0]) == []
    assert store.search(SCOPE, "zzz", limit=5, query_embedding=[0.0] * DIMENSIONS) == []
    store.close()


def test_sqlite_vector_cache_follows_writes_from_this_and_other_connections(
    db_path: Path,
) -> None:
    reader = SqliteKnowledgeStore(db_path)
    _put(reader, SCOPE, "F1", ["Albatross sightings log."], vectors=True)
    query = embed("kestrel nesting")
    assert "kestrel" not in " ".join(
        texts_of(reader.search(SCOPE, "🐦", limit=5, query_embedding=query))
    )

    _put(reader, SCOPE, "F2", ["Kestrel nesting survey."], vectors=True)  # this connection
    assert texts_of(reader.search(SCOPE, "🐦", limit=1, query_embedding=query)) == [
        "Kestrel nesting survey."
    ]

    writer = SqliteKnowledgeStore(db_path)  # another connection to the same file
    writer.remove_file(SCOPE, "F2")
    _put(writer, SCOPE, "F3", ["Kestrel nesting boxes installed."], vectors=True)
    writer.close()
    assert texts_of(reader.search(SCOPE, "🐦", limit=1, query_embedding=query)) == [
        "Kestrel nesting boxes installed."
    ]
    reader.close()


def test_sqlite_failures_become_store_errors(db_path: Path) -> None:
    store = SqliteKnowledgeStore(db_path)
    store.close()

    with pytest.raises(StoreError, match="searching"):
        store.search(SCOPE, "anything", limit=3)
    with pytest.raises(StoreError, match="indexing file F1"):
        _put(store, SCOPE, "F1", ["x"])
    with pytest.raises(StoreError, match="listing files"):
        store.list_files(SCOPE)


def test_sqlite_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    with pytest.raises(StoreError, match="opening knowledge database"):
        SqliteKnowledgeStore(blocker / "knowledge.db")


# --- S3 Vectors: request shapes (botocore Stubber) ---------------------------------------------


FIXED_VERSION = "0123456789abcdef"


@pytest.fixture
def stubbed(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[S3VectorsKnowledgeStore, Stubber]]:
    monkeypatch.setattr("core.knowledge.s3vectors.uuid.uuid4", lambda: uuid.UUID(FIXED_VERSION * 2))
    client = boto3.client("s3vectors", region_name=REGION)
    records = DynamoDbFileRecords(TABLE, region=REGION)
    store = S3VectorsKnowledgeStore(BUCKET, INDEX, region=REGION, records=records, client=client)
    with Stubber(client) as stub:
        yield store, stub
        stub.assert_no_pending_responses()


def _chunks(n: int, scope: str = SCOPE) -> tuple[FileRecord, list[StoredChunk], list[list[float]]]:
    record = FileRecord(scope, "F1", "a.pdf", "h", n, "a.pdf", START)
    chunks = [StoredChunk(scope, "F1", "a.pdf", i, f"page {i}", f"text {i}") for i in range(n)]
    return record, chunks, [embed(c.text) for c in chunks]


def test_s3vectors_put_sends_batches_of_500_with_the_documented_metadata(
    stubbed: tuple[S3VectorsKnowledgeStore, Stubber],
) -> None:
    store, stub = stubbed
    record, chunks, vectors = _chunks(1_100)
    expected = [
        {
            "key": f"{SCOPE}|F1|{FIXED_VERSION}|{i}",
            "data": {"float32": vectors[i]},
            "metadata": {
                "scope": SCOPE,
                "file_id": "F1",
                "file_name": "a.pdf",
                "location": f"page {i}",
                "idx": i,
                "url": "",
                "version": FIXED_VERSION,
                "text": f"text {i}",
            },
        }
        for i in range(1_100)
    ]
    for start in (0, 500, 1_000):
        stub.add_response(
            "put_vectors",
            {},
            {
                "vectorBucketName": BUCKET,
                "indexName": INDEX,
                "vectors": expected[start : start + 500],
            },
        )

    store.put_file(record, chunks, vectors)

    assert store.get_file(SCOPE, "F1") == record


def test_s3vectors_search_queries_by_vector_with_the_scope_filter(
    stubbed: tuple[S3VectorsKnowledgeStore, Stubber],
) -> None:
    store, stub = stubbed
    record, chunks, vectors = _chunks(2)
    stub.add_response(
        "put_vectors", {}, {"vectorBucketName": BUCKET, "indexName": INDEX, "vectors": ANY}
    )
    store.put_file(record, chunks, vectors)
    query = embed("text")

    def hit(n: int, version: str, distance: float) -> dict[str, Any]:
        return {
            "key": f"{SCOPE}|F1|{version}|{n}",
            "distance": distance,
            "metadata": {
                "scope": SCOPE,
                "file_id": "F1",
                "file_name": "a.pdf",
                "location": f"page {n}",
                "idx": n,
                "url": "",
                "version": version,
                "text": f"text {n}",
            },
        }

    stub.add_response(
        "query_vectors",
        {
            "vectors": [
                hit(1, "superseded000000", 0.05),  # an older version: never returned
                hit(1, FIXED_VERSION, 0.1),
                {
                    **hit(0, FIXED_VERSION, 0.2),
                    "metadata": {**hit(0, FIXED_VERSION, 0.2)["metadata"], "scope": "slack#T1#C10"},
                },
                hit(0, FIXED_VERSION, 0.3),
            ],
            "distanceMetric": "cosine",
        },
        {
            "vectorBucketName": BUCKET,
            "indexName": INDEX,
            "topK": 10,
            "queryVector": {"float32": query},
            "filter": {"scope": {"$eq": SCOPE}},
            "returnMetadata": True,
            "returnDistance": True,
        },
    )

    passages = store.search(SCOPE, "text", limit=3, query_embedding=query)

    assert [(p.source.source_id, p.text, p.source.location) for p in passages] == [
        ("S1", "text 1", "page 1"),
        ("S2", "text 0", "page 0"),
    ]
    assert passages[0].score == pytest.approx(0.9)


def test_s3vectors_top_k_is_capped_at_100(stubbed: tuple[S3VectorsKnowledgeStore, Stubber]) -> None:
    store, stub = stubbed
    stub.add_response(
        "query_vectors",
        {"vectors": [], "distanceMetric": "cosine"},
        {
            "vectorBucketName": BUCKET,
            "indexName": INDEX,
            "topK": 100,
            "queryVector": ANY,
            "filter": {"scope": {"$eq": SCOPE}},
            "returnMetadata": True,
            "returnDistance": True,
        },
    )

    assert store.search(SCOPE, "anything", limit=80, query_embedding=embed("anything")) == []


def test_s3vectors_needs_embeddings(stubbed: tuple[S3VectorsKnowledgeStore, Stubber]) -> None:
    store, _ = stubbed
    record, chunks, _ = _chunks(1)

    with pytest.raises(StoreError) as excinfo:
        store.search(SCOPE, "a question", limit=3)
    assert str(excinfo.value) == NEEDS_EMBEDDINGS
    with pytest.raises(StoreError, match="BEDROCK_EMBEDDING_MODEL_ID"):
        store.put_file(record, chunks)
    assert store.search(SCOPE, "  ", limit=3) == []  # an empty query needs nothing


def test_s3vectors_remove_deletes_the_derived_keys_then_the_record(
    stubbed: tuple[S3VectorsKnowledgeStore, Stubber],
) -> None:
    store, stub = stubbed
    record, chunks, vectors = _chunks(700)
    stub.add_response(
        "put_vectors", {}, {"vectorBucketName": BUCKET, "indexName": INDEX, "vectors": ANY}
    )
    stub.add_response(
        "put_vectors", {}, {"vectorBucketName": BUCKET, "indexName": INDEX, "vectors": ANY}
    )
    store.put_file(record, chunks, vectors)
    keys = [f"{SCOPE}|F1|{FIXED_VERSION}|{i}" for i in range(700)]
    stub.add_response(
        "delete_vectors", {}, {"vectorBucketName": BUCKET, "indexName": INDEX, "keys": keys[:500]}
    )
    stub.add_response(
        "delete_vectors", {}, {"vectorBucketName": BUCKET, "indexName": INDEX, "keys": keys[500:]}
    )

    assert store.remove_file(SCOPE, "F1") == 700
    assert store.get_file(SCOPE, "F1") is None


def test_s3vectors_service_errors_become_store_errors(
    stubbed: tuple[S3VectorsKnowledgeStore, Stubber],
) -> None:
    store, stub = stubbed
    stub.add_client_error("query_vectors", "AccessDeniedException", "denied", 403)

    with pytest.raises(
        StoreError, match="S3 Vectors QueryVectors failed with AccessDeniedException"
    ) as excinfo:
        store.search(SCOPE, "question", limit=3, query_embedding=embed("question"))
    assert isinstance(excinfo.value.__cause__, ClientError)


def test_s3vectors_failed_put_discards_what_it_wrote(
    stubbed: tuple[S3VectorsKnowledgeStore, Stubber],
) -> None:
    store, stub = stubbed
    record, chunks, vectors = _chunks(600)
    keys = [f"{SCOPE}|F1|{FIXED_VERSION}|{i}" for i in range(600)]
    stub.add_response(
        "put_vectors", {}, {"vectorBucketName": BUCKET, "indexName": INDEX, "vectors": ANY}
    )
    stub.add_client_error("put_vectors", "ServiceUnavailableException", "busy", 503)
    stub.add_response(
        "delete_vectors", {}, {"vectorBucketName": BUCKET, "indexName": INDEX, "keys": keys[:500]}
    )
    stub.add_response(
        "delete_vectors", {}, {"vectorBucketName": BUCKET, "indexName": INDEX, "keys": keys[500:]}
    )

    with pytest.raises(StoreError, match="PutVectors failed with ServiceUnavailableException"):
        store.put_file(record, chunks, vectors)
    assert store.get_file(SCOPE, "F1") is None


def test_s3vectors_index_definition_is_valid_and_keeps_text_unfilterable() -> None:
    definition = index_definition(BUCKET, INDEX, 1024)
    model = _s3vectors_model()

    validate_parameters(definition, model.operation_model("CreateIndex").input_shape)
    unfilterable = definition["metadataConfiguration"]["nonFilterableMetadataKeys"]
    assert "text" in unfilterable and "scope" not in unfilterable
    assert len(unfilterable) <= 10
    assert definition["distanceMetric"] == "cosine"


def test_s3vectors_long_keys_are_hashed_within_the_limit() -> None:
    short = vector_key(SCOPE, "F1", "v", 3)
    long = vector_key(SCOPE, "F" * 2_000, "v", 3)

    assert short == f"{SCOPE}|F1|v|3"
    assert len(long.encode()) <= 1024 and long.startswith("h:") and long.endswith("|v|3")
    assert long != vector_key(SCOPE, "G" * 2_000, "v", 3)


# --- S3 Vectors: behaviour on the fake -----------------------------------------------------------


def test_s3vectors_replacing_leaves_no_stale_vectors(aws: Any) -> None:
    fake = FakeS3Vectors()
    made = _s3vectors_backend(fake)
    made.put(SCOPE, "F1", ["one", "two", "three"])
    made.put(SCOPE, "F1", ["four"])

    assert [m["text"] for _, m in fake.vectors.values()] == ["four"]
    made.break_put_at(1)
    with pytest.raises(StoreError):
        made.put(SCOPE, "F1", ["five", "six", "seven"])
    assert [m["text"] for _, m in fake.vectors.values()] == ["four"]


def test_s3vectors_a_concurrent_put_wins_and_the_loser_cleans_up(aws: Any) -> None:
    fake = FakeS3Vectors()

    class RacingRecords(DynamoDbFileRecords):
        """Lets another writer commit its version just before this one commits."""

        def commit(self, entry: IndexedFile, *, replacing: str | None) -> None:
            rival = replace(entry.record, file_name="rival.txt")
            super().commit(IndexedFile(rival, "rival", 0), replacing=replacing)
            super().commit(entry, replacing=replacing)

    store = S3VectorsKnowledgeStore(
        BUCKET, INDEX, region=REGION, records=RacingRecords(TABLE, region=REGION), client=fake
    )
    record, chunks, vectors = _chunks(3)

    with pytest.raises(RecordConflict):
        store.put_file(record, chunks, vectors)

    assert fake.vectors == {}
    current = store.get_file(SCOPE, "F1")
    assert current is not None and current.file_name == "rival.txt"


def test_dynamodb_records_check_versions_in_batches(aws: Any) -> None:
    records = DynamoDbFileRecords(TABLE, region=REGION)
    for n in range(150):
        entry = IndexedFile(FileRecord(SCOPE, f"F{n}", "a", "h", 1, "d", START), f"v{n}", 1)
        records.commit(entry, replacing=None)

    found = records.versions(SCOPE, [f"F{n}" for n in range(160)] + ["F1"])

    assert found == {f"F{n}": f"v{n}" for n in range(150)}
    assert records.versions("slack#T1#C10", ["F1"]) == {}
    assert not records.delete(SCOPE, "F1", "wrong-version")
    assert records.delete(SCOPE, "F1", "v1")


def test_dynamodb_records_table_has_the_documented_schema(aws: Any) -> None:
    table = aws.describe_table(TableName=TABLE)["Table"]

    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-file"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["gsi1pk", "gsi1sk"]
    assert records_table_definition(TABLE)["SSESpecification"] == {"Enabled": True}


def test_dynamodb_records_item_layout(aws: Any) -> None:
    records = DynamoDbFileRecords(TABLE, region=REGION)
    record = FileRecord(SCOPE, "F7", "plan.pdf", "abc", 12, "plan.pdf (3 pages)", START)
    records.commit(IndexedFile(record, "v1", 12), replacing=None)

    (item,) = aws.scan(TableName=TABLE)["Items"]
    assert item["pk"] == {"S": "SCOPE#slack#T1#C1"}
    assert item["sk"] == {"S": "FILE#F7"}
    assert item["gsi1pk"] == {"S": "FILE#slack#T1#F7"}
    assert item["gsi1sk"] == {"S": "SCOPE#slack#T1#C1"}
    assert (item["version"], item["vectors"]) == ({"S": "v1"}, {"N": "12"})
    assert records.get(SCOPE, "F7") == IndexedFile(record, "v1", 12)
    with pytest.raises(RecordConflict):
        records.commit(IndexedFile(record, "v2", 12), replacing=None)


def test_moto_refuses_keys_over_dynamodb_limits(aws: Any) -> None:
    """The records tests run where an oversized key fails, as it does in DynamoDB."""
    with pytest.raises(ClientError, match="range keys has exceeded the size limit of 1024"):
        aws.put_item(TableName=TABLE, Item={"pk": {"S": "p"}, "sk": {"S": f"FILE#{LONG_NAME}"}})
    with pytest.raises(ClientError, match="hashkey has exceeded the maximum size limit"):
        aws.put_item(
            TableName=TABLE,
            Item={"pk": {"S": "p"}, "sk": {"S": "s"}, "gsi1pk": {"S": "x" * 2049}},
        )


def _entry(file_id: str, version: str = "v1", scope: str = SCOPE) -> IndexedFile:
    return IndexedFile(FileRecord(scope, file_id, file_id, "h", 1, "d", START), version, 1)


def test_dynamodb_records_hash_long_ids_into_their_keys_and_keep_short_ones(aws: Any) -> None:
    records = DynamoDbFileRecords(TABLE, region=REGION)
    longer = "報" * 700  # 2,100 bytes: past the 2,048 of the index's partition key too
    for file_id in ("F7", LONG_NAME, longer):
        records.commit(_entry(file_id), replacing=None)

    items = {item["file_id"]["S"]: item for item in aws.scan(TableName=TABLE)["Items"]}

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    assert (items["F7"]["sk"]["S"], items["F7"]["gsi1pk"]["S"]) == ("FILE#F7", "FILE#slack#T1#F7")
    assert items[LONG_NAME]["sk"]["S"] == f"FILE#h:{sha(LONG_NAME)}"
    assert items[LONG_NAME]["gsi1pk"]["S"] == f"FILE#slack#T1#{LONG_NAME}"  # fits: unchanged
    assert items[longer]["sk"]["S"] == f"FILE#h:{sha(longer)}"
    assert items[longer]["gsi1pk"]["S"] == f"FILE#h:{sha('slack#T1#' + longer)}"
    for file_id in ("F7", LONG_NAME, longer):
        assert records.get(SCOPE, file_id) == _entry(file_id)
        assert records.find("slack#T1", file_id) == [_entry(file_id)]
    assert records.versions(SCOPE, [LONG_NAME, longer, "F8"]) == {LONG_NAME: "v1", longer: "v1"}
    assert sorted(e.record.file_id for e in records.in_scope(SCOPE)) == sorted(items)
    records.commit(_entry(LONG_NAME, "v2"), replacing="v1")
    assert records.get(SCOPE, LONG_NAME) == _entry(LONG_NAME, "v2")
    assert not records.delete(SCOPE, LONG_NAME, "v1")
    assert records.delete(SCOPE, LONG_NAME, "v2")
    assert records.get(SCOPE, LONG_NAME) is None


def test_dynamodb_records_never_take_an_id_for_the_long_one_whose_hash_it_spells(
    aws: Any,
) -> None:
    records = DynamoDbFileRecords(TABLE, region=REGION)
    records.commit(_entry(LONG_NAME), replacing=None)
    lookalike = "h:" + hashlib.sha256(LONG_NAME.encode()).hexdigest()  # the same sort key

    assert records.get(SCOPE, lookalike) is None
    assert records.versions(SCOPE, [lookalike, LONG_NAME]) == {LONG_NAME: "v1"}
    assert records.find("slack#T1", lookalike) == []
    with pytest.raises(RecordConflict):  # refused, and the long-named file keeps its record
        records.commit(_entry(lookalike, "v2"), replacing=None)
    assert records.get(SCOPE, LONG_NAME) == _entry(LONG_NAME)


class UnprocessedKeys:
    """Passes calls to the moto client; ``BatchGetItem`` answers only the first key of each
    request and leaves the rest unprocessed, ``times`` times."""

    def __init__(self, client: Any, times: int) -> None:
        self._client = client
        self.times = times
        self.batch_gets = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.batch_gets += 1
        if self.times == 0:
            return dict(self._client.batch_get_item(RequestItems=RequestItems))
        self.times -= 1
        ((table, request),) = RequestItems.items()
        first, rest = request["Keys"][:1], request["Keys"][1:]
        response = dict(
            self._client.batch_get_item(RequestItems={table: {**request, "Keys": first}})
        )
        response["UnprocessedKeys"] = {table: {**request, "Keys": rest}} if rest else {}
        return response


def test_dynamodb_records_retry_unprocessed_keys_within_a_bound(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.dynamodb.time.sleep", lambda _seconds: None)
    records = DynamoDbFileRecords(TABLE, region=REGION)
    for n in range(10):
        records.commit(_entry(f"F{n}", f"v{n}"), replacing=None)
    wanted = [f"F{n}" for n in range(10)]
    slow = UnprocessedKeys(aws, times=2)

    found = DynamoDbFileRecords(TABLE, region=REGION, client=slow).versions(SCOPE, wanted)

    assert found == {f"F{n}": f"v{n}" for n in range(10)}
    assert slow.batch_gets == 3
    stuck = UnprocessedKeys(aws, times=1_000)  # one key a call: 6 calls leave 4
    with pytest.raises(StoreError, match="BatchGetItem left 4 requests unprocessed"):
        DynamoDbFileRecords(TABLE, region=REGION, client=stuck).versions(SCOPE, wanted)
    assert stuck.batch_gets == 6


def test_build_s3vectors_store_reads_its_settings(aws: Any) -> None:
    from core.config import Settings

    unset = build_s3vectors_store(Settings(store="dynamodb", knowledge_table=TABLE))
    with pytest.raises(StoreError, match="CHATBOT_VECTOR_BUCKET is not set"):
        unset.search(SCOPE, "question", limit=3, query_embedding=embed("question"))

    store = build_s3vectors_store(
        Settings(store="dynamodb", vector_bucket=BUCKET, vector_index=INDEX, knowledge_table=TABLE)
    )
    assert store.get_file(SCOPE, "F1") is None  # the records table is the configured one
    assert store._client.meta.service_model.service_name == "s3vectors"
