"""Teams jobs in the worker: answer a message, welcome a new conversation, decline summaries."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urlsplit

from botbuilder.schema import Activity, ActivityTypes

from bots.downloads import fetch
from bots.teams.auth import bot_identity
from bots.teams.connector import TeamsConnector
from bots.teams.events import ReplyTarget
from bots.teams.ingress import TEAMS_FILE, TEAMS_MESSAGE, TEAMS_SUMMARIZE, TEAMS_WELCOME
from bots.teams.sink import TeamsLimits, TeamsReplySink
from core.assistant import Assistant
from core.budget import LocalRateBudget
from core.config import Settings
from core.domain import ConversationKey, FileRef, Role, Turn
from core.errors import ChatbotError, RateLimited
from core.files.ingest import FileIndexer
from core.files.types import FileRejected
from core.jobs import JOB_FAILED_MESSAGE, Job, JobRouter, turn_from_payload
from core.knowledge.base import KnowledgeStore
from core.summarize import Excerpt, Summarizer, SummaryRequest
from core.summary_sources import SummaryUnavailable, file_summary_request

log = logging.getLogger(__name__)
MAX_SUMMARY_TURNS = 1000

WELCOME = (
    "Hi, I'm the team assistant. I answer questions with the help of your conversation and "
    "the files shared with me.\n\n"
    "- **In a channel or group chat:** mention me with your question and I'll answer in the "
    "same thread.\n"
    "- **In a 1:1 chat:** just ask; I remember what we talked about.\n"
    "- **Summaries** of conversations are coming soon."
)
# Mirrors the Slack adapter's answer to /summarize.
SUMMARIZE_USAGE = (
    "I can summarize this conversation (`summarize`) or a file shared here "
    "(`summarize file` for the latest, `summarize file <name>` for one by name)."
)
# Waits for Teams' Retry-After before the apology is given up (it follows a failure already).
APOLOGY_ATTEMPTS = 3
APOLOGY_MAX_WAIT_SECONDS = 5.0
_SUMMARIZE_ARGS = re.compile(r"^/?summari[sz]e\s*(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)


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
    ):
        self._summarizer = summarizer
        self._knowledge = knowledge
        self._assistant = assistant
        self._connector = connector
        self._limits = limits
        self._indexer = indexer
        self._insecure_downloads = insecure_downloads

    def _download_allowed(self, url: str) -> bool:
        """Teams' pre-authorised download links are https; plain http only in the
        unauthenticated local mode (the Emulator, local tests)."""
        scheme = urlsplit(url).scheme
        return scheme == "https" or (self._insecure_downloads and scheme == "http")

    def handle_message(self, job: Job) -> None:
        self._assistant.answer(turn_from_payload(job.payload["turn"]), self._sink(job))

    def handle_welcome(self, job: Job) -> None:
        self._assistant.notify(self._sink(job), WELCOME)

    def handle_summarize(self, job: Job) -> None:
        """Teams gives bots no channel history without Graph permissions, so a conversation
        summary covers what the bot has seen of it: its stored history."""
        turn = turn_from_payload(job.payload["turn"])
        sink = self._sink(job)
        match = _SUMMARIZE_ARGS.match(turn.text.strip())
        rest = (match.group("rest") if match else "").strip()
        try:
            request = self._summary_request(turn.key, rest)
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

    def _summary_request(self, key: ConversationKey, rest: str) -> SummaryRequest:
        if rest.lower().startswith("file"):
            if self._knowledge is None:
                raise SummaryUnavailable("Files are not enabled on this deployment.")
            return file_summary_request(self._knowledge, key.scope, rest[4:].strip() or None)
        if rest:
            raise SummaryUnavailable(SUMMARIZE_USAGE)
        turns = self._assistant.conversation(key, MAX_SUMMARY_TURNS)
        if not turns:
            raise SummaryUnavailable("There is nothing in this conversation to summarize yet.")
        excerpts = tuple(
            Excerpt(
                t.text,
                f"{t.user_name or ('assistant' if t.role is Role.ASSISTANT else t.user_id)}, "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t.created_at))}",
            )
            for t in turns
        )
        return SummaryRequest(
            "this conversation (the messages I have seen)", "conversation", excerpts
        )

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


def install_worker(
    router: JobRouter,
    assistant: Assistant,
    settings: Settings,
    indexer: FileIndexer | None = None,
    *,
    summarizer: Summarizer | None = None,
    knowledge: KnowledgeStore | None = None,
) -> TeamsWorker:
    """Registers the Teams job kinds. Credentials are built here, once per process."""
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
    )
    if indexer is not None:
        router.register(TEAMS_FILE, worker.handle_file, on_failure=worker.report_failure)
    router.register(TEAMS_MESSAGE, worker.handle_message, on_failure=worker.report_failure)
    router.register(TEAMS_WELCOME, worker.handle_welcome)
    router.register(TEAMS_SUMMARIZE, worker.handle_summarize, on_failure=worker.report_failure)
    return worker


def _label(turn: Turn) -> str:
    who = turn.user_name or ("assistant" if turn.role is Role.ASSISTANT else turn.user_id)
    return f"{who}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(turn.created_at))}"
