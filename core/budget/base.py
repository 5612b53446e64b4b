"""Rate budgets shaped like the platforms' own limits, with room kept for the calls that matter.

A *scope* is what a platform counts against: Slack's ``chat.update`` per workspace, its
``chat.postMessage`` per channel, Teams' sends per bot per conversation. Each scope has one or
more sliding-window limits ("at most 50 calls in any 60 seconds"), and a budget never lets a
window hold more than its limit.

Not every call is worth the same. A reply's placeholder and its final edit are *required*: the
person must see that the question landed and must see the whole answer. Its first visible text
matters next. Every other intermediate edit is optional: a courtesy that thins out under
pressure, since the next one shows newer text anyway. So:

- ``REQUIRED`` takes a free slot, in the order required calls first asked: one that finds no
  slot left by those waiting before it is recorded as *waiting* (for the time it was told to
  wait, plus a grace), and until it comes back nothing of lower priority may take a slot in
  that scope: finals go first, the oldest first.
- ``FIRST`` (a reply's first visible text) takes any free slot no required call is waiting for.
- ``OPTIONAL`` also leaves room for every open reply's final (and for the first text of the
  open replies that show none yet): a reply *opens* on a scope when it starts (its placeholder
  is up) and closes with its final.

Where a scope is scarce enough that finals could queue for minutes (Slack's ``chat.stopStream``,
about 20 a minute per workspace), a reply is *admitted* instead of simply opened
(:func:`admit_reply`): only if its final fits now beside the final of every reply already open
there and every required call waiting. A refused reply takes another way (for Slack: the paced
path), so no admitted final ever waits for a slot a window cannot give.

The decision is one pure function over a small state (:func:`decide`), so the in-process budget
(:mod:`core.budget.local`) and the one shared by every container through DynamoDB
(:mod:`core.budget.dynamodb`) behave the same, and a fake clock can prove its invariants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

# A refused required call is expected back after its wait; its hold lasts that long plus this.
WAIT_GRACE_SECONDS = 2.0
# An open reply that never closes (its worker died) stops reserving room after this long.
DEFAULT_REPLY_TTL_SECONDS = 600.0
_MIN_WAIT = 0.05


class Priority(IntEnum):
    OPTIONAL = 0
    FIRST = 1
    REQUIRED = 2


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``calls`` calls in any ``window`` seconds."""

    window: float
    calls: int


@dataclass(frozen=True, slots=True)
class Scope:
    """What one platform method counts against, e.g. ``slack:T1:chat.update``."""

    key: str
    limits: tuple[Limit, ...]

    @property
    def horizon(self) -> float:
        return max(limit.window for limit in self.limits)


