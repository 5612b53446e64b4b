"""Retrieval for the answer path: the passages of files shared where a conversation lives."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.domain import ConversationKey, Passage
from core.knowledge.base import KnowledgeStore

if TYPE_CHECKING:
    from core.knowledge.embeddings import Embedder

log = logging.getLogger(__name__)


class KnowledgeRetriever:
    """Implements :class:`core.assistant.Retriever`: searches the conversation's channel scope
    only (a DM's files belong to that DM alone), never another channel, workspace or tenant."""

    def __init__(
        self, store: KnowledgeStore, *, embedder: Embedder | None = None, limit: int = 6
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._limit = limit

    def retrieve(self, key: ConversationKey, query: str) -> Sequence[Passage]:
        embedding = self._embedder.embed([query])[0] if self._embedder else None
        return self._store.search(key.scope, query, limit=self._limit, query_embedding=embedding)

    def has_files(self, key: ConversationKey) -> bool:
        return bool(self._store.list_files(key.scope))
