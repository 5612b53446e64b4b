"""The model contract: a prompt goes in, a stream of text deltas comes out."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.prompt import Prompt


@dataclass(frozen=True, slots=True)
class InferenceSettings:
    max_tokens: int = 1500
    temperature: float = 0.2
    top_p: float | None = None
    stop_sequences: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of a stream. ``stop_reason`` uses Bedrock's vocabulary (``end_turn``,
    ``max_tokens``, ``guardrail_intervened``, ...); ``usage`` holds token counts if known."""

    stop_reason: str = "end_turn"
    usage: dict[str, int] = field(default_factory=dict)


ModelEvent = TextDelta | StreamEnd


class ChatModel(abc.ABC):
    """One instance per process; ``stream`` is safe to call from several threads at once."""

    name: str = "model"
    model_id: str = ""  # the provider's model id, where there is one (usage reports name it)

    @abc.abstractmethod
    def stream(self, prompt: Prompt) -> Iterator[ModelEvent]:
        """Yield text deltas, then exactly one :class:`StreamEnd`.

        Raises a :class:`core.errors.ModelError` subclass on failure. Failures before the first
        delta may be retried inside the implementation; once a delta has been yielded, a failure
        raises :class:`core.errors.ModelStreamInterrupted` and is never retried (retrying would
        repeat or contradict text the person has already seen).
        """
