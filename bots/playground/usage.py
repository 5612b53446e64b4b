"""The playground's per-answer panel: each answer's usage report, told to the page.

The core reports one :class:`~core.usage.AnswerUsage` per answer or summary to the host's
usage observer (the same report the AWS worker turns into metrics). The report names no
conversation (the core's log line gets that from its bound keys), so the local host marks the
job each worker thread is running (:func:`running`), and :class:`UsagePanel` reads it: the
platform, the channel and thread (Slack) or conversation (Teams) the answer went to.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bots.playground.hub import Hub
from core.jobs import Job
from core.usage import AnswerUsage

MAX_ANSWERS = 200

_job: contextvars.ContextVar[Job | None] = contextvars.ContextVar("playground_job", default=None)


@contextmanager
def running(job: Job) -> Iterator[None]:
    """Mark ``job`` as what this thread is doing (for the usage panel)."""
    token = _job.set(job)
    try:
        yield
    finally:
        _job.reset(token)


def tracking(handle: Callable[[Job], None]) -> Callable[[Job], None]:
    """``handle``, marking each job while it runs."""

    def tracked(job: Job) -> None:
        with running(job):
            handle(job)

    return tracked


class UsagePanel:
    """A :class:`~core.usage.UsageObserver`: keeps the last answers and publishes each."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.lock = threading.RLock()  # held while publishing: a snapshot takes it too
        self._answers: deque[dict[str, Any]] = deque(maxlen=MAX_ANSWERS)

    def record(self, usage: AnswerUsage) -> None:
        entry = {**where(_job.get()), **figures(usage)}
        with self.lock:
            self._answers.append(entry)
            self._hub.publish({"type": "usage", "usage": dict(entry)})

    def answers(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(a) for a in self._answers]

    def reset(self) -> None:
        with self.lock:
            self._answers.clear()


def figures(usage: AnswerUsage) -> dict[str, Any]:
    return {
        "kind": usage.kind,
        "model": usage.model_id,
        "tokens_in": usage.tokens.total_input,
        "tokens_out": usage.tokens.output,
        "cache_read": usage.tokens.cache_read,
        "cache_write": usage.tokens.cache_write,
        "model_calls": usage.model_calls,
        "time_to_first_token": usage.time_to_first_token,
        "time_to_final": usage.time_to_final,
        "edits": usage.delivery.edits,
        "posts": usage.delivery.posts,
        "throttles": usage.delivery.platform_throttles + usage.delivery.budget_waits,
        "passages": usage.passages,
        "complete": usage.complete,
        "cause": usage.cause,
    }


def where(job: Job | None) -> dict[str, Any]:
    """The platform and place of the job an answer belongs to (what the page can match)."""
    if job is None:
        return {"platform": "unknown", "conversation": None, "channel": None, "thread_ts": None}
    payload = job.payload if isinstance(job.payload, dict) else {}
    platform = job.kind.split(".", 1)[0]
    found: dict[str, Any] = {
        "platform": platform,
        "conversation": job.group,
        "channel": None,
        "thread_ts": None,
    }
    if platform == "slack":
        found["channel"] = payload.get("channel")
        thread = payload.get("thread_ts")
        target = payload.get("target")
        if thread is None and isinstance(target, dict):
            thread = target.get("ts")
        found["thread_ts"] = thread
    elif platform == "teams":
        reference = payload.get("reference")
        conversation = reference.get("conversation") if isinstance(reference, dict) else None
        if isinstance(conversation, dict):
            found["channel"] = conversation.get("id")
    return found
