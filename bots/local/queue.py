"""An in-process stand-in for the SQS FIFO queue, with the same two promises.

- Order per group: one conversation's jobs run one after another, in arrival order, while
  different conversations run in parallel (FIFO message groups). The work waits on the model
  and the chat APIs, not the CPU, so the pool is wide (``CHATBOT_LOCAL_WORKERS``, 64): a burst
  of conversations streams at once instead of queueing behind a few threads. Threads start
  only when there is work for them.
- Deduplication: a job whose ``dedupe_id`` was seen in the last five minutes is dropped (the
  FIFO deduplication window). Durable, longer-lived dedupe is the worker's job, not the queue's.

SQS redelivers a job whose handler failed; this queue does not (it would repeat the same bug),
so it hands the failed job to ``on_failure`` instead, which tells the person.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from core.jobs import Job

log = logging.getLogger(__name__)

DEDUPE_WINDOW_SECONDS = 300.0
DEFAULT_WORKERS = 64


class InProcessQueue:
    def __init__(
        self,
        handle: Callable[[Job], None],
        *,
        workers: int = DEFAULT_WORKERS,
        on_failure: Callable[[Job], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handle = handle
        self._on_failure = on_failure
        self.workers = workers
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: dict[str, deque[Job]] = {}
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.failures = 0

    def enqueue(self, job: Job) -> None:
        with self._lock:
            now = self._clock()
            while self._seen and next(iter(self._seen.values())) < now - DEDUPE_WINDOW_SECONDS:
                self._seen.popitem(last=False)
            if job.dedupe_id in self._seen:
                log.info("duplicate job dropped", extra={"job_id": job.dedupe_id})
                return
            self._seen[job.dedupe_id] = now
            group = self._pending.get(job.group)
            if group is not None:
                group.append(job)
                return
            self._pending[job.group] = deque([job])
        self._pool.submit(self._drain, job.group)

    def _drain(self, group: str) -> None:
        while True:
            with self._lock:
                jobs = self._pending[group]
                if not jobs:
                    del self._pending[group]
                    self._idle.notify_all()
                    return
                job = jobs[0]
            try:
                self._handle(job)
            except Exception:
                # A bug in a handler: log it with the job's ids, tell the person, keep serving.
                # Redelivering locally would only repeat the same bug.
                self.failures += 1
                log.exception("job failed", extra={"job_id": job.dedupe_id, "job_kind": job.kind})
                self._report(job)
            with self._lock:
                jobs.popleft()

    def _report(self, job: Job) -> None:
        """Still inside the job's turn in its group, so the apology lands before the next job
        of that conversation starts."""
        if self._on_failure is None:
            return
        try:
            self._on_failure(job)
        except Exception:  # the hook's own failure must not stop this group's next jobs
            log.exception(
                "failure report raised", extra={"job_id": job.dedupe_id, "job_kind": job.kind}
            )

    def join(self, timeout: float = 30.0) -> bool:
        """Wait until every enqueued job has run; True if the queue drained in time."""
        deadline = self._clock() + timeout
        with self._lock:
            while self._pending:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        self.join()
        self._pool.shutdown(wait=True)
