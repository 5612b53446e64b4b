"""The in-process rate budget: one lock, one :class:`WindowState` per scope.

Enough on a laptop and wherever one process serves a scope alone (Teams: one conversation's
jobs run one at a time). Also the fallback of the shared budget when DynamoDB cannot be reached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from core.budget.base import (
    DEFAULT_REPLY_TTL_SECONDS,
    Priority,
    Scope,
    WindowState,
    admit_reply,
    close_reply,
    decide,
    open_reply,
)


class LocalRateBudget:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        reply_ttl: float = DEFAULT_REPLY_TTL_SECONDS,
    ) -> None:
        self._clock = clock
        self._reply_ttl = reply_ttl
        self._lock = threading.Lock()
        self._states: dict[str, WindowState] = {}

    def open(self, scope: Scope, holder: str) -> None:
        with self._lock:
            open_reply(self._state(scope), scope, self._clock(), holder, self._reply_ttl)

    def take(self, scope: Scope, holder: str, priority: Priority, *, closes: bool = False) -> float:
        with self._lock:
            state = self._state(scope)
            now = self._clock()
            return decide(
                state, scope, now, holder, priority, closes=closes, reply_ttl=self._reply_ttl
            )

    def close(self, scope: Scope, holder: str) -> None:
        with self._lock:
            close_reply(self._state(scope), scope, self._clock(), holder)

    def admit(self, scope: Scope, holder: str) -> bool:
        with self._lock:
            state = self._state(scope)
            return admit_reply(state, scope, self._clock(), holder, self._reply_ttl)

    def recent_stamps(self, scope: Scope) -> list[float]:
        """The calls counted here in ``scope``'s windows (for the shared budget to carry over)."""
        with self._lock:
            state = self._states.get(scope.key)
            horizon = self._clock() - scope.horizon
            return [t for t in state.stamps if t > horizon] if state else []

    def forget(self, scope: Scope) -> None:
        with self._lock:
            self._states.pop(scope.key, None)

    def _state(self, scope: Scope) -> WindowState:
        state = self._states.get(scope.key)
        if state is None:
            self._forget_idle()
            state = self._states[scope.key] = WindowState()
        return state

    def _forget_idle(self) -> None:
        """Scopes with nothing left in them are dropped, so memory follows activity."""
        now = self._clock()
        for key, state in list(self._states.items()):
            if not state.open and not state.waiting and all(t < now - 3600 for t in state.stamps):
                del self._states[key]
