"""A whole turn with CHATBOT_LLM=bedrock: assistant → real boto3 → local Bedrock stand-in → sink."""

from __future__ import annotations

import time
from pathlib import Path

import tenacity

from core.config import Settings
from core.domain import ConversationKey, Role, Turn
from core.errors import ModelStreamInterrupted, ModelThrottled
from core.runtime import build_assistant
from tests.fakes import RecordingSink
from tests.standins.bedrock import BedrockStandIn, HttpError, Stream, StreamThenException

KEY = ConversationKey("slack", "T1", "C1", "1.0")


def settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(llm="bedrock", data_dir=tmp_path, edit_interval_seconds=0.01, **extra)  # type: ignore[arg-type]


def ask(assistant, text: str, turn_id: str = "1"):  # type: ignore[no-untyped-def]
    sink = RecordingSink()
    turn = Turn(KEY, turn_id, Role.USER, "U1", text, created_at=time.time())
    return assistant.answer(turn, sink), sink


def fast_retries(assistant) -> None:  # type: ignore[no-untyped-def]
    assistant.model._wait = tenacity.wait_none()


def test_throttled_twice_then_streamed_in_full(
    bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    assistant = build_assistant(settings(tmp_path))
    fast_retries(assistant)
    bedrock_standin.script(
        HttpError(429, "ThrottlingException", "slow down"),
        HttpError(429, "ThrottlingException", "slow down"),
        Stream(["Refunds ", "take five ", "days."]),
    )
    reply, sink = ask(assistant, "How long do refunds take?")
    assert reply.complete and sink.messages["m0"] == "Refunds take five days."
    assert len(bedrock_standin.requests) == 3
    body = bedrock_standin.requests[-1].body
    assert body["inferenceConfig"]["temperature"] == 0.2
    assert "How long do refunds take?" in body["messages"][-1]["content"][0]["text"]


def test_throttled_past_the_attempt_budget_says_so_once(
    bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    assistant = build_assistant(settings(tmp_path, model_max_attempts=2))
    fast_retries(assistant)
    bedrock_standin.script(*[HttpError(429, "ThrottlingException", "no")] * 2)
    reply, sink = ask(assistant, "hi")
    assert len(bedrock_standin.requests) == 2  # bounded: never a blind storm of calls
    assert sink.messages["m0"] == "⚠️ " + ModelThrottled.user_message
    assert reply.error == "model_throttled"


def test_stream_broken_after_text_is_neither_repeated_nor_silently_cut(
    bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    assistant = build_assistant(settings(tmp_path))
    fast_retries(assistant)
    bedrock_standin.script(
        StreamThenException(["The deploy ", "window is "], "modelStreamErrorException", "boom")
    )
    reply, sink = ask(assistant, "When is the deploy window?")
    final = sink.messages["m0"]
    assert final.startswith("The deploy window is") and final.count("The deploy") == 1
    assert final.endswith(ModelStreamInterrupted.user_message)
    assert len(bedrock_standin.requests) == 1
    assert not reply.complete


def test_bad_model_id_is_reported_as_configuration(
    bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    assistant = build_assistant(settings(tmp_path, bedrock_model_id="no-such-model"))
    bedrock_standin.script(
        HttpError(400, "ValidationException", "The provided model identifier is invalid.")
    )
    reply, sink = ask(assistant, "hi")
    assert reply.error == "model_config_error" and "misconfigured" in sink.messages["m0"]
    assert bedrock_standin.requests[0].model_id == "no-such-model"
