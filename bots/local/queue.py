"""An in-process stand-in for the SQS FIFO queue, with the same three promises.

- Order per group: one conversation's jobs run one after another, in arrival order, while
  different conversations run in parallel (FIFO message groups). The work waits on the model
  and the chat APIs, not the CPU, so the pool is wide (``CHATBOT_LOCAL_WORKERS``, 64): a burst
  of conversations streams at once instead of queueing behind a few threads. Threads start
  only when there is work for them.
- Deduplication: a job whose ``dedupe_id`` was seen in the last five minutes is dropped (the
  FIFO deduplication window). Durable, longer-lived dedupe is the worker's job, not the queue's.
- Durability (given a ``path``): each accepted job is written to SQLite before ``enqueue``
  returns and deleted once its handler is done with it, so a job the process did not finish
  (killed, or stopped with :meth:`InProcessQueue.close` before the job ran or finished) runs at
  the next start, ahead of new jobs of its group, as SQS would redeliver it. The worker's
  durable dedupe keeps a job that did finish from running twice.

SQS redelivers a job whose handler failed; this queue does not (it would repeat the same bug),
so it hands the failed job to ``on_failure`` instead, which tells the person.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import StoreError
from core.jobs import Job, job_from_json, job_to_json
from core.sqlite import open_database

log = logging.getLogger(__name__)

DEDUPE_WINDOW_SECONDS = 300.0
DEFAULT_WORKERS = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class _Entry:
    job: Job
    seq: int | None  # its row in the queue file; None without one


class InProcessQueue:
    """``path``: the SQLite file that keeps accepted jobs until they are done (None: memory
    only). Jobs left in it by a previous run start with :meth:`start`, which the constructor
    calls unless ``autostart`` is False (the local host starts the queue once every job
    handler is registered)."""

    def __init__(
        self,
        handle: Callable[[Job], object],
        *,
        workers: int = DEFAULT_WORKERS,
        on_failure: Callable[[Job], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        path: Path | str | None = None,
        autostart: bool = True,
    ) -> None:
        self._handle = handle
        self._on_failure = on_failure
        self.workers = workers
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # a group emptied, or a job ended
        self._work = threading.Condition(self._lock)  # a group is ready for a thread
        self._pending: dict[str, deque[_Entry]] = {}
        self._ready: deque[str] = deque()  # groups with jobs and no thread yet
        self._threads = 0
        self._waiting_threads = 0
        self._running = 0
        self._started = False
        self._stopping = False  # no job starts any more
        self._closed = False  # nothing is accepted any more
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.failures = 0
        self._persistent = path is not None
        self._db = None if path is None else open_database(path, _SCHEMA, what="job queue")
        self.recovered = self._recover()
        if autostart:
            self.start()

    def _recover(self) -> int:
        """Jobs a previous run accepted and did not finish, back at the head of their groups
        in their original order."""
        if self._db is None:
            return 0
        rows = self._db.execute("SELECT seq, job FROM jobs ORDER BY seq").fetchall()
        now = self._clock()
        count = 0
        for seq, text in rows:
            try:
                job = job_from_json(text)
            except (ValueError, KeyError, TypeError):
                log.exception("unreadable queued job dropped", extra={"seq": seq})
                with self._db:
                    self._db.execute("DELETE FROM jobs WHERE seq = ?", (seq,))
                continue
            self._seen[job.dedupe_id] = now
            self._pending.setdefault(job.group, deque()).append(_Entry(job, seq))
            count += 1
        if count:
            log.info("jobs left by the last run queued again", extra={"jobs": count})
        return count

    def discard(self, unwanted: Callable[[Job], bool]) -> int:
        """Drop the queued jobs ``unwanted`` names, from memory and the queue file, before
        :meth:`start` (jobs a previous run left that cannot succeed any more); returns how
        many."""
        dropped = 0
        with self._lock:
            if self._started:
                raise RuntimeError("discard() is for jobs left by a previous run, before start()")
            for group in list(self._pending):
                kept: deque[_Entry] = deque()
                for entry in self._pending[group]:
                    if not unwanted(entry.job):
                        kept.append(entry)
                        continue
                    dropped += 1
                    self._forget(entry)
                if kept:
                    self._pending[group] = kept
                else:
                    del self._pending[group]
        return dropped

    def start(self) -> None:
        """Begin running jobs: those left by the last run first, then new ones."""
        with self._lock:
            if self._started or self._stopping:
                return
            self._started = True
            for group in self._pending:
                self._schedule(group)

    def enqueue(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue is closed")
            now = self._clock()
            while self._seen and next(iter(self._seen.values())) < now - DEDUPE_WINDOW_SECONDS:
                self._seen.popitem(last=False)
            if job.dedupe_id in self._seen:
                log.info("duplicate job dropped", extra={"job_id": job.dedupe_id})
                return
            # Written under the lock, so the file's order is the groups' order.
            entry = _Entry(job, self._persist(job))
            self._seen[job.dedupe_id] = now
            group = self._pending.get(job.group)
            if group is not None:
                group.append(entry)
                return
            self._pending[job.group] = deque([entry])
            if self._started and not self._stopping:
                self._schedule(job.group)

    def _persist(self, job: Job) -> int | None:
        if self._db is None:
            return None
        try:
            with self._db:
                cursor = self._db.execute("INSERT INTO jobs (job) VALUES (?)", (job_to_json(job),))
        except sqlite3.Error as exc:
            raise StoreError(f"queueing job {job.dedupe_id}: {exc}") from exc
        return cursor.lastrowid

    def _forget(self, entry: _Entry) -> None:
        """The job is done with (run, or failed and reported): it must not run again."""
        if self._db is None or entry.seq is None:
            return
        try:
            with self._db:
                self._db.execute("DELETE FROM jobs WHERE seq = ?", (entry.seq,))
        except sqlite3.Error:
            # It runs again at the next start, where the worker's dedupe skips it if it completed.
            log.exception("finished job not removed from the queue", extra={"seq": entry.seq})

    def _schedule(self, group: str) -> None:
        """Hand ``group`` to an idle thread, or to a new one while under ``workers``; else it
        waits in ``_ready`` for the next thread that frees up. Called holding the lock."""
        self._ready.append(group)
        if self._waiting_threads:
            self._waiting_threads -= 1
            self._work.notify()
        elif self._threads < self.workers:
            self._threads += 1
            # Daemon threads: a job still running when the drain time is up must not keep the
            # process alive; it stays in the queue file and runs again at the next start.
            thread = threading.Thread(
                target=self._serve, name=f"worker_{self._threads}", daemon=True
            )
            thread.start()

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._ready:
                    if self._stopping:
                        self._threads -= 1
                        return
                    self._waiting_threads += 1
                    self._work.wait()
                group = self._ready.popleft()
            self._drain(group)

    def _drain(self, group: str) -> None:
        while True:
            with self._lock:
                entries = self._pending[group]
                if not entries:
                    del self._pending[group]
                    self._idle.notify_all()
                    return
                if self._stopping:  # the rest stays in the queue file for the next start
                    return
                entry = entries[0]
                self._running += 1
            job = entry.job
            try:
                self._handle(job)
            except Exception:
                # A bug in a handler: log it with the job's ids, tell the person, keep serving.
                # Redelivering locally would only repeat the same bug.
                self.failures += 1
                log.exception("job failed", extra={"job_id": job.dedupe_id, "job_kind": job.kind})
                self._report(job)
            with self._lock:
                self._forget(entry)
                entries.popleft()
                self._running -= 1
                self._idle.notify_all()

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

    def close(self, drain_seconds: float | None = None) -> bool:
        """Stop the queue; True if no job was left running.

        Without ``drain_seconds`` every queued job runs first (what a test or a script wants).
        With it (``chatbot serve`` stopping): no queued job starts any more, running jobs get at
        most that long to finish, and every job that did not finish stays in the queue file for
        the next start. Jobs enqueued meanwhile are kept there too; after close, enqueue raises.
        """
        with self._lock:
            if self._closed:
                return self._running == 0
        if drain_seconds is None:
            self.join()
        deadline = time.monotonic() + (drain_seconds or 0.0)
        with self._lock:
            self._stopping = True
            self._ready.clear()
            self._waiting_threads = 0
            self._work.notify_all()
            while self._running:
                left = None if drain_seconds is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._idle.wait(left)
            running = self._running
            queued = sum(len(entries) for entries in self._pending.values()) - running
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None
        if running or queued:
            log.warning(
                "job queue stopped with jobs left for the next start",
                extra={"running": running, "queued": queued, "durable": self._persistent},
            )
        return running == 0
