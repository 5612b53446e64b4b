"""The playground's change feed: every change the emulators see, numbered, pushed to the page.

The emulated Slack Web API and Bot Framework connector publish what the bot did to them (a
message posted, edited, streamed; a status; an activity) as small JSON changes. Each gets the
next sequence number of this run; the page receives them as Server-Sent Events
(``GET /playground/events``) with ``id: <run>:<seq>``, so a page that reconnects after a blip
sends ``Last-Event-ID`` and gets what it missed from a bounded replay buffer. When it cannot
(the server restarted: another run id; or the page was away too long), the first event says
``resync`` and the page fetches ``/playground/state`` again.

Bounded everywhere: the replay buffer keeps the last :data:`REPLAY_EVENTS` changes and at most
:data:`REPLAY_BYTES` of them (a streamed message is published whole at every append), each
client queue :data:`CLIENT_QUEUE` (a client that falls that far behind is told to resync), and
at most :data:`MAX_CLIENTS` streams are open: a new one ends the oldest (a page reloaded many
times leaves dead connections that only a write would notice), which is first sent an
``evicted`` event so that a live tab does not reconnect (and evict another in turn) but says
so. A comment line every :data:`HEARTBEAT_SECONDS` keeps proxies from closing an idle stream
and finds dead clients. Every stream ends when the hub closes (server shutdown). Each change
is serialized once, however many streams and replays send it.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from typing import Any

REPLAY_EVENTS = 2_000
REPLAY_BYTES = 8 * 1024 * 1024
CLIENT_QUEUE = 1_000
MAX_CLIENTS = 8
HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 1_000  # how soon EventSource reconnects after the stream drops

_CLOSE = object()
_OVERFLOW = object()
_EVICTED = object()


class Hub:
    def __init__(
        self,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.run = uuid.uuid4().hex[:12]  # this server run: ids from another run mean resync
        self._heartbeat = heartbeat_seconds
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._seq = 0
        self._replay: deque[tuple[int, bytes]] = deque()  # (seq, frame), oldest first
        self._replay_bytes = 0
        self._clients: deque[queue.Queue[object]] = deque()
        self._closed = False

    @property
    def seq(self) -> int:
        with self._lock:
            return self._seq

    def publish(self, change: dict[str, Any]) -> int:
        """Number ``change`` and send it to every open stream; returns its sequence number."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            frame = self._frame(seq, change)
            self._replay.append((seq, frame))
            self._replay_bytes += len(frame)
            while len(self._replay) > REPLAY_EVENTS or (
                self._replay_bytes > REPLAY_BYTES and len(self._replay) > 1
            ):
                self._replay_bytes -= len(self._replay.popleft()[1])
            for client in self._clients:
                try:
                    client.put_nowait(frame)
                except queue.Full:
                    _replace_with_overflow(client)
            return seq

    def close(self) -> None:
        """End every stream (server shutdown); later streams end at once."""
        with self._lock:
            self._closed = True
            clients = list(self._clients)
            self._clients.clear()
        for client in clients:
            _force(client, _CLOSE)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def stream(self, last_event_id: str = "") -> Iterator[bytes]:
        """One client's Server-Sent Events: a ``hello`` (with ``resync`` when the client must
        fetch the snapshot again), what it missed, then every change as it comes."""
        client: queue.Queue[object] = queue.Queue(maxsize=CLIENT_QUEUE)
        with self._lock:
            if self._closed:
                return iter(())
            missed, resync = self._missed(last_event_id)
            self._clients.append(client)
            evicted = None
            if len(self._clients) > self._max_clients:
                evicted = self._clients.popleft()
            seq = self._seq
        if evicted is not None:
            _force(evicted, _EVICTED)
        return self._events(client, missed, resync, seq)

    def _events(
        self,
        client: queue.Queue[object],
        missed: list[bytes],
        resync: bool,
        seq: int,
    ) -> Iterator[bytes]:
        try:
            yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
            hello = {"type": "hello", "run": self.run, "seq": seq, "resync": resync}
            yield self._frame(seq, hello)
            yield from missed
            while True:
                try:
                    item = client.get(timeout=self._heartbeat)
                except queue.Empty:
                    yield b": keep-alive\n\n"
                    continue
                if item is _CLOSE:
                    return
                if item is _OVERFLOW:
                    # Too far behind to catch up change by change: start over from a snapshot.
                    yield self._frame(self.seq, {"type": "hello", "run": self.run, "resync": True})
                    return
                if item is _EVICTED:
                    # Another stream took this one's place: the page must not reconnect.
                    yield self._frame(self.seq, {"type": "evicted"})
                    return
                assert isinstance(item, bytes)
                yield item
        finally:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)

    def _missed(self, last_event_id: str) -> tuple[list[bytes], bool]:
        """With the lock held: the changes after ``last_event_id``, and whether the client must
        resync instead (no id, another run's id, or one older than the replay buffer)."""
        run, _, number = last_event_id.strip().partition(":")
        if run != self.run or not number.isdigit():
            return [], True
        after = int(number)
        if after > self._seq:
            return [], True
        oldest = self._replay[0][0] if self._replay else self._seq + 1
        if after + 1 < oldest and after < self._seq:
            return [], True
        return [frame for n, frame in self._replay if n > after], False

    def _frame(self, seq: int, change: dict[str, Any]) -> bytes:
        data = json.dumps(change, separators=(",", ":"))
        return f"id: {self.run}:{seq}\ndata: {data}\n\n".encode()


def _force(client: queue.Queue[object], item: object) -> None:
    """Put ``item`` even into a full queue (dropping what is queued: the stream ends)."""
    while True:
        try:
            client.put_nowait(item)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                client.get_nowait()


def _replace_with_overflow(client: queue.Queue[object]) -> None:
    with client.mutex:
        client.queue.clear()
    _force(client, _OVERFLOW)
