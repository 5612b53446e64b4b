"""Text embeddings for vector search: one small protocol, and Amazon Titan Text Embeddings V2.

Titan V2 embeds one text per ``InvokeModel`` call, so a file's chunks go out as concurrent calls
from a small thread pool (bounded: Bedrock throttles per account and model), and come back in
the order they were given. The client, the full-jitter backoff and the error mapping are the
chat model's (:mod:`core.models.bedrock_runtime`): retries belong to tenacity alone,
throttling and service trouble are retried, a rejected request or a missing permission is not,
and errors are the same :class:`core.errors.ModelError` subclasses.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Protocol, runtime_checkable

import tenacity
from tenacity.wait import WaitBaseT

from core.errors import ModelError
from core.models.bedrock_runtime import (
    full_jitter_wait,
    map_error,
    retrying,
    runtime_client,
)

logger = logging.getLogger(__name__)

TITAN_V2 = "amazon.titan-embed-text-v2:0"
TITAN_V2_DIMENSIONS = (256, 512, 1024)
MAX_INPUT_CHARS = 50_000  # Titan V2's limit (also 8,192 tokens, which Bedrock enforces itself)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of :attr:`dimensions` floats, one per text, in order."""

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class TitanEmbedder:
    """:class:`Embedder` on Bedrock ``InvokeModel`` with Titan Text Embeddings V2.

    Vectors are normalized (unit length), so cosine similarity is a dot product. One boto3
    client and one thread pool per instance, built here and shared by every call.
    """

    def __init__(
        self,
        model_id: str = TITAN_V2,
        *,
        region: str,
        dimensions: int = 1024,
        client: Any | None = None,
        max_workers: int = 4,
        max_attempts: int = 4,
        retry_wait: WaitBaseT | None = None,
    ) -> None:
        if not model_id:
            raise ValueError("model_id must not be empty")
        if model_id.startswith("amazon.titan-embed-text-v2") and (
            dimensions not in TITAN_V2_DIMENSIONS
        ):
            raise ValueError(
                f"Titan V2 embeds in {TITAN_V2_DIMENSIONS} dimensions, not {dimensions}"
            )
        if max_workers < 1 or max_attempts < 1:
            raise ValueError("max_workers and max_attempts must be at least 1")
        self.model_id = model_id
        self._dimensions = dimensions
        self.max_attempts = max_attempts
        self._wait: WaitBaseT = retry_wait if retry_wait is not None else full_jitter_wait()
        self._max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        if client is None:
            client = runtime_client(
                region, read_timeout=30, max_pool_connections=max(10, max_workers)
            )
        self._client: Any = client

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in the order given. The first failure (after its retries)
        is raised and the calls not yet started are cancelled."""
        for text in texts:
            if not text.strip():
                raise ValueError("cannot embed empty text")
        if len(texts) <= 1 or self._max_workers == 1:
            return [self._embed_with_retries(text) for text in texts]
        futures = [self._executor().submit(self._embed_with_retries, text) for text in texts]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        errors = [e for f in futures if f in done and (e := f.exception()) is not None]
        if errors:
            for future in pending:
                future.cancel()
            raise errors[0]
        return [future.result() for future in futures]

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="embed"
                )
            return self._pool

    def _embed_with_retries(self, text: str) -> list[float]:
        attempts = retrying(
            max_attempts=self.max_attempts, wait=self._wait, before_sleep=self._log_retry
        )
        return attempts(self._embed_once, text)

    def _embed_once(self, text: str) -> list[float]:
        body = json.dumps(
            {
                "inputText": text[:MAX_INPUT_CHARS],
                "dimensions": self._dimensions,
                "normalize": True,
            }
        )
        try:
            response = self._client.invoke_model(
                modelId=self.model_id,
                body=body,
                contentType="application/json",
                accept="application/json",
            )
            payload = json.loads(response["body"].read())
        except Exception as exc:
            raise map_error(exc) from exc
        embedding = payload.get("embedding") if isinstance(payload, dict) else None
        if not isinstance(embedding, list) or len(embedding) != self._dimensions:
            raise ModelError(
                f"{self.model_id} returned no embedding of {self._dimensions} dimensions"
            )
        return [float(x) for x in embedding]

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "embedding request failed, retrying",
            extra={
                "model_id": self.model_id,
                "attempt": state.attempt_number,
                "max_attempts": self.max_attempts,
                "cause": getattr(exc, "cause", type(exc).__name__),
                "wait_seconds": round(state.upcoming_sleep, 3),
            },
        )
