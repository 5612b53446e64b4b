"""Replies in Slack: a placeholder, paced ``chat.update`` edits, and a final message.

Text goes in a ``markdown`` block, so the model's Markdown (bold, italics, links, lists, code,
headings) is rendered by Slack itself rather than by a hand-written converter. Sources follow in
a ``context`` block. Slack's answers are translated to what the pacer understands: 429 and
``ratelimited`` to :class:`RateLimited` (with ``Retry-After``), ``msg_too_long`` to
:class:`MessageTooLong`, and permanent refusals (no channel, not a member, revoked token) to
:class:`SinkError` naming Slack's error, so nothing retries a request that cannot succeed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from core.domain import Reply, SourceCitation
from core.errors import MessageTooLong, RateLimited, SinkError

log = logging.getLogger(__name__)

# A markdown block holds 12,000 characters and a whole message about 13,000: keep room for the
# sources block.
MAX_MARKDOWN_CHARS = 11_000
FALLBACK_CHARS = 3_000  # the notification text; Slack has refused long ``text`` near 4,000
NETWORK_RETRY_SECONDS = 1.0
_TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "invalid_blocks"})


class EditBudget:
    """``chat.update`` is Tier 3: about 50 a minute per workspace, for all replies together. A
    token bucket per workspace, shared by every reply this process streams, keeps us under it;
    a 429 that still comes (several containers share the workspace) is honoured too."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(max(1, min(per_minute, 10)))  # short bursts, as Slack allows
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, workspace: str) -> float:
        """Spend one edit; returns 0.0, or the seconds to wait when the budget is spent."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(workspace, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - last) * self._rate)
            if tokens >= 1.0:
                self._buckets[workspace] = (tokens - 1.0, now)
                return 0.0
            self._buckets[workspace] = (tokens, now)
            return (1.0 - tokens) / self._rate


class SlackReplySink:
    max_chars = MAX_MARKDOWN_CHARS

    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        thread_ts: str | None,
        workspace: str,
        budget: EditBudget,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._workspace = workspace
        self._budget = budget

    def post(self, text: str) -> str:
        response = self._call(
            "chat.postMessage",
            self._client.chat_postMessage,
            channel=self._channel,
            thread_ts=self._thread_ts,
            text=fallback_text(text),
            blocks=message_blocks(text, ()),
            unfurl_links=False,
        )
        return str(response["ts"])

    def update(self, ref: str, text: str) -> None:
        self._edit(ref, text, ())

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self._edit(ref, text, reply.sources)

    def _edit(self, ref: str, text: str, sources: tuple[SourceCitation, ...]) -> None:
        wait = self._budget.take(self._workspace)
        if wait > 0:
            raise RateLimited(wait, "workspace chat.update budget spent")
        self._call(
            "chat.update",
            self._client.chat_update,
            channel=self._channel,
            ts=ref,
            text=fallback_text(text),
            blocks=message_blocks(text, sources),
        )

    def _call(self, method: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except SlackApiError as exc:
            raise _translate(method, exc) from exc
        except (SlackRequestError, OSError) as exc:
            # The network, not Slack: a short wait and the pacer's bounded retries.
            log.warning("slack unreachable", extra={"method": method, "detail": type(exc).__name__})
            raise RateLimited(NETWORK_RETRY_SECONDS, f"{method}: {type(exc).__name__}") from exc


def _translate(method: str, exc: SlackApiError) -> Exception:
    response = exc.response
    error = str(response.get("error") or "unknown_error")
    if response.status_code == 429 or error == "ratelimited":
        retry_after = float(
            response.headers.get("Retry-After") or response.headers.get("retry-after") or 1
        )
        return RateLimited(retry_after, f"{method} rate limited")
    if error in _TOO_LONG:
        return MessageTooLong(f"{method}: {error}")
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
