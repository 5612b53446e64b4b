"""Admission (:meth:`core.budget.RateBudget.admit`), proved on a fake clock: a reply is opened on
a scarce scope only if its final fits now beside every open reply's final and every waiting
required call, so admitted replies never need more finals than a window can take and none of
them waits for its final. The same simulation runs against the DynamoDB budget (moto), shared by
two "containers", and must decide exactly as one process does."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from moto import mock_aws

from core.budget import Limit, LocalRateBudget, Priority, RateBudget, Scope
from core.budget.base import WindowState, admit_reply, decide
from core.budget.dynamodb import DynamoDbRateBudget, table_definition
from tests.test_budget import FakeClock, Outage, max_in_any_window

STOPS = Scope("slack:T1:chat.stopStream", (Limit(61.0, 20),))


@dataclass
class Run:
    admitted: list[tuple[float, int]] = field(default_factory=list)  # (when, reply)
    refused: list[tuple[float, int]] = field(default_factory=list)
    finals: list[tuple[float, int]] = field(default_factory=list)
    final_waits: list[float] = field(default_factory=list)  # a wait an admitted final was told
    # At each admission: finals already in the window + stops still owed (this one's too).
    owed_at_admission: list[int] = field(default_factory=list)


def simulate(budgets: list[RateBudget], clock: FakeClock, replies: int, seed: int) -> Run:
    """``replies`` answers arrive over three minutes, at random; each asks admission
    once. An admitted one streams for 1-30 s, then takes its final (REQUIRED, closing); one in
    ten admitted dies instead and closes without a final. Refused ones go elsewhere."""
    rng = random.Random(seed)
    seq = itertools.count()
    events: list[tuple[float, int, int, str]] = []
    for r in range(replies):
        heapq.heappush(events, (clock.now + rng.uniform(0, 180), next(seq), r, "ask"))
    run = Run()
    live: set[int] = set()
    while events:
        at, _, r, action = heapq.heappop(events)
        clock.now = at
        budget = budgets[r % len(budgets)]
        holder = f"reply-{r}"
        if action == "ask":
            if budget.admit(STOPS, holder):
                live.add(r)
                run.admitted.append((at, r))
                done = sum(1 for t, _ in run.finals if t > at - STOPS.limits[0].window)
                run.owed_at_admission.append(done + len(live))
                end = "close" if rng.random() < 0.1 else "final"
                heapq.heappush(events, (at + rng.uniform(1, 30), next(seq), r, end))
            else:
                run.refused.append((at, r))
        elif action == "close":
            budget.close(STOPS, holder)
            live.discard(r)
        else:
            wait = budget.take(STOPS, holder, Priority.REQUIRED, closes=True)
            if wait > 0:
                run.final_waits.append(wait)
                heapq.heappush(events, (at + wait, next(seq), r, "final"))
                continue
            run.finals.append((at, r))
            live.discard(r)
    return run


def check(run: Run, replies: int) -> None:
    limit = STOPS.limits[0]
    assert run.final_waits == []  # no admitted final ever waited for its slot
    assert max_in_any_window([at for at, _ in run.finals], limit.window) <= limit.calls
    # Never more admitted than the window can finish: the finals it holds and those owed.
    assert max(run.owed_at_admission) <= limit.calls
    # Replies that died (closed without a final) gave their room back.
    assert max_in_any_window([at for at, _ in run.admitted], limit.window) >= limit.calls
    assert len(run.admitted) + len(run.refused) == replies
    assert run.refused, "the burst must be bigger than the scope, or nothing is tested"
    admitted = {r for _, r in run.admitted}
    assert {r for _, r in run.finals} <= admitted


@pytest.mark.parametrize(("replies", "seed"), [(100, 1), (200, 2), (500, 3)])
def test_admitted_replies_never_outnumber_what_a_window_can_finish(replies: int, seed: int) -> None:
    clock = FakeClock()
    run = simulate([LocalRateBudget(clock=clock)], clock, replies, seed)
    check(run, replies)
    assert len(run.finals) > 40  # the window slides: admission resumes as stops age out


def test_a_burst_admits_exactly_one_window_and_then_waits_for_it_to_slide() -> None:
    clock = FakeClock()
    budget = LocalRateBudget(clock=clock)
    assert all(budget.admit(STOPS, f"r{i}") for i in range(20))
    assert not budget.admit(STOPS, "r20")  # 20 stops are owed already
    assert budget.admit(STOPS, "r3")  # one already admitted asks again: it is counted once
    for i in range(20):  # all twenty stop at once
        assert budget.take(STOPS, f"r{i}", Priority.REQUIRED, closes=True) == 0.0
    assert not budget.admit(STOPS, "r20")  # no open reply left, but the window is full
    clock.now += 61.0
    assert budget.admit(STOPS, "r20")


def test_a_closed_reply_frees_its_room_at_once() -> None:
    clock = FakeClock()
    budget = LocalRateBudget(clock=clock)
    for i in range(20):
        assert budget.admit(STOPS, f"r{i}")
    assert not budget.admit(STOPS, "late")
    budget.close(STOPS, "r7")  # it ended without a stop: no call counted, its room is free
    assert budget.admit(STOPS, "late")
    assert not budget.admit(STOPS, "later")


def test_a_dead_replys_admission_expires_with_its_reservation() -> None:
    clock = FakeClock()
    budget = LocalRateBudget(clock=clock, reply_ttl=30.0)
    scope = Scope("s", (Limit(61.0, 1),))
    assert budget.admit(scope, "dead")
    assert not budget.admit(scope, "next")
    clock.now += 31.0
    assert budget.admit(scope, "next")


def test_required_calls_waiting_count_against_admission() -> None:
    scope = Scope("s", (Limit(60.0, 3),))
    state = WindowState()
    assert decide(state, scope, 0.0, "a", Priority.REQUIRED) == 0.0
    assert decide(state, scope, 0.0, "b", Priority.REQUIRED) == 0.0
    assert admit_reply(state, scope, 1.0, "open-1", 600.0)  # the third slot: its stop
    assert decide(state, scope, 2.0, "c", Priority.REQUIRED) == 0.0  # outside admission
    assert decide(state, scope, 3.0, "d", Priority.REQUIRED) > 0  # now waiting
    state.open.clear()  # even with nobody open, the waiting call is owed the next slot
    state.stamps = state.stamps[1:]  # one slot frees
    assert not admit_reply(state, scope, 4.0, "e", 600.0)
    assert "e" not in state.open  # a refusal changes nothing
    state.waiting.clear()
    assert admit_reply(state, scope, 4.0, "e", 600.0)


def test_admission_survives_json() -> None:
    state = WindowState()
    assert admit_reply(state, STOPS, 5.0, "x", 600.0)
    restored = WindowState.from_json(state.to_json())
    assert restored.open == {"x": (605.0, False)}
    assert all(admit_reply(restored, STOPS, 6.0, f"y{i}", 600.0) for i in range(19))
    assert not admit_reply(restored, STOPS, 6.0, "one-too-many", 600.0)


# --- the shared budget ---------------------------------------------------------------------


@pytest.fixture
def table() -> Iterator[str]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**table_definition("budget"))
        yield "budget"


def test_two_containers_admit_together_as_one_process_would(table: str) -> None:
    clock = FakeClock()
    containers: list[RateBudget] = [
        DynamoDbRateBudget(table, region="us-east-1", clock=clock) for _ in range(2)
    ]
    run = simulate(containers, clock, 120, seed=7)
    check(run, 120)
    one_clock = FakeClock()
    alone = simulate([LocalRateBudget(clock=one_clock)], one_clock, 120, seed=7)
    assert run.admitted == alone.admitted and run.finals == alone.finals
    assert {r % 2 for _, r in run.admitted} == {0, 1}  # both containers admitted replies


def test_two_containers_admitting_alone_would_owe_more_stops_than_a_window() -> None:
    """The control for the test above: without a shared table the limit is broken."""
    clock = FakeClock()
    separate: list[RateBudget] = [LocalRateBudget(clock=clock) for _ in range(2)]
    run = simulate(separate, clock, 120, seed=7)
    assert max(run.owed_at_admission) > 20


def test_the_shared_admission_falls_back_to_the_process_in_an_outage(table: str) -> None:
    clock = FakeClock()
    client = Outage(boto3.client("dynamodb", region_name="us-east-1"))
    budget = DynamoDbRateBudget(table, region="us-east-1", client=client, clock=clock)
    scope = Scope("slack:T1:chat.stopStream", (Limit(61.0, 2),))
    assert budget.admit(scope, "before")  # on the table
    client.down = True
    assert budget.admit(scope, "during-1")  # counted in process meanwhile
    assert budget.admit(scope, "during-2")
    assert not budget.admit(scope, "during-3")  # the process keeps the limit on its own
    budget.close(scope, "before")  # ends during the outage: closed on the table later
    clock.now += 31.0
    client.down = False
    assert budget.admit(scope, "after")
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=table, Key={"scope": {"S": scope.key}}
    )["Item"]
    assert set(WindowState.from_json(item["state"]["S"]).open) == {"after"}


def test_a_lost_race_is_a_refusal_not_an_admission(table: str) -> None:
    """A container that keeps losing the conditional write does not admit (the reply goes the
    paced way); it never opens a reply the table did not record."""

    class AlwaysRacing:
        def __init__(self, client: object) -> None:
            self._client = client

        def __getattr__(self, name: str) -> object:
            call = getattr(self._client, name)

            def racing(**kwargs: object) -> object:
                if name == "put_item":
                    from botocore.exceptions import ClientError

                    error = {"Error": {"Code": "ConditionalCheckFailedException"}}
                    raise ClientError(error, name)
                return call(**kwargs)

            return racing

    clock = FakeClock()
    client = AlwaysRacing(boto3.client("dynamodb", region_name="us-east-1"))
    budget = DynamoDbRateBudget(table, region="us-east-1", client=client, clock=clock)
    assert not budget.admit(STOPS, "unlucky")
    assert "Item" not in boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=table, Key={"scope": {"S": STOPS.key}}
    )
