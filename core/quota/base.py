"""Daily quotas per person and per workspace: the contract, and the rules both backends share.

An operator may cap how much one person, and one workspace, can ask in a UTC day: a number of
questions, a number of model tokens, or both (0 means no limit). Each (scope, day) has one
counter of questions and tokens; a scope is a person in a workspace (``user#slack#T1#U1``) or a
whole workspace (``workspace#slack#T1``).

- A question is counted when its answer starts, atomically with the check: the count and the
  refusal are one conditional write, so two workers racing for the last question of the day
  cannot both get it. The person's counter is taken first and the workspace's last; a refusal by
  the workspace gives the person's question back, so nothing is counted for a refused question.
- Tokens are added when the answer ends (the model reports them in its last event). A token
  limit therefore refuses the next question once the day's tokens have reached it; the answer
  that crossed it is not cut short.
- Counters expire two days after their day began (DynamoDB TTL; SQLite deletes them), and a
  person's counters are erased with the rest of their data (:meth:`QuotaStore.erase_user`).

The backends (:mod:`core.quota.sqlite`, :mod:`core.quota.dynamodb`) implement four small
primitives; the rules live here once. Every primitive raises :class:`~core.errors.StoreError`
when the store fails; the assistant then lets the question through and logs it (a quota guards
cost, it must not take the service down with it).
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import StoreError

log = logging.getLogger(__name__)

DAY_SECONDS = 86_400
COUNTER_DAYS = 2  # a counter expires this many days after its day began
QUESTIONS, TOKENS = "questions", "tokens"
USER, WORKSPACE = "user", "workspace"


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """Daily limits; 0 means no limit (``CHATBOT_QUOTA_*``)."""

    questions_per_user: int = 0
    questions_per_workspace: int = 0
    tokens_per_user: int = 0
    tokens_per_workspace: int = 0

    @property
    def enabled(self) -> bool:
        return any(
            (
                self.questions_per_user,
                self.questions_per_workspace,
                self.tokens_per_user,
                self.tokens_per_workspace,
            )
        )


@dataclass(frozen=True, slots=True)
class Used:
    """What a counter holds for one day."""

    questions: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Counter:
    """One scope's daily counter and its limits (0: none)."""

    scope: str  # USER or WORKSPACE
    key: str  # the stored key, e.g. "user#slack#T1#U1"
    questions: int
    tokens: int

    def refuses(self, used: Used) -> bool:
        """Whether one more question would go past a limit."""
        return bool(
            (self.questions and used.questions >= self.questions)
            or (self.tokens and used.tokens >= self.tokens)
        )

    def reached(self, used: Used, *, resets_at: float, now: float) -> QuotaReached:
        """The refusal ``used`` stands for (the questions limit when both are reached)."""
        if self.questions and (used.questions >= self.questions or not self.tokens):
            return QuotaReached(self.scope, QUESTIONS, self.questions, resets_at, now)
        return QuotaReached(self.scope, TOKENS, self.tokens, resets_at, now)


@dataclass(frozen=True, slots=True)
class QuotaReached:
    """A question refused: which limit, and when the day's counters start again."""

    scope: str  # USER or WORKSPACE
    unit: str  # QUESTIONS or TOKENS
    limit: int
    resets_at: float  # epoch seconds: the next 00:00 UTC
    now: float

    @property
    def message(self) -> str:
        """What the person reads in the chat."""
        whose = "You've" if self.scope == USER else "This workspace has"
        unit = self.unit[:-1] if self.limit == 1 else self.unit
        return (
            f"{whose} reached today's limit of {self.limit:,} {unit}; it resets at 00:00 UTC "
            f"({_in(self.resets_at - self.now)})."
        )


