"""Replies in Teams: a typing indicator, one message edited as the answer grows, sources last.

- The pacer's placeholder becomes Teams' typing indicator: ``post(PLACEHOLDER)`` sends a typing
  activity and returns a pending reference; the message itself is created with the first text.
  Then ``update`` edits it (``update_activity``), and ``finish`` writes the whole answer with its
  sources as a Markdown list (Teams renders Markdown in message text).
- Teams limits each bot per thread to 7 sends a second, 8 per 2 s and 60 per 30 s. A rate
  budget scope per conversation (:class:`TeamsLimits`) keeps under them: a send over budget
  raises :class:`RateLimited`, so the pacer skips that edit (or, for the final, waits); the
  final and the first text go before other edits (see :mod:`core.budget`).
  A 429 that still comes is honoured through ``Retry-After``; 412/502/504 are retried shortly.
- ``feedback``: the final message of a complete answer carries Teams' built-in feedback buttons
  (``channelData.feedbackLoopEnabled``); notices, refusals and unfinished answers do not. A
  click arrives as a ``message/submitAction`` invoke naming the message (see events/worker).
- The final text always arrives: if the final edit fails for good (404: the message is gone;
  or a 412/5xx that persists) it is sent as a new message instead; a message deleted while the
  answer streams (404 on an edit) is continued in a new one.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from dataclasses import dataclass

from botbuilder.schema import Activity, ActivityTypes, ConversationReference

from bots.teams.connector import ConnectorRefused, TeamsConnector, TransientFailure
from core.budget import Limit, Priority, RateBudget, Scope
from core.domain import Reply, SourceCitation
from core.errors import BudgetSpent, MessageTooLong, RateLimited, SinkError
from core.pacer import PLACEHOLDER

log = logging.getLogger(__name__)

# A Teams message holds about 28 KB including the activity's envelope; leave room for the
# sources list and for characters that take more than one byte.
MAX_CHARS = 24_000
MAX_SOURCES = 10
# Attempts at the final edit that end in a 412/5xx before its text goes out as a new message.
FINAL_EDIT_ATTEMPTS = 3
# Teams' documented per-bot, per-thread limits: at most this many sends in any window. A send is
# counted when it leaves and Teams counts it when it arrives: each window is taken a little
# longer than Teams', so that network delays cannot squeeze one more send into Teams' window.
WINDOW_MARGIN_SECONDS = 0.2
TEAMS_THREAD_LIMITS: tuple[Limit, ...] = tuple(
    Limit(window + WINDOW_MARGIN_SECONDS, calls)
    for window, calls in ((1.0, 7), (2.0, 8), (30.0, 60), (3600.0, 1800))
)
_PENDING = "pending:"
FEEDBACK_CHANNEL_DATA = {"feedbackLoopEnabled": True}


@dataclass(frozen=True)
class TeamsLimits:
    """Teams' per-conversation limits as budget scopes over one shared rate budget."""

    budget: RateBudget
    limits: tuple[Limit, ...] = TEAMS_THREAD_LIMITS

    def conversation(self, conversation_id: str) -> Scope:
        return Scope(f"teams:{conversation_id}", self.limits)


