"""Work handed from ingress to the worker, and the worker's dispatch by kind.

Ingress turns a platform request into a :class:`Job` and enqueues it (SQS FIFO in AWS, an
in-process queue locally). The worker hands each job to the handler registered for its kind.
``group`` keeps one conversation's jobs in order; ``dedupe_id`` is the platform's event id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from core.domain import ConversationKey, FileRef, Role, Turn
from core.observability import bind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    kind: str
    group: str
    dedupe_id: str
    payload: Mapping[str, Any] = field(default_factory=dict)


class JobQueue(Protocol):
    def enqueue(self, job: Job) -> None: ...


JobHandler = Callable[[Job], None]
# Tells the person that their job failed for good (a short line where they asked). Must not
# raise; :meth:`JobRouter.report_failure` still guards against one that does.
FailureHook = Callable[[Job], None]
# What a failure hook tells the person, on either platform.
JOB_FAILED_MESSAGE = "⚠️ Sorry, something went wrong on my side while answering. Please try again."


class UnknownJobKind(LookupError):
    pass


class JobRouter:
    """Maps job kinds to handlers; adapters register theirs at start-up."""

    def __init__(self) -> None:
        self._handlers: dict[str, JobHandler] = {}
        self._failure_hooks: dict[str, FailureHook] = {}

    def register(
        self, kind: str, handler: JobHandler, *, on_failure: FailureHook | None = None
    ) -> None:
        """``on_failure(job)``, if given, tells the person when a job of this kind fails for
        good: a transport with no redelivery (the local host) calls :meth:`report_failure`."""
        if kind in self._handlers:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = handler
        if on_failure is not None:
            self._failure_hooks[kind] = on_failure

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def handle(self, job: Job) -> None:
        """Run the job's handler. Exceptions propagate so the transport can redeliver."""
        handler = self._handlers.get(job.kind)
        if handler is None:
            raise UnknownJobKind(job.kind)
        with bind(conversation_id=job.group, job_id=job.dedupe_id, job_kind=job.kind):
            handler(job)

    def report_failure(self, job: Job) -> bool:
        """Run the failure hook of the job's kind, so a failed job ends with a word to the
        person rather than silence. Never raises: it runs after a failure already, and an error
        here must not hide that one. True if a hook ran to completion."""
        hook = self._failure_hooks.get(job.kind)
        if hook is None:
            return False
        with bind(conversation_id=job.group, job_id=job.dedupe_id, job_kind=job.kind):
            try:
                hook(job)
            except Exception:
                log.exception("failure hook raised; the person was not told")
                return False
        return True


def turn_to_payload(turn: Turn) -> dict[str, Any]:
    """A turn as JSON-safe data, for a job payload (the queue carries JSON)."""
    return {
        "key": [turn.key.platform, turn.key.workspace, turn.key.channel, turn.key.thread],
        "turn_id": turn.turn_id,
        "role": turn.role.value,
        "user_id": turn.user_id,
        "user_name": turn.user_name,
        "text": turn.text,
        "created_at": turn.created_at,
        "files": [asdict(f) for f in turn.files],
    }


def turn_from_payload(data: Mapping[str, Any]) -> Turn:
    return Turn(
        key=ConversationKey(*data["key"]),
        turn_id=str(data["turn_id"]),
        role=Role(data.get("role", "user")),
        user_id=str(data["user_id"]),
        user_name=str(data.get("user_name", "")),
        text=str(data.get("text", "")),
        created_at=float(data["created_at"]),
        files=tuple(FileRef(**f) for f in data.get("files", ())),
    )


def job_to_json(job: Job) -> str:
    return json.dumps(
        {"kind": job.kind, "group": job.group, "dedupe_id": job.dedupe_id, "payload": job.payload}
    )


def job_from_json(text: str) -> Job:
    data = json.loads(text)
    return Job(
        str(data["kind"]), str(data["group"]), str(data["dedupe_id"]), data.get("payload") or {}
    )
