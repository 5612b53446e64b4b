"""The reply pacer against a recording sink: pacing, rate limits, splitting, failures.

Timing checks here are lower bounds the pacer itself enforces (it waits at least so long), so a
slow machine can only make them pass more comfortably; nothing asserts that work is fast.
"""

from __future__ import annotations

import itertools
import threading

import pytest

from core.errors import (
    MessageGone,
    MessageTooLong,
    ModelStreamInterrupted,
    ModelThrottled,
    RateLimited,
    StoreError,
)
from core.models.base import StreamEnd, TextDelta
from core.pacer import (
    EMPTY_ANSWER,
    GENERIC_ERROR,
    GONE_NOTICE,
    LAST_RESORT_WAIT,
    LATE_NOTICE,
    PLACEHOLDER,
    ReplyPacer,
)
from tests.fakes import FakeClock, RecordingSink, SinkCall, rate_limit_on, refuse, timed_stream

SLACK = 0.005  # clock granularity allowance for lower-bound checks


def edits(sink: RecordingSink) -> list[float]:
    return [c.at for c in sink.calls if c.op in ("update", "finish")]


def assert_no_placeholder_left(sink: RecordingSink) -> None:
    assert sink.messages, "nothing was posted"
    for ref, text in sink.messages.items():
        assert text != PLACEHOLDER, f"message {ref} was left as the placeholder"
    assert sink.calls[-1].op == "finish"


def test_fast_stream_is_coalesced_into_few_edits_spaced_by_the_interval() -> None:
    sink = RecordingSink()
    chunks = [f"word{i} " for i in range(300)]
    reply = ReplyPacer(sink, interval=0.2).deliver(timed_stream(chunks, delay=0.001))

    assert sink.calls[0].op == "post" and sink.calls[0].text == PLACEHOLDER
    assert sink.messages["m0"] == "".join(chunks)
    assert reply.text == "".join(chunks) and reply.complete
    times = edits(sink)
    assert len(times) < 300 / 10  # coalesced, not one edit per delta
    for earlier, later in itertools.pairwise(times):
        assert later - earlier >= 0.2 - SLACK
    assert_no_placeholder_left(sink)


def test_first_text_is_shown_without_waiting_for_an_interval() -> None:
    sink = RecordingSink()
    shown = threading.Event()

    def record(op: str, n: int) -> None:
        if op == "update":
            shown.set()

    sink.fail = lambda op, n: record(op, n)  # type: ignore[assignment,func-returns-value]

    def stream():  # type: ignore[no-untyped-def]
        yield TextDelta("Hello")
        # The second chunk exists only once the first is on screen: an interval of 10 s would
        # hold "Hello" back, and then this wait would run out instead.
        assert shown.wait(5.0), "the first text was held back"
        yield TextDelta(" world")
        yield StreamEnd()

    reply = ReplyPacer(sink, interval=10.0, sleep=lambda s: None).deliver(stream())
    updates = [c for c in sink.calls if c.op == "update"]
    assert updates and updates[0].text == "Hello"
    assert reply.complete and reply.text == "Hello world"


def test_slow_stream_shows_each_chunk_as_it_arrives() -> None:
    sink = RecordingSink()
    chunks = ["One.", " Two.", " Three.", " Four."]
    ReplyPacer(sink, interval=0.02).deliver(timed_stream(chunks, delay=0.12))
    shown = [c.text for c in sink.calls if c.op in ("update", "finish")]
    assert shown[:4] == ["One.", "One. Two.", "One. Two. Three.", "One. Two. Three. Four."]


def test_pending_text_is_flushed_on_a_timer_when_the_model_stalls() -> None:
    sink = RecordingSink()
    released = threading.Event()

    def stalling():  # type: ignore[no-untyped-def]
        yield TextDelta("alpha")
        yield TextDelta(" beta")  # arrives inside the interval after "alpha" was shown
        released.wait(1.0)
        yield TextDelta(" gamma")
        yield StreamEnd()

    def watch() -> None:
        # Release the stalled model only once "alpha beta" is on screen (or after 1 s).
        for _ in range(100):
            if any(c.text == "alpha beta" for c in sink.calls):
                break
            threading.Event().wait(0.01)
        released.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    ReplyPacer(sink, interval=0.1).deliver(stalling())
    watcher.join()
    texts = [c.text for c in sink.calls]
    assert "alpha beta" in texts, "text that arrived before a stall was not flushed on a timer"
    assert texts.index("alpha beta") < texts.index("alpha beta gamma")


