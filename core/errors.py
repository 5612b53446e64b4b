"""Errors the core can name. Each carries a message fit to show a person in the chat.

Adapters never show exception text from libraries: they show ``user_message``; the log line gets
``cause`` and the exception chain.
"""

from __future__ import annotations


class ChatbotError(Exception):
    """Base class. ``user_message`` is safe to post in the chat; ``cause`` names it in logs."""

    user_message = "Sorry, something went wrong while answering. Please try again."
    cause = "internal_error"

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or self.cause)
        if user_message is not None:
            self.user_message = user_message


class InputRejected(ChatbotError):
    """The person's message cannot be answered as sent (empty, far too long)."""

    cause = "input_rejected"


class ModelError(ChatbotError):
    """The model call failed; subclasses say whether trying again could help."""

    cause = "model_error"
    retryable = False


class ModelThrottled(ModelError):
    cause = "model_throttled"
    retryable = True
    user_message = "The model is busy right now (rate limited). Please try again in a minute."


class ModelUnavailable(ModelError):
    cause = "model_unavailable"
    retryable = True
    user_message = "The model service is temporarily unavailable. Please try again shortly."


class ModelConfigError(ModelError):
    cause = "model_config_error"
    user_message = (
        "The assistant is misconfigured: the model rejected the request. "
        "An administrator needs to check the model settings."
    )


class ModelAccessDenied(ModelError):
    cause = "model_access_denied"
    user_message = (
        "The assistant is not allowed to use its model (access denied). "
        "An administrator needs to grant model access."
    )


class ModelStreamInterrupted(ModelError):
    """The stream broke after some text was already shown; the shown text stays as it is."""

    cause = "model_stream_interrupted"
    user_message = "The answer was interrupted before it finished. Please ask again."
    reason = ""  # the underlying error code, for logs


class StoreError(ChatbotError):
    cause = "store_error"


class TurnAlreadyStored(StoreError):
    """A conditional write found the turn already present: a redelivery, not a failure."""

    cause = "turn_already_stored"


class SinkError(ChatbotError):
    """The platform refused a post or edit for good (no permission, revoked token)."""

    cause = "sink_error"


class MessageTooLong(SinkError):
    """The platform refused a message as too long, though it was within the advertised limit."""

    cause = "message_too_long"


class MessageGone(SinkError):
    """The message to edit no longer exists or can no longer be edited (deleted by a person,
    past the platform's edit window): the reply goes on in a new message."""

    cause = "message_gone"


class RateLimited(ChatbotError):
    """The platform asked us to slow down; ``retry_after`` is in seconds."""

    cause = "rate_limited"

    def __init__(self, retry_after: float, detail: str = "") -> None:
        super().__init__(detail or f"rate limited, retry after {retry_after:.1f}s")
        self.retry_after = max(0.0, float(retry_after))


class BudgetSpent(RateLimited):
    """Our own rate budget says wait: no call was made, the platform refused nothing."""

    cause = "budget_spent"