class TeamsReplySink:
    """One reply in one Teams conversation (a :class:`core.pacer.ReplySink`)."""

    max_chars = MAX_CHARS

    def __init__(
        self,
        connector: TeamsConnector,
        *,
        reference: ConversationReference,
        reply_to_id: str | None,
        limits: TeamsLimits,
        placeholder: str = PLACEHOLDER,
        feedback: bool = False,
    ) -> None:
        self._connector = connector
        self._feedback = feedback
        self._flagged: set[str] = set()  # activity ids sent with the feedback buttons
        self._reference = reference
        self._reply_to_id = reply_to_id
        self._budget = limits.budget
        self._scope = limits.conversation(
            reference.conversation.id if reference.conversation else ""
        )
        self._holder = uuid.uuid4().hex
        self._placeholder = placeholder
        self._typed = False
        self._edited = False  # whether text was shown yet: the first text goes first
        self._numbers = itertools.count(1)
        self._pending: set[str] = set()  # posted placeholders not yet created in Teams
        self._ids: dict[str, str] = {}  # pending reference → Teams activity id
        self._shown: dict[str, str] = {}  # Teams activity id → the text it shows
        self._final_failures = 0
        self._replaced: set[str] = set()  # refs whose final text went out as a new message
        self._unedited: set[str] = set()  # refs whose final edit failed for good

    # -- ReplySink ----------------------------------------------------------------------------

    def post(self, text: str) -> str:
        if text != self._placeholder:
            return self._send_message(text, Priority.REQUIRED)
        if not self._typed:
            self._typed = True
            self._budget.open(self._scope, self._holder)  # keep room for this reply's final
            self._send_typing()
        ref = f"{_PENDING}{next(self._numbers)}"
        self._pending.add(ref)
        return ref

    def update(self, ref: str, text: str) -> None:
        if ref in self._pending:
            self._materialize(ref, text, Priority.FIRST)
            self._edited = True
            return
        activity_id = self._ids.get(ref, ref)
        if self._shown.get(activity_id) == text:
            return
        try:
            self._edit(activity_id, text, Priority.OPTIONAL if self._edited else Priority.FIRST)
            self._edited = True
        except ConnectorRefused as exc:
            if exc.status != 404:
                raise
            # The message is gone (deleted while the answer streamed): go on in a new one.
            log.warning("message to edit is gone; continuing in a new message")
            self._ids[ref] = self._send_message(text, Priority.OPTIONAL)

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        final = with_sources(text, reply.sources)
        flag = self._feedback and reply.complete and not reply.error
        if ref in self._pending:
            self._materialize(ref, final, Priority.REQUIRED, closes=True, feedback=flag)
            return
        activity_id = self._ids.get(ref, ref)
        if ref in self._replaced:
            return
        if self._shown.get(activity_id) == final and (not flag or activity_id in self._flagged):
            return
        if ref not in self._unedited:
            try:
                self._edit(activity_id, final, Priority.REQUIRED, closes=True, feedback=flag)
                return
            except TransientFailure as exc:
                self._final_failures += 1
                if self._final_failures < FINAL_EDIT_ATTEMPTS:
                    raise
                log.warning(
                    "final edit keeps failing; sending the answer as a new message",
                    extra={"status": exc.status},
                )
            except (RateLimited, MessageTooLong):
                raise  # the pacer waits, or splits the text smaller
            except SinkError as exc:
                log.warning(
                    "final edit refused; sending the answer as a new message",
                    extra={"cause": exc.cause},
                )
            # A retry (the new message waits for budget) goes straight to the new message: a
            # repeated failing edit would spend the budget that message waits for.
            self._unedited.add(ref)
        self._ids[ref] = self._send_message(final, Priority.REQUIRED, closes=True, feedback=flag)
        self._replaced.add(ref)

    def close(self) -> None:
        if self._typed:
            self._budget.close(self._scope, self._holder)

    def message_id(self, ref: str) -> str | None:
        if ref in self._pending:
            return None  # only typing so far: no message to find again
        return self._ids.get(ref, ref)

    def adopt(self, message_id: str) -> str:
        if not self._typed:
            self._typed = True
            self._budget.open(self._scope, self._holder)
        return message_id

    def note_shown(self, ref: str, text: str) -> None:
        """``ref``'s message shows ``text`` already (a stream's message, ended with it)."""
        self._shown[self._ids.get(ref, ref)] = text

    # -- calls ------------------------------------------------------------------------------

    def _materialize(
        self,
        ref: str,
        text: str,
        priority: Priority,
        *,
        closes: bool = False,
        feedback: bool = False,
    ) -> None:
        self._ids[ref] = self._send_message(text, priority, closes=closes, feedback=feedback)
        self._pending.discard(ref)

    def _send_message(
        self, text: str, priority: Priority, *, closes: bool = False, feedback: bool = False
    ) -> str:
        self._spend(priority, closes=closes)
        activity = message_activity(text, feedback=feedback)
        activity_id = self._connector.send(self._reference, activity, reply_to_id=self._reply_to_id)
        if not activity_id:
            raise SinkError("teams send: the connector returned no activity id")
        self._shown[activity_id] = text
        if feedback:
            self._flagged.add(activity_id)
        return activity_id

    def _edit(
        self,
        activity_id: str,
        text: str,
        priority: Priority,
        *,
        closes: bool = False,
        feedback: bool = False,
    ) -> None:
        self._spend(priority, closes=closes)
        activity = message_activity(text, feedback=feedback)
        activity.id = activity_id
        self._connector.update(self._reference, activity)
        self._shown[activity_id] = text
        if feedback:
            self._flagged.add(activity_id)

    def _send_typing(self) -> None:
        """Best effort: a typing indicator that cannot be sent now is skipped, not waited for;
        a permanent refusal (403: removed from the team) is raised before the model runs."""
        if self._budget.take(self._scope, self._holder, Priority.OPTIONAL) > 0:
            return
        try:
            self._connector.send(
                self._reference, Activity(type=ActivityTypes.typing), reply_to_id=self._reply_to_id
            )
        except RateLimited as exc:
            log.info("typing indicator skipped", extra={"retry_after": exc.retry_after})

    def _spend(self, priority: Priority, *, closes: bool = False) -> None:
        """``closes``: the reply's final, which ends its reservation (see core.budget)."""
        wait = self._budget.take(self._scope, self._holder, priority, closes=closes)
        if wait > 0:
            raise BudgetSpent(wait, "teams per-thread send budget spent")


def message_activity(text: str, *, feedback: bool = False) -> Activity:
    """A Markdown message; ``feedback``: with Teams' built-in thumbs up / down buttons."""
    return Activity(
        type=ActivityTypes.message,
        text=text or " ",
        text_format="markdown",
        channel_data=dict(FEEDBACK_CHANNEL_DATA) if feedback else None,
    )


def with_sources(text: str, sources: tuple[SourceCitation, ...]) -> str:
    """The answer with its sources as a Markdown list under it, ids as the model cites them."""
    if not sources:
        return text
    lines = [text.rstrip(), "", "**Sources**", ""]
    for source in sources[:MAX_SOURCES]:
        label = _plain(source.title + (f", {source.location}" if source.location else ""))
        if source.url.startswith(("https://", "http://")):
            label = f"[{label}]({source.url.replace(' ', '%20').replace(')', '%29')})"
        lines.append(f"- [{_plain(source.source_id)}] {label}")
    return "\n".join(lines)


def _plain(text: str) -> str:
    """Brackets in a title would close the link text early; parentheses read the same."""
    return text.replace("[", "(").replace("]", ")")
