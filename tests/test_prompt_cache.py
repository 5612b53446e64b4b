"""Prompt caching: where the cache points go in the ConverseStream request the Bedrock stand-in
receives, when there are none, and what the stand-in bills for them (as Bedrock does)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from core.assistant import Assistant
from core.config import ConfigError, Settings
from core.domain import ConversationKey, Passage, Role, SourceCitation, Turn
from core.models.bedrock_runtime import runtime_client
from core.models.prompt_cache import cache_minimum, known_minimum
from core.runtime import build_assistant
from core.text import estimate_tokens
from core.usage import AnswerUsage
from tests.fakes import RecordingSink
from tests.standins.bedrock import BedrockStandIn, PromptCache, Stream

SONNET = "global.anthropic.claude-sonnet-4-6"
HAIKU = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
CACHE_POINT = {"cachePoint": {"type": "default"}}
# About 2,000 estimated tokens: over Sonnet's minimum (1,024), under Haiku 4.5's (4,096).
LONG_SYSTEM = "You answer questions about the handbook. " + "Rule: be precise. " * 440


class Recorder:
    def __init__(self) -> None:
        self.usages: list[AnswerUsage] = []

    def record(self, usage: AnswerUsage) -> None:
        self.usages.append(usage)


class Files:
    """A retriever with files: every question gets the same passage."""

    def has_files(self, key: ConversationKey) -> bool:
        return True

    def retrieve(self, key: ConversationKey, query: str) -> Sequence[Passage]:
        return [Passage(SourceCitation("S1", "handbook.pdf", "p. 3"), "Refunds take 5 days.")]


def assistant(
    tmp_path: Path,
    *,
    model_id: str = SONNET,
    system_prompt: str = LONG_SYSTEM,
    observer: Recorder | None = None,
    retriever: Files | None = None,
    **extra: Any,
) -> Assistant:
    settings = Settings(
        llm="bedrock",
        data_dir=tmp_path,
        edit_interval_seconds=0.01,
        bedrock_model_id=model_id,
        system_prompt=system_prompt,
        **extra,
    )
    return build_assistant(settings, retriever=retriever, usage_observer=observer)


def converse(
    helper: Assistant, questions: Sequence[str], thread: str = "1.0"
) -> list[RecordingSink]:
    key = ConversationKey("slack", "T1", "C1", thread)
    sinks = []
    for n, question in enumerate(questions, 1):
        sink = RecordingSink()
        turn = Turn(key, f"{thread}-{n}", Role.USER, "U1", question, created_at=time.time() + n)
        reply = helper.answer(turn, sink)
        assert reply.complete, reply
        sinks.append(sink)
    return sinks


def cache_points(body: dict[str, Any]) -> dict[str, Any]:
    """Where the cache points are: in ``system`` (block index) and per message index."""
    return {
        "system": [i for i, b in enumerate(body["system"]) if "cachePoint" in b],
        "messages": [
            i
            for i, m in enumerate(body["messages"])
            if any("cachePoint" in block for block in m["content"])
        ],
    }


def test_cache_points_after_the_system_prompt_and_after_the_history(
    bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    converse(assistant(tmp_path, retriever=Files()), ["first?", "second?", "third?"])
    first, second, third = (r.body for r in bedrock_standin.requests)

    # Turn 1: only the system prompt repeats later; it ends with the cache point.
    assert first["system"][-1] == CACHE_POINT and first["system"][0]["text"] == LONG_SYSTEM
    assert cache_points(first) == {"system": [1], "messages": []}
    # Turn 2: [question 1, answer 1, new message]: written after the history (answer 1).
    assert cache_points(second) == {"system": [1], "messages": [1]}
    assert second["messages"][1]["role"] == "assistant"
    assert second["messages"][1]["content"][-1] == CACHE_POINT
    # Turn 3: read where turn 2 wrote (index 1), written after the new history (index 3).
    assert cache_points(third) == {"system": [1], "messages": [1, 3]}
    # Never in the new message: its documents and question are not repeated by the next turn.
    last = third["messages"][-1]
    assert "<documents>" in last["content"][0]["text"] and "third?" in last["content"][0]["text"]
    assert last["content"] == [{"text": last["content"][0]["text"]}]


def test_no_cache_point_below_the_minimum(bedrock_standin: BedrockStandIn, tmp_path: Path) -> None:
    helper = assistant(tmp_path, system_prompt=Settings().system_prompt)
    assert estimate_tokens(Settings().system_prompt) < 1024  # the built-in prompt is short
    converse(helper, ["first?", "second?", "third?"])
    for request in bedrock_standin.requests:
        assert cache_points(request.body) == {"system": [], "messages": []}


def test_the_minimum_is_the_models_own(bedrock_standin: BedrockStandIn, tmp_path: Path) -> None:
    """The same 2,000-token system prompt: under Haiku 4.5's 4,096, so no cache point there;
    the history that grows past 4,096 gets one."""
    long_question = "Please consider this detail carefully. " * 300  # ~3,000 tokens
    converse(assistant(tmp_path, model_id=HAIKU), [long_question, "and then?"])
    first, second = (r.body for r in bedrock_standin.requests)
    assert cache_points(first) == {"system": [], "messages": []}
    assert cache_points(second) == {"system": [], "messages": [1]}
    assert bedrock_standin.requests[0].model_id == HAIKU


@pytest.mark.parametrize(
    ("model_id", "mode"), [(LLAMA, "auto"), (SONNET, "off"), ("no-such-model", "auto")]
)
def test_no_cache_points_for_unsupported_models_or_when_off(
    bedrock_standin: BedrockStandIn, tmp_path: Path, model_id: str, mode: str
) -> None:
    converse(assistant(tmp_path, model_id=model_id, prompt_cache=mode), ["a?", "b?", "c?"])
    assert len(bedrock_standin.requests) == 3
    for request in bedrock_standin.requests:
        assert cache_points(request.body) == {"system": [], "messages": []}


def test_a_sliding_history_keeps_only_the_system_cache_point(
    bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    """At the turn limit the oldest turn drops out of every next prompt: a history prefix
    would be written every turn and never read, so it gets no cache point."""
    converse(assistant(tmp_path, history_max_turns=2), ["a?", "b?", "c?"])
    third = bedrock_standin.requests[-1].body
    assert len(third["messages"]) == 3  # two history turns and the question
    assert cache_points(third) == {"system": [1], "messages": []}


def test_the_stand_in_bills_reads_and_writes_as_bedrock_does(
    bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    bedrock_standin.prompt_cache = PromptCache()
    bedrock_standin.default_behaviour = Stream(["An answer of a few words."])
    questions = ["first question?", "second question?", "third question?"]
    cached, plain = Recorder(), Recorder()
    converse(assistant(tmp_path / "a", observer=cached), questions, thread="1.0")
    converse(assistant(tmp_path / "b", observer=plain, prompt_cache="off"), questions, "2.0")

    system = estimate_tokens(LONG_SYSTEM)
    one, two, three = (u.tokens for u in cached.usages)
    assert (one.cache_read, one.cache_write) == (0, system)  # written once...
    assert two.cache_read == system  # ...read by the next turn
    assert two.cache_write > 0 and three.cache_read == system + two.cache_write
    assert three.cache_write > 0
    for usage in plain.usages:
        assert (usage.tokens.cache_read, usage.tokens.cache_write) == (0, 0)
    # Same conversation, same token count: caching moves tokens between prices, adds none.
    assert [u.tokens.total_input for u in cached.usages] == [
        u.tokens.total_input for u in plain.usages
    ]
    assert all(
        u.tokens.output == estimate_tokens("An answer of a few words.") for u in cached.usages
    )


def test_the_stand_in_forgets_after_five_minutes(tmp_path: Path) -> None:
    now = [1000.0]
    cache = PromptCache(clock=lambda: now[0])
    body = {
        "system": [{"text": LONG_SYSTEM}, CACHE_POINT],
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
    }
    assert cache.usage(SONNET, body, "")["cacheWriteInputTokens"] > 0
    now[0] += 299
    assert cache.usage(SONNET, body, "")["cacheReadInputTokens"] > 0  # the hit resets the clock
    now[0] += 299
    assert cache.usage(SONNET, body, "")["cacheReadInputTokens"] > 0
    now[0] += 301
    assert cache.usage(SONNET, body, "")["cacheReadInputTokens"] == 0


@pytest.mark.parametrize(
    ("model_id", "points"), [(LLAMA, 1), (SONNET, 5)], ids=["unsupported-model", "five-points"]
)
def test_the_stand_in_refuses_cache_points_bedrock_would_refuse(
    bedrock_standin: BedrockStandIn, model_id: str, points: int
) -> None:
    client = runtime_client("us-east-1", read_timeout=5)
    content: list[dict[str, Any]] = []
    for _ in range(points):
        content += [{"text": "x " * 600}, CACHE_POINT]
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.converse_stream(modelId=model_id, messages=[{"role": "user", "content": content}])
    assert raised.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.parametrize(
    ("model_id", "minimum"),
    [
        ("global.anthropic.claude-sonnet-4-6", 1024),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", 1024),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", 4096),
        ("global.anthropic.claude-opus-4-5-20251101-v1:0", 4096),
        ("us.anthropic.claude-opus-4-1-20250805-v1:0", 1024),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", 2048),
        ("eu.amazon.nova-pro-v1:0", 1000),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
            "us.anthropic.claude-sonnet-4-6",
            1024,
        ),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", None),
        (LLAMA, None),
    ],
)
def test_known_minimums(model_id: str, minimum: int | None) -> None:
    assert known_minimum(model_id) == minimum


def test_modes() -> None:
    assert cache_minimum(LLAMA, "on") == 1024  # forced on: a known minimum, or 1,024
    assert cache_minimum(HAIKU, "on") == 4096
    assert cache_minimum(SONNET, "off") is None
    assert cache_minimum(LLAMA, "auto") is None
    assert Settings.from_env({"CHATBOT_PROMPT_CACHE": "off"}).prompt_cache == "off"
    with pytest.raises(ConfigError, match="CHATBOT_PROMPT_CACHE"):
        Settings.from_env({"CHATBOT_PROMPT_CACHE": "sometimes"})
