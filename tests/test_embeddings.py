"""TitanEmbedder against botocore's Stubber (exact requests, error mapping, retries) and against a
small fake client (ordering under concurrency, which the Stubber's fixed call order cannot test)."""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import tenacity
from botocore.response import StreamingBody
from botocore.stub import Stubber

from core.errors import ModelAccessDenied, ModelConfigError, ModelError, ModelThrottled
from core.knowledge.embeddings import MAX_INPUT_CHARS, TITAN_V2, Embedder, TitanEmbedder

REGION = "us-east-1"


def body(payload: dict[str, Any]) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def titan_response(vector: list[float]) -> dict[str, Any]:
    return {
        "body": body({"embedding": vector, "inputTextTokenCount": 3}),
        "contentType": "application/json",
    }


def titan_request(text: str, dimensions: int = 256) -> dict[str, Any]:
    return {
        "modelId": TITAN_V2,
        "body": json.dumps({"inputText": text, "dimensions": dimensions, "normalize": True}),
        "contentType": "application/json",
        "accept": "application/json",
    }


@pytest.fixture
def stubbed() -> Iterator[tuple[TitanEmbedder, Stubber]]:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    embedder = TitanEmbedder(
        region=REGION,
        dimensions=256,
        client=client,
        max_workers=1,  # the Stubber answers in a fixed order
        retry_wait=tenacity.wait_none(),
    )
    with Stubber(client) as stub:
        yield embedder, stub
        stub.assert_no_pending_responses()
    embedder.close()


def test_each_text_is_one_invoke_model_call_with_the_titan_v2_body(
    stubbed: tuple[TitanEmbedder, Stubber],
) -> None:
    embedder, stub = stubbed
    stub.add_response("invoke_model", titan_response([0.1] * 256), titan_request("first text"))
    stub.add_response("invoke_model", titan_response([0.2] * 256), titan_request("second ☕"))

    vectors = embedder.embed(["first text", "second ☕"])

    assert vectors == [[0.1] * 256, [0.2] * 256]
    assert embedder.dimensions == 256


def test_long_input_is_truncated_to_titans_limit(stubbed: tuple[TitanEmbedder, Stubber]) -> None:
    embedder, stub = stubbed
    text = "word " * 20_000
    stub.add_response(
        "invoke_model", titan_response([0.0] * 256), titan_request(text[:MAX_INPUT_CHARS])
    )

    embedder.embed([text])


def test_throttling_is_retried(stubbed: tuple[TitanEmbedder, Stubber]) -> None:
    embedder, stub = stubbed
    stub.add_client_error("invoke_model", "ThrottlingException", "slow down", 429)
    stub.add_client_error("invoke_model", "ServiceUnavailableException", "busy", 503)
    stub.add_response("invoke_model", titan_response([0.5] * 256), titan_request("retry me"))

    assert embedder.embed(["retry me"]) == [[0.5] * 256]


def test_throttling_that_never_ends_is_raised_after_the_last_attempt(
    stubbed: tuple[TitanEmbedder, Stubber],
) -> None:
    embedder, stub = stubbed
    for _ in range(embedder.max_attempts):
        stub.add_client_error("invoke_model", "ThrottlingException", "slow down", 429)

    with pytest.raises(ModelThrottled, match="ThrottlingException"):
        embedder.embed(["never"])


def test_a_validation_error_is_surfaced_at_once(stubbed: tuple[TitanEmbedder, Stubber]) -> None:
    embedder, stub = stubbed
    stub.add_client_error("invoke_model", "ValidationException", "Malformed input request", 400)

    with pytest.raises(ModelConfigError, match="Malformed input request"):
        embedder.embed(["bad"])


def test_access_denied_is_named(stubbed: tuple[TitanEmbedder, Stubber]) -> None:
    embedder, stub = stubbed
    stub.add_client_error("invoke_model", "AccessDeniedException", "no access", 403)

    with pytest.raises(ModelAccessDenied):
        embedder.embed(["x"])


def test_a_reply_without_an_embedding_of_the_right_size_is_an_error(
    stubbed: tuple[TitanEmbedder, Stubber],
) -> None:
    embedder, stub = stubbed
    stub.add_response("invoke_model", titan_response([0.1] * 10), titan_request("x"))

    with pytest.raises(ModelError, match="256 dimensions"):
        embedder.embed(["x"])


def test_empty_text_and_bad_settings_are_refused() -> None:
    embedder = TitanEmbedder(region=REGION, dimensions=512, client=object())

    with pytest.raises(ValueError, match="empty"):
        embedder.embed(["fine", "  "])
    with pytest.raises(ValueError, match="dimensions"):
        TitanEmbedder(region=REGION, dimensions=300, client=object())
    with pytest.raises(ValueError):
        TitanEmbedder(region=REGION, client=object(), max_workers=0)
    assert embedder.embed([]) == []
    assert isinstance(embedder, Embedder)


def test_a_client_built_by_the_embedder_never_retries_on_its_own() -> None:
    embedder = TitanEmbedder(region=REGION)

    assert embedder._client.meta.config.retries["total_max_attempts"] == 1
    assert embedder._client.meta.region_name == REGION


class SlowFakeClient:
    """Answers ``invoke_model`` after a random pause, with a vector made from the text."""

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on
        self.active = 0
        self.most_active = 0
        self.calls = 0
        self._lock = threading.Lock()
        self._random = random.Random(7)

    def invoke_model(self, **request: Any) -> dict[str, Any]:
        text = json.loads(request["body"])["inputText"]
        with self._lock:
            self.calls += 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            pause = self._random.uniform(0.0, 0.01)
        try:
            time.sleep(pause)
            if text == self.fail_on:
                raise ValueError("boom")
            return {"body": body({"embedding": [float(len(text))] * 256})}
        finally:
            with self._lock:
                self.active -= 1


def test_order_is_preserved_under_concurrency() -> None:
    client = SlowFakeClient()
    embedder = TitanEmbedder(region=REGION, dimensions=256, client=client, max_workers=4)
    texts = ["x" * n for n in range(1, 61)]

    vectors = embedder.embed(texts)

    assert [v[0] for v in vectors] == [float(n) for n in range(1, 61)]
    assert client.calls == 60
    assert 1 < client.most_active <= 4
    embedder.close()


def test_one_failure_fails_the_batch() -> None:
    client = SlowFakeClient(fail_on="x" * 5)
    embedder = TitanEmbedder(
        region=REGION, dimensions=256, client=client, max_workers=2, max_attempts=1
    )

    with pytest.raises(ModelError, match="boom"):
        embedder.embed(["x" * n for n in range(1, 200)])
    assert client.calls < 199  # the calls not yet started were cancelled
    embedder.close()