class QuotaStore(abc.ABC):
    """Daily question and token counters per person and per workspace.

    Build one per process (it holds a client or a connection) and share it between threads.
    """

    def __init__(self, limits: QuotaLimits, *, clock: Callable[[], float] = time.time) -> None:
        self._limits = limits
        self._clock = clock

    @property
    def limits(self) -> QuotaLimits:
        return self._limits

    def admit(self, platform: str, workspace: str, user_id: str) -> QuotaReached | None:
        """Count one question against the person and the workspace, unless a limit has been
        reached: then nothing is counted and the refusal says which limit. StoreError when
        the store failed (the question may or may not have been counted)."""
        now = self._clock()
        day = day_of(now)
        counted: list[Counter] = []
        for counter in self.counters(platform, workspace, user_id):
            found = self._count_question(counter, day, expires_at(day))
            if found is None:
                counted.append(counter)
                continue
            for earlier in counted:
                self._give_back(earlier, day)
            return counter.reached(found, resets_at=next_midnight(now), now=now)
        return None

    def add_tokens(self, platform: str, workspace: str, user_id: str, tokens: int) -> None:
        """Add an answer's tokens to the counters that have a token limit."""
        if tokens <= 0:
            return
        day = day_of(self._clock())
        for counter in self.counters(platform, workspace, user_id):
            if counter.tokens:
                self._add_tokens(counter, day, tokens, expires_at(day))

    def erase_user(self, platform: str, workspace: str, user_id: str) -> int:
        """Delete every counter of one person in one workspace (every day); how many."""
        return self._erase(user_key(platform, workspace, user_id))

    def counters(self, platform: str, workspace: str, user_id: str) -> list[Counter]:
        """The counters a question from this person counts against, the person's first."""
        limits = self._limits
        found = [
            Counter(
                USER,
                user_key(platform, workspace, user_id),
                limits.questions_per_user,
                limits.tokens_per_user,
            ),
            Counter(
                WORKSPACE,
                workspace_key(platform, workspace),
                limits.questions_per_workspace,
                limits.tokens_per_workspace,
            ),
        ]
        return [c for c in found if c.questions or c.tokens]

    def close(self) -> None:  # noqa: B027 - optional hook, as in HistoryStore
        """Release connections; the default has nothing to release."""

    # -- what a backend implements ------------------------------------------------------------

    @abc.abstractmethod
    def used(self, key: str, day: str) -> Used:
        """What one counter holds for one day (zeros if none): for tests and operators."""

    @abc.abstractmethod
    def _count_question(self, counter: Counter, day: str, expires: int) -> Used | None:
        """Atomically add one question to the counter unless ``counter.refuses`` what it
        holds; None when counted, else what it holds (nothing changed)."""

    @abc.abstractmethod
    def _uncount_question(self, counter: Counter, day: str) -> None:
        """Take back one question counted by :meth:`_count_question`."""

    @abc.abstractmethod
    def _add_tokens(self, counter: Counter, day: str, tokens: int, expires: int) -> None:
        """Add ``tokens`` to the counter, unconditionally: they were spent."""

    @abc.abstractmethod
    def _erase(self, key: str) -> int:
        """Delete the counters of ``key`` for every day; how many there were."""

    # -- helpers ------------------------------------------------------------------------------

    def _give_back(self, counter: Counter, day: str) -> None:
        try:
            self._uncount_question(counter, day)
        except StoreError as exc:
            # The question is refused anyway; the person's count is one too high until tomorrow.
            log.warning("could not give back a refused question", extra={"cause": exc.cause})


def user_key(platform: str, workspace: str, user_id: str) -> str:
    return f"{USER}#{platform}#{workspace}#{user_id}"


def workspace_key(platform: str, workspace: str) -> str:
    return f"{WORKSPACE}#{platform}#{workspace}"


def day_of(now: float) -> str:
    """The UTC day ``now`` falls in, e.g. ``2026-11-30``."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def next_midnight(now: float) -> float:
    return (int(now) // DAY_SECONDS + 1) * DAY_SECONDS


def expires_at(day: str) -> int:
    """When a counter of ``day`` may be deleted: two days after the day began."""
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    return int(start) + COUNTER_DAYS * DAY_SECONDS


def _in(seconds: float) -> str:
    minutes = max(0, int(seconds) // 60)
    if minutes < 1:
        return "in less than a minute"
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"in {minutes} min"
    return f"in {hours} h {minutes} min" if minutes else f"in {hours} h"
