"""Where a reply goes: the contract every platform's reply sink keeps (:class:`ReplySink`), and a
base for sinks whose messages live only in this process."""

from __future__ import annotations

from typing import Protocol

from core.domain import Reply

PLACEHOLDER = "_Thinking…_"


class ReplySink(Protocol):
    """Where a reply goes: one platform conversation. Adapters implement this.

    Each call raises :class:`RateLimited` when the platform asks to slow down, and
    :class:`SinkError` when it refuses for good (no permission, revoked token, channel gone).
    """

    @property
    def max_chars(self) -> int:
        """The longest text one message may carry on this platform."""
        ...

    def post(self, text: str) -> str:
        """Post a new message; returns a reference that ``update`` and ``finish`` accept."""
        ...

    def update(self, ref: str, text: str) -> None:
        """Replace the text of a posted message while the answer streams."""
        ...

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        """The last edit of the last message: ``text`` is its final content, and ``reply``
        carries the whole answer and its sources for the platform to render."""
        ...

    def close(self) -> None:
        """The reply is over, finished or not: release what it held (room in a rate budget)."""
        ...

    def message_id(self, ref: str) -> str | None:
        """The platform's lasting id of the message behind ``ref``, once it exists (None for a
        sink whose messages cannot be found again)."""
        ...

    def adopt(self, message_id: str) -> str:
        """Carry on in a message posted earlier (by a run that died): returns a reference that
        ``update`` and ``finish`` accept."""
        ...


class ProcessLocalSink:
    """What a sink whose messages live only in this process (a terminal, a dev transcript, a
    benchmark's recorder) adds to ``post``, ``update`` and ``finish``: it holds no rate budget,
    and a reply that dies with the process has nothing to resume."""

    def post(self, text: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing held."""

    def message_id(self, ref: str) -> str | None:
        return None

    def adopt(self, message_id: str) -> str:
        return self.post(PLACEHOLDER)  # not reached: message_id() gives nothing to adopt
