"""What every Bedrock Runtime caller shares: the client, the backoff, the error mapping.

The chat model (:mod:`core.models.bedrock`, ``ConverseStream``) and the embeddings
(:mod:`core.knowledge.embeddings`, ``InvokeModel``) both leave retries to tenacity alone, so the
client built here makes exactly one request per attempt: stacking botocore's retries under
tenacity's would multiply the attempts. Errors are sorted by what trying again could do:
throttling and service trouble are :attr:`~core.errors.ModelError.retryable`, a rejected
request or a missing permission is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import botocore.eventstream
import botocore.exceptions
import tenacity
import urllib3.exceptions
from botocore.config import Config
from tenacity.wait import WaitBaseT

from core.errors import (
    ModelAccessDenied,
    ModelConfigError,
    ModelError,
    ModelThrottled,
    ModelUnavailable,
)

_THROTTLED = frozenset({"ThrottlingException", "ModelNotReadyException"})
_UNAVAILABLE = frozenset(
    {
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelTimeoutException",
        # "An error occurred while streaming the response. Retry your request." (API reference)
        "ModelStreamErrorException",
    }
)
_CONFIG = frozenset({"ValidationException", "ResourceNotFoundException"})
_ACCESS = frozenset({"AccessDeniedException", "UnrecognizedClientException"})

# Failures below the API: no connection, a connection closed or timed out, a broken chunked
# body. Once a stream is open botocore reads straight from urllib3, so a connection dropped
# mid-stream surfaces as urllib3's ProtocolError rather than a botocore exception; a corrupt
# frame surfaces as one of botocore's event-stream parser errors.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    botocore.exceptions.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError, ...
    botocore.exceptions.HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ...
    urllib3.exceptions.HTTPError,  # ProtocolError, ReadTimeoutError while iterating
    botocore.eventstream.ParserError,  # checksum mismatch, truncated or oversized frame
    ConnectionError,
    TimeoutError,
)


def runtime_client(region: str, *, read_timeout: float, max_pool_connections: int = 10) -> Any:
    """A ``bedrock-runtime`` client that never retries on its own. The endpoint comes from
    boto3's own resolution, so ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` points it elsewhere."""
    return boto3.client(
        "bedrock-runtime",
        region_name=region,
        config=Config(
            # Note the key: in a client Config, ``max_attempts`` counts *retries*
            # (``max_attempts: 1`` means two requests); ``total_max_attempts`` counts requests.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=read_timeout,
            tcp_keepalive=True,
            max_pool_connections=max_pool_connections,
        ),
    )


def full_jitter_wait() -> WaitBaseT:
    """Full jitter: a uniform wait in [0, min(8, 0.5 * 2**(attempt-1))] seconds."""
    return tenacity.wait_random_exponential(multiplier=0.5, max=8)


def retrying(
    *,
    max_attempts: int,
    wait: WaitBaseT,
    before_sleep: Callable[[tenacity.RetryCallState], None],
) -> tenacity.Retrying:
    """The retry loop for one call: retryable :class:`ModelError` only, at most
    ``max_attempts`` attempts, the last error raised as itself. Make a fresh one per call: its
    statistics are per-object state, and callers run on many threads."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_retryable),
        stop=tenacity.stop_after_attempt(max_attempts),
        wait=wait,
        reraise=True,
        before_sleep=before_sleep,
    )


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelError) and exc.retryable


def error_code(exc: BaseException) -> str:
    """The service's error code in UpperCamelCase, or the exception's class name for failures
    below the API. In-stream exceptions arrive in lowerCamelCase (``throttlingException``): the
    union members of ``ConverseStreamOutput`` are named that way."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "")
        if not code:
            # botocore knows only the in-stream exceptions in its service model; for any other
            # it reports an empty code and message.
            return "UnknownStreamException"
        return code[0].upper() + code[1:]
    return type(exc).__name__


def map_error(exc: Exception) -> ModelError:
    """A :class:`ModelError` subclass that says whether trying again could help. The caller
    raises it ``from exc``; the error code stays in the message."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        code = error_code(exc)
        status = _status(exc)
        detail = describe(exc)
        if code in _THROTTLED or (code not in _CONFIG | _ACCESS and status == 429):
            return ModelThrottled(detail)
        if code in _UNAVAILABLE or (
            code not in _CONFIG | _ACCESS and status in (500, 502, 503, 504)
        ):
            return ModelUnavailable(detail)
        if code in _CONFIG:
            return ModelConfigError(detail)
        if code in _ACCESS:
            return ModelAccessDenied(detail)
        return ModelError(detail)
    if isinstance(exc, _CONNECTION_ERRORS):
        return ModelUnavailable(describe(exc))
    return ModelError(describe(exc))


def describe(exc: BaseException) -> str:
    """``Code (HTTP 429): message`` for service errors, ``ClassName: text`` for the rest."""
    if isinstance(exc, botocore.exceptions.ClientError):
        status = _status(exc)
        where = f"HTTP {status}" if status else "in-stream"
        message = exc.response.get("Error", {}).get("Message") or ""
        return f"{error_code(exc)} ({where}): {message}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def _status(exc: botocore.exceptions.ClientError) -> int:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else 0