def test_rate_limited_edit_waits_for_retry_after_and_loses_nothing() -> None:
    sink = RecordingSink(fail=rate_limit_on("update", [1], retry_after=0.3))
    chunks = [f"part{i} " for i in range(20)]
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(chunks, delay=0.02))

    limited = next(c for c in sink.calls if c.op == "update!")
    after = [c for c in sink.calls if c.op in ("update", "finish") and c.at > limited.at]
    assert after, "no edit after the rate limit"
    assert after[0].at - limited.at >= 0.3 - SLACK
    assert sink.messages["m0"] == "".join(chunks)
    assert reply.complete


def test_rate_limited_final_edit_is_retried_after_retry_after() -> None:
    slept: list[float] = []
    sink = RecordingSink(fail=rate_limit_on("finish", [1, 2], retry_after=1.5))
    pacer = ReplyPacer(sink, interval=0.01, sleep=slept.append)
    reply = pacer.deliver(timed_stream(["complete answer"]))
    assert sink.ops().count("finish!") == 2 and sink.ops()[-1] == "finish"
    assert slept.count(1.5) == 2
    assert sink.messages["m0"] == "complete answer" and reply.complete


def test_rate_limited_placeholder_is_retried() -> None:
    slept: list[float] = []
    sink = RecordingSink(fail=rate_limit_on("post", [1], retry_after=2.0))
    ReplyPacer(sink, interval=0.01, sleep=slept.append).deliver(timed_stream(["hi"]))
    assert sink.ops()[:2] == ["post!", "post"] and 2.0 in slept
    assert_no_placeholder_left(sink)


def test_endless_rate_limiting_gives_up_at_the_deadline_instead_of_spinning() -> None:
    clock = FakeClock()
    sink = RecordingSink(fail=lambda op, n: rate_limit_on(op, range(1, 1000), 1.0)(op, n))
    pacer = ReplyPacer(sink, interval=0.01, clock=clock, sleep=clock.sleep, final_wait=10.0)
    reply = pacer.deliver(timed_stream(["x"]))
    # Ten seconds of tries for the placeholder (the answer goes on without it), then the last
    # resort's thirty for posting the answer: one bound for the whole reply, not one per call.
    assert clock.now - FakeClock().now == pytest.approx(10.0 + LAST_RESORT_WAIT)
    assert "update" not in sink.ops() and "finish" not in sink.ops()
    assert not reply.complete and reply.error == "rate_limited"
    assert sink.closed == 1


def test_a_reply_whose_placeholder_cannot_be_posted_still_answers() -> None:
    clock = FakeClock()
    sink = RecordingSink(fail=rate_limit_on("post", range(1, 21), retry_after=1.0))
    pacer = ReplyPacer(sink, interval=0.01, clock=clock, sleep=clock.sleep, final_wait=10.0)
    reply = pacer.deliver(timed_stream(["the ", "answer"]))
    posts = [c for c in sink.calls if c.op == "post"]
    assert [c.text for c in posts] == ["the answer"]  # no placeholder: the answer itself
    assert reply.complete and sink.messages == {"m0": "the answer"}


def test_refused_placeholder_stops_and_closes_the_model_stream() -> None:
    closed = threading.Event()

    def stream():  # type: ignore[no-untyped-def]
        try:
            yield from timed_stream(["never shown"])
        finally:
            closed.set()

    gen = stream()
    sink = RecordingSink(fail=refuse("post"))
    reply = ReplyPacer(sink, interval=0.01).deliver(gen)
    assert reply.error == "sink_error" and not reply.complete
    next(gen, None)  # a generator that never started closes at once; one that did is closed
    assert closed.is_set() or gen.gi_frame is None


