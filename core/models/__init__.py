"""Language models behind one interface (:class:`ChatModel`), one module per implementation."""

from core.models.base import ChatModel, InferenceSettings, ModelEvent, StreamEnd, TextDelta

__all__ = ["ChatModel", "InferenceSettings", "ModelEvent", "StreamEnd", "TextDelta"]
