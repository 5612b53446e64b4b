"""The history store contract; both backends pass the same tests (test_history_contract.py)."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from core.domain import ConversationKey, Turn


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
    def delete_user_data(self, platform: str, workspace: str, user_id: str) -> int:
        """Erase every turn that belongs to one person in one workspace; returns how many."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to close
        """Release connections; the default has nothing to release."""