def test_stream_error_after_text_keeps_the_text_once_and_says_it_was_interrupted() -> None:
    sink = RecordingSink()
    error = ModelStreamInterrupted("modelStreamErrorException")
    reply = ReplyPacer(sink, interval=0.01).deliver(
        timed_stream(["The first half", " of the answer"], delay=0.02, error=error)
    )
    final = sink.messages["m0"]
    assert final.startswith("The first half of the answer")
    assert final.count("The first half") == 1
    assert final.endswith(error.user_message)
    assert "⚠️" in final
    assert not reply.complete and reply.error == "model_stream_interrupted"
    assert reply.text == "The first half of the answer"
    assert_no_placeholder_left(sink)


def test_error_before_any_text_replaces_the_placeholder_with_a_readable_message() -> None:
    sink = RecordingSink()
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream([], error=ModelThrottled("x")))
    assert sink.messages["m0"] == "⚠️ " + ModelThrottled.user_message
    assert reply.error == "model_throttled"
    assert_no_placeholder_left(sink)


def test_unexpected_exception_in_the_stream_becomes_a_generic_message() -> None:
    sink = RecordingSink()
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(["a"], error=KeyError("bug")))
    assert sink.messages["m0"].endswith(GENERIC_ERROR)
    assert reply.error == "internal_error"


def test_empty_answer_is_said_plainly() -> None:
    sink = RecordingSink()
    ReplyPacer(sink, interval=0.01).deliver(timed_stream([]))
    assert sink.messages["m0"] == EMPTY_ANSWER


def test_stop_reason_max_tokens_is_not_silently_truncated() -> None:
    sink = RecordingSink()
    ReplyPacer(sink, interval=0.01).deliver(timed_stream(["Partial"], stop_reason="max_tokens"))
    assert sink.messages["m0"].startswith("Partial\n\n")
    assert "length limit" in sink.messages["m0"]


def test_text_over_the_limit_continues_in_new_messages_at_word_boundaries() -> None:
    sink = RecordingSink(max_chars=100)
    words = [f"w{i:03d}" for i in range(120)]  # 599 characters with spaces
    answer = " ".join(words)
    chunks = [w + " " for w in words[:-1]] + [words[-1]]
    reply = ReplyPacer(sink, interval=0.005).deliver(timed_stream(chunks, delay=0.0005))

    assert len(sink.messages) >= 6
    for text in sink.messages.values():
        assert len(text) <= 100
    shown_words = " ".join(sink.messages[f"m{i}"] for i in range(len(sink.messages))).split()
    assert shown_words == words, "words were lost, cut or repeated across the split"
    assert reply.text == answer
    assert_no_placeholder_left(sink)


def test_split_inside_a_code_block_keeps_fences_balanced() -> None:
    sink = RecordingSink(max_chars=120)
    code = "\n".join(f"line_{i} = {i}" for i in range(30))
    answer = f"Here is the code:\n```python\n{code}\n```\nDone."
    ReplyPacer(sink, interval=0.005).deliver(
        timed_stream([answer[i : i + 7] for i in range(0, len(answer), 7)])
    )
    texts = [sink.messages[f"m{i}"] for i in range(len(sink.messages))]
    assert len(texts) > 2
    for text in texts:
        assert text.count("```") % 2 == 0, f"unbalanced fence in {text!r}"
    assert texts[1].startswith("```")
    lines = [ln for t in texts for ln in t.splitlines() if ln.startswith("line_")]
    assert lines == code.splitlines()


def test_one_shot_message_over_the_limit_is_split_and_finished() -> None:
    sink = RecordingSink(max_chars=50)
    text = "Sentence number one is here. " * 6
    reply = ReplyPacer(sink, interval=0.01).deliver_message(text.strip(), error="input_rejected")
    assert all(len(t) <= 50 for t in sink.messages.values())
    assert (
        " ".join(sink.messages[f"m{i}"] for i in range(len(sink.messages))).split() == text.split()
    )
    assert reply.error == "input_rejected" and not reply.complete
    assert_no_placeholder_left(sink)


@pytest.mark.parametrize("limit", [20, 57, 200])
def test_unbreakable_text_is_hard_cut_without_loss(limit: int) -> None:
    sink = RecordingSink(max_chars=limit)
    answer = "x" * 450
    ReplyPacer(sink, interval=0.005).deliver(
        timed_stream([answer[i : i + 30] for i in range(0, 450, 30)])
    )
    assert "".join(sink.messages[f"m{i}"] for i in range(len(sink.messages))) == answer
    assert all(len(t) <= limit for t in sink.messages.values())


