"""The local host loses no job: the in-process queue keeps accepted jobs in SQLite until they are
done, a restart clears the in-progress marks a dead run left, and ``chatbot serve`` stops with a
bounded drain instead of working through its whole backlog."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bots.local import devchat
from bots.local.app import QUEUE_FILE, build_local_app
from bots.local.queue import InProcessQueue
from core.config import ConfigError, Settings
from core.dedupe import DedupedHandler
from core.dedupe.sqlite import SqlitePersistenceLayer
from core.domain import ConversationKey, Role, Turn
from core.jobs import Job, turn_to_payload

KIND = "test.job"


def job(group: str, n: int) -> Job:
    return Job(KIND, group, f"{group}-{n}", {"n": n})


def queued(path: Path) -> list[str]:
    """The dedupe ids in the queue file, in its order."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT job FROM jobs ORDER BY seq").fetchall()
    return [json.loads(text)["dedupe_id"] for (text,) in rows]


def statuses(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(status for (status,) in db.execute("SELECT status FROM idempotency"))


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ran: list[str] = []

    def __call__(self, job: Job) -> None:
        with self._lock:
            self.ran.append(job.dedupe_id)

    def of(self, group: str) -> list[str]:
        return [dedupe_id for dedupe_id in self.ran if dedupe_id.startswith(group + "-")]


def never(job: Job) -> None:
    raise AssertionError(f"{job.dedupe_id} ran in the run that was meant to die")


# The durable queue.


@pytest.mark.parametrize("ending", ["crash", "stop"])
def test_jobs_not_run_survive_and_run_first_at_the_next_start_in_order_per_group(
    tmp_path: Path, ending: str
) -> None:
    path = tmp_path / QUEUE_FILE
    first = InProcessQueue(never, path=path, autostart=False)
    for j in (job("g1", 1), job("g2", 1), job("g1", 2), job("g1", 3), job("g2", 2)):
        first.enqueue(j)
    if ending == "stop":
        assert first.close(drain_seconds=0)  # nothing was running
    # "crash": the first queue is simply never closed; its rows are committed already.
    assert queued(path) == ["g1-1", "g2-1", "g1-2", "g1-3", "g2-2"]

    recorder = Recorder()
    second = InProcessQueue(recorder, path=path, workers=1)
    assert second.recovered == 5
    second.enqueue(job("g3", 1))  # new work arrives after the restart
    second.enqueue(job("g1", 4))
    second.enqueue(job("g1", 1))  # a platform retry of a recovered job: dropped, as in SQS
    assert second.join(10)
    second.close()
    assert recorder.of("g1") == ["g1-1", "g1-2", "g1-3", "g1-4"]
    assert recorder.of("g2") == ["g2-1", "g2-2"]
    recovered = {"g1-1", "g1-2", "g1-3", "g2-1", "g2-2"}
    assert all(recorder.ran.index("g3-1") > recorder.ran.index(r) for r in recovered)
    assert queued(path) == []


def test_a_completed_job_is_not_run_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    first_run = Recorder()
    first = InProcessQueue(first_run, path=path)
    first.enqueue(job("g", 1))
    first.enqueue(job("g", 2))
    assert first.join(10)
    assert first.close()
    assert first_run.ran == ["g-1", "g-2"] and queued(path) == []

    second_run = Recorder()
    second = InProcessQueue(second_run, path=path)
    assert second.recovered == 0 and second.join(5)
    second.close()
    assert second_run.ran == []


def test_a_failed_job_is_reported_once_and_not_redelivered(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    reported: list[str] = []

    def handle(job: Job) -> None:
        if job.dedupe_id == "g-1":
            raise RuntimeError("a bug in a handler")

    first = InProcessQueue(handle, path=path, on_failure=lambda j: reported.append(j.dedupe_id))
    first.enqueue(job("g", 1))
    first.enqueue(job("g", 2))
    assert first.join(10)
    first.close()
    assert reported == ["g-1"] and first.failures == 1
    assert queued(path) == []

    second_run = Recorder()
    second = InProcessQueue(second_run, path=path)
    assert second.recovered == 0 and second.join(5)
    second.close()
    assert second_run.ran == []


def test_the_queue_still_works_in_memory_only() -> None:
    recorder = Recorder()
    queue = InProcessQueue(recorder)
    queue.enqueue(job("g", 1))
    queue.enqueue(job("g", 1))
    assert queue.join(5) and queue.close()
    assert recorder.ran == ["g-1"] and queue.recovered == 0


# The bounded drain.


class Gate:
    """A handler that blocks on its first job until released."""

    def __init__(self, *, hold_seconds: float | None = None) -> None:
        self.started: list[str] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self._hold = hold_seconds

    def __call__(self, job: Job) -> None:
        self.started.append(job.dedupe_id)
        if len(self.started) == 1:
            self.first_started.set()
            if self._hold is not None:
                time.sleep(self._hold)
            else:
                self.release.wait(30)


def test_a_bounded_drain_starts_no_queued_job_and_keeps_every_unfinished_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / QUEUE_FILE
    gate = Gate()
    queue = InProcessQueue(gate, path=path, workers=1)
    try:
        for j in (job("g1", 1), job("g1", 2), job("g2", 1)):
            queue.enqueue(j)
        assert gate.first_started.wait(5)
        began = time.monotonic()
        assert queue.close(drain_seconds=0.3) is False  # g1-1 was still running
        assert time.monotonic() - began < 10
        assert gate.started == ["g1-1"]  # the queued jobs did not start
        assert queued(path) == ["g1-1", "g1-2", "g2-1"]  # the abandoned one included
        with pytest.raises(RuntimeError, match="closed"):
            queue.enqueue(job("g3", 1))
        began = time.monotonic()
        assert queue.close() is False  # closed already: no second drain
        assert time.monotonic() - began < 5
    finally:
        gate.release.set()
    time.sleep(0.2)  # the abandoned job ends late: still nothing else starts
    assert gate.started == ["g1-1"]


def test_a_drain_lets_a_running_job_finish_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    gate = Gate(hold_seconds=0.3)
    queue = InProcessQueue(gate, path=path, workers=4)
    queue.enqueue(job("g1", 1))
    queue.enqueue(job("g1", 2))
    assert gate.first_started.wait(5)
    began = time.monotonic()
    assert queue.close(drain_seconds=30) is True
    assert time.monotonic() - began < 10
    assert gate.started == ["g1-1"]
    assert queued(path) == ["g1-2"]  # done with g1-1; g1-2 waits for the next start


# A job abandoned mid-run, with the worker's durable dedupe.


def test_an_abandoned_job_runs_again_once_and_is_not_refused_as_in_progress(
    tmp_path: Path,
) -> None:
    queue_path, marks = tmp_path / QUEUE_FILE, tmp_path / "idempotency.sqlite3"
    gate = Gate()
    first = InProcessQueue(
        DedupedHandler(gate, SqlitePersistenceLayer(marks)), path=queue_path, workers=2
    )
    try:
        first.enqueue(job("g", 1))
        assert gate.first_started.wait(5)
        assert first.close(drain_seconds=0.1) is False
        assert statuses(marks) == ["INPROGRESS"] and queued(queue_path) == ["g-1"]

        # The next start: one host owns its data dir, so no mark can be really in progress.
        persistence = SqlitePersistenceLayer(marks)
        assert persistence.clear_in_progress() == 1
        second_run, failed = Recorder(), Recorder()
        second = InProcessQueue(
            DedupedHandler(second_run, persistence), path=queue_path, on_failure=failed
        )
        assert second.recovered == 1 and second.join(10)
        second.close()
        assert second_run.ran == ["g-1"] and failed.ran == []
        assert statuses(marks) == ["COMPLETED"] and queued(queue_path) == []

        # A later start keeps the completed record, so a redelivery does not answer twice.
        persistence = SqlitePersistenceLayer(marks)
        assert persistence.clear_in_progress() == 0
        third_run = Recorder()
        third = InProcessQueue(DedupedHandler(third_run, persistence), path=queue_path)
        assert third.recovered == 0
        third.enqueue(job("g", 1))
        assert third.join(10)
        third.close()
        assert third_run.ran == [] and statuses(marks) == ["COMPLETED"]
    finally:
        gate.release.set()


def test_without_clearing_the_mark_an_abandoned_job_would_be_refused(tmp_path: Path) -> None:
    """Why the local host clears stale marks: Powertools refuses a job still marked in progress."""
    queue_path, marks = tmp_path / QUEUE_FILE, tmp_path / "idempotency.sqlite3"
    gate = Gate()
    first = InProcessQueue(DedupedHandler(gate, SqlitePersistenceLayer(marks)), path=queue_path)
    try:
        first.enqueue(job("g", 1))
        assert gate.first_started.wait(5)
        first.close(drain_seconds=0.05)
        second_run, failed = Recorder(), Recorder()
        second = InProcessQueue(
            DedupedHandler(second_run, SqlitePersistenceLayer(marks)),
            path=queue_path,
            on_failure=failed,
        )
        assert second.join(10)
        second.close()
        assert second_run.ran == [] and failed.ran == ["g-1"]
    finally:
        gate.release.set()


def test_build_local_app_clears_in_progress_marks_and_keeps_completed_ones(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "idempotency.sqlite3"
    SqlitePersistenceLayer(marks)  # creates the table
    with contextlib.closing(sqlite3.connect(marks)) as db, db:
        far = int(time.time()) + 3600
        db.executemany(
            "INSERT INTO idempotency (id, status, expiration, in_progress_expiration) "
            "VALUES (?, ?, ?, ?)",
            [("dead", "INPROGRESS", far, far * 1000), ("done", "COMPLETED", far, None)],
        )
    app = build_local_app(Settings(data_dir=tmp_path))
    app.close()
    assert statuses(marks) == ["COMPLETED"]


def test_build_local_app_answers_jobs_left_by_the_last_run(tmp_path: Path) -> None:
    turn = Turn(
        key=ConversationKey("local", "local", "devchat", "t1"),
        turn_id="turn-1",
        role=Role.USER,
        user_id="ana",
        user_name="ana",
        text="Our deploy day is Tuesday.",
        created_at=time.time(),
    )
    left = InProcessQueue(never, path=tmp_path / QUEUE_FILE, autostart=False)
    left.enqueue(Job(devchat.KIND, turn.key.id, turn.turn_id, turn_to_payload(turn)))

    app = build_local_app(Settings(data_dir=tmp_path, edit_interval_seconds=0.01))
    try:
        assert app.queue.recovered == 1 and app.queue.join(10)
        assert app.queue.failures == 0  # its handler was registered before the queue started
        answers = [m for m in app.transcripts.read("t1") if m["author"] == "assistant"]
        assert len(answers) == 1 and answers[0]["final"]
    finally:
        app.close()
    assert queued(tmp_path / QUEUE_FILE) == []


def test_drain_seconds_setting() -> None:
    assert Settings().drain_seconds == 20.0
    assert Settings.from_env({"CHATBOT_DRAIN_SECONDS": "2.5"}).drain_seconds == 2.5
    with pytest.raises(ConfigError, match="CHATBOT_DRAIN_SECONDS"):
        Settings.from_env({"CHATBOT_DRAIN_SECONDS": "-1"})


# Real processes: one that dies, one that stops with a job still running, and `chatbot serve`.

CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading
    from bots.local.queue import InProcessQueue
    from core.jobs import Job

    started = threading.Event()

    def handle(job):
        started.set()
        threading.Event().wait()  # never finishes

    queue = InProcessQueue(handle, path=sys.argv[1])
    for n in (1, 2, 3):
        queue.enqueue(Job("test.job", "g", f"g-{n}"))
    assert started.wait(10)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    print(queue.close(drain_seconds=0.2))
    """
)


def run_child(path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
    )


def test_a_process_killed_mid_job_loses_no_job(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    child = run_child(path, "kill")
    assert child.returncode == -signal.SIGKILL, child.stderr
    recorder = Recorder()
    queue = InProcessQueue(recorder, path=path)
    assert queue.join(10)
    queue.close()
    assert recorder.ran == ["g-1", "g-2", "g-3"]


def test_a_process_exits_when_the_drain_is_up_although_a_job_still_runs(tmp_path: Path) -> None:
    path = tmp_path / QUEUE_FILE
    child = run_child(path, "stop")
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "False"  # one job was abandoned
    assert queued(path) == ["g-1", "g-2", "g-3"]


def test_sigterm_stops_serve_within_the_drain_bound_and_keeps_or_finishes_the_job(
    tmp_path: Path,
) -> None:
    drain = 2.0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "serve"],
        cwd=tmp_path,
        env={
            **os.environ,
            "CHATBOT_DATA_DIR": str(tmp_path),
            "CHATBOT_PORT": str(port),
            "CHATBOT_LLM": "offline",
            "CHATBOT_STORE": "sqlite",
            "CHATBOT_DRAIN_SECONDS": str(drain),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        request = urllib.request.Request(
            url + "/local/messages",
            data=json.dumps({"text": "Our deploy day is Tuesday.", "thread": "t1"}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
            turn_id = json.loads(response.read())["turn_id"]
    finally:
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=drain + 30)
    assert proc.returncode == 0, err
    assert time.monotonic() - signalled < drain + 20
    kept = turn_id in queued(tmp_path / QUEUE_FILE)
    done = statuses(tmp_path / "idempotency.sqlite3") == ["COMPLETED"]
    assert kept or done, err
