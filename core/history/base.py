"""The history store contract; both backends pass the same tests (test_history_contract.py)."""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, fields

from core.domain import ConversationKey, FileRef, Turn
from core.feedback import AnswerRef, Feedback

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
    def remember_answer(self, answer: AnswerRef, message_id: str, *, asker: str = "") -> None:
        """Record which answer (and model) the final message ``message_id`` carries, so that a
        feedback click that names only the message (Teams' ``replyToId``) finds its answer.
        Kept as long as the history; ``asker`` (who asked the question) owns the record, so
        erasing that person erases it. A second call for the same message replaces the first."""

    @abc.abstractmethod
    def answer_for_message(self, key: ConversationKey, message_id: str) -> AnswerRef | None:
        """The answer recorded by :meth:`remember_answer` for that message, if unexpired."""

    @abc.abstractmethod
    def record_feedback(self, feedback: Feedback, user_of_answer: str | None) -> bool:
        """Record one person's rating of one answer: ids, rating, model and time, never text.

        Atomic: returns False, changing nothing, when the same voter already gave the same
        rating to that answer (a double click, a redelivered request); a different rating
        replaces the earlier one (True). The record belongs to the voter: erasing the voter
        erases it. ``user_of_answer`` is who asked the question, if the caller knows it; it is
        not stored (the rating is the voter's data, and the asker's erasure must not leave
        their id behind in someone else's record). Kept as long as the history."""

    @abc.abstractmethod
    def feedback_for_answer(self, key: ConversationKey, answer_id: str) -> list[Feedback]:
        """Every unexpired rating of one answer, by voter (operations and tests)."""

    @abc.abstractmethod
    def delete_user_data(self, platform: str, workspace: str, user_id: str) -> int:
        """Erase every turn (and reply record, answer record and rating) that belongs to one
        person in one workspace; returns how many records were erased."""

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
