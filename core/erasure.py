"""What a person hears after asking the assistant to forget them (``/forget`` in Slack,
``forget me`` in Teams): both adapters call :meth:`core.assistant.Assistant.forget` and post
:attr:`Forgotten.message`, so the words and the counting are the same on every platform."""

from __future__ import annotations

from dataclasses import dataclass

FORGET_FAILED = (
    "I couldn't finish forgetting what I stored about you (a temporary error on my side). "
    "Please ask again in a moment; anything already erased stays erased."
)


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What one erasure removed, in one workspace: ``records`` from the conversation history
    (the person's messages, the answers to them and the bookkeeping of those answers) and
    ``counters`` of daily quotas."""

    records: int
    counters: int = 0

    @property
    def message(self) -> str:
        if not self.records and not self.counters:
            return "I had nothing stored about you in this workspace."
        parts = []
        if self.records:
            noun = "record" if self.records == 1 else "records"
            parts.append(f"{self.records:,} {noun} of your messages and my answers to them")
        if self.counters:
            parts.append("your usage counts for the daily limits")
        return (
            f"I've forgotten what I stored about you in this workspace: {' and '.join(parts)}. "
            "Messages in the chat itself are not affected."
        )
