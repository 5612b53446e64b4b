"""Slack jobs in the worker: run the core and stream the reply into the thread."""

from __future__ import annotations

import logging

from slack_sdk import WebClient

from bots.slack.files import download
from bots.slack.ingress import SLACK_FILE, SLACK_FILE_REMOVED, SLACK_MESSAGE
from bots.slack.sink import EditBudget, SlackReplySink
from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey, FileRef
from core.files.ingest import FileIndexer
from core.files.types import FileRejected
from core.jobs import Job, JobRouter, turn_from_payload

log = logging.getLogger(__name__)


class SlackWorker:
    def __init__(
        self,
        assistant: Assistant,
        client: WebClient,
        budget: EditBudget,
        *,
        settings: Settings,
        indexer: FileIndexer | None = None,
    ) -> None:
        self._assistant = assistant
        self._client = client
        self._budget = budget
        self._settings = settings
        self._indexer = indexer

    def handle_message(self, job: Job) -> None:
        turn = turn_from_payload(job.payload["turn"])
        if job.payload.get("needs_history") and not self._assistant.knows(turn.key):
            log.info("thread reply in a conversation the bot is not part of: ignored")
            return
        self._assistant.answer(turn, self._sink(job, turn.key.workspace))

    def handle_file(self, job: Job) -> None:
        """Read a shared file into its channel's knowledge and say so in one line."""
        assert self._indexer is not None
        file = FileRef(**job.payload["file"])
        key = ConversationKey(*job.payload["key"])
        sink = self._sink(job, key.workspace)
        try:
            data = download(
                file,
                self._settings.slack_bot_token,
                api_url=self._settings.slack_api_url,
                max_bytes=self._indexer.max_bytes,
            )
            result = self._indexer.ingest(key.scope, file, data)
        except FileRejected as exc:
            log.warning(
                "shared file not indexed", extra={"cause": exc.cause, "file_id": file.file_id}
            )
            self._assistant.notify(sink, exc.user_message, error=exc.cause)
            return
        where = "this conversation" if key.channel.startswith("D") else "this channel"
        verb = "I already have" if result.already_indexed else "I've read"
        self._assistant.notify(
            sink, f"📄 {verb} {result.record.description}: ask me about it in {where}."
        )

    def handle_file_removed(self, job: Job) -> None:
        assert self._indexer is not None
        workspace, file_id = job.payload["platform_workspace"], job.payload["file_id"]
        channel = job.payload.get("channel")
        if channel:
            removed = self._indexer.remove(f"{workspace}#{channel}", file_id)
        else:
            removed = self._indexer.remove_everywhere(workspace, file_id)
        log.info("shared file removed", extra={"file_id": file_id, "chunks": removed})

    def _sink(self, job: Job, workspace: str) -> SlackReplySink:
        return SlackReplySink(
            self._client,
            channel=str(job.payload["channel"]),
            thread_ts=job.payload.get("thread_ts"),
            workspace=workspace,
            budget=self._budget,
        )


def install_worker(
    router: JobRouter,
    assistant: Assistant,
    settings: Settings,
    indexer: FileIndexer | None = None,
) -> SlackWorker:
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    budget = EditBudget(settings.slack_edits_per_minute)
    worker = SlackWorker(assistant, client, budget, settings=settings, indexer=indexer)
    router.register(SLACK_MESSAGE, worker.handle_message)
    if indexer is not None:
        router.register(SLACK_FILE, worker.handle_file)
        router.register(SLACK_FILE_REMOVED, worker.handle_file_removed)
    return worker
