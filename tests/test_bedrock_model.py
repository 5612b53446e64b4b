"""BedrockChatModel through the real boto3 client against the local Bedrock stand-in."""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections.abc import Generator
from typing import Any

import boto3
import botocore.eventstream
import botocore.exceptions
import pytest
import tenacity

from core.domain import ConversationKey, Role, Turn
from core.errors import (
    ModelAccessDenied,
    ModelConfigError,
    ModelError,
    ModelStreamInterrupted,
    ModelThrottled,
    ModelUnavailable,
)
from core.models.base import InferenceSettings, ModelEvent, StreamEnd, TextDelta
from core.models.bedrock import BedrockChatModel
from core.prompt import Prompt, build_prompt
from tests.standins.bedrock import (
    BedrockStandIn,
    HttpError,
    Stream,
    StreamThenDrop,
    StreamThenException,
    encode_message,
    event_message,
)

MODEL_ID = "global.anthropic.claude-sonnet-4-6"
KEY = ConversationKey("slack", "T1", "C1", "1700000000.000100")
SECRET_QUESTION = "What is the launch code SECRET-QUESTION-42?"


def make_prompt(inference: InferenceSettings | None = None) -> Prompt:
    history = [
        Turn(KEY, "1", Role.USER, "U1", "Where are the release notes?", user_name="ana"),
        Turn(KEY, "2", Role.ASSISTANT, "B1", "In the wiki, under Releases."),
    ]
    question = Turn(KEY, "3", Role.USER, "U1", SECRET_QUESTION, user_name="ana")
    return build_prompt(
        system_prompt="You are a test assistant.",
        question=question,
        history=history,
        passages=[],
        token_budget=4000,
        inference=inference or InferenceSettings(max_tokens=321, temperature=0.35),
    )


def make_model(model_id: str = MODEL_ID, max_attempts: int = 4) -> BedrockChatModel:
    return BedrockChatModel(
        model_id=model_id,
        region="us-east-1",
        max_attempts=max_attempts,
        retry_wait=tenacity.wait_none(),
    )