def test_message_too_long_below_the_advertised_limit_is_split_smaller() -> None:
    # The sink advertises 4,000 characters but refuses anything over 1,500, like Slack's
    # msg_too_long seen near 4,000 on a 40,000 documented limit.
    from core.errors import MessageTooLong

    sink = RecordingSink(max_chars=4000)
    original = sink._record

    def strict(op: str, ref: str, text: str, reply=None) -> None:  # type: ignore[no-untyped-def]
        if len(text) > 1500:
            sink.calls.append(SinkCall(op + "!", ref, text, 0.0))
            raise MessageTooLong("msg_too_long")
        original(op, ref, text, reply)

    sink._record = strict  # type: ignore[method-assign]
    words = [f"word{i:04d}" for i in range(600)]  # about 5,400 characters
    reply = ReplyPacer(sink, interval=0.005).deliver(timed_stream([w + " " for w in words]))
    shown = " ".join(sink.messages[f"m{i}"] for i in range(len(sink.messages))).split()
    assert shown == words
    assert all(len(t) <= 1500 for t in sink.messages.values())
    assert any(c.op.endswith("!") for c in sink.calls)
    assert reply.complete
    assert_no_placeholder_left(sink)


def test_a_refused_edit_mid_stream_still_replaces_the_placeholder_when_it_can() -> None:
    # Edits are refused for good (say the message was deleted), but a final finish works.
    sink = RecordingSink(fail=lambda op, n: refuse("update")(op, n))
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(["partial answer"], delay=0.05))
    assert not reply.complete and reply.error == "sink_error"
    assert sink.calls[-1].op == "finish" and GENERIC_ERROR in sink.messages["m0"]


def test_a_final_edit_waits_out_long_rate_limits_and_is_delivered() -> None:
    clock = FakeClock()
    sink = RecordingSink(fail=rate_limit_on("finish", range(1, 40), retry_after=5.0))
    pacer = ReplyPacer(sink, interval=0.01, clock=clock, sleep=clock.sleep, final_wait=300.0)
    reply = pacer.deliver(timed_stream(["complete", " answer"]))
    assert sink.ops().count("finish!") == 39 and sink.ops()[-1] == "finish"
    assert sink.messages["m0"] == "complete answer" and reply.complete
    assert sink.closed == 1


def test_past_the_final_wait_the_answer_is_posted_anew_with_a_notice() -> None:
    clock = FakeClock()
    sink = RecordingSink(fail=rate_limit_on("finish", range(1, 1000), retry_after=5.0))
    pacer = ReplyPacer(sink, interval=0.01, clock=clock, sleep=clock.sleep, final_wait=60.0)
    reply = pacer.deliver(timed_stream(["complete", " answer"]))
    assert 12 <= sink.ops().count("finish!") <= 14  # one try every 5 s for a minute, then:
    late = [c for c in sink.calls if c.op == "post"][-1]
    assert late.ref == "m1" and late.text == f"complete answer\n\n{LATE_NOTICE}"
    assert reply.complete and reply.text == "complete answer"
    assert_no_placeholder_left_unless_superseded(sink)


def test_intermediate_edits_are_skipped_not_waited_for_when_rate_limited() -> None:
    slept: list[float] = []
    sink = RecordingSink(fail=rate_limit_on("update", range(1, 1000), retry_after=30.0))
    chunks = [f"w{i} " for i in range(20)]
    pacer = ReplyPacer(sink, interval=0.01, sleep=slept.append)
    reply = pacer.deliver(timed_stream(chunks, delay=0.005))
    assert sink.ops().count("update!") == 1  # tried once, then nothing until the final
    assert 30.0 not in slept  # the stream was never held up waiting for an optional edit
    assert sink.ops()[-1] == "finish" and sink.messages["m0"] == "".join(chunks)
    assert reply.complete


def assert_no_placeholder_left_unless_superseded(sink: RecordingSink) -> None:
    """The first message may stay partial only when the whole answer follows it."""
    last = [c for c in sink.calls if c.op == "post"][-1]
    assert sink.messages[last.ref] != PLACEHOLDER


