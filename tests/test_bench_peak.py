"""``bench.peak``'s driver at N=2, against the stand-ins and a real host subprocess: the
measurement plumbing (answers counted complete, 429s counted, the log-driven end of a round, the
report's verdicts) must not rot silently. No timing is asserted."""

from __future__ import annotations

import math

import pytest

from bench import peak
from tests.standins.slack import SlackCall

FAST = peak.ModelPace(ttft=0.05, deltas=12, gap=0.01)
ANSWER = FAST.answer
FIRST = FAST.chunks()[0]

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("side", peak.SIDES)
def test_a_round_counts_complete_answers(side: str) -> None:
    result = peak.run_round(side, 2, pace=FAST, cap_s=60, slack_latency_s=0.0)

    assert (result.complete, result.connection_errors, result.bad_acks) == (2, 0, 0)
    assert result.ended_by in ("every answer final", "every job ended (host log)")
    assert result.model_streams == 2
    assert result.rate_limited == 0 and result.rate_limited_pct == 0.0
    calls = result.posts + result.updates + result.streams + result.statuses
    assert result.slack_calls >= calls and result.calls_per_answer == result.slack_calls / 2
    if side == "native":  # a status and a stream per answer, no placeholder, no edits
        assert result.statuses == 2 and result.streams >= 4
        assert result.posts == result.updates == 0
        assert result.streamed_natively == 2  # two streams fit Slack's stop tier at once
    else:
        assert result.posts >= 2 and result.streams == result.statuses == 0
        assert result.streamed_natively == 0
    # Every answer was followed from its ack to its final text.
    assert len(result.ack_s) == len(result.first_visible_s) == 2
    assert len(result.text_visible_s) == len(result.final_s) == 2
    assert math.isfinite(result.last_final_s)
    assert len(result.shown_at_model_end) == 2
    assert all(0 < share <= 1 for share in result.shown_at_model_end)
    assert result.memory_kb["VmHWM"] >= result.memory_kb["VmRSS"] > 0
    assert result.answered_logged == 2 and result.answered_incomplete == 0
    assert result.host_exceptions == {}


def test_a_tiny_update_budget_shows_as_429s_and_incomplete_answers() -> None:
    # The baseline gives up at its first 429: with one chat.update a minute for the workspace
    # neither answer can finish, and the round must end on the host's log, not at the cap.
    result = peak.run_round(
        "baseline",
        2,
        pace=FAST,
        tiers=peak.SlackTiers(update_per_minute=1),
        cap_s=60,
        slack_latency_s=0.0,
    )

    assert result.complete == 0
    assert result.rate_limited >= 2
    assert result.rate_limited == result.rate_limited_by_method["chat.update"]
    assert result.rate_limited_pct == pytest.approx(100 * result.rate_limited / result.slack_calls)
    assert result.ended_by == "every job ended (host log)"
    assert result.answered_incomplete == 2
    assert math.isinf(result.last_final_s) and result.final_s == []


def _mention(channel: str, ts: str) -> peak.Mention:
    mention = peak.Mention(0, channel, ts, "peak-abcdef-q000", b"", {})
    mention.sent_at, mention.ack_at, mention.status = 10.0, 10.1, 200
    return mention


def _call(method: str, at: float, params: dict[str, object], **response: object) -> SlackCall:
    status = 429 if response.get("error") == "ratelimited" else 200
    ok = "error" not in response
    return SlackCall(method, params, {}, at, status, {"ok": ok, **response})


