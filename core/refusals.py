"""Which places refused a platform feature lately, so that the next replies skip the refused try.

Native streaming is a bonus on both platforms: a Slack workspace without it answers
``chat.startStream`` with ``unknown_method`` or ``missing_scope``; a Teams tenant's bot answers
400/405. Every reply that tries anyway pays one refused call before it falls back to paced edits,
so the adapters remember the refusal per place (a Slack workspace ``"T123"``, a Teams tenant and
bot ``"tenant:bot"``) for a while, then try again: a workspace may turn the feature on, a scope
may be granted. The memory is per process; a refusal costs one call per process and period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFAULT_MEMORY_SECONDS = 3600.0


class RefusalMemory:
    """Places (any string key) that refused a feature, each remembered for ``memory`` seconds of
    ``clock``. Thread-safe; one instance per feature and process."""

    def __init__(
        self,
        *,
        feature: str = "native streaming",
        memory: float = DEFAULT_MEMORY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if memory < 0:
            raise ValueError("memory must not be negative")
        self.feature = feature
        self.memory = memory
        self.clock = clock
        self._lock = threading.Lock()
        self._refused: dict[str, float] = {}  # key → when it may be tried again

    def allowed(self, key: str) -> bool:
        """Whether ``key`` may try the feature: never refused, or its refusal has lapsed."""
        with self._lock:
            until = self._refused.get(key)
            if until is None:
                return True
            if self.clock() >= until:
                del self._refused[key]
                return True
            return False

    def refuse(self, key: str, reason: str) -> None:
        """``key`` refused the feature (``reason``: the platform's error code, logged; never
        message text): skip it for ``memory`` seconds."""
        log.warning(
            "feature refused; replies here skip it for a while",
            extra={"feature": self.feature, "reason": reason, "for_seconds": self.memory},
        )
        with self._lock:
            self._refused[key] = self.clock() + self.memory
