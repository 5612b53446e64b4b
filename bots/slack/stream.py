"""Replies in Slack by native streaming: a loading status, then one message that grows.

Slack's AI-app methods stream an answer into one message: ``chat.startStream`` creates it with
the first text, ``chat.appendStream`` adds text, ``chat.stopStream`` ends it (and may add blocks:
the sources and the feedback buttons). Until the first text, ``assistant.threads.setStatus``
shows a status with loading messages under the question, so no placeholder message is posted.

:class:`SlackStreamSink` keeps the :class:`~core.sinks.ReplySink` contract, so the pacer drives it
as it drives the paced sink (:class:`~bots.slack.sink.SlackReplySink`), which it also wraps as its
floor:

- ``post(PLACEHOLDER)`` sets the status and returns a *pending* reference: no message yet.
- The first ``update`` starts the stream with the text; later ones append only what is new. Text
  that does not extend what was streamed (a long answer split at a paragraph, a code fence
  closed) cannot be appended: the stream is stopped and the message is edited with
  ``chat.update`` from then on.
- ``finish`` stops the stream with the rest of the text and the final blocks. A pending reply
  that finishes (an answer faster than the first edit, a one-line notice) is posted whole with
  ``chat.postMessage``.

Where Slack will not stream, the reply falls back to the paced path and the person still sees
one answer: a refused ``chat.startStream`` sends the same text with ``chat.postMessage`` (and
``chat.update`` after it), and the workspace is remembered as not streaming for a while
(:class:`StreamSupport`) so that the next replies go the paced way at once. A stream that fails
midway (expired, ``message_not_in_streaming_state``, any refusal that is not a rate limit) is
finished in the same message with ``chat.update`` and the whole text; only if that message is
gone does the pacer post the answer anew. Rate limits are the pacer's business, as for every
sink: ``ratelimited`` is :class:`~core.errors.RateLimited` with ``Retry-After``.

Budgets: ``chat.startStream`` counts per channel as a post (required); appends and stops count
per workspace (Tier 4, :meth:`~bots.slack.sink.SlackLimits.streams`): a reply's first append
goes first, later ones are optional, and the stop is required and keeps its room from the start
of the stream, as the paced path keeps room for its final edit. The status is a courtesy: never
budgeted, never allowed to fail an answer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bots.slack.sink import (
    MAX_MARKDOWN_CHARS,
    NETWORK_RETRY_SECONDS,
    SlackLimits,
    SlackReplySink,
    translate,
)
from core.budget import Priority, Scope
from core.domain import Reply
from core.errors import BudgetSpent, RateLimited
from core.feedback import AnswerRef
from core.sinks import PLACEHOLDER

log = logging.getLogger(__name__)

STATUS = "is thinking…"
LOADING_MESSAGES = (
    "Reading the conversation…",
    "Looking through shared files…",
    "Writing an answer…",
)
DEFAULT_MEMORY_SECONDS = 3600.0  # how long a workspace that refused streaming stays paced

# Refusals that condemn the channel or the token, not streaming: no fallback can succeed.
_FATAL = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
_TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "invalid_blocks"})
# Refusals about this conversation, not the workspace: only this reply goes the paced way.
_SURFACE_ONLY = frozenset(
    {
        "method_not_supported_for_channel_type",
        "channel_type_not_supported",
        "invalid_arguments",
        "thread_not_found",
    }
)
_STREAM_OVER = frozenset({"message_not_in_streaming_state"})


class StreamSupport:
    """Which workspaces refused native streaming lately, in this process.

    A workspace whose ``chat.startStream`` was refused (method unknown, scope missing, feature
    off) is paced for ``memory`` seconds, then tried again. Thread-safe."""

    def __init__(
        self,
        *,
        memory: float = DEFAULT_MEMORY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._memory = memory
        self._clock = clock
        self._lock = threading.Lock()
        self._refused: dict[str, float] = {}  # workspace → when it may be tried again

    def allowed(self, workspace: str) -> bool:
        with self._lock:
            until = self._refused.get(workspace)
            if until is None:
                return True
            if self._clock() >= until:
                del self._refused[workspace]
                return True
            return False

    def refuse(self, workspace: str, error: str) -> None:
        log.warning(
            "slack refused native streaming; replies in this workspace are paced for a while",
            extra={"slack_error": error, "for_seconds": self._memory},
        )
        with self._lock:
            self._refused[workspace] = self._clock() + self._memory


@dataclass
class _Message:
    """One message of the reply. ``mode``: ``pending`` (a status, no message yet), ``stream``
    (open stream), ``leaving`` (its stream must be stopped before it is edited) or ``edit``
    (a normal message, edited with ``chat.update``; ``ts`` None until posted)."""

    mode: str
    ts: str | None = None
    streamed: str = ""  # the text the stream shows


class SlackStreamSink:
    """A :class:`~core.sinks.ReplySink` streaming natively; see the module docstring."""

    max_chars = MAX_MARKDOWN_CHARS  # chat.appendStream takes 12,000 characters per call

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        thread_ts: str | None,
        workspace: str,
        limits: SlackLimits,
        support: StreamSupport,
        recipient_user: str | None = None,
        answer: AnswerRef | None = None,
        status: str = STATUS,
        loading_messages: Sequence[str] = LOADING_MESSAGES,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._workspace = workspace
        self._support = support
        self._recipient_user = recipient_user
        self._status = status
        self._loading = list(loading_messages)
        self._paced = SlackReplySink(
            client,
            channel=channel,
            thread_ts=thread_ts,
            workspace=workspace,
            limits=limits,
            answer=answer,
        )
        self._budget = limits.budget
        self._posts = limits.posts(workspace, channel)
        self._streams = limits.streams(workspace)
        self._holder = uuid.uuid4().hex
        self._messages: dict[str, _Message] = {}
        self._status_shown = False
        self._posted = False  # whether a message exists (Slack then clears the status itself)
        self._appended = False  # whether an append showed text yet (the first goes first)
        self._open_streams = 0

    # -- the contract ------------------------------------------------------------------------

    def post(self, text: str) -> str:
        if text == PLACEHOLDER and self._can_stream():
            self._show_status()
            ref = f"pending:{len(self._messages)}"
            self._messages[ref] = _Message("pending")
            return ref
        ts = self._paced.post(text)
        self._posted = True
        self._messages[ts] = _Message("edit", ts)
        return ts

    def update(self, ref: str, text: str) -> None:
        m = self._messages[ref]
        if m.mode == "pending":
            self._start(m, text)
            if m.mode == "stream":
                return
        if m.mode == "stream":
            if text.startswith(m.streamed):
                if len(text) > len(m.streamed):
                    self._append(m, text)
                if m.mode == "stream":
                    return
            else:
                m.mode = "leaving"
        self._edit(m, text)

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        m = self._messages[ref]
        if m.mode == "pending":
            m.ts, m.mode = self._paced.post_final(text, reply), "edit"
            self._posted = True
            return
        if m.mode == "stream":
            if text.startswith(m.streamed) and self._stop(m, text, reply):
                return  # stopped with the whole text and the final blocks
            if m.mode == "stream":
                m.mode = "leaving"
        if m.mode == "leaving":
            self._stop_quietly(m)
        if m.ts is None:
            m.ts = self._paced.post_final(text, reply)
            self._posted = True
            return
        self._paced.finish(m.ts, text, reply)

    def close(self) -> None:
        self._paced.close()
        if self._open_streams:
            self._budget.close(self._streams, self._holder)
            self._open_streams = 0
        if self._status_shown and not self._posted:
            self._set_status("")  # no message came to clear it: clear it here

    def message_id(self, ref: str) -> str | None:
        m = self._messages.get(ref)
        return m.ts if m is not None else None

    def adopt(self, message_id: str) -> str:
        # A dead run's stream cannot be resumed: stop it if it is still open, then edit.
        self._posted = True
        m = _Message("leaving" if self._can_stream() else "edit", message_id)
        self._messages[message_id] = m
        if m.mode == "edit":
            self._paced.adopt(message_id)
        return message_id

    # -- streaming ---------------------------------------------------------------------------

    def _can_stream(self) -> bool:
        if not self._thread_ts:
            return False  # Slack streams replies in a thread only
        if self._recipient_user is None and not self._channel.startswith("D"):
            return False  # outside a DM Slack needs to know who the stream is for
        return self._support.allowed(self._workspace)

    def _start(self, m: _Message, text: str) -> None:
        self._spend(self._posts, Priority.REQUIRED)
        try:
            response = self._client.chat_startStream(
                channel=self._channel,
                thread_ts=str(self._thread_ts),
                markdown_text=text,
                recipient_team_id=self._workspace if self._recipient_user else None,
                recipient_user_id=self._recipient_user,
            )
        except SlackApiError as exc:
            error = _error(exc)
            if _rate_limited(exc) or error in _FATAL or error in _TOO_LONG:
                raise translate("chat.startStream", exc) from exc
            if error in _SURFACE_ONLY:
                log.info("slack will not stream here: paced", extra={"slack_error": error})
            else:
                self._support.refuse(self._workspace, error)
            m.mode = "edit"  # the same text goes out by chat.postMessage, now
            return
        except (SlackRequestError, OSError) as exc:
            raise _unreachable("chat.startStream", exc) from exc
        m.ts, m.mode, m.streamed = str(response["ts"]), "stream", text
        self._posted = True
        self._open_streams += 1
        self._budget.open(self._streams, self._holder)  # keep room for its stop

    def _append(self, m: _Message, text: str) -> None:
        self._spend(self._streams, Priority.OPTIONAL if self._appended else Priority.FIRST)
        try:
            self._client.chat_appendStream(
                channel=self._channel, ts=str(m.ts), markdown_text=text[len(m.streamed) :]
            )
        except SlackApiError as exc:
            self._stream_failed(m, "chat.appendStream", exc)
            return
        except (SlackRequestError, OSError) as exc:
            m.mode = "leaving"  # did it land? The next call replaces the whole text instead.
            raise _unreachable("chat.appendStream", exc) from exc
        m.streamed = text
        self._appended = True

    def _stop(self, m: _Message, text: str, reply: Reply) -> bool:
        """End the stream with the rest of ``text`` and the final blocks; False if Slack
        refused (the message then goes on by ``chat.update``)."""
        extra = self._paced.final_blocks(text, reply)[1:]  # the text block is the stream itself
        self._spend(self._streams, Priority.REQUIRED, closes=True)
        try:
            self._client.chat_stopStream(
                channel=self._channel,
                ts=str(m.ts),
                markdown_text=text[len(m.streamed) :] or None,
                blocks=extra or None,
            )
        except SlackApiError as exc:
            self._stream_failed(m, "chat.stopStream", exc, stopped=True)
            return False
        except (SlackRequestError, OSError) as exc:
            m.mode = "leaving"
            raise _unreachable("chat.stopStream", exc) from exc
        m.streamed = text
        self._stream_closed()
        m.mode = "edit"
        return True

    def _stop_quietly(self, m: _Message) -> None:
        """Stop a stream whose message goes on by ``chat.update``; a refusal (the stream is
        over already) is fine. Only a rate limit holds it back, to be tried again."""
        self._spend(self._streams, Priority.REQUIRED, closes=True)
        try:
            self._client.chat_stopStream(channel=self._channel, ts=str(m.ts))
        except SlackApiError as exc:
            if _rate_limited(exc):
                raise translate("chat.stopStream", exc) from exc
            log.debug("stream was over already", extra={"slack_error": _error(exc)})
        except (SlackRequestError, OSError):
            log.debug("stopping the stream failed; editing the message anyway")
        self._switch_to_edits(m)

    def _stream_failed(
        self, m: _Message, method: str, exc: SlackApiError, *, stopped: bool = False
    ) -> None:
        """A refused append or stop: rate limits and dead channels are raised; anything else
        (the stream expired, a state conflict) moves the message to ``chat.update``, after one
        more try to stop its stream unless that is what was refused."""
        error = _error(exc)
        if _rate_limited(exc) or error in _FATAL:
            raise translate(method, exc) from exc
        log.warning(
            "slack stream ended early; finishing the message by chat.update",
            extra={"method": method, "slack_error": error},
        )
        if stopped or error in _STREAM_OVER:
            self._switch_to_edits(m)
        else:
            m.mode = "leaving"

    def _switch_to_edits(self, m: _Message) -> None:
        if m.mode in ("stream", "leaving"):
            self._stream_closed()
        m.mode = "edit"
        assert m.ts is not None
        self._paced.adopt(m.ts)  # keeps room for the final edit

    def _stream_closed(self) -> None:
        if self._open_streams:
            self._open_streams -= 1
            if not self._open_streams:
                self._budget.close(self._streams, self._holder)

    def _edit(self, m: _Message, text: str) -> None:
        if m.mode == "leaving":
            self._stop_quietly(m)
        if m.ts is None:
            m.ts = self._paced.post(text)
            self._posted = True
        else:
            self._paced.update(m.ts, text)

    # -- the status ----------------------------------------------------------------------------

    def _show_status(self) -> None:
        if not self._status_shown:
            self._status_shown = self._set_status(self._status)

    def _set_status(self, status: str) -> bool:
        """Best effort: a status that cannot be set costs the answer nothing."""
        try:
            self._client.assistant_threads_setStatus(
                channel_id=self._channel,
                thread_ts=str(self._thread_ts),
                status=status,
                loading_messages=self._loading if status else None,
            )
        except SlackApiError as exc:
            log.info("slack status not set", extra={"slack_error": _error(exc)})
            return False
        except (SlackRequestError, OSError) as exc:
            log.info("slack status not set", extra={"detail": type(exc).__name__})
            return False
        return True

    # -- budget ------------------------------------------------------------------------------

    def _spend(self, scope: Scope, priority: Priority, *, closes: bool = False) -> None:
        wait = self._budget.take(scope, self._holder, priority, closes=closes)
        if wait > 0:
            raise BudgetSpent(wait, f"{scope.key} budget spent")


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "unknown_error")


def _rate_limited(exc: SlackApiError) -> bool:
    return exc.response.status_code == 429 or _error(exc) == "ratelimited"


def _unreachable(method: str, exc: Exception) -> RateLimited:
    log.warning("slack unreachable", extra={"method": method, "detail": type(exc).__name__})
    return RateLimited(NETWORK_RETRY_SECONDS, f"{method}: {type(exc).__name__}")
