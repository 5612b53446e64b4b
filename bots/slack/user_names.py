"""Display names for the people in a summary, from Slack's ``users.info``.

A summary labels every message with its author and rewrites mentions, so one channel read asks
for the same few names hundreds of times; this cache makes that one call per person per hour,
and one per failing id per few minutes (see :class:`UserNames`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slack_sdk import WebClient

log = logging.getLogger(__name__)


class UserNames:
    """Display names by user id, from ``users.info``, cached for the process.

    Preference: ``profile.display_name``, then ``real_name``, then ``name``. A lookup that fails
    (unknown user, rate limit, network) answers the id itself and is remembered for
    ``failure_ttl_seconds``, so a channel full of one deleted user costs one call, not one per
    message. Thread-safe: concurrent lookups of one id make one call.
    """

    def __init__(
        self,
        client: WebClient,
        *,
        ttl_seconds: float = 3600.0,
        failure_ttl_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl_seconds
        self._failure_ttl = failure_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._names: dict[str, tuple[str, float]] = {}  # id -> (name, expires at)
        self._pending: dict[str, threading.Lock] = {}

    def name(self, user_id: str) -> str:
        if not user_id:
            return "someone"
        cached = self._cached(user_id)
        if cached is not None:
            return cached
        with self._lock:
            pending = self._pending.setdefault(user_id, threading.Lock())
        with pending:
            cached = self._cached(user_id)  # another thread may have looked it up meanwhile
            if cached is not None:
                return cached
            name, ttl = self._lookup(user_id)
            with self._lock:
                self._names[user_id] = (name, self._clock() + ttl)
                self._pending.pop(user_id, None)
            return name

    def _cached(self, user_id: str) -> str | None:
        with self._lock:
            entry = self._names.get(user_id)
            if entry is not None and entry[1] > self._clock():
                return entry[0]
            return None

    def _lookup(self, user_id: str) -> tuple[str, float]:
        from slack_sdk.errors import SlackApiError

        try:
            user = self._client.users_info(user=user_id).get("user") or {}
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "unknown"
            log.warning("users.info failed", extra={"user_id": user_id, "slack_error": error})
            return user_id, self._failure_ttl
        except OSError as exc:
            log.warning("users.info unreachable", extra={"user_id": user_id, "detail": str(exc)})
            return user_id, self._failure_ttl
        profile = user.get("profile") or {}
        for candidate in (
            profile.get("display_name"),
            user.get("real_name"),
            profile.get("real_name"),
            user.get("name"),
        ):
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip(), self._ttl
        return user_id, self._ttl
