"""Answers in Teams personal chats through Teams' native streaming, with the paced edits of
:class:`~bots.teams.sink.TeamsReplySink` as the floor.

How Teams streams (personal chats only): the bot sends an informative update (a ``typing``
activity with text and a ``streaminfo`` entity, ``streamType`` ``informative``,
``streamSequence`` 1); the id Teams returns is the stream's id. Each later chunk is a ``typing``
activity carrying the WHOLE text so far, the stream id and the next ``streamSequence``; the
last is a ``message`` activity with ``streamType`` ``final`` and the stream id, which becomes
the lasting message (its id is the stream id) and is the only one that may carry attachments,
citations or feedback buttons. Teams takes about one streaming request a second and ends a
stream two minutes after it began (403 ``ContentStreamNotAllowed``; the same answer when the
person presses Stop); group chats and channels refuse streaming (400 ``BadArgument`` / 405).

How this sink maps the pacer's calls (core.sinks.ReplySink) onto that:

- ``post(PLACEHOLDER)`` sends the informative update ("Thinking…"); ``update`` sends a chunk,
  at least :data:`STREAM_MIN_GAP_SECONDS` after the stream's previous request (sooner raises
  :class:`BudgetSpent`, so the pacer skips it and shows newer text later) and within the
  conversation's Teams budget (the first text goes first); ``finish`` sends the final, with the
  sources as the paced sink renders them and the feedback buttons on a complete answer.
- Near the cap (:data:`STREAM_TIME_CAP_SECONDS` after the informative update, by the injectable
  clock) the sink ends the stream itself with a final holding the text so far, and goes on by
  editing that message (``updateActivity``), as the paced sink does. A chunk refused near the
  cap (403 ``ContentStreamNotAllowed``) or for another reason (any other 4xx) ends the stream
  the same way. The person keeps ONE message that ends as the whole answer: Teams keeps a
  stream's text as a message when the stream ends early, and the final or the edits replace
  that text. If that message cannot be edited (404), the paced sink posts the answer as a new
  message (its usual rule).
- A final refused near the cap (the stream closed just before it) is delivered by editing the
  stream's message, and as a new message if that fails too.
- **Stop.** Teams answers 403 ``ContentStreamNotAllowed`` both at its cap and after the person
  pressed Stop. The same answer well before the cap (sooner than :data:`STOP_MARGIN_SECONDS`
  before :data:`STREAM_TIME_CAP_SECONDS`, by the injectable clock, so it cannot be Teams' 120 s)
  is the person's Stop: the reply ends with what the stream shows. The sink sends nothing more
  for it (no chunk, no final, no edit, no continuation message); the pacer's later calls succeed
  as no-ops, and :attr:`TeamsStreamSink.stopped_by_person` records it. The pacer cannot tell,
  so its Reply still says complete and the model's whole answer goes into the history (the next
  question sees it, although the person saw only the part before Stop); :meth:`message_id`
  names no message for a stopped reply, so no answer is remembered for feedback (the message
  carries no feedback buttons: those come only with a final).
- Refusal at the start (400/405, or 403 ``ContentStreamNotAllowed`` on the informative update)
  switches this reply to the paced path (a typing indicator, one message, edits), and
  :attr:`StreamSupport.refusals` (a :class:`~core.refusals.RefusalMemory`, key
  ``"tenant:bot"``) remembers the refusal for :data:`REFUSAL_TTL_SECONDS`, so later replies go
  straight to the paced path until it lapses.
- Other failures keep their meaning: 429 and 412/5xx are :class:`RateLimited` for the pacer
  (an intermediate chunk is skipped, a final waits), 413 is :class:`MessageTooLong`.
- A second message (an answer longer than one Teams message) ends the stream with the first
  part and continues in paced messages; ``adopt`` (a crash-resumed reply) is paced too.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from botbuilder.schema import Activity, ActivityTypes, ConversationReference, Entity

from bots.teams.connector import ConnectorRefused, TeamsConnector
from bots.teams.sink import MAX_CHARS, TeamsLimits, TeamsReplySink, message_activity, with_sources
from core.budget import Priority
from core.domain import Reply
from core.errors import BudgetSpent
from core.pacer import PLACEHOLDER
from core.refusals import RefusalMemory

log = logging.getLogger(__name__)

INFORMATIVE_TEXT = "Thinking…"
STREAM_MIN_GAP_SECONDS = 1.0  # Teams throttles streaming requests to about one a second
STREAM_TIME_CAP_SECONDS = 110.0  # Teams ends a stream 120 s after it began: stop before
STOP_MARGIN_SECONDS = 10.0  # a 403 sooner than this before our cap is the person's Stop
REFUSAL_TTL_SECONDS = 3600.0  # how long a tenant's refusal of streaming is remembered
STREAM_NOT_ALLOWED = "ContentStreamNotAllowed"
_STREAM_REF = "stream"


class StreamInfo(Entity):  # type: ignore[misc]  # botbuilder ships no types
    """The ``streaminfo`` entity. botbuilder's ``Entity`` serializes only ``type``, so the
    stream's fields get their own attribute map."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "stream_id": {"key": "streamId", "type": "str"},
        "stream_type": {"key": "streamType", "type": "str"},
        "stream_sequence": {"key": "streamSequence", "type": "int"},
    }

    def __init__(
        self, *, stream_type: str, stream_sequence: int | None = None, stream_id: str | None = None
    ) -> None:
        super().__init__(type="streaminfo")
        self.stream_type = stream_type
        self.stream_sequence = stream_sequence
        self.stream_id = stream_id