def texts(events: list[ModelEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


def ends(events: list[ModelEvent]) -> list[StreamEnd]:
    return [e for e in events if isinstance(e, StreamEnd)]


def consume_until_error(model: BedrockChatModel, prompt: Prompt) -> tuple[list[str], Exception]:
    seen: list[str] = []
    with pytest.raises(ModelError) as info:
        for event in model.stream(prompt):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    return seen, info.value


# --- happy path --------------------------------------------------------------------------


def test_streams_deltas_in_order_then_one_stream_end(bedrock_standin: BedrockStandIn) -> None:
    usage = {"inputTokens": 120, "outputTokens": 3, "totalTokens": 123, "cacheReadInputTokens": 100}
    bedrock_standin.script(Stream(["Alpha", " beta", " gamma."], usage=usage))

    events = list(make_model().stream(make_prompt()))

    assert texts(events) == ["Alpha", " beta", " gamma."]
    assert events[-1] == StreamEnd(stop_reason="end_turn", usage=usage)
    assert len(ends(events)) == 1


def test_request_carries_system_alternating_messages_and_inference_config(
    bedrock_standin: BedrockStandIn,
) -> None:
    prompt = make_prompt()
    list(make_model().stream(prompt))

    (request,) = bedrock_standin.requests
    body = request.body
    assert request.model_id == MODEL_ID
    assert body["system"] == [{"text": "You are a test assistant."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [m["content"] for m in body["messages"]] == [[{"text": m.text}] for m in prompt.messages]
    assert SECRET_QUESTION in body["messages"][-1]["content"][0]["text"]
    assert body["inferenceConfig"] == {"maxTokens": 321, "temperature": 0.35}
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256")


def test_optional_inference_settings_are_sent_when_set(bedrock_standin: BedrockStandIn) -> None:
    settings = InferenceSettings(max_tokens=50, temperature=0.0, top_p=0.9, stop_sequences=("##",))
    list(make_model().stream(make_prompt(settings)))

    assert bedrock_standin.requests[0].body["inferenceConfig"] == {
        "maxTokens": 50,
        "temperature": 0.0,
        "topP": 0.9,
        "stopSequences": ["##"],
    }


@pytest.mark.parametrize(
    "model_id",
    [
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6",
    ],
)
def test_model_id_reaches_the_url_path_intact(
    bedrock_standin: BedrockStandIn, model_id: str
) -> None:
    events = list(make_model(model_id).stream(make_prompt()))

    assert bedrock_standin.requests[0].model_id == model_id
    assert isinstance(events[-1], StreamEnd)


def test_max_tokens_stop_reason_is_surfaced(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.script(Stream(["cut"], stop_reason="max_tokens"))

    events = list(make_model().stream(make_prompt()))

    assert texts(events) == ["cut"]
    assert ends(events)[0].stop_reason == "max_tokens"


def test_answer_with_no_text_yields_only_stream_end(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.script(Stream([], stop_reason="guardrail_intervened"))

    events = list(make_model().stream(make_prompt()))

    assert len(events) == 1
    assert isinstance(events[0], StreamEnd)
    assert events[0].stop_reason == "guardrail_intervened"


def test_deltas_arrive_progressively(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.script(Stream(["a", "b", "c"], delay=0.15))

    arrivals = []
    for event in make_model().stream(make_prompt()):
        if isinstance(event, TextDelta):
            arrivals.append(time.monotonic())

    assert len(arrivals) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap > 0.1 for gap in gaps), gaps


# --- retries before the first delta ------------------------------------------------------


def test_throttled_twice_then_success_takes_three_requests(
    bedrock_standin: BedrockStandIn,
) -> None:
    bedrock_standin.script(
        HttpError(429, "ThrottlingException", "slow down"),
        HttpError(429, "ThrottlingException", "slow down"),
        Stream(["Finally", " here."]),
    )

    events = list(make_model().stream(make_prompt()))

    assert len(bedrock_standin.requests) == 3
    assert "".join(texts(events)) == "Finally here."
    assert isinstance(events[-1], StreamEnd)


def test_throttled_every_time_gives_up_after_exactly_max_attempts(
    bedrock_standin: BedrockStandIn,
) -> None:
    # Also proves botocore's own retries are off: with them on, each attempt would be 2+ requests.
    bedrock_standin.default_behaviour = HttpError(429, "ThrottlingException", "slow down")

    _, error = consume_until_error(make_model(max_attempts=3), make_prompt())

    assert type(error) is ModelThrottled
    assert "ThrottlingException" in str(error)
    assert isinstance(error.__cause__, botocore.exceptions.ClientError)
    assert len(bedrock_standin.requests) == 3


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (503, "ServiceUnavailableException"),
        (500, "InternalServerException"),
        (408, "ModelTimeoutException"),
        (429, "ModelNotReadyException"),
        (502, "BadGateway"),  # an unmodelled 5xx, e.g. from a proxy
    ],
)
def test_transient_http_errors_are_retried(
    bedrock_standin: BedrockStandIn, status: int, code: str
) -> None:
    bedrock_standin.script(HttpError(status, code), Stream(["ok"]))

    events = list(make_model().stream(make_prompt()))

    assert texts(events) == ["ok"]
    assert len(bedrock_standin.requests) == 2


def test_unavailable_every_time_raises_model_unavailable(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.default_behaviour = HttpError(503, "ServiceUnavailableException", "down")

    _, error = consume_until_error(make_model(max_attempts=2), make_prompt())

    assert type(error) is ModelUnavailable
    assert "ServiceUnavailableException" in str(error)
    assert len(bedrock_standin.requests) == 2


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "ValidationException", ModelConfigError),
        (404, "ResourceNotFoundException", ModelConfigError),
        (403, "AccessDeniedException", ModelAccessDenied),
        (403, "UnrecognizedClientException", ModelAccessDenied),
        (400, "ServiceQuotaExceededException", ModelError),
        (424, "ModelErrorException", ModelError),
    ],
)
def test_permanent_http_errors_are_not_retried(
    bedrock_standin: BedrockStandIn, status: int, code: str, expected: type[ModelError]
) -> None:
    bedrock_standin.script(HttpError(status, code, "no"), Stream(["never seen"]))

    seen, error = consume_until_error(make_model(), make_prompt())

    assert type(error) is expected
    assert code in str(error)
    assert not error.retryable
    assert seen == []
    assert len(bedrock_standin.requests) == 1


def test_in_stream_throttling_before_text_is_retried(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.script(
        StreamThenException([], "throttlingException", "too many tokens"),
        Stream(["after", " retry"]),
    )

    events = list(make_model().stream(make_prompt()))

    assert texts(events) == ["after", " retry"]
    assert len(bedrock_standin.requests) == 2


def test_in_stream_throttling_every_time_maps_to_model_throttled(
    bedrock_standin: BedrockStandIn,
) -> None:
    bedrock_standin.default_behaviour = StreamThenException([], "throttlingException", "busy")

    _, error = consume_until_error(make_model(max_attempts=2), make_prompt())

    assert type(error) is ModelThrottled
    assert "ThrottlingException" in str(error)  # lower-camel code normalised
    assert isinstance(error.__cause__, botocore.exceptions.EventStreamError)
    assert len(bedrock_standin.requests) == 2


def test_in_stream_validation_error_is_not_retried(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.script(StreamThenException([], "validationException", "bad input"))

    _, error = consume_until_error(make_model(), make_prompt())

    assert type(error) is ModelConfigError
    assert "ValidationException" in str(error)
    assert len(bedrock_standin.requests) == 1


def test_connection_dropped_before_text_is_retried(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.script(StreamThenDrop([]), Stream(["recovered"]))

    events = list(make_model().stream(make_prompt()))

    assert texts(events) == ["recovered"]
    assert len(bedrock_standin.requests) == 2


def test_endpoint_refusing_connections_gives_model_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", f"http://127.0.0.1:{port}")

    _, error = consume_until_error(make_model(max_attempts=2), make_prompt())

    assert type(error) is ModelUnavailable
    assert isinstance(error.__cause__, botocore.exceptions.EndpointConnectionError)
    assert "EndpointConnectionError" in str(error)


# --- failures after the first delta ------------------------------------------------------


def test_in_stream_error_after_text_interrupts_without_retry(
    bedrock_standin: BedrockStandIn,
) -> None:
    bedrock_standin.script(
        StreamThenException(["One", " two"], "modelStreamErrorException", "model broke"),
        Stream(["must not be requested"]),
    )

    seen, error = consume_until_error(make_model(), make_prompt())

    assert type(error) is ModelStreamInterrupted
    assert error.reason == "ModelStreamErrorException"  # type: ignore[attr-defined]
    assert "ModelStreamErrorException" in str(error)
    assert isinstance(error.__cause__, botocore.exceptions.EventStreamError)
    assert seen == ["One", " two"]
    assert len(bedrock_standin.requests) == 1


def test_throttling_after_text_is_not_retried_either(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.script(StreamThenException(["Partial"], "throttlingException", "busy"))

    seen, error = consume_until_error(make_model(), make_prompt())

    assert type(error) is ModelStreamInterrupted
    assert error.reason == "ThrottlingException"  # type: ignore[attr-defined]
    assert seen == ["Partial"]
    assert len(bedrock_standin.requests) == 1


def test_connection_dropped_after_text_interrupts(bedrock_standin: BedrockStandIn) -> None:
    bedrock_standin.script(StreamThenDrop(["Half", " an"]))

    seen, error = consume_until_error(make_model(), make_prompt())

    assert type(error) is ModelStreamInterrupted
    assert error.reason == "ProtocolError"  # type: ignore[attr-defined]
    assert seen == ["Half", " an"]
    assert len(bedrock_standin.requests) == 1


# --- resources ---------------------------------------------------------------------------


def test_one_boto3_client_per_model_instance(
    bedrock_standin: BedrockStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []
    real_client = boto3.client

    def counting_client(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real_client(*args, **kwargs)

    monkeypatch.setattr(boto3, "client", counting_client)
    model = make_model()
    client = model._client
    first = list(model.stream(make_prompt()))
    second = list(model.stream(make_prompt()))

    assert calls == [("bedrock-runtime",)]
    assert model._client is client
    assert texts(first) == texts(second) != []
    assert len(bedrock_standin.requests) == 2


def test_client_has_botocore_retries_off_and_timeouts(bedrock_standin: BedrockStandIn) -> None:
    config = make_model()._client.meta.config

    assert config.retries["total_max_attempts"] == 1
    assert config.connect_timeout == 5
    assert config.read_timeout == 60
    assert config.tcp_keepalive is True
    assert make_model()._client.meta.endpoint_url == bedrock_standin.url


def test_stopping_early_closes_the_event_stream(
    bedrock_standin: BedrockStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[object] = []
    real_close = botocore.eventstream.EventStream.close

    def recording_close(self: botocore.eventstream.EventStream) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(botocore.eventstream.EventStream, "close", recording_close)
    bedrock_standin.script(Stream(["first"] + ["more"] * 20, delay=0.01), Stream(["next"]))
    model = make_model()

    stream = model.stream(make_prompt())
    assert isinstance(stream, Generator)
    assert next(stream) == TextDelta("first")
    assert closed == []
    stream.close()

    assert len(closed) == 1
    # The model stays usable after an abandoned stream.
    assert texts(list(model.stream(make_prompt()))) == ["next"]


# --- backoff and logging -----------------------------------------------------------------


def test_default_wait_is_full_jitter_exponential(bedrock_standin: BedrockStandIn) -> None:
    model = BedrockChatModel(model_id=MODEL_ID, region="us-east-1")
    wait = model._wait
    assert isinstance(wait, tenacity.wait_random_exponential)

    def samples(attempt: int, n: int = 300) -> list[float]:
        state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return [wait(state) for _ in range(n)]

    first = samples(1)  # upper bound 0.5 * 2**0 = 0.5 s
    assert all(0.0 <= s <= 0.5 for s in first)
    assert min(first) < 0.1 and max(first) > 0.4  # spread over the whole range: full jitter
    assert len(set(first)) > 250
    third = samples(3)  # upper bound 2 s
    assert all(0.0 <= s <= 2.0 for s in third) and max(third) > 1.5
    capped = samples(12)  # 0.5 * 2**11 would be 1024 s; the cap is 8 s
    assert all(0.0 <= s <= 8.0 for s in capped) and max(capped) > 7.0


def test_retries_log_structured_fields_and_never_the_prompt(
    bedrock_standin: BedrockStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    bedrock_standin.script(HttpError(429, "ThrottlingException"), Stream(["ok"]))
    caplog.set_level(logging.DEBUG, logger="core.models.bedrock")

    list(make_model().stream(make_prompt()))

    retries = [r for r in caplog.records if r.getMessage() == "bedrock request failed, retrying"]
    assert len(retries) == 1
    record = retries[0]
    assert record.levelno == logging.WARNING
    assert record.model_id == MODEL_ID  # type: ignore[attr-defined]
    assert record.attempt == 1  # type: ignore[attr-defined]
    assert record.error_code == "ThrottlingException"  # type: ignore[attr-defined]
    for r in caplog.records:
        assert "SECRET-QUESTION-42" not in repr(r.__dict__)


# --- the stand-in itself -----------------------------------------------------------------


def test_standin_frames_parse_with_botocore() -> None:
    buffer = botocore.eventstream.EventStreamBuffer()
    buffer.add_data(event_message("contentBlockDelta", {"delta": {"text": "hé"}}))
    buffer.add_data(encode_message({":message-type": "event"}, b""))

    first, second = list(buffer)

    assert first.headers[":event-type"] == "contentBlockDelta"
    assert first.payload == b'{"delta": {"text": "h\\u00e9"}}'
    assert second.headers == {":message-type": "event"} and second.payload == b""


def test_standin_scripts_are_consumed_in_order_then_default() -> None:
    with BedrockStandIn() as standin:
        client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=standin.url)
        standin.script(HttpError(400, "ValidationException", "first"))
        assert standin.pending == 1
        with pytest.raises(botocore.exceptions.ClientError) as info:
            client.converse_stream(modelId="m", messages=[])
        assert info.value.response["Error"] == {"Code": "ValidationException", "Message": "first"}
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        events = list(client.converse_stream(modelId="m", messages=[])["stream"])
        assert standin.pending == 0
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert [len(standin.requests), standin.requests[1].model_id] == [2, "m"]
