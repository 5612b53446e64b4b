"""Replies in Slack: a placeholder, paced ``chat.update`` edits, and a final message.

Text goes in a ``markdown`` block, so the model's Markdown (bold, italics, links, lists, code,
headings) is rendered by Slack itself rather than by a hand-written converter. Sources follow in
a ``context`` block, and a complete answer ends with feedback buttons
(:mod:`bots.slack.feedback_blocks`).

This is the floor under native streaming (:mod:`bots.slack.stream`): where Slack refuses to
stream, or ``CHATBOT_SLACK_STREAMING=off``, replies take this path.

Every call first takes its turn from a rate budget shaped like Slack's own limits
(:class:`SlackLimits`): ``chat.update`` is Tier 3, about 50 a minute *per workspace*, and
``chat.postMessage`` about one a second *per channel* with short bursts, so a placeholder never
waits behind other conversations' edits. A post and a final edit are required calls; a reply's
first text comes next; other edits are optional and thin out (see :mod:`core.budget`). A final
edit that would repeat what the message already shows is not sent at all.

Slack's answers are translated to what the pacer understands: 429 and
``ratelimited`` to :class:`RateLimited` (with ``Retry-After``), ``msg_too_long`` to
:class:`MessageTooLong`, and permanent refusals (no channel, not a member, revoked token) to
:class:`SinkError` naming Slack's error, so nothing retries a request that cannot succeed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bots.slack.feedback_blocks import feedback_blocks
from core.budget import Limit, Priority, RateBudget, Scope
from core.domain import Reply, SourceCitation
from core.errors import BudgetSpent, MessageGone, MessageTooLong, RateLimited, SinkError
from core.feedback import AnswerRef
from core.sinks import PLACEHOLDER

log = logging.getLogger(__name__)

# A markdown block holds 12,000 characters and a whole message about 13,000: keep room for the
# sources block.
MAX_MARKDOWN_CHARS = 11_000
FALLBACK_CHARS = 3_000  # the notification text; Slack has refused long ``text`` near 4,000
NETWORK_RETRY_SECONDS = 1.0
_TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "invalid_blocks"})
_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


# A call is counted when it leaves; Slack counts it when it arrives, a little later. Windows a
# little longer than Slack's keep a later call from landing inside Slack's window of an earlier one.
WINDOW_MARGIN_SECONDS = 1.0
# "1 message a second per channel, short bursts allowed": at most 3 in any 3 seconds.
POSTS_PER_CHANNEL = Limit(3.0 + WINDOW_MARGIN_SECONDS, 3)


@dataclass(frozen=True)
class SlackLimits:
    """Slack's rate limits as budget scopes, over one :class:`~core.budget.RateBudget` shared by
    every reply of the process (and, with the DynamoDB budget, of the deployment).

    Slack counts each method on its own, per workspace and app. The figures are from Slack's
    method pages (https://docs.slack.dev/reference/methods/<method>): ``chat.update`` Tier 3
    (about 50 a minute), ``chat.appendStream`` Tier 4 (about 100), ``chat.stopStream`` Tier 2
    (about 20). ``chat.startStream``'s page names no tier: taken as Tier 2 too, to be safe."""

    budget: RateBudget
    edits_per_minute: int = 50  # chat.update, Tier 3
    appends_per_minute: int = 100  # chat.appendStream, Tier 4
    starts_per_minute: int = 20  # chat.startStream: no tier published; Tier 2 assumed
    stops_per_minute: int = 20  # chat.stopStream, Tier 2

    def edits(self, workspace: str) -> Scope:
        return _per_minute(f"slack:{workspace}:chat.update", self.edits_per_minute)

    def stream_starts(self, workspace: str) -> Scope:
        """``chat.startStream`` per workspace. It also posts a message, so each start is
        counted in the channel's :meth:`posts` as well."""
        return _per_minute(f"slack:{workspace}:chat.startStream", self.starts_per_minute)

    def stream_appends(self, workspace: str) -> Scope:
        return _per_minute(f"slack:{workspace}:chat.appendStream", self.appends_per_minute)

    def stream_stops(self, workspace: str) -> Scope:
        """``chat.stopStream`` per workspace: every stream's final. A stream is only started
        once its stop is admitted here (:meth:`admit_stream`)."""
        return _per_minute(f"slack:{workspace}:chat.stopStream", self.stops_per_minute)

    def posts(self, workspace: str, channel: str) -> Scope:
        return Scope(f"slack:{workspace}:{channel}:chat.postMessage", (POSTS_PER_CHANNEL,))

    def admit_stream(self, workspace: str, holder: str) -> bool:
        """Whether ``holder`` may start a stream now: its stop fits beside the stop of every
        stream already open in the workspace (then room for it is kept until it stops or
        :meth:`~core.budget.RateBudget.close`), and a start is free now. Never waits: a refused
        reply goes the paced way, whose ``chat.update`` budget is a separate one."""
        stops = self.stream_stops(workspace)
        if not self.budget.admit(stops, holder):
            return False
        if self.budget.take(self.stream_starts(workspace), holder, Priority.FIRST) > 0:
            self.budget.close(stops, holder)
            return False
        return True


def _per_minute(key: str, calls: int) -> Scope:
    return Scope(key, (Limit(60.0 + WINDOW_MARGIN_SECONDS, calls),))


class SlackReplySink:
    max_chars = MAX_MARKDOWN_CHARS

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        thread_ts: str | None,
        workspace: str,
        limits: SlackLimits,
        answer: AnswerRef | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._answer = answer  # the answer its feedback buttons name; None: no buttons
        self._budget = limits.budget
        self._edits = limits.edits(workspace)
        self._posts = limits.posts(workspace, channel)
        self._holder = uuid.uuid4().hex  # this reply, in the budget's bookkeeping
        self._opened = False
        self._edited = False  # whether an edit has shown text yet (the first one goes first)
        self._sent: dict[str, list[dict[str, Any]]] = {}  # ts → the blocks it shows

    def post(self, text: str) -> str:
        ts = self._post(text, message_blocks(text, ()), needs_final=True)
        if text != PLACEHOLDER:
            # It shows text already (a stream not admitted, a continuation): later edits are
            # optional, and leave the workspace's edits to finals and other replies' first text.
            self._edited = True
        return ts

    def post_final(self, text: str, reply: Reply) -> str:
        """Post a message that is final at once (a short answer, a notice): what ``post`` and
        ``finish`` would show, in one call."""
        return self._post(text, self.final_blocks(text, reply), needs_final=False)

    def final_blocks(self, text: str, reply: Reply) -> list[dict[str, Any]]:
        return message_blocks(text, reply.sources) + feedback_blocks(self._answer, reply)

    def _post(self, text: str, blocks: list[dict[str, Any]], *, needs_final: bool) -> str:
        self._spend(self._posts, Priority.REQUIRED)
        response = self._call(
            "chat.postMessage",
            self._client.chat_postMessage,
            channel=self._channel,
            thread_ts=self._thread_ts,
            text=fallback_text(text),
            blocks=blocks,
            unfurl_links=False,
        )
        ts = str(response["ts"])
        self._sent[ts] = blocks
        if needs_final and not self._opened:  # this reply will need a final edit: keep room
            self._opened = True
            self._budget.open(self._edits, self._holder)
        return ts

    def update(self, ref: str, text: str) -> None:
        priority = Priority.OPTIONAL if self._edited else Priority.FIRST
        self._edit(ref, text, message_blocks(text, ()), priority)

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self._edit(ref, text, self.final_blocks(text, reply), Priority.REQUIRED)

    def close(self) -> None:
        if self._opened:
            self._budget.close(self._edits, self._holder)

    def message_id(self, ref: str) -> str | None:
        return ref  # the message's ts

    def adopt(self, message_id: str) -> str:
        if not self._opened:
            self._opened = True
            self._budget.open(self._edits, self._holder)
        return message_id

    def _edit(self, ref: str, text: str, blocks: list[dict[str, Any]], priority: Priority) -> None:
        if self._sent.get(ref) == blocks:
            return  # the message already shows exactly this
        self._spend(self._edits, priority)
        self._call(
            "chat.update",
            self._client.chat_update,
            channel=self._channel,
            ts=ref,
            text=fallback_text(text),
            blocks=blocks,
        )
        self._sent[ref] = blocks
        self._edited = True

    def _spend(self, scope: Scope, priority: Priority) -> None:
        closes = priority is Priority.REQUIRED and scope == self._edits
        wait = self._budget.take(scope, self._holder, priority, closes=closes)
        if wait > 0:
            raise BudgetSpent(wait, f"{scope.key} budget spent")

    def _call(self, method: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except SlackApiError as exc:
            raise translate(method, exc) from exc
        except (SlackRequestError, OSError) as exc:
            # The network, not Slack: a short wait and the pacer's bounded retries.
            log.warning("slack unreachable", extra={"method": method, "detail": type(exc).__name__})
            raise RateLimited(NETWORK_RETRY_SECONDS, f"{method}: {type(exc).__name__}") from exc


def translate(method: str, exc: SlackApiError) -> Exception:
    """Slack's refusal of a reply call as the error the pacer understands."""
    response = exc.response
    error = str(response.get("error") or "unknown_error")
    if response.status_code == 429 or error == "ratelimited":
        retry_after = float(
            response.headers.get("Retry-After") or response.headers.get("retry-after") or 1
        )
        return RateLimited(retry_after, f"{method} rate limited")
    if error in _TOO_LONG:
        return MessageTooLong(f"{method}: {error}")
    if error in _GONE:
        log.warning("slack message can no longer be edited", extra={"slack_error": error})
        gone = MessageGone(f"{method}: {error}")
        gone.cause = f"slack_{error}"
        return gone
    log.error("slack refused a reply", extra={"method": method, "slack_error": error})
    failure = SinkError(f"{method}: {error}")
    failure.cause = f"slack_{error}"
    return failure


def fallback_text(markdown: str) -> str:
    """The plain ``text`` Slack shows in notifications; the blocks carry the full answer."""
    return markdown if len(markdown) <= FALLBACK_CHARS else markdown[: FALLBACK_CHARS - 1] + "…"


def message_blocks(markdown: str, sources: tuple[SourceCitation, ...]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "markdown", "text": markdown or " "}]
    if sources:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": sources_line(sources)}]}
        )
    return blocks


def sources_line(sources: tuple[SourceCitation, ...]) -> str:
    parts = []
    for source in sources[:10]:
        label = source.title + (f", {source.location}" if source.location else "")
        label = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        shown = f"<{source.url}|{label}>" if source.url else label
        parts.append(f"[{source.source_id}] {shown}")
    return "*Sources:* " + " · ".join(parts)