def _refusal_memory() -> RefusalMemory:
    return RefusalMemory(feature="teams native streaming", memory=REFUSAL_TTL_SECONDS)


@dataclass(frozen=True)
class StreamSupport:
    """Per process: whether personal chats stream, Teams' pace and cap as the sink keeps them
    (read by ``clock``), and which tenants' bots refused streaming lately (``refusals``, keyed
    by :func:`refusal_key`), so that their replies skip the refused attempt for a while."""

    enabled: bool = True
    refusals: RefusalMemory = field(default_factory=_refusal_memory)
    time_cap: float = STREAM_TIME_CAP_SECONDS
    min_gap: float = STREAM_MIN_GAP_SECONDS
    clock: Callable[[], float] = time.monotonic


def refusal_key(tenant: str, bot: str) -> str:
    """The place a refusal of streaming is remembered for: a tenant's bot."""
    return f"{tenant}:{bot}"


def refuses_streaming(exc: ConnectorRefused) -> bool:
    """Whether a refusal of the first streaming request means "no streaming here": 400
    (``BadArgument``, "streaming api is not enabled"), 405 (group chats and channels), or 403
    ``ContentStreamNotAllowed``. Another 403 (removed from the chat) or 404 is no such answer."""
    return exc.status in (400, 405) or (exc.status == 403 and exc.code == STREAM_NOT_ALLOWED)


