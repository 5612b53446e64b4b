"""The assistant: one turn in, one streamed reply out.

``Assistant.answer`` is the single entry point every adapter calls, in a worker, never on the
ack path. It checks the input, loads the conversation's history, retrieves from the files shared
where the conversation lives, builds the prompt, streams the model through the pacer into the
platform's sink, and records the exchange. The reply's message is recorded before the answer
streams into it, so a redelivery after a crash finishes that message rather than leaving it
half-written beside a second one. Every failure ends as a readable message in the chat
and one log line that names the cause; nothing here lets an exception escape to the worker
except a bug in an adapter's sink.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from core.config import Settings
from core.domain import ConversationKey, Passage, Reply, Role, Turn
from core.erasure import Forgotten
from core.errors import StoreError, TurnAlreadyStored
from core.feedback import AnswerRef, Feedback
from core.history.base import HistoryStore
from core.models.base import ChatModel, InferenceSettings
from core.observability import bind
from core.pacer import ReplyPacer, ReplySink
from core.prompt import build_prompt
from core.quota.base import QuotaReached, QuotaStore
from core.text import clean_text, estimate_tokens
from core.usage import (
    AnswerUsage,
    FeedbackObserver,
    ModelMeter,
    ReplyStats,
    UsageObserver,
    report,
)

log = logging.getLogger(__name__)

EMPTY_QUESTION = "I didn't find a question in your message. Send me some text and I'll answer it."
TOO_LONG = (
    "Your message is too long for me to answer in one go (about {tokens:,} tokens; the limit is "
    "{limit:,}). Please shorten it, or share the text as a file and ask about it."
)


NO_MATCHING_FILES = (
    "Files have been shared in this conversation, but no passage of them matched this question. "
    "If the question is about those files, say you found nothing relevant in the shared files; "
    "do not cite any source."
)


class Retriever(Protocol):
    """Finds passages from the files shared where a conversation lives (its channel scope)."""

    def retrieve(self, key: ConversationKey, query: str) -> Sequence[Passage]: ...

    def has_files(self, key: ConversationKey) -> bool: ...


class Assistant:
    def __init__(
        self,
        *,
        settings: Settings,
        history: HistoryStore,
        model: ChatModel,
        retriever: Retriever | None = None,
        on_reply: Callable[[Turn, Reply], None] | None = None,
        quota: QuotaStore | None = None,
        usage_observer: UsageObserver | None = None,
    ) -> None:
        self._on_reply = on_reply
        self._quota = quota
        self._usage_observer = usage_observer
        self._settings = settings
        self._history = history
        self._model = model
        self._retriever = retriever
        self._inference = InferenceSettings(
            max_tokens=settings.max_answer_tokens, temperature=settings.temperature
        )

    @property
    def model(self) -> ChatModel:
        return self._model

    def pacer(self, sink: ReplySink) -> ReplyPacer:
        return ReplyPacer(
            sink,
            interval=self._settings.edit_interval_seconds,
            final_wait=self._settings.final_wait_seconds,
        )

    def answer(self, turn: Turn, sink: ReplySink) -> Reply:
        with bind(conversation_id=turn.key.id, turn_id=turn.turn_id):
            reply = self._answer(turn, sink)
            if self._on_reply is not None:
                self._on_reply(turn, reply)
            return reply

    def _answer(self, turn: Turn, sink: ReplySink) -> Reply:
        started = time.monotonic()
        pacer = self.pacer(sink)
        text = clean_text(turn.text)
        if not text:
            log.info("empty question", extra={"cause": "input_rejected", "reason": "empty"})
            return pacer.deliver_message(EMPTY_QUESTION, error="input_rejected")
        tokens = estimate_tokens(text)
        if tokens > self._settings.max_question_tokens:
            log.info("question over budget", extra={"cause": "input_rejected", "tokens": tokens})
            message = TOO_LONG.format(tokens=tokens, limit=self._settings.max_question_tokens)
            return pacer.deliver_message(message, error="input_rejected")

        reached = self._admit(turn)
        if reached is not None:
            log.info("quota reached", extra={"cause": "quota_exceeded", "quota": reached.unit})
            return pacer.deliver_message(reached.message, error="quota_exceeded")

        question = replace(turn, text=text, role=Role.USER)
        history = self._load_history(question.key)
        # A conversation with no shared files pays for no embedding call and no vector query.
        has_files = self._has_files(question.key)
        passages = self._retrieve(question.key, text) if has_files else ()
        notes = (NO_MATCHING_FILES,) if has_files and not passages else ()
        prompt = build_prompt(
            system_prompt=self._settings.system_prompt,
            question=question,
            history=[t for t in history if t.turn_id != question.turn_id],
            passages=passages,
            token_budget=self._settings.context_token_budget,
            inference=self._inference,
            notes=notes,
            # As many turns as may be loaded: the oldest ones slide out of the next prompt.
            history_truncated=len(history) >= self._settings.history_max_turns,
        )
        log.info(
            "answering",
            extra={
                "model": self._model.name,
                "history_turns": len(prompt.history),
                "passages": len(prompt.passages),
                "question_tokens": tokens,
            },
        )
        sources = tuple(p.source for p in prompt.passages)
        meter = ModelMeter(started=started)
        stats = ReplyStats()
        reply = pacer.deliver(
            meter.wrap(self._model.stream(prompt)),
            sources=sources,
            resume=self._unfinished_reply(question),
            on_message=lambda message_id: self._history.remember_reply(question, message_id),
            stats=stats,
        )
        finished = time.monotonic()
        self._record(question, reply)
        self._remember_answer(question, reply)
        self._charge_tokens(question, meter.tokens.total_input + meter.tokens.output)
        usage = AnswerUsage(
            kind="answer",
            model_id=self._model.model_id or self._model.name,
            tokens=meter.tokens,
            model_calls=meter.calls,
            time_to_first_token=meter.time_to_first_token(),
            time_to_final=finished - started,
            delivery=stats,
            complete=reply.complete,
            cause=reply.error or "ok",
            stop_reason=meter.stop_reason,
            passages=len(prompt.passages),
        )
        # The one line per answer that says what it cost (no text: sizes, ids and times).
        report(usage, self._usage_observer, message="answered", extra={"chars": len(reply.text)})
        return reply

    def conversation(self, key: ConversationKey, limit: int) -> Sequence[Turn]:
        """The newest ``limit`` turns of a conversation, oldest first (for summaries)."""
        return self._history.recent_turns(key, limit)

    def knows(self, key: ConversationKey) -> bool:
        """Whether this conversation has history, i.e. the assistant is part of it."""
        try:
            return bool(self._history.recent_turns(key, 1))
        except StoreError as exc:
            log.warning(
                "history unavailable; treating conversation as new", extra={"cause": exc.cause}
            )
            return False

    def forget(self, platform: str, workspace: str, user_id: str) -> Forgotten:
        """Erase what is stored about one person in one workspace, on their request: their
        turns and the answers to them (with reply records), and their quota counters. Every
        adapter's "forget me" command calls this, in a worker. Raises StoreError when a store
        failed (what was erased before stays erased; asking again finishes the job)."""
        records = self._history.delete_user_data(platform, workspace, user_id)
        counters = 0
        if self._quota is not None:
            counters = self._quota.erase_user(platform, workspace, user_id)
        log.info(
            "erased a person's data on request",
            extra={"platform": platform, "records": records, "counters": counters},
        )
        return Forgotten(records=records, counters=counters)

    def record_feedback(self, feedback: Feedback) -> bool:
        """Record one feedback click (the platform's click handler calls this, in a worker).
        True when it changed something (a first rating, or a changed mind): that click is
        counted in the metrics. False for a duplicate (nothing changes, nothing is counted) and
        when the store failed (logged; the click is lost, the person's chat is not affected).
        Logs ids and the rating, never text."""
        answer = feedback.answer
        fields = {
            "conversation_id": answer.key.id,
            "answer_id": answer.answer_id,
            "model_id": answer.model_id,
            "voter": feedback.voter,
            "rating": feedback.rating.value,
        }
        try:
            recorded = self._history.record_feedback(feedback, None)
        except StoreError as exc:
            log.warning("feedback could not be recorded", extra={**fields, "cause": exc.cause})
            return False
        log.info(
            "feedback recorded" if recorded else "feedback unchanged (duplicate click)",
            extra={**fields, "changed": recorded},
        )
        observer = self._usage_observer
        if recorded and isinstance(observer, FeedbackObserver):
            try:
                observer.feedback(feedback.rating, answer.model_id, answer.key.platform)
            except Exception:  # a metrics sink is not allowed to fail a click either
                log.exception("feedback observer failed; the feedback is recorded")
        return recorded

    def answer_for_message(self, key: ConversationKey, message_id: str) -> AnswerRef | None:
        """The answer a final message carries (for a click that names only the message, as
        Teams' does); None when unknown, expired, or the store failed (logged)."""
        try:
            return self._history.answer_for_message(key, message_id)
        except StoreError as exc:
            log.warning("answer record unavailable", extra={"cause": exc.cause})
            return None

    def notify(self, sink: ReplySink, text: str, *, error: str = "") -> Reply:
        """Post a one-off message (a notice or an error) through the same pacing rules."""
        return self.pacer(sink).deliver_message(text, error=error)

    # -- steps --------------------------------------------------------------------------------

    def _load_history(self, key: ConversationKey) -> Sequence[Turn]:
        try:
            return self._history.recent_turns(key, self._settings.history_max_turns)
        except StoreError as exc:
            # Answering without context beats not answering; the log line says why.
            log.warning("history unavailable; answering without it", extra={"cause": exc.cause})
            return ()

    def _admit(self, turn: Turn) -> QuotaReached | None:
        """Count the question against the daily quotas; the limit it hit, if any. A quota store
        that fails lets the question through: quotas guard cost, not the service."""
        if self._quota is None:
            return None
        key = turn.key
        try:
            return self._quota.admit(key.platform, key.workspace, turn.user_id)
        except StoreError as exc:
            log.warning("quota unavailable; answering uncounted", extra={"cause": exc.cause})
        except Exception:  # a guard, like retrieval an extra: its bug must not stop answers
            log.exception("quota check raised unexpectedly; answering uncounted")
        return None

    def _charge_tokens(self, question: Turn, tokens: int) -> None:
        if self._quota is None or tokens <= 0:
            return
        key = question.key
        try:
            self._quota.add_tokens(key.platform, key.workspace, question.user_id, tokens)
        except StoreError as exc:
            log.warning("could not count the answer's tokens", extra={"cause": exc.cause})
        except Exception:
            log.exception("counting the answer's tokens raised unexpectedly")

    def _retrieve(self, key: ConversationKey, query: str) -> Sequence[Passage]:
        if self._retriever is None:
            return ()
        try:
            return self._retriever.retrieve(key, query)
        except StoreError as exc:
            log.warning("retrieval failed; answering without files", extra={"cause": exc.cause})
            return ()
        except Exception:  # retrieval only enriches: a bug there must not silence the answer
            log.exception("retrieval raised unexpectedly; answering without files")
            return ()

    def _unfinished_reply(self, question: Turn) -> str | None:
        """The message an earlier run of this same question posted and did not finish (its
        worker died): the answer goes there, not into a second message."""
        try:
            return self._history.reply_message(question.key, question.turn_id)
        except StoreError as exc:
            log.warning("reply record unavailable; answering anew", extra={"cause": exc.cause})
            return None

    def _has_files(self, key: ConversationKey) -> bool:
        if self._retriever is None:
            return False
        try:
            return self._retriever.has_files(key)
        except StoreError as exc:
            log.warning("file list unavailable; answering without them", extra={"cause": exc.cause})
            return False
        except Exception:  # as in _retrieve: files only enrich the answer
            log.exception("file list raised unexpectedly; answering without files")
            return False

    def _remember_answer(self, question: Turn, reply: Reply) -> None:
        """Which answer the reply's final message carries (its feedback buttons point at it);
        a failure costs that message its Teams feedback, never the answer."""
        if not reply.complete or not reply.message_id:
            return
        model_id = self._model.model_id or self._model.name
        answer = AnswerRef(question.key, question.turn_id, model_id)
        try:
            self._history.remember_answer(answer, reply.message_id, asker=question.user_id)
        except StoreError as exc:
            log.warning("could not record the answer's message", extra={"cause": exc.cause})

    def _record(self, question: Turn, reply: Reply) -> None:
        turns = [question]
        if reply.text.strip():
            turns.append(
                Turn(
                    key=question.key,
                    turn_id=f"{question.turn_id}:reply",
                    role=Role.ASSISTANT,
                    user_id=question.user_id,
                    text=reply.text,
                    # Derived from the question (so a redelivery maps to the same stored turn) and
                    # only a microsecond after it, so the answer sorts right after its question
                    # even when the next question came within the same millisecond.
                    created_at=question.created_at + 1e-6,
                )
            )
        for turn in turns:
            try:
                self._history.append_turn(turn)
            except TurnAlreadyStored:
                log.info("turn already recorded", extra={"turn_id": turn.turn_id})
            except StoreError as exc:
                log.error(
                    "could not record turn", extra={"cause": exc.cause, "turn_id": turn.turn_id}
                )