@dataclass(slots=True)
class WindowState:
    """One scope's recent calls, open replies and waiting required calls."""

    stamps: list[float] = field(default_factory=list)  # when each counted call was made
    open: dict[str, tuple[float, bool]] = field(default_factory=dict)  # holder → (expiry, shown)
    # holder → (hold expiry, when it first asked): required calls refused and coming back
    waiting: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "stamps": self.stamps,
                "open": {h: [exp, shown] for h, (exp, shown) in self.open.items()},
                "waiting": {h: [exp, since] for h, (exp, since) in self.waiting.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> WindowState:
        data: dict[str, Any] = json.loads(text)
        return cls(
            stamps=[float(t) for t in data.get("stamps", ())],
            open={h: (float(v[0]), bool(v[1])) for h, v in data.get("open", {}).items()},
            waiting={h: (float(v[0]), float(v[1])) for h, v in data.get("waiting", {}).items()},
        )


class RateBudget(Protocol):
    """A budget over many scopes. Every method is safe to call from any thread."""

    def open(self, scope: Scope, holder: str) -> None:
        """``holder`` (one reply) will need a required call on ``scope`` later: keep room."""
        ...

    def take(self, scope: Scope, holder: str, priority: Priority, *, closes: bool = False) -> float:
        """Spend one call: 0.0 if it may go now, else the seconds to wait before asking again.
        ``closes`` ends the holder's open reply when the call is granted (its final)."""
        ...

    def close(self, scope: Scope, holder: str) -> None:
        """The reply ended without a final on this scope (it gave up, or moved on)."""
        ...

    def admit(self, scope: Scope, holder: str) -> bool:
        """Open ``holder`` on ``scope`` only if its final fits now beside every open reply's
        final and every waiting required call (:func:`admit_reply`); False changes nothing."""
        ...


def prune(state: WindowState, scope: Scope, now: float) -> None:
    horizon = now - scope.horizon
    state.stamps = [t for t in state.stamps if t > horizon]
    state.open = {h: v for h, v in state.open.items() if v[0] > now}
    state.waiting = {h: v for h, v in state.waiting.items() if v[0] > now}


def free_slots(state: WindowState, scope: Scope, now: float) -> int:
    return min(
        limit.calls - sum(1 for t in state.stamps if t > now - limit.window)
        for limit in scope.limits
    )


def wait_for(state: WindowState, scope: Scope, now: float, need: int) -> float:
    """Seconds until ``need`` more calls fit in every window of the scope."""
    wait = 0.0
    for limit in scope.limits:
        inside = sorted(t for t in state.stamps if t > now - limit.window)
        excess = len(inside) + need - limit.calls
        if excess <= 0:
            continue
        if excess > len(inside):  # not even an empty window holds that many: come back later
            wait = max(wait, limit.window)
            continue
        wait = max(wait, inside[excess - 1] + limit.window - now)
    return max(wait, _MIN_WAIT) if wait > 0 else 0.0


def decide(
    state: WindowState,
    scope: Scope,
    now: float,
    holder: str,
    priority: Priority,
    *,
    closes: bool = False,
    reply_ttl: float = DEFAULT_REPLY_TTL_SECONDS,
) -> float:
    """Grant or refuse one call, updating ``state``; see the module docstring for the rules."""
    prune(state, scope, now)
    free = free_slots(state, scope, now)
    if priority is Priority.REQUIRED:
        since = state.waiting.get(holder, (0.0, now))[1]
        ahead = sum(1 for h, (_, s) in state.waiting.items() if h != holder and s < since)
        if free >= 1 + ahead:
            _grant(state, now, holder, priority, closes=closes, reply_ttl=reply_ttl)
            return 0.0
        wait = wait_for(state, scope, now, 1 + ahead)
        state.waiting[holder] = (now + wait + WAIT_GRACE_SECONDS, since)
        return wait

    others_waiting = [exp for h, (exp, _) in state.waiting.items() if h != holder]
    if others_waiting:
        # A final is due back: nothing of lower priority jumps the queue in the meantime.
        return max(wait_for(state, scope, now, 1), min(others_waiting) - now, _MIN_WAIT)
    need = 1
    if priority is Priority.OPTIONAL:
        # Room for every open reply's final (this one's too), and for the first text of those
        # that show none yet.
        for other, (_, shown) in state.open.items():
            need += 1 if (other == holder or shown) else 2
    if free >= need:
        _grant(state, now, holder, priority, closes=closes, reply_ttl=reply_ttl)
        return 0.0
    return wait_for(state, scope, now, need)


def _grant(
    state: WindowState,
    now: float,
    holder: str,
    priority: Priority,
    *,
    closes: bool,
    reply_ttl: float,
) -> None:
    state.stamps.append(now)
    state.waiting.pop(holder, None)
    if closes:
        state.open.pop(holder, None)
    elif holder in state.open:
        # Still alive: its reservation lasts another ``reply_ttl``; and it shows text once its
        # first text went out (a typing indicator, say, is no text).
        expiry, shown = state.open[holder]
        state.open[holder] = (max(expiry, now + reply_ttl), shown or priority is Priority.FIRST)


def open_reply(state: WindowState, scope: Scope, now: float, holder: str, ttl: float) -> None:
    prune(state, scope, now)
    shown = state.open.get(holder, (0.0, False))[1]
    state.open[holder] = (now + ttl, shown)


def admit_reply(state: WindowState, scope: Scope, now: float, holder: str, ttl: float) -> bool:
    """Open ``holder`` on ``scope`` if the window has a free slot now for its final, beyond one
    for each other open reply's final and each required call waiting; else change nothing.

    So the replies open on a scope never need more finals than the window can take at once, and
    no admitted final has to wait (unless calls made outside admission took its slot)."""
    prune(state, scope, now)
    others = sum(1 for h in state.open if h != holder)
    waiting = sum(1 for h in state.waiting if h != holder)
    if free_slots(state, scope, now) < 1 + others + waiting:
        return False
    open_reply(state, scope, now, holder, ttl)
    return True


def close_reply(state: WindowState, scope: Scope, now: float, holder: str) -> None:
    prune(state, scope, now)
    state.open.pop(holder, None)
    state.waiting.pop(holder, None)
