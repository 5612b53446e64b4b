"""Slack jobs in the worker: run the core and stream the reply into the thread."""

from __future__ import annotations

import logging

from slack_sdk import WebClient

from bots.slack.ingress import SLACK_MESSAGE
from bots.slack.sink import EditBudget, SlackReplySink
from core.assistant import Assistant
from core.config import Settings
from core.jobs import Job, JobRouter, turn_from_payload

log = logging.getLogger(__name__)


class SlackWorker:
    def __init__(self, assistant: Assistant, client: WebClient, budget: EditBudget) -> None:
        self._assistant = assistant
        self._client = client
        self._budget = budget

    def handle_message(self, job: Job) -> None:
        turn = turn_from_payload(job.payload["turn"])
        if job.payload.get("needs_history") and not self._assistant.knows(turn.key):
            log.info("thread reply in a conversation the bot is not part of: ignored")
            return
        sink = SlackReplySink(
            self._client,
            channel=str(job.payload["channel"]),
            thread_ts=job.payload.get("thread_ts"),
            workspace=turn.key.workspace,
            budget=self._budget,
        )
        self._assistant.answer(turn, sink)


def install_worker(router: JobRouter, assistant: Assistant, settings: Settings) -> SlackWorker:
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    worker = SlackWorker(assistant, client, EditBudget(settings.slack_edits_per_minute))
    router.register(SLACK_MESSAGE, worker.handle_message)
    return worker
