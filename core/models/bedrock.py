"""Amazon Bedrock through ``ConverseStream``.

Retries belong to tenacity alone, and only until the first text delta has been yielded: after
that, a retry would repeat or contradict text the person has already seen, so any failure
becomes :class:`ModelStreamInterrupted`. Errors are sorted by what trying again could do:
throttling and service trouble are retried (with full-jitter backoff); a rejected request or a
missing permission is not. The client, the backoff and that sorting are shared with the
embeddings, in :mod:`core.models.bedrock_runtime`. Where the request carries prompt-cache points
is decided in :mod:`core.models.prompt_cache`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import tenacity
from tenacity.wait import WaitBaseT

from core.errors import ModelError, ModelStreamInterrupted, ModelUnavailable
from core.models.base import ChatModel, ModelEvent, StreamEnd, TextDelta
from core.models.bedrock_runtime import (
    describe,
    error_code,
    full_jitter_wait,
    map_error,
    retrying,
    runtime_client,
)
from core.models.prompt_cache import cache_minimum, plan_cache_points
from core.prompt import Prompt

logger = logging.getLogger(__name__)


class BedrockChatModel(ChatModel):
    """A :class:`ChatModel` on Bedrock ``ConverseStream``; ``model_id`` may be a model id, an
    inference-profile id (``global.``/``us.``/``eu.`` prefixes) or an ARN.

    One boto3 client per instance, built here and shared by every call (boto3 clients are
    thread-safe). The endpoint comes from boto3's own resolution, so
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` points it elsewhere without code changes.
    """

    name = "bedrock"

    def __init__(
        self,
        *,
        model_id: str,
        region: str,
        max_attempts: int = 4,
        client: Any | None = None,
        retry_wait: WaitBaseT | None = None,
        prompt_cache: str = "auto",
    ) -> None:
        if not model_id:
            raise ValueError("model_id must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.model_id = model_id
        self.region = region
        self.max_attempts = max_attempts
        # None: no cache points (off, or a model not known to support them under "auto").
        self.cache_minimum = cache_minimum(model_id, prompt_cache)
        self._wait: WaitBaseT = retry_wait if retry_wait is not None else full_jitter_wait()
        if client is None:
            client = runtime_client(region, read_timeout=60)
        self._client: Any = client

    def stream(self, prompt: Prompt) -> Iterator[ModelEvent]:
        request = self._request(prompt)
        opened = self._open_with_retries(request)
        try:
            yield from opened.relay(self.model_id)
        finally:
            opened.close()  # also when the consumer stops early: frees the connection

    # --- request ---------------------------------------------------------------------------

    def _request(self, prompt: Prompt) -> dict[str, Any]:
        settings = prompt.inference
        inference: dict[str, Any] = {
            "maxTokens": settings.max_tokens,
            "temperature": settings.temperature,
        }
        if settings.top_p is not None:
            inference["topP"] = settings.top_p
        if settings.stop_sequences:
            inference["stopSequences"] = list(settings.stop_sequences)
        plan = plan_cache_points(prompt, self.cache_minimum)
        system: list[dict[str, Any]] = [{"text": prompt.system}]
        if plan.system:
            system.append(_cache_point())
        messages: list[dict[str, Any]] = []
        for index, message in enumerate(prompt.messages):
            content: list[dict[str, Any]] = [{"text": message.text}]
            if index in plan.after_messages:
                content.append(_cache_point())
            messages.append({"role": message.role.value, "content": content})
        return {
            "modelId": self.model_id,
            "system": system,
            "messages": messages,
            "inferenceConfig": inference,
        }

    # --- opening, with retries ---------------------------------------------------------------

    def _open_with_retries(self, request: dict[str, Any]) -> _OpenStream:
        """Call ``ConverseStream`` and read up to the first text delta (or the end, for an
        answer with no text), retrying retryable failures."""
        attempts = retrying(
            max_attempts=self.max_attempts, wait=self._wait, before_sleep=self._log_retry
        )
        try:
            return attempts(self._open_once, request)
        except ModelError as exc:
            logger.warning(
                "bedrock request failed",
                extra={
                    "model_id": self.model_id,
                    "attempt": attempts.statistics.get("attempt_number"),
                    "error_code": error_code(exc.__cause__) if exc.__cause__ else exc.cause,
                    "cause": exc.cause,
                },
            )
            raise

    def _open_once(self, request: dict[str, Any]) -> _OpenStream:
        try:
            response = self._client.converse_stream(**request)
        except Exception as exc:
            raise map_error(exc) from exc
        opened = _OpenStream(response["stream"])
        try:
            opened.read_to_first_text()
        except BaseException as exc:
            opened.close()
            if isinstance(exc, Exception) and not isinstance(exc, ModelError):
                raise map_error(exc) from exc
            raise
        return opened

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
        logger.warning(
            "bedrock request failed, retrying",
            extra={
                "model_id": self.model_id,
                "attempt": state.attempt_number,
                "max_attempts": self.max_attempts,
                "error_code": error_code(cause) if cause is not None else "",
                "wait_seconds": round(state.upcoming_sleep, 3),
            },
        )


@dataclass
class _OpenStream:
    """One open ``ConverseStream`` response, read in two phases: up to the first text delta
    (inside the retry loop), then the rest (outside it, where failures are final)."""

    event_stream: Any
    events: Iterator[dict[str, Any]] = field(init=False)
    first_text: str | None = None
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = iter(self.event_stream)

    def read_to_first_text(self) -> None:
        """Consume events until a non-empty text delta (kept in ``first_text``) or the end.

        A stream that ends without ``messageStop`` was cut short: an error, retryable here.
        """
        for event in self.events:
            text = self._consume(event)
            if text:
                self.first_text = text
                return
        if self.stop_reason is None:
            raise ModelUnavailable("IncompleteStream: the stream ended before messageStop")

    def relay(self, model_id: str) -> Iterator[ModelEvent]:
        """Yield the first delta, the rest of the text, then one :class:`StreamEnd`. Any
        failure from here on is a :class:`ModelStreamInterrupted`."""
        if self.first_text is not None:
            yield TextDelta(self.first_text)
            while True:
                try:
                    event = next(self.events)
                except StopIteration:
                    break
                except Exception as exc:
                    raise _interrupted(model_id, error_code(exc), exc) from exc
                text = self._consume(event)
                if text:
                    yield TextDelta(text)
            if self.stop_reason is None:
                raise _interrupted(model_id, "IncompleteStream", None)
        yield StreamEnd(stop_reason=self.stop_reason or "end_turn", usage=dict(self.usage))

    def close(self) -> None:
        try:
            self.event_stream.close()
        except Exception:  # closing is best effort: the connection may already be gone
            logger.debug("closing the bedrock event stream failed", exc_info=True)

    def _consume(self, event: dict[str, Any]) -> str:
        if "contentBlockDelta" in event:
            text = event["contentBlockDelta"].get("delta", {}).get("text")
            return text if isinstance(text, str) else ""
        if "messageStop" in event:
            self.stop_reason = str(event["messageStop"].get("stopReason") or "end_turn")
        elif "metadata" in event:
            usage = event["metadata"].get("usage") or {}
            self.usage = {k: v for k, v in usage.items() if isinstance(v, int)}
        return ""


def _cache_point() -> dict[str, Any]:
    return {"cachePoint": {"type": "default"}}


# --- errors ------------------------------------------------------------------------------


def _interrupted(model_id: str, reason: str, exc: BaseException | None) -> ModelStreamInterrupted:
    detail = f"stream interrupted after text: {reason}"
    if exc is not None:
        detail += f": {describe(exc)}"
    error = ModelStreamInterrupted(detail)
    error.reason = reason
    logger.warning(
        "bedrock stream interrupted after text",
        extra={"model_id": model_id, "error_code": reason},
    )
    return error