def test_the_tracker_follows_answers_by_channel_and_thread() -> None:
    mentions = [_mention("C1", "1.000001"), _mention("C2", "1.000002")]
    tracker = peak.Tracker(mentions, ANSWER, FIRST)
    blocks = [{"type": "markdown", "text": ANSWER}]
    tracker.feed(
        [
            _call("chat.postMessage", 10.2, {"channel": "C1", "thread_ts": "1.000001"}, ts="2.1"),
            _call("chat.postMessage", 10.3, {"channel": "C2", "thread_ts": "1.000002"}, ts="2.2"),
            # refused, and another thread's message: neither counts for C1's answer
            _call(
                "chat.update",
                11.0,
                {"channel": "C1", "ts": "2.1", "text": FIRST},
                error="ratelimited",
            ),
            _call("chat.update", 11.5, {"channel": "C2", "ts": "2.2", "text": FIRST + " x"}),
            _call("chat.update", 12.0, {"channel": "C1", "ts": "2.1", "text": FIRST}),
            _call(
                "chat.update", 14.0, {"channel": "C1", "ts": "2.1", "text": "…", "blocks": blocks}
            ),
        ]
    )
    c1, c2 = tracker.traces[("C1", "1.000001")], tracker.traces[("C2", "1.000002")]
    assert (c1.placeholder_at, c1.first_text_at, c1.final_at) == (10.2, 12.0, 14.0)
    assert (c2.placeholder_at, c2.first_text_at, c2.final_at) == (10.3, 11.5, math.inf)
    assert not (c1.streamed or c2.streamed)  # posted and edited: the paced path
    assert tracker.finals == 1
    assert c1.shown == [(10.2, 0), (12.0, len(FIRST)), (14.0, len(ANSWER))]
    assert c2.shown == [(10.3, 0), (11.5, len(FIRST) + 1)]  # "First x": a prefix plus a space
    assert tracker.last_call_at == 14.0


def test_the_tracker_follows_native_streams_to_their_stop() -> None:
    mention = _mention("C1", "1.000001")
    tracker = peak.Tracker([mention], ANSWER, FIRST)
    rest = ANSWER[len(FIRST) :]
    thread = {"channel": "C1", "thread_ts": "1.000001"}
    tracker.feed(
        [
            _call(
                "assistant.threads.setStatus", 10.2, {"channel_id": "C1", **thread, "status": "…"}
            ),
            _call("chat.startStream", 10.9, {**thread, "markdown_text": FIRST}, ts="2.1"),
            _call("chat.appendStream", 11.5, {"channel": "C1", "ts": "2.1", "markdown_text": rest}),
            _call("chat.stopStream", 12.0, {"channel": "C1", "ts": "2.1"}),
        ]
    )
    trace = tracker.traces[("C1", "1.000001")]
    # The status is the first visible sign; the whole text is final only once the stream stops.
    assert (trace.placeholder_at, trace.first_text_at, trace.final_at) == (10.2, 10.9, 12.0)
    assert trace.shown == [(10.9, len(FIRST)), (11.5, len(ANSWER)), (12.0, len(ANSWER))]
    assert tracker.finals == 1
    assert trace.streamed


def _result(side: str, *, complete: int, rate_limited: int, finals: int) -> peak.RoundResult:
    n = peak.TARGET_N
    return peak.RoundResult(
        side=side,
        n=n,
        channels=25,
        complete=complete,
        connection_errors=0,
        error_kinds={},
        bad_acks=0,
        slow_acks=0,
        ack_s=[0.05] * n,
        slack_calls=150,
        posts=50,
        updates=100,
        streams=0,
        statuses=0,
        rate_limited=rate_limited,
        rate_limited_by_method={"chat.update": rate_limited},
        first_visible_s=[0.2] * n,
        text_visible_s=[0.4] * n,
        final_s=[60.0] * finals,
        final_after_model_s=[56.0] * finals,
        shown_at_model_end=[0.5] * n,
        memory_kb={"VmHWM": 90_000, "VmRSS": 80_000},
        duration_s=61.0,
        ended_by="every answer final",
        answered_logged=n,
        answered_incomplete=n - complete,
        model_streams=n,
    )


def test_the_report_gives_each_target_a_verdict_for_both_of_our_paths() -> None:
    native = _result("native", complete=50, rate_limited=0, finals=50)
    native.streamed_natively = 20  # one minute of Slack's stop tier; the others went paced
    paced = _result("paced", complete=50, rate_limited=0, finals=50)
    base = _result("baseline", complete=0, rate_limited=50, finals=0)
    compact, section = peak.report([native, paced, base], 70.0, pace=FAST)
    assert "| answers streamed natively / paced | 20 / 30 | 0 / 50 | 0 / 50 |" in section
    assert "MISSED" not in compact
    assert section.count("PASS") == 12 and "**MISS**" not in section
    assert "not all final (0/50)" in section
    assert "native/paced" in section and "paced/baseline" in section

    worse = _result("native", complete=49, rate_limited=2, finals=49)
    compact, section = peak.report([worse, paced, base], 70.0, pace=FAST)
    assert (
        "MISSED TARGETS: answers complete (native), 429s / Slack calls (native), "
        "burst → last answer final (native)"
    ) in compact
    assert section.count("**MISS**") == 3
