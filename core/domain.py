"""Domain values shared by the core and every adapter. All frozen: they are facts, not state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Where a conversation lives. Every piece of stored context is scoped by this key.

    ``workspace`` is a Slack team id or a Teams tenant id; ``thread`` is the thread root (Slack
    ``thread_ts``, Teams reply-chain id) or the channel itself for a DM with no threads.
    """

    platform: str
    workspace: str
    channel: str
    thread: str

    def __post_init__(self) -> None:
        for name in ("platform", "workspace", "channel", "thread"):
            value = getattr(self, name)
            if not value or "#" in value:
                raise ValueError(f"ConversationKey.{name} must be non-empty and contain no '#'")

    @property
    def id(self) -> str:
        """A stable string id: the DynamoDB partition key and the queue's message group."""
        return f"{self.platform}#{self.workspace}#{self.channel}#{self.thread}"

    @property
    def scope(self) -> str:
        """The channel scope that shared files belong to (no thread: a file serves its channel)."""
        return f"{self.platform}#{self.workspace}#{self.channel}"


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file attached to a turn; ingestion and retrieval work from these."""

    file_id: str
    name: str
    mime_type: str = ""
    size: int = 0
    url: str = ""  # where the worker downloads it (with the bot's credentials)
    permalink: str = ""  # where a person opens it: what citations link to


@dataclass(frozen=True, slots=True)
class Turn:
    """One message in a conversation, from a person or from the assistant.

    ``turn_id`` comes from the platform (Slack event ts, Teams activity id) so that a redelivered
    event maps to the same turn and storage can refuse the duplicate.
    """

    key: ConversationKey
    turn_id: str
    role: Role
    user_id: str
    text: str
    created_at: float = field(default_factory=time.time)
    files: tuple[FileRef, ...] = ()
    user_name: str = ""


@dataclass(frozen=True, slots=True)
class SourceCitation:
    """Where a retrieved passage came from, shown under an answer."""

    source_id: str
    title: str
    location: str = ""
    url: str = ""


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved piece of a shared file, offered to the model as data."""

    source: SourceCitation
    text: str
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class Reply:
    """What the assistant finally said in answer to a turn."""

    text: str
    sources: tuple[SourceCitation, ...] = ()
    complete: bool = True
    error: str = ""
    # The platform's lasting id of the reply's last message (the one its feedback buttons are
    # on), set by the pacer once that message is final; "" when no message ended the reply.
    message_id: str = ""
