"""Teams jobs in the worker: answer a message, welcome a new conversation, decline summaries."""

from __future__ import annotations

import logging

from bots.teams.auth import bot_identity
from bots.teams.connector import TeamsConnector
from bots.teams.events import ReplyTarget
from bots.teams.ingress import TEAMS_MESSAGE, TEAMS_SUMMARIZE, TEAMS_WELCOME
from bots.teams.sink import SendBudget, TeamsReplySink
from core.assistant import Assistant
from core.config import Settings
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
    def __init__(self, assistant: Assistant, connector: TeamsConnector, budget: SendBudget):
        self._assistant = assistant
        self._connector = connector
        self._budget = budget

    def handle_message(self, job: Job) -> None:
        self._assistant.answer(turn_from_payload(job.payload["turn"]), self._sink(job))

    def handle_welcome(self, job: Job) -> None:
        self._assistant.notify(self._sink(job), WELCOME)

    def handle_summarize(self, job: Job) -> None:
        self._assistant.notify(self._sink(job), SUMMARIZE_NOT_READY)

    def _sink(self, job: Job) -> TeamsReplySink:
        target = ReplyTarget.from_payload(job.payload)
        return TeamsReplySink(
            self._connector,
            reference=target.conversation_reference(),
            reply_to_id=target.reply_to_id,
            budget=self._budget,
        )


def install_worker(router: JobRouter, assistant: Assistant, settings: Settings) -> TeamsWorker:
    """Registers the Teams job kinds. Credentials are built here, once per process."""
    worker = TeamsWorker(assistant, TeamsConnector(bot_identity(settings)), SendBudget())
    router.register(TEAMS_MESSAGE, worker.handle_message)
    router.register(TEAMS_WELCOME, worker.handle_welcome)
    router.register(TEAMS_SUMMARIZE, worker.handle_summarize)
    return worker
