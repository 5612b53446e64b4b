"""A test client for the playground: a running local host on embedded defaults, its JSON
actions, its state, and a Server-Sent Events reader. Waits are on conditions, never timed."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bots.local.app import LocalApp, start_local
from bots.local.server import LocalServer
from core.config import Settings

TOKEN = "playground-test-token-dummy-0123456789"
WAIT_SECONDS = 30.0  # generous: a condition, not a speed


@dataclass
class Running:
    server: LocalServer
    app: LocalApp
    thread: threading.Thread
    streams: list[EventStream] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT_SECONDS)
        sent = {"Content-Type": "application/json"}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        content_type = response.getheader("Content-Type") or ""
        if content_type.startswith("application/json"):
            return response.status, json.loads(payload)
        return response.status, payload

    def act(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = self.send("POST", path, body)
        assert status == 200, (status, answer)
        assert isinstance(answer, dict) and answer["ok"] is True
        return answer

    def state(self) -> dict[str, Any]:
        status, body = self.send("GET", "/playground/state")
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    def wait_state(
        self, found: Callable[[dict[str, Any]], Any], timeout: float = WAIT_SECONDS
    ) -> Any:
        """The first truthy ``found(state)``, polled until ``timeout``; fails with the state."""
        deadline = time.monotonic() + timeout
        state = self.state()
        while not (result := found(state)):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met; state: {json.dumps(state)[:4000]}")
            time.sleep(0.05)
            state = self.state()
        return result

    def stream(self, last_event_id: str | None = None) -> EventStream:
        opened = EventStream(self.port, last_event_id)
        self.streams.append(opened)
        return opened

    def stop(self) -> None:
        self.app.close()
        self.server.shutdown()
        self.server.server_close()
        for opened in self.streams:
            opened.close()
        self.thread.join(10)


def start(data_dir: Path, **settings: Any) -> Running:
    values: dict[str, Any] = {"data_dir": data_dir, "port": 0, "edit_interval_seconds": 0.01}
    values.update(settings)
    server, app = start_local(Settings(**values), token=TOKEN)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return Running(server, app, thread)


class EventStream:
    """``GET /playground/events`` read on a thread: every event's id and JSON data."""

    def __init__(self, port: int, last_event_id: str | None = None) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_SECONDS * 4)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._connection.request("GET", f"/playground/events?token={TOKEN}", headers=headers)
        self.response = self._connection.getresponse()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.comments = 0
        self.ended = threading.Event()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        if self.response.status == 200:
            self._reader.start()
        else:
            self.ended.set()

    def _read(self) -> None:
        event_id, data = "", []
        try:
            for raw in self._lines():
                line = raw.decode("utf-8").rstrip("\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and data:
                    with self._changed:
                        self.events.append((event_id, json.loads("\n".join(data))))
                        self._changed.notify_all()
                    event_id, data = "", []
        except (OSError, ValueError):
            pass
        finally:
            self.ended.set()
            with self._changed:
                self._changed.notify_all()

    def _lines(self) -> Iterator[bytes]:
        while True:
            line = self.response.readline()
            if not line:
                return
            yield line

    def wait(
        self,
        found: Callable[[list[tuple[str, dict[str, Any]]]], Any],
        timeout: float = WAIT_SECONDS,
    ) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := found(list(self.events))):
                left = deadline - time.monotonic()
                if left <= 0 or (self.ended.is_set() and not found(list(self.events))):
                    raise AssertionError(f"no such event; got {self.events[-20:]}")
                self._changed.wait(min(left, 1.0))
            return result

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._changed:
            return [data for _, data in self.events if data.get("type") == kind]

    def close(self) -> None:
        self._connection.close()
