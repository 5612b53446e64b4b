"""The rate budget's invariants, proved on a fake clock with many replies at once.

- No window of a scope ever holds more calls than its limit.
- Every final is delivered, and soon: within a window of the time it could first go out.
- While a final waits, nothing of lower priority takes a slot in that scope.
- Optional edits never eat the room kept for open replies' finals.
The same simulation runs against the DynamoDB budget (moto), shared by two "containers".
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from moto import mock_aws

from core.budget import Limit, LocalRateBudget, Priority, RateBudget, Scope
from core.budget.base import WindowState, decide, free_slots
from core.budget.dynamodb import DynamoDbRateBudget, table_definition

EDITS = Scope("slack:T1:chat.update", (Limit(60.0, 50),))


class FakeClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(order=True)
class Event:
    at: float
    seq: int
    reply: int = field(compare=False)
    action: str = field(compare=False)  # open | first | edit | final


@dataclass
class Grant:
    at: float
    reply: int
    priority: Priority


@dataclass
class Outcome:
    grants: list[Grant] = field(default_factory=list)
    final_due: dict[int, float] = field(default_factory=dict)  # when each final was first asked
    final_done: dict[int, float] = field(default_factory=dict)
    refused_finals: list[tuple[float, int]] = field(default_factory=list)
    free_after_optional: list[tuple[int, int]] = field(default_factory=list)  # (free, open)


def simulate(
    budgets: list[RateBudget], clock: FakeClock, replies: int, seed: int, scope: Scope = EDITS
) -> Outcome:
    """``replies`` answers arrive in a burst; each opens, shows its first text, edits every
    second while it streams (2-20 s) and then asks for its final until granted. Each reply
    talks to one of ``budgets`` (containers sharing a scope)."""
    rng = random.Random(seed)
    seq = itertools.count()
    events: list[Event] = []
    start = clock.now
    streams: dict[int, float] = {}
    for r in range(replies):
        arrive = start + rng.uniform(0, 3)
        heapq.heappush(events, Event(arrive, next(seq), r, "open"))
        streams[r] = arrive + rng.uniform(0.3, 1.5) + rng.uniform(2, 20)
    opened: set[int] = set()
    out = Outcome()
    while events:
        event = heapq.heappop(events)
        clock.now = event.at
        r = event.reply
        budget = budgets[r % len(budgets)]
        holder = f"reply-{r}"
        if event.action == "open":
            budget.open(scope, holder)
            opened.add(r)
            heapq.heappush(events, Event(clock.now + rng.uniform(0.3, 1.5), next(seq), r, "first"))
            continue
        if event.action in ("first", "edit") and clock.now >= streams[r]:
            out.final_due[r] = clock.now
            event = Event(clock.now, next(seq), r, "final")
        priority = {
            "first": Priority.FIRST,
            "edit": Priority.OPTIONAL,
            "final": Priority.REQUIRED,
        }[event.action]
        wait = budget.take(scope, holder, priority, closes=priority is Priority.REQUIRED)
        if wait == 0.0:
            out.grants.append(Grant(clock.now, r, priority))
            if priority is Priority.REQUIRED:
                out.final_done[r] = clock.now
                opened.discard(r)
                continue
            if priority is Priority.OPTIONAL and isinstance(budget, LocalRateBudget):
                state = budget._states[scope.key]  # white-box: the room left for finals
                out.free_after_optional.append((free_slots(state, scope, clock.now), len(opened)))
            heapq.heappush(events, Event(clock.now + 1.0, next(seq), r, "edit"))
            continue
        assert wait > 0
        if priority is Priority.REQUIRED:
            out.refused_finals.append((clock.now, r))
            heapq.heappush(events, Event(clock.now + wait, next(seq), r, "final"))
        else:
            nxt = "first" if priority is Priority.FIRST else "edit"
            heapq.heappush(events, Event(clock.now + max(wait, 1.0), next(seq), r, nxt))
    return out


def max_in_any_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    most = 0
    for i, t in enumerate(stamps):
        j = i
        while j < len(stamps) and stamps[j] < t + window:
            j += 1
        most = max(most, j - i)
    return most


def check_invariants(out: Outcome, replies: int, limit: Limit) -> None:
    # No window over the budget.
    assert max_in_any_window([g.at for g in out.grants], limit.window) <= limit.calls
    # Every final delivered, within a window (and a little) of when it was due.
    assert sorted(out.final_done) == list(range(replies))
    rounds = -(-replies // limit.calls)  # finals can need that many windows at worst
    for r, done in out.final_done.items():
        assert done - out.final_due[r] <= rounds * limit.window + 5.0, r
    # While a final waits, nothing of lower priority is granted.
    for refused_at, r in out.refused_finals:
        granted_at = out.final_done[r]
        jumped = [
            g
            for g in out.grants
            if refused_at <= g.at < granted_at and g.priority is not Priority.REQUIRED
        ]
        assert not jumped, f"reply {r}'s final waited while {jumped[0]} went ahead"


@pytest.mark.parametrize("replies", [1, 10, 30, 50, 80])
@pytest.mark.parametrize("seed", range(4))
def test_invariants_hold_for_bursts_in_one_process(replies: int, seed: int) -> None:
    clock = FakeClock()
    out = simulate([LocalRateBudget(clock=clock)], clock, replies, seed)
    check_invariants(out, replies, EDITS.limits[0])
    # Optional edits leave room for every open reply's final.
    for free, still_open in out.free_after_optional:
        assert free >= min(still_open, EDITS.limits[0].calls) - 0  # own final included


def test_first_texts_go_out_at_once_for_fifty_replies_in_one_workspace() -> None:
    clock = FakeClock()
    out = simulate([LocalRateBudget(clock=clock)], clock, 50, seed=7)
    firsts = [g for g in out.grants if g.priority is Priority.FIRST]
    assert len(firsts) >= 48  # the others' streams ended first: their final is the first text
    assert all(g.at - 10_000.0 < 5.0 for g in firsts)


def test_intermediate_edits_thin_out_so_finals_do_not_wait_at_ten_replies() -> None:
    clock = FakeClock()
    out = simulate([LocalRateBudget(clock=clock)], clock, 10, seed=3)
    edits = [g for g in out.grants if g.priority is Priority.OPTIONAL]
    assert edits, "no intermediate edits at all at ten replies"
    assert not out.refused_finals  # room was kept for every final


def test_a_waiting_final_holds_back_other_replies_edits() -> None:
    clock = FakeClock()
    scope = Scope("s", (Limit(10.0, 2),))
    state = WindowState()
    assert decide(state, scope, clock.now, "a", Priority.FIRST) == 0.0
    assert decide(state, scope, clock.now, "b", Priority.FIRST) == 0.0
    wait = decide(state, scope, clock.now, "a", Priority.REQUIRED)
    assert wait == pytest.approx(10.0)
    clock.now += 10.5  # the window has room again, but "a" has not come back yet
    assert decide(state, scope, clock.now, "b", Priority.FIRST) > 0
    assert decide(state, scope, clock.now, "a", Priority.REQUIRED) == 0.0
    assert decide(state, scope, clock.now, "b", Priority.FIRST) == 0.0


def test_a_dead_replys_reservation_and_hold_expire() -> None:
    budget_clock = FakeClock()
    budget = LocalRateBudget(clock=budget_clock, reply_ttl=30.0)
    scope = Scope("s", (Limit(10.0, 2),))
    budget.open(scope, "dead")
    budget.open(scope, "live")
    assert budget.take(scope, "live", Priority.OPTIONAL) > 0  # two finals to keep room for
    budget_clock.now += 31
    budget.open(scope, "live")
    assert budget.take(scope, "live", Priority.OPTIONAL) == 0.0


def test_state_round_trips_through_json() -> None:
    state = WindowState([1.5, 2.5], {"a": (99.0, True), "b": (98.0, False)}, {"c": (3.0, 1.0)})
    assert WindowState.from_json(state.to_json()) == state


# --- the shared budget ---------------------------------------------------------------------


@pytest.fixture
def table() -> Iterator[str]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**table_definition("budget"))
        yield "budget"


def test_two_containers_sharing_the_table_stay_under_the_limit_together(table: str) -> None:
    clock = FakeClock()
    containers: list[RateBudget] = [
        DynamoDbRateBudget(table, region="us-east-1", clock=clock) for _ in range(2)
    ]
    out = simulate(containers, clock, 30, seed=11)
    check_invariants(out, 30, EDITS.limits[0])
    # Two containers over one table decide exactly as one process would.
    one_clock = FakeClock()
    alone = simulate([LocalRateBudget(clock=one_clock)], one_clock, 30, seed=11)
    assert [(g.at, g.reply, g.priority) for g in out.grants] == [
        (g.at, g.reply, g.priority) for g in alone.grants
    ]
    assert {g.reply % 2 for g in out.grants} == {0, 1}  # both containers took part


def test_two_containers_each_counting_alone_would_exceed_the_limit() -> None:
    """The control for the test above: the simulation does push past the limit."""
    clock = FakeClock()
    separate: list[RateBudget] = [LocalRateBudget(clock=clock) for _ in range(2)]
    out = simulate(separate, clock, 30, seed=11)
    assert max_in_any_window([g.at for g in out.grants], 60.0) > 50


def test_the_shared_budget_falls_back_to_the_process_when_the_table_is_missing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    with mock_aws():
        budget = DynamoDbRateBudget("no-such-table", region="us-east-1", clock=clock)
        scope = Scope("s", (Limit(60.0, 2),))
        with caplog.at_level(logging.WARNING):
            assert budget.take(scope, "a", Priority.REQUIRED) == 0.0
            assert budget.take(scope, "a", Priority.REQUIRED) == 0.0
            assert budget.take(scope, "a", Priority.REQUIRED) > 0  # still counted, in process
    warnings = [r for r in caplog.records if "shared rate budget unavailable" in r.message]
    assert len(warnings) == 1  # one line, then it counts locally for a while


def test_racing_containers_never_over_grant(table: str) -> None:
    """Threads in two "containers" take at once: the conditional write loses races, never
    slots. The wall clock here: 20 calls a minute, and 80 tries within far less than that.

    moto applies a request's condition and write without a lock, so two threads can both pass
    the same condition; DynamoDB makes each request atomic. Each client call is made atomic
    here, as DynamoDB does, while the read-then-write sequence stays open to races."""
    import threading

    atomic = threading.Lock()

    class AtomicRequests:
        def __init__(self, client: object) -> None:
            self._client = client

        def __getattr__(self, name: str) -> object:
            call = getattr(self._client, name)

            def locked(**kwargs: object) -> object:
                with atomic:
                    return call(**kwargs)

            return locked

    scope = Scope("slack:T1:chat.update", (Limit(60.0, 20),))
    containers = [
        DynamoDbRateBudget(
            table,
            region="us-east-1",
            client=AtomicRequests(boto3.client("dynamodb", region_name="us-east-1")),
        )
        for _ in range(2)
    ]
    granted: list[int] = []
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        for _ in range(10):
            if containers[n % 2].take(scope, f"h{n}", Priority.REQUIRED) == 0.0:
                granted.append(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(granted) == 20


def test_waiting_finals_are_served_oldest_first() -> None:
    scope = Scope("s", (Limit(60.0, 1),))
    state = WindowState()
    assert decide(state, scope, 0.0, "first", Priority.REQUIRED) == 0.0  # fills the window
    for i, t in enumerate((10.0, 10.1, 10.2)):
        assert decide(state, scope, t, f"final-{i}", Priority.REQUIRED) > 0
    # The slot frees at 60: a newcomer asking a moment later does not jump the queue...
    assert decide(state, scope, 60.001, "newcomer", Priority.REQUIRED) > 0
    assert decide(state, scope, 60.002, "final-1", Priority.REQUIRED) > 0
    # ...the oldest waiting final gets it.
    assert decide(state, scope, 60.003, "final-0", Priority.REQUIRED) == 0.0


def test_a_typing_indicator_is_not_the_first_text_and_a_live_reply_keeps_its_room() -> None:
    clock = FakeClock()
    budget = LocalRateBudget(clock=clock, reply_ttl=30.0)
    scope = Scope("s", (Limit(1000.0, 1000),))
    budget.open(scope, "r")
    assert budget.take(scope, "r", Priority.OPTIONAL) == 0.0  # typing
    assert budget._states["s"].open["r"][1] is False  # still no text shown
    assert budget.take(scope, "r", Priority.FIRST) == 0.0
    assert budget._states["s"].open["r"][1] is True
    for _ in range(5):  # a long reply keeps editing: its reservation does not lapse
        clock.now += 20
        assert budget.take(scope, "r", Priority.OPTIONAL) == 0.0
    assert "r" in budget._states["s"].open


class Outage:
    """A DynamoDB client that fails while ``down`` is set, as a throttled or unreachable
    table does, and passes calls through otherwise."""

    def __init__(self, client: object) -> None:
        self._client = client
        self.down = False

    def __getattr__(self, name: str) -> object:
        call = getattr(self._client, name)

        def maybe(**kwargs: object) -> object:
            if self.down:
                from botocore.exceptions import ClientError

                error = {"Error": {"Code": "ProvisionedThroughputExceededException"}}
                raise ClientError(error, name)  # type: ignore[arg-type]
            return call(**kwargs)

        return maybe


def test_what_happened_during_an_outage_is_carried_back_to_the_shared_item(table: str) -> None:
    clock = FakeClock()
    client = Outage(boto3.client("dynamodb", region_name="us-east-1"))
    budget = DynamoDbRateBudget(table, region="us-east-1", client=client, clock=clock)
    scope = Scope("slack:T1:chat.update", (Limit(60.0, 4),))
    budget.open(scope, "leaving")
    client.down = True
    for _ in range(3):  # counted in process while the table is out of reach
        assert budget.take(scope, "busy", Priority.REQUIRED) == 0.0
    budget.close(scope, "leaving")  # the reply ends meanwhile
    clock.now += 31  # the fallback period is over
    client.down = False
    assert budget.take(scope, "busy", Priority.REQUIRED) == 0.0
    assert budget.take(scope, "busy", Priority.REQUIRED) > 0  # 3 + 1 = the window's 4
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=table, Key={"scope": {"S": scope.key}}
    )["Item"]
    assert WindowState.from_json(item["state"]["S"]).open == {}  # "leaving" closed there too
