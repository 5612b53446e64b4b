"""Slack's history methods as a summary reads them: cursor pages, one wait on a rate limit,
and Slack's refusals turned into sentences for the person who asked.

Kept apart from :mod:`bots.slack.history_reader` (which decides what a summary covers) because
this is the part that knows Slack's API: its error codes, ``Retry-After`` and the cursor.

Slack's own limits matter here: apps not approved for the Slack Marketplace get Tier 1 for
``conversations.history`` and ``conversations.replies`` (1 request a minute, at most 15
messages a page) since 2025-05-29 for new apps and installations and 2025-09-02 for existing
ones. Under that regime the first page is read and the rate limit cuts the rest short: the
reader then says exactly which messages it covers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from core.summary_sources import SummaryUnavailable

if TYPE_CHECKING:
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

PAGE_SIZE: Final = 200  # Slack recommends at most 200 a page; Tier 1 apps get 15 whatever we ask
RATE_LIMITED: Final = "Slack is rate-limiting history reads right now; try again in a minute."


class RateLimitedRead(Exception):
    """A read Slack kept rate-limiting after the allowed wait."""


@dataclass
class HistoryRead:
    """One read operation: its retry budget, and the names used in messages to people."""

    where: str  # "#general" or "<#C1>", as people see it
    thread: bool
    wait_left: float


class HistoryApi:
    """``conversations.history`` / ``conversations.replies`` with the bot's token.

    A 429 or ``ratelimited`` answer is retried once per call after ``Retry-After`` seconds, if
    the read still has that much of its wait budget left; otherwise :class:`RateLimitedRead`
    is raised for the reader to decide. Any other refusal, or Slack being unreachable, is a
    :class:`SummaryUnavailable` whose message says what to do.
    """

    def __init__(
        self,
        client: WebClient,
        *,
        bot_name: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._bot_name = bot_name
        self._sleep = sleep

    def pages(
        self, read: HistoryRead, method: str, params: dict[str, Any]
    ) -> Iterator[tuple[list[Mapping[str, Any]], bool]]:
        """Each page's messages and has_more, following ``next_cursor``; ``params["cursor"]``
        is the cursor of the page being yielded (absent for the first)."""
        while True:
            response = self._call(read, method, params)
            page = [m for m in response.get("messages") or () if isinstance(m, Mapping)]
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or ""
            has_more = bool(response.get("has_more")) and bool(cursor)
            yield page, has_more
            if not has_more:
                return
            params["cursor"] = cursor

    def _call(self, read: HistoryRead, method: str, params: dict[str, Any]) -> Any:
        from slack_sdk.errors import SlackApiError

        retried = False
        while True:
            try:
                return getattr(self._client, method)(**params)
            except SlackApiError as exc:
                response = exc.response
                error = str(response.get("error") or "unknown_error")
                if response.status_code == 429 or error == "ratelimited":
                    wait = retry_after(response.headers)
                    if not retried and wait <= read.wait_left:
                        log.info(
                            "slack history read rate limited; retrying",
                            extra={"method": method, "retry_after": wait},
                        )
                        read.wait_left -= wait
                        self._sleep(wait)
                        retried = True
                        continue
                    log.warning(
                        "slack history read rate limited",
                        extra={"method": method, "retry_after": wait},
                    )
                    raise RateLimitedRead(method) from exc
                raise self._refusal(read, method, error, response) from exc
            except OSError as exc:  # urllib's URLError, timeouts, refused connections
                log.warning("slack unreachable", extra={"method": method, "detail": str(exc)})
                raise SummaryUnavailable(
                    "I couldn't reach Slack to read the messages; please try again shortly.",
                    cause="slack_unreachable",
                ) from exc

    def _refusal(
        self, read: HistoryRead, method: str, error: str, response: Any
    ) -> SummaryUnavailable:
        log.warning("slack refused a history read", extra={"method": method, "slack_error": error})
        cause = f"slack_{error}"
        invite = f"invite me with /invite @{self._bot_name} and try again"
        if error == "not_in_channel":
            return SummaryUnavailable(f"I'm not in {read.where} — {invite}.", cause=cause)
        if error == "channel_not_found":
            if read.thread:
                return SummaryUnavailable(
                    "That thread is in a channel I can't see, or in another workspace. "
                    f"If it's a private channel, {invite} there.",
                    cause=cause,
                )
            return SummaryUnavailable(
                f"I can't read {read.where}: if it's a private channel, {invite}. "
                "I can't read direct messages I'm not part of.",
                cause=cause,
            )
        if error in ("thread_not_found", "message_not_found"):
            return SummaryUnavailable(
                "I couldn't find that thread; it may have been deleted.", cause=cause
            )
        if error == "missing_scope":
            needed = str(response.get("needed") or "a history")
            return SummaryUnavailable(
                f"I'm not allowed to read this conversation's messages (I need Slack's "
                f"{needed} permission); an admin needs to add it and reinstall me.",
                cause=cause,
            )
        return SummaryUnavailable(
            f"Slack wouldn't let me read the messages ({error}); please try again later.",
            cause=cause,
        )


def retry_after(headers: Mapping[str, Any] | None) -> float:
    """Seconds Slack asks to wait (``Retry-After``); 1 when it does not say."""
    headers = headers or {}
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else 1.0
    except (TypeError, ValueError):
        return 1.0