class TeamsStreamSink:
    """One reply in one Teams personal chat, streamed natively (a core.sinks.ReplySink)."""

    max_chars = MAX_CHARS

    def __init__(
        self,
        connector: TeamsConnector,
        *,
        reference: ConversationReference,
        reply_to_id: str | None,
        limits: TeamsLimits,
        support: StreamSupport,
        feedback: bool = True,
    ) -> None:
        self._connector = connector
        self._reference = reference
        self._reply_to_id = reply_to_id
        self._support = support
        self._feedback = feedback
        self._budget = limits.budget
        conversation = reference.conversation
        self._scope = limits.conversation(conversation.id if conversation else "")
        tenant = str(getattr(conversation, "tenant_id", None) or "")
        self._place = refusal_key(tenant, str(reference.bot.id if reference.bot else ""))
        self._holder = uuid.uuid4().hex
        self._opened = False
        # Paced messages: the fallback, continuation messages, and the stream's message once
        # the stream has ended early.
        self._paced = TeamsReplySink(
            connector,
            reference=reference,
            reply_to_id=reply_to_id,
            limits=limits,
            feedback=feedback,
        )
        self._streaming = False  # a stream is open
        self._stream_id: str | None = None
        self._sequence = 0  # the last streamSequence Teams accepted
        self._started = 0.0
        self._last_request = float("-inf")
        self._shown = ""  # the text the stream shows
        self._edit_ref: str | None = None  # the stream's message, continued by edits
        self.stopped_by_person = False  # the person pressed Stop: nothing more is sent

    # -- ReplySink ----------------------------------------------------------------------------

    def post(self, text: str) -> str:
        if self.stopped_by_person:
            return _STREAM_REF
        if self._streaming:  # a continuation message: the stream ends with the part it shows
            self._end_stream(self._shown)
            if self.stopped_by_person:
                return _STREAM_REF
            return self._paced.post(text)
        streams = self._support.enabled and self._support.refusals.allowed(self._place)
        if self._stream_id is not None or not streams:
            return self._paced.post(text)
        if not self._opened:
            self._opened = True
            self._budget.open(self._scope, self._holder)  # keep room for this reply's final
        informative = text == PLACEHOLDER
        self._spend(Priority.FIRST, gap=False)
        activity = Activity(
            type=ActivityTypes.typing,
            text=INFORMATIVE_TEXT if informative else text,
            entities=[
                StreamInfo(
                    stream_type="informative" if informative else "streaming", stream_sequence=1
                )
            ],
        )
        try:
            stream_id = self._connector.send(
                self._reference, activity, reply_to_id=self._reply_to_id
            )
        except ConnectorRefused as exc:
            if not refuses_streaming(exc):
                raise
            # Logged there (a warning naming the status and code); this reply goes paced.
            self._support.refusals.refuse(self._place, f"{exc.status} {exc.code or ''}".strip())
            self._stream_id = ""  # never again in this reply
            return self._paced.post(text)
        if not stream_id:  # a channel that takes streaming requests but names no stream
            log.warning("teams returned no stream id; answering with paced edits")
            self._stream_id = ""
            return self._paced.post(text)
        self._stream_id = stream_id
        self._streaming = True
        self._sequence = 1
        self._started = self._last_request = self._support.clock()
        self._shown = "" if informative else text
        return _STREAM_REF

    def update(self, ref: str, text: str) -> None:
        if self.stopped_by_person:
            return
        if ref != _STREAM_REF:
            self._paced.update(ref, text)
            return
        if self._edit_ref is not None:
            self._paced.update(self._edit_ref, text)
            return
        if text == self._shown:
            return
        if self._support.clock() - self._started >= self._support.time_cap:
            log.info("teams stream near its time cap; going on with edits")
            self._end_stream(text)
            return
        self._spend(Priority.OPTIONAL if self._shown else Priority.FIRST)
        try:
            self._send_stream(ActivityTypes.typing, text, "streaming")
        except ConnectorRefused as exc:
            if self._stopped(exc):
                return
            log.warning(
                "teams refused a streaming chunk; going on with edits",
                extra={"status": exc.status, "code": exc.code},
            )
            self._streaming = False
            self._continue_by_edits(text)

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        if self.stopped_by_person:
            return
        if ref != _STREAM_REF:
            self._paced.finish(ref, text, reply)
            return
        if self._edit_ref is not None:
            self._paced.finish(self._edit_ref, text, reply)
            return
        flag = self._feedback and reply.complete and not reply.error
        final = with_sources(text, reply.sources)
        self._spend(Priority.REQUIRED, closes=True)
        try:
            self._send_final(final, feedback=flag)
        except ConnectorRefused as exc:
            if self._stopped(exc):
                return
            log.warning(
                "teams refused the stream's final; editing its message instead",
                extra={"status": exc.status, "code": exc.code},
            )
            self._streaming = False
            self._edit_ref = self._paced.adopt(self._stream_id or "")
            self._paced.finish(self._edit_ref, text, reply)

    def close(self) -> None:
        self._paced.close()
        if self._opened:
            self._budget.close(self._scope, self._holder)

    def message_id(self, ref: str) -> str | None:
        if self.stopped_by_person:
            return None  # no final, no feedback buttons: no answer to remember under it
        if ref != _STREAM_REF:
            return self._paced.message_id(ref)
        if self._edit_ref is not None:
            return self._paced.message_id(self._edit_ref)
        return self._stream_id or None

    def adopt(self, message_id: str) -> str:
        self._stream_id = ""  # a resumed reply's stream died with its run: edit the message
        return self._paced.adopt(message_id)

    # -- the stream ---------------------------------------------------------------------------

    def _end_stream(self, text: str) -> None:
        """End the stream early with ``text`` as its final (no feedback buttons: the answer is
        not complete), and go on by editing its message."""
        self._spend(Priority.FIRST)
        try:
            self._send_final(text, feedback=False)
        except ConnectorRefused as exc:  # the stream was closed already: its text remains
            if self._stopped(exc):
                return
            log.warning(
                "teams stream already closed; editing its message",
                extra={"status": exc.status, "code": exc.code},
            )
            self._streaming = False
            self._continue_by_edits(text)
            return
        self._edit_ref = self._paced.adopt(self._stream_id or "")
        self._paced.note_shown(self._edit_ref, text)

    def _stopped(self, exc: ConnectorRefused) -> bool:
        """Whether a refusal on the open stream is the person's Stop: 403
        ``ContentStreamNotAllowed`` well before the time cap (so not Teams' cap). If so, the
        reply ends here with what the stream shows."""
        if exc.status != 403 or exc.code != STREAM_NOT_ALLOWED:
            return False
        age = self._support.clock() - self._started
        if age >= self._support.time_cap - STOP_MARGIN_SECONDS:
            return False
        self._streaming = False
        self.stopped_by_person = True
        log.info(
            "teams stream stopped by the person; the reply ends with what it shows",
            extra={"stream_age": round(age, 1), "shown_chars": len(self._shown)},
        )
        return True

    def _continue_by_edits(self, text: str) -> None:
        self._edit_ref = self._paced.adopt(self._stream_id or "")
        self._paced.update(self._edit_ref, text)

    def _send_stream(self, kind: str, text: str, stream_type: str) -> None:
        sequence = self._sequence + 1
        activity = Activity(
            type=kind,
            id=self._stream_id,
            text=text,
            entities=[
                StreamInfo(
                    stream_type=stream_type, stream_sequence=sequence, stream_id=self._stream_id
                )
            ],
        )
        self._connector.send(self._reference, activity, reply_to_id=self._reply_to_id)
        self._sequence = sequence
        self._last_request = self._support.clock()
        self._shown = text

    def _send_final(self, text: str, *, feedback: bool) -> None:
        activity = message_activity(text, feedback=feedback)
        activity.id = self._stream_id
        activity.entities = [StreamInfo(stream_type="final", stream_id=self._stream_id)]
        self._connector.send(self._reference, activity, reply_to_id=self._reply_to_id)
        self._streaming = False
        self._last_request = self._support.clock()
        self._shown = text

    def _spend(self, priority: Priority, *, closes: bool = False, gap: bool = True) -> None:
        """Teams' pace for streams (one request a second), then the conversation's budget."""
        if gap:
            wait = self._last_request + self._support.min_gap - self._support.clock()
            if wait > 0:
                raise BudgetSpent(wait, "teams stream: one request a second")
        wait = self._budget.take(self._scope, self._holder, priority, closes=closes)
        if wait > 0:
            raise BudgetSpent(wait, "teams per-thread send budget spent")
