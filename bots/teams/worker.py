"""Teams jobs in the worker: answer a message, welcome a new conversation, summarize what the
bot has seen of a conversation or a file shared in it, read an uploaded file, record a click on
an answer's feedback buttons.

Answers in personal chats stream natively (:mod:`bots.teams.stream`) unless
``CHATBOT_TEAMS_STREAMING=off``; group chats, channels, notices and summaries use paced edits
(:mod:`bots.teams.sink`). Answers carry Teams' feedback buttons; a click is recorded against
the answer the clicked message carries, looked up in the click's own conversation, and nothing
is said in the chat about it."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from functools import partial
from urllib.parse import urlsplit

from botbuilder.schema import Activity, ActivityTypes

from bots.downloads import fetch
from bots.teams.auth import bot_identity
from bots.teams.connector import TeamsConnector
from bots.teams.events import PERSONAL, ReplyTarget, is_loopback_url
from bots.teams.ingress import (
    TEAMS_FEEDBACK,
    TEAMS_FILE,
    TEAMS_FORGET,
    TEAMS_MESSAGE,
    TEAMS_SUMMARIZE,
    TEAMS_WELCOME,
)
from bots.teams.sink import TeamsLimits, TeamsReplySink
from bots.teams.stream import StreamSupport, TeamsStreamSink
from core.assistant import Assistant
from core.budget import LocalRateBudget
from core.config import Settings
from core.domain import ConversationKey, FileRef
from core.erasure import FORGET_FAILED
from core.errors import ChatbotError, RateLimited
from core.feedback import Feedback, Rating
from core.files.ingest import FileIndexer
from core.files.types import FileRejected
from core.jobs import JOB_FAILED_MESSAGE, Job, JobRouter, turn_from_payload
from core.knowledge.base import KnowledgeStore
from core.summarize import Summarizer, SummaryRequest
from core.summary_request import (
    ArgumentError,
    ChannelCount,
    ChannelWindow,
    FileTarget,
    SummaryGrammar,
    SummaryTarget,
    parse_summary_args,
    usage,
)
from core.summary_sources import (
    SummaryUnavailable,
    file_summary_request,
    stored_conversation_request,
)

log = logging.getLogger(__name__)
MAX_SUMMARY_TURNS = 1000

WELCOME = (
    "Hi, I'm the team assistant. I answer questions with the help of your conversation and "
    "the files shared with me.\n\n"
    "- **In a channel or group chat:** mention me with your question and I'll answer in the "
    "same thread.\n"
    "- **In a 1:1 chat:** just ask; I remember what we talked about.\n"
    "- **Summaries:** send `summarize` for what I have seen of this conversation (add `24h`, "
    "`7d` or `50` for only the latest), or `summarize file` for the latest file shared "
    "here (`summarize file <name>` for another one).\n"
    "- **Privacy:** send `forget me` in our 1:1 chat and I'll forget what I stored about you."
)
FORGET_IN_PERSONAL_CHAT = (
    "To have me forget what I stored about you, send `forget me` in a 1:1 chat with me."
)
# The grammar Slack's /summarize takes (core.summary_request), without thread links: Teams
# gives bots no channel history without Graph permissions, so a summary covers the turns the
# bot has stored (the messages that mention it, and its answers; all of a 1:1 chat). A
# period or a count narrows that to the latest ones.
SUMMARIZE_GRAMMAR = SummaryGrammar(
    command="summarize",
    default="what I have seen of this conversation",
    default_window=False,
    max_count=MAX_SUMMARY_TURNS,
)
SUMMARIZE_USAGE = usage(SUMMARIZE_GRAMMAR)
CONVERSATION_TITLE = "this conversation (the messages I have seen)"
# Waits for Teams' Retry-After before the apology is given up (it follows a failure already).
APOLOGY_ATTEMPTS = 3
APOLOGY_MAX_WAIT_SECONDS = 5.0
_SUMMARIZE_ARGS = re.compile(r"^/?summari[sz]e(?:\s+(?P<rest>.*))?$", re.IGNORECASE | re.DOTALL)


def parse_summarize_message(text: str, *, now: float) -> SummaryTarget | ArgumentError:
    """What a ``summarize ...`` message asks for (the bot's mention already stripped)."""
    match = _SUMMARIZE_ARGS.match(text.strip())
    if match is None:
        return ArgumentError(SUMMARIZE_USAGE)
    return parse_summary_args(match.group("rest") or "", SUMMARIZE_GRAMMAR, now=now)


class TeamsWorker:
    def __init__(
        self,
        assistant: Assistant,
        connector: TeamsConnector,
        limits: TeamsLimits,
        indexer: FileIndexer | None = None,
        *,
        insecure_downloads: bool = False,
        summarizer: Summarizer | None = None,
        knowledge: KnowledgeStore | None = None,
        clock: Callable[[], float] = time.time,
        streaming: StreamSupport | None = None,
    ):
        self._clock = clock
        self._streaming = streaming or StreamSupport(enabled=False)
        self._summarizer = summarizer
        self._knowledge = knowledge
        self._assistant = assistant
        self._connector = connector
        self._limits = limits
        self._indexer = indexer
        self._insecure_downloads = insecure_downloads

    def _download_allowed(self, url: str) -> bool:
        """Teams' pre-authorised download links are https. In the unauthenticated local mode
        (the Emulator, local tests) nothing vouches for a link, so only this machine may be
        reached, redirects included: never a URL an unauthenticated request names elsewhere."""
        if self._insecure_downloads:
            return is_loopback_url(url)
        return urlsplit(url).scheme == "https"

    def handle_message(self, job: Job) -> None:
        self._assistant.answer(turn_from_payload(job.payload["turn"]), self._answer_sink(job))

    def handle_feedback(self, job: Job) -> None:
        """A click on an answer's feedback buttons: recorded against the answer the clicked
        message carries, found in the click's own conversation (so a message of another
        conversation or tenant, or a deleted or unknown one, finds nothing and nothing is
        recorded). Nothing is posted: the buttons show the click themselves, and a store
        failure is logged by the assistant (the click is lost; nothing is said in the chat)."""
        click = job.payload["feedback"]
        key = ConversationKey(*job.payload["key"])
        answer = self._assistant.answer_for_message(key, str(click["message_id"]))
        if answer is None or answer.key != key:
            log.info("feedback on a message that carries no answer here; nothing recorded")
            return
        rating = Rating.GOOD if click["reaction"] == "like" else Rating.BAD
        recorded = self._assistant.record_feedback(Feedback(answer, str(click["voter"]), rating))
        log.info(
            "teams feedback",
            extra={"answer_id": answer.answer_id, "rating": rating.value, "recorded": recorded},
        )

    def handle_welcome(self, job: Job) -> None:
        self._assistant.notify(self._sink(job), WELCOME)

    def handle_summarize(self, job: Job) -> None:
        """Teams gives bots no channel history without Graph permissions, so a conversation
        summary covers what the bot has seen of it: its stored history. A request it cannot
        read, or cannot serve, is answered with one line saying what it can do."""
        turn = turn_from_payload(job.payload["turn"])
        sink = self._sink(job)
        target = parse_summarize_message(turn.text, now=self._clock())
        if isinstance(target, ArgumentError):
            self._assistant.notify(sink, target.message)
            return
        try:
            request = self._summary_request(turn.key, target)
        except SummaryUnavailable as exc:
            self._assistant.notify(sink, exc.message)
            return
        except ChatbotError as exc:  # a storage error reading history or files
            log.error("summary could not be prepared", extra={"cause": exc.cause})
            self._assistant.notify(
                sink, "I couldn't prepare that summary right now. Try again soon?"
            )
            return
        if self._summarizer is None:
            self._assistant.notify(sink, "Summaries are not enabled on this deployment.")
            return
        self._summarizer.summarize(request, sink)

    def _summary_request(self, key: ConversationKey, target: SummaryTarget) -> SummaryRequest:
        if isinstance(target, FileTarget):
            if self._knowledge is None:
                raise SummaryUnavailable("Files are not enabled on this deployment.")
            return file_summary_request(self._knowledge, key.scope, target.name)
        if not isinstance(target, ChannelWindow | ChannelCount):  # links: not in the grammar
            raise SummaryUnavailable(SUMMARIZE_USAGE, cause="bad_argument")
        return stored_conversation_request(
            partial(self._assistant.conversation, key),
            target,
            max_turns=MAX_SUMMARY_TURNS,
            title=CONVERSATION_TITLE,
        )

    def handle_forget(self, job: Job) -> None:
        """``forget me``: erase what is stored about the sender in this tenant and say what was
        removed, in the personal chat they asked in. Elsewhere others would read the answer, so
        nothing is erased there and the reply says where to ask."""
        turn = turn_from_payload(job.payload["turn"])
        sink = self._sink(job)
        if ReplyTarget.from_payload(job.payload).conversation_type != PERSONAL:
            self._assistant.notify(sink, FORGET_IN_PERSONAL_CHAT)
            return
        key = turn.key
        try:
            forgotten = self._assistant.forget(key.platform, key.workspace, turn.user_id)
        except ChatbotError as exc:
            log.error("erasure failed", extra={"cause": exc.cause})
            self._assistant.notify(sink, FORGET_FAILED, error=exc.cause)
            return
        self._assistant.notify(sink, forgotten.message)

    def handle_file(self, job: Job) -> None:
        """Read an uploaded file into this chat's knowledge and say so in one line."""
        assert self._indexer is not None
        file = FileRef(**job.payload["file"])
        key = ConversationKey(*job.payload["key"])
        sink = self._sink(job)
        try:
            data, _ = fetch(file, allowed=self._download_allowed, max_bytes=self._indexer.max_bytes)
            result = self._indexer.ingest(key.scope, file, data)
        except FileRejected as exc:
            log.warning("uploaded file not indexed", extra={"cause": exc.cause})
            self._assistant.notify(sink, exc.user_message, error=exc.cause)
            return
        except (ChatbotError, OSError) as exc:  # storage, embedding model, network
            log.error("uploaded file could not be indexed", extra={"cause": type(exc).__name__})
            self._assistant.notify(sink, f"I couldn't read {file.name} right now. Upload it again?")
            return
        verb = "I already have" if result.already_indexed else "I've read"
        self._assistant.notify(
            sink, f"📄 {verb} {result.record.description}: ask me about it here."
        )

    def report_failure(self, job: Job) -> None:
        """A job that raised (on the local host, which does not redeliver) ends with one short
        line in its conversation, as a reply to the message that asked, not silence. Never
        raises: it runs after a failure, and its own must not hide that one."""
        try:
            target = ReplyTarget.from_payload(job.payload)
            reference = target.conversation_reference()
            for attempt in range(1, APOLOGY_ATTEMPTS + 1):
                try:
                    self._connector.send(
                        reference,
                        Activity(type=ActivityTypes.message, text=JOB_FAILED_MESSAGE),
                        reply_to_id=target.reply_to_id,
                    )
                    return
                except RateLimited as exc:
                    if attempt == APOLOGY_ATTEMPTS or exc.retry_after > APOLOGY_MAX_WAIT_SECONDS:
                        raise
                    time.sleep(exc.retry_after)
        except Exception:
            log.exception("could not tell the person that their request failed")

    def _sink(self, job: Job) -> TeamsReplySink:
        target = ReplyTarget.from_payload(job.payload)
        return TeamsReplySink(
            self._connector,
            reference=target.conversation_reference(),
            reply_to_id=target.reply_to_id,
            limits=self._limits,
        )

    def _answer_sink(self, job: Job) -> TeamsReplySink | TeamsStreamSink:
        """An answer's sink: streamed in a personal chat (when streaming is on), paced edits
        elsewhere; both with the feedback buttons on a complete answer."""
        target = ReplyTarget.from_payload(job.payload)
        if target.conversation_type == PERSONAL and self._streaming.enabled:
            return TeamsStreamSink(
                self._connector,
                reference=target.conversation_reference(),
                reply_to_id=target.reply_to_id,
                limits=self._limits,
                support=self._streaming,
            )
        return TeamsReplySink(
            self._connector,
            reference=target.conversation_reference(),
            reply_to_id=target.reply_to_id,
            limits=self._limits,
            feedback=True,
        )


def install_worker(
    router: JobRouter,
    assistant: Assistant,
    settings: Settings,
    indexer: FileIndexer | None = None,
    *,
    summarizer: Summarizer | None = None,
    knowledge: KnowledgeStore | None = None,
    streaming: StreamSupport | None = None,
) -> TeamsWorker:
    """Registers the Teams job kinds. Credentials are built here, once per process, and so is
    the memory of which tenants refused streaming (``streaming``: tests pass their own)."""
    connector = TeamsConnector(bot_identity(settings))
    worker = TeamsWorker(
        assistant,
        connector,
        # Counted in process: one conversation's jobs run one at a time (its queue group), and
        # Teams' limits are per conversation.
        TeamsLimits(LocalRateBudget()),
        indexer,
        insecure_downloads=not settings.microsoft_app_id,
        summarizer=summarizer,
        knowledge=knowledge,
        streaming=streaming or StreamSupport(enabled=settings.teams_streaming == "auto"),
    )
    if indexer is not None:
        router.register(TEAMS_FILE, worker.handle_file, on_failure=worker.report_failure)
    router.register(TEAMS_MESSAGE, worker.handle_message, on_failure=worker.report_failure)
    router.register(TEAMS_WELCOME, worker.handle_welcome)
    router.register(TEAMS_SUMMARIZE, worker.handle_summarize, on_failure=worker.report_failure)
    router.register(TEAMS_FORGET, worker.handle_forget, on_failure=worker.report_failure)
    # No failure hook: a click is answered by its buttons, never by a message in the chat.
    router.register(TEAMS_FEEDBACK, worker.handle_feedback)
    return worker
