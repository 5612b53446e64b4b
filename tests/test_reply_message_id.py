"""``Reply.message_id``: the pacer names the message a reply ended in, whatever path it took.

Feedback buttons sit on the reply's last message, and a Teams click names only that message, so
the id must be the LAST message's lasting id (``sink.message_id(ref)``, not the sink's ref):
after a split, after posting anew, after a resume. A reply that ended in no message names none.
The sink here gives ids unlike its refs ("ts-m0" for "m0"), so a ref passed off as an id fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import Reply
from core.errors import MessageGone, SinkError
from core.pacer import ReplyPacer
from core.sinks import ProcessLocalSink
from tests.fakes import FakeClock, RecordingSink, rate_limit_on, refuse, timed_stream


@dataclass
class IdSink(RecordingSink):
    """A recording sink whose lasting message ids differ from its refs."""

    def message_id(self, ref: str) -> str | None:
        return f"ts-{ref}"

    def adopt(self, message_id: str) -> str:
        self.adopted.append(message_id)
        return message_id.removeprefix("ts-")


def last_post(sink: RecordingSink) -> str:
    return [c.ref for c in sink.calls if c.op == "post"][-1]


def test_a_streamed_answer_names_its_message() -> None:
    sink = IdSink()
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(["an ", "answer"]))
    assert reply.complete and reply.message_id == "ts-m0"


def test_a_one_shot_message_names_its_message() -> None:
    sink = IdSink()
    reply = ReplyPacer(sink, interval=0.01).deliver_message("Please shorten it.", error="x")
    assert reply.message_id == "ts-m0" and sink.messages["m0"] == "Please shorten it."


def test_a_split_answer_names_the_last_continuation() -> None:
    sink = IdSink(max_chars=120)
    words = [f"word{i:03d} " for i in range(60)]  # 480 characters: four messages or more
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(words))
    assert reply.complete
    posts = [c.ref for c in sink.calls if c.op == "post"]
    assert len(posts) >= 4
    assert reply.message_id == f"ts-{posts[-1]}"
    assert sink.calls[-1].op == "finish" and sink.calls[-1].ref == posts[-1]


def test_only_the_last_part_of_a_split_answer_is_finished_as_the_complete_answer() -> None:
    """Feedback buttons go on a complete answer's final message: the parts before it are
    finished as incomplete, so a split answer shows its buttons once, at its end."""
    sink = IdSink(max_chars=120)
    words = [f"word{i:03d} " for i in range(60)]
    ReplyPacer(sink, interval=0.01).deliver(timed_stream(words))
    finishes = [c for c in sink.calls if c.op == "finish"]
    assert len(finishes) >= 4
    assert finishes[-1].reply is not None and finishes[-1].reply.complete
    assert all(c.reply is not None and not c.reply.complete for c in finishes[:-1])


def test_a_split_one_shot_message_names_the_last_continuation() -> None:
    sink = IdSink(max_chars=100)
    reply = ReplyPacer(sink, interval=0.01).deliver_message("lorem ipsum " * 30)
    assert sink.ops().count("post") >= 3
    assert reply.message_id == f"ts-{last_post(sink)}" != "ts-m0"


def test_an_answer_posted_anew_after_the_final_wait_names_the_new_message() -> None:
    clock = FakeClock()
    sink = IdSink(fail=rate_limit_on("finish", range(1, 1000), retry_after=5.0))
    pacer = ReplyPacer(sink, interval=0.01, clock=clock, sleep=clock.sleep, final_wait=30.0)
    reply = pacer.deliver(timed_stream(["complete", " answer"]))
    assert reply.complete and reply.message_id == "ts-m1"  # not the placeholder's m0


def test_a_long_answer_posted_anew_names_its_last_piece() -> None:
    clock = FakeClock()
    words = [f"w{i:04d} " for i in range(300)]
    sink = IdSink(max_chars=1000, fail=rate_limit_on("finish", range(1, 1000), 5.0))
    pacer = ReplyPacer(sink, interval=0.01, clock=clock, sleep=clock.sleep, final_wait=30.0)
    reply = pacer.deliver(timed_stream(words))
    assert reply.complete and reply.message_id == f"ts-{last_post(sink)}"
    assert last_post(sink) not in ("m0", "m1")


def test_a_final_whose_message_is_gone_names_the_new_message() -> None:
    sink = IdSink(fail=lambda op, n: MessageGone("gone") if op == "finish" and n == 1 else None)
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(["the answer"]))
    assert reply.complete and reply.message_id == "ts-m1"


def test_a_one_shot_message_posted_anew_names_the_new_message() -> None:
    sink = IdSink(fail=lambda op, n: MessageGone("gone") if op == "finish" and n == 1 else None)
    reply = ReplyPacer(sink, interval=0.01).deliver_message("notice")
    assert reply.message_id == f"ts-{last_post(sink)}"
    assert sink.calls[-1].op == "finish"


def test_a_resumed_answer_names_the_adopted_message() -> None:
    sink = IdSink()
    sink.messages["old"] = "Half an ans"
    reply = ReplyPacer(sink, interval=0.01).deliver(
        timed_stream(["The whole ", "answer."]), resume="ts-old"
    )
    assert reply.complete and reply.message_id == "ts-old"


def test_an_edit_refused_mid_stream_names_the_message_that_shows_the_error() -> None:
    sink = IdSink(fail=refuse("update"))
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(["partial"], delay=0.05))
    assert not reply.complete and reply.message_id == "ts-m0"


def test_no_message_no_id() -> None:
    sink = IdSink(fail=refuse("post"))
    reply = ReplyPacer(sink, interval=0.01).deliver(timed_stream(["an answer"]))
    assert not reply.complete and reply.message_id == ""

    refused_final = IdSink(fail=refuse("finish"))
    reply = ReplyPacer(refused_final, interval=0.01).deliver(timed_stream(["an answer"]))
    assert not reply.complete and reply.message_id == ""

    refused_message = IdSink(fail=lambda op, n: SinkError("not_in_channel"))
    reply = ReplyPacer(refused_message, interval=0.01).deliver_message("hello")
    assert reply.message_id == ""


def test_a_sink_without_lasting_ids_gives_none() -> None:
    class Local(ProcessLocalSink):
        max_chars = 4000

        def post(self, text: str) -> str:
            return "local-1"

        def update(self, ref: str, text: str) -> None:
            pass

        def finish(self, ref: str, text: str, reply: Reply) -> None:
            pass

    reply = ReplyPacer(Local(), interval=0.01).deliver(timed_stream(["an answer"]))
    assert reply.complete and reply.message_id == ""