def test_the_reply_message_is_reported_before_the_answer_streams_into_it() -> None:
    sink = RecordingSink()
    seen: list[tuple[str, list[str]]] = []
    reply = ReplyPacer(sink, interval=0.01).deliver(
        timed_stream(["an ", "answer"]),
        on_message=lambda mid: seen.append((mid, sink.ops())),
    )
    assert seen == [("m0", ["post"])]  # once, right after the placeholder, before any text
    assert reply.complete


def test_a_resumed_reply_carries_on_in_the_earlier_message() -> None:
    sink = RecordingSink()
    sink.messages["old"] = "Half an ans"
    noted: list[str] = []
    reply = ReplyPacer(sink, interval=0.01).deliver(
        timed_stream(["The whole ", "answer."]), resume="old", on_message=noted.append
    )
    assert sink.adopted == ["old"] and "post" not in sink.ops()
    assert sink.messages == {"old": "The whole answer."}
    assert noted == [] and reply.complete  # already recorded by the first run


def test_a_reply_record_that_cannot_be_written_does_not_stop_the_answer() -> None:
    def broken(mid: str) -> None:
        raise StoreError("history table unavailable")

    sink = RecordingSink()
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(["fine"]), on_message=broken)
    assert reply.complete and sink.messages["m0"] == "fine"


def test_a_long_answer_posted_anew_loses_nothing() -> None:
    clock = FakeClock()
    words = [f"w{i:04d} " for i in range(300)]  # 1,800 characters over 1,000-character messages
    sink = RecordingSink(max_chars=1000, fail=rate_limit_on("finish", range(1, 1000), 5.0))
    pacer = ReplyPacer(sink, interval=0.01, clock=clock, sleep=clock.sleep, final_wait=30.0)
    reply = pacer.deliver(timed_stream(["START ", *words]))
    shown = " ".join(text for ref, text in sorted(sink.messages.items()) if ref != "m0")
    for word in ["START", *(w.strip() for w in words)]:
        assert word in shown, f"{word} was never shown"
    assert LATE_NOTICE in shown and reply.complete


def test_one_bound_covers_every_wait_of_a_reply() -> None:
    clock = FakeClock()

    def fail(op: str, n: int) -> Exception | None:
        if op == "update" and n == 1:
            return RateLimited(120.0)  # the platform's Retry-After binds the final too...
        if op == "finish":
            return RateLimited(5.0)  # ...and then the final is refused as well
        return None

    sink = RecordingSink(fail=fail)
    pacer = ReplyPacer(sink, interval=0.01, clock=clock, sleep=clock.sleep, final_wait=150.0)
    reply = pacer.deliver(timed_stream(["an ", "answer"], delay=0.01))
    waited = clock.now - FakeClock().now
    assert waited <= 150.0 + LAST_RESORT_WAIT + 1e-6  # not 120 + 150 + 30
    assert reply.complete and sink.ops()[-2:] == ["post", "finish!"]  # posted anew


def test_a_message_deleted_while_streaming_goes_on_in_a_new_one() -> None:
    def fail(op: str, n: int) -> Exception | None:
        return MessageGone("message_not_found") if op == "update" and n == 1 else None

    sink = RecordingSink(fail=fail)
    reply = ReplyPacer(sink, interval=0.01).deliver(
        timed_stream(["one ", "two ", "three"], delay=0.03)
    )
    assert reply.complete and sink.messages["m1"] == "one two three"
    assert sink.ops()[0] == "post" and sink.ops().count("post") == 2


def test_a_final_whose_message_is_gone_is_posted_anew() -> None:
    sink = RecordingSink(fail=lambda op, n: MessageGone("gone") if op == "finish" else None)
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(["the answer"]))
    assert reply.complete
    assert sink.messages["m1"] == f"the answer\n\n{GONE_NOTICE}"


def test_a_message_refused_as_too_long_is_not_retried_in_a_tight_loop() -> None:
    sink = RecordingSink(fail=lambda op, n: MessageTooLong("invalid") if op == "update" else None)
    chunks = [f"w{i} " for i in range(40)]
    ReplyPacer(sink, interval=0.05).deliver(timed_stream(chunks, delay=0.005))
    assert sink.ops().count("update!") <= 10  # one try per interval, not one per delta
