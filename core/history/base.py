"""The history store contract; both backends pass the same tests (test_history_contract.py)."""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, fields

from core.domain import ConversationKey, FileRef, Turn

log = logging.getLogger(__name__)
REPLY_RECORD_SECONDS = 86_400.0  # long enough for any redelivery (SQS, Slack's last retry)
_FILE_FIELDS = frozenset(f.name for f in fields(FileRef))


class HistoryStore(abc.ABC):
    """Keeps each conversation's turns together and in order, scoped by :class:`ConversationKey`.

    Turns expire after the configured retention. Every turn records the person it belongs to
    (the author of a user turn, the asker for an assistant turn) so that one person's data can
    be found and erased on request.
    """

    @abc.abstractmethod
    def append_turn(self, turn: Turn) -> None:
        """Store one turn. Raises ``TurnAlreadyStored`` if a turn with that id is already in
        that conversation (a redelivered event), ``StoreError`` if the store failed."""

    @abc.abstractmethod
    def recent_turns(self, key: ConversationKey, limit: int) -> Sequence[Turn]:
        """The newest ``limit`` unexpired turns of one conversation, oldest first."""

    @abc.abstractmethod
    def remember_reply(self, question: Turn, message_id: str) -> None:
        """Record which platform message carries the answer to ``question``, before the answer
        streams into it: a job redelivered after a crash then finishes that same message instead
        of leaving it half-written and posting another. Kept for a day at most."""

    @abc.abstractmethod
    def reply_message(self, key: ConversationKey, turn_id: str) -> str | None:
        """The message recorded by :meth:`remember_reply` for that question, if any."""

    @abc.abstractmethod
    def delete_user_data(self, platform: str, workspace: str, user_id: str) -> int:
        """Erase every turn (and reply record) that belongs to one person in one workspace;
        returns how many records were erased."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to close
        """Release connections; the default has nothing to release."""


def files_to_json(files: Sequence[FileRef]) -> str:
    """A turn's files as stored by every backend."""
    return json.dumps([asdict(f) for f in files], ensure_ascii=False)


def files_from_json(raw: str) -> tuple[FileRef, ...]:
    """Files as stored; a damaged value costs the turn its attachments, not the conversation."""
    try:
        items = json.loads(raw or "[]")
        return tuple(
            FileRef(**{k: v for k, v in item.items() if k in _FILE_FIELDS}) for item in items
        )
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring unreadable files value in a stored history turn")
        return ()
