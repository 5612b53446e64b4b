"""A minimal JSON chat on the local host, for trying the whole walk with curl.

``POST /local/messages`` takes ``{"text": ..., "user": ..., "thread": ...}``, answers 202 and
enqueues the turn; the worker answers it through the core into an in-memory transcript that
``GET /local/messages?thread=...`` returns. It exercises the same ingress → queue → worker →
core → pacer → sink path as Slack and Teams, with no platform account. Local host only.

Transcripts live in memory only, so they are bounded: at most ``MAX_THREADS`` threads (1,000;
the least recently used is dropped) of at most ``MAX_MESSAGES_PER_THREAD`` messages each (500;
the oldest is dropped). An edit to a message already dropped is ignored.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from bots.http import HttpRequest, HttpResponse
from core.assistant import Assistant
from core.domain import ConversationKey, Reply, Role, Turn
from core.jobs import (
    JOB_FAILED_MESSAGE,
    Job,
    JobQueue,
    JobRouter,
    turn_from_payload,
    turn_to_payload,
)
from core.pacer import ProcessLocalSink

KIND = "local.message"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_TEXT_CHARS = 100_000
MAX_THREADS = 1_000
MAX_MESSAGES_PER_THREAD = 500


class Transcripts:
    """Every thread's messages, as a person watching the chat would see them (bounded: see the
    module docstring)."""

    def __init__(
        self, max_threads: int = MAX_THREADS, max_messages: int = MAX_MESSAGES_PER_THREAD
    ) -> None:
        self._lock = threading.Lock()
        # thread → (sequence number → message), both oldest first. Sequence numbers are never
        # reused, so a ref cannot reach a newer message after its own was dropped.
        self._threads: OrderedDict[str, OrderedDict[int, dict[str, Any]]] = OrderedDict()
        self._sent = 0
        self._max_threads = max_threads
        self._max_messages = max_messages

    def add(self, thread: str, author: str, text: str, *, final: bool) -> str:
        with self._lock:
            messages = self._threads.setdefault(thread, OrderedDict())
            self._threads.move_to_end(thread)
            while len(self._threads) > self._max_threads:
                self._threads.popitem(last=False)
            seq, self._sent = self._sent, self._sent + 1
            ref = f"{thread}:{seq}"
            messages[seq] = {"ref": ref, "author": author, "text": text, "final": final, "edits": 0}
            while len(messages) > self._max_messages:
                messages.popitem(last=False)
            return ref

    def edit(self, ref: str, text: str, *, final: bool) -> None:
        thread, seq = ref.rsplit(":", 1)
        with self._lock:
            messages = self._threads.get(thread)
            message = messages.get(int(seq)) if messages is not None else None
            if message is None:
                return  # dropped to keep the transcripts bounded
            message.update(text=text, final=final, edits=message["edits"] + 1)

    def read(self, thread: str) -> list[dict[str, Any]]:
        with self._lock:
            messages = self._threads.get(thread)
            if messages is None:
                return []
            self._threads.move_to_end(thread)
            return [dict(m) for m in messages.values()]


class TranscriptSink(ProcessLocalSink):
    """A :class:`core.pacer.ReplySink` writing into :class:`Transcripts`."""

    def __init__(self, transcripts: Transcripts, thread: str, max_chars: int = 4000) -> None:
        self._transcripts = transcripts
        self._thread = thread
        self._max_chars = max_chars

    @property
    def max_chars(self) -> int:
        return self._max_chars

    def post(self, text: str) -> str:
        return self._transcripts.add(self._thread, "assistant", text, final=False)

    def update(self, ref: str, text: str) -> None:
        self._transcripts.edit(ref, text, final=False)

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self._transcripts.edit(ref, text, final=True)


def install(routes: Any, router: JobRouter, queue: JobQueue, assistant: Assistant) -> Transcripts:
    transcripts = Transcripts()

    def post_message(request: HttpRequest) -> HttpResponse:
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):
            # ValueError: not JSON, not UTF-8, or an integer over 4,300 digits; RecursionError:
            # nested too deeply for the parser. Only "text", "user" and "thread" are read, each
            # checked to be a string, so a deep but parseable body goes no further.
            return HttpResponse.error(400, "body must be JSON")
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            return HttpResponse.error(400, 'body must be an object with a string "text"')
        user = data.get("user", "local-user")
        thread = data.get("thread", "main")
        if not (isinstance(user, str) and _NAME.match(user)):
            return HttpResponse.error(400, '"user" must be 1-64 letters, digits, ".", "_" or "-"')
        if not (isinstance(thread, str) and _NAME.match(thread)):
            return HttpResponse.error(400, '"thread" must be 1-64 letters, digits, ".", "_" or "-"')
        if len(data["text"]) > MAX_TEXT_CHARS:
            return HttpResponse.error(413, f'"text" is over {MAX_TEXT_CHARS} characters')
        turn = Turn(
            key=ConversationKey("local", "local", "devchat", thread),
            turn_id=uuid.uuid4().hex,
            role=Role.USER,
            user_id=user,
            user_name=user,
            text=data["text"],
            created_at=time.time(),
        )
        transcripts.add(thread, user, turn.text, final=True)
        queue.enqueue(Job(KIND, turn.key.id, turn.turn_id, turn_to_payload(turn)))
        return HttpResponse.json(202, {"conversation": turn.key.id, "turn_id": turn.turn_id})

    def get_messages(request: HttpRequest) -> HttpResponse:
        thread = request.query.get("thread", "main")
        if not _NAME.match(thread):
            return HttpResponse.error(400, "invalid thread")
        return HttpResponse.json(200, {"thread": thread, "messages": transcripts.read(thread)})

    def work(job: Job) -> None:
        turn = turn_from_payload(job.payload)
        assistant.answer(turn, TranscriptSink(transcripts, turn.key.thread))

    def apologize(job: Job) -> None:
        thread = turn_from_payload(job.payload).key.thread
        transcripts.add(thread, "assistant", JOB_FAILED_MESSAGE, final=True)

    routes.add("POST", "/local/messages", post_message)
    routes.add("GET", "/local/messages", get_messages)
    router.register(KIND, work, on_failure=apologize)
    return transcripts
