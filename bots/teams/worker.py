"""Teams jobs in the worker: answer a message, welcome a new conversation, decline summaries."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from bots.downloads import fetch
from bots.teams.auth import bot_identity
from bots.teams.connector import TeamsConnector
from bots.teams.events import ReplyTarget
from bots.teams.ingress import TEAMS_FILE, TEAMS_MESSAGE, TEAMS_SUMMARIZE, TEAMS_WELCOME
from bots.teams.sink import SendBudget, TeamsReplySink
from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey, FileRef
from core.files.ingest import FileIndexer
from core.files.types import FileRejected
from core.jobs import Job, JobRouter, turn_from_payload

log = logging.getLogger(__name__)

WELCOME = (
    "Hi, I'm the team assistant. I answer questions with the help of your conversation and "
    "the files shared with me.\n\n"
    "- **In a channel or group chat:** mention me with your question and I'll answer in the "
    "same thread.\n"
    "- **In a 1:1 chat:** just ask; I remember what we talked about.\n"
    "- **Summaries** of conversations are coming soon."
)
# Mirrors the Slack adapter's answer to /summarize.
SUMMARIZE_NOT_READY = (
    "Summaries are not available yet in this version of the assistant. "
    "Mention me with a question instead."
)


class TeamsWorker:
    def __init__(
        self,
        assistant: Assistant,
        connector: TeamsConnector,
        budget: SendBudget,
        indexer: FileIndexer | None = None,
        *,
        insecure_downloads: bool = False,
    ):
        self._assistant = assistant
        self._connector = connector
        self._budget = budget
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
        self._assistant.notify(self._sink(job), SUMMARIZE_NOT_READY)

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
        verb = "I already have" if result.already_indexed else "I've read"
        self._assistant.notify(
            sink, f"📄 {verb} {result.record.description}: ask me about it here."
        )

    def _sink(self, job: Job) -> TeamsReplySink:
        target = ReplyTarget.from_payload(job.payload)
        return TeamsReplySink(
            self._connector,
            reference=target.conversation_reference(),
            reply_to_id=target.reply_to_id,
            budget=self._budget,
        )


def install_worker(
    router: JobRouter,
    assistant: Assistant,
    settings: Settings,
    indexer: FileIndexer | None = None,
) -> TeamsWorker:
    """Registers the Teams job kinds. Credentials are built here, once per process."""
    connector = TeamsConnector(bot_identity(settings))
    worker = TeamsWorker(
        assistant,
        connector,
        SendBudget(),
        indexer,
        insecure_downloads=not settings.microsoft_app_id,
    )
    if indexer is not None:
        router.register(TEAMS_FILE, worker.handle_file)
    router.register(TEAMS_MESSAGE, worker.handle_message)
    router.register(TEAMS_WELCOME, worker.handle_welcome)
    router.register(TEAMS_SUMMARIZE, worker.handle_summarize)
    return worker
