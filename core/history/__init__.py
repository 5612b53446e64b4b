"""Conversation history: one interface (:class:`HistoryStore`), one module per backend."""

from core.history.base import HistoryStore

__all__ = ["HistoryStore"]
