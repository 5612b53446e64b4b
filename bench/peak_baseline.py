"""The baseline host for ``bench.peak``: ``chatbot serve`` answering Slack the naive way.

``python -m bench.peak_baseline serve`` is ``chatbot serve`` (same ingress, queue, worker,
history, prompt and Bedrock client) with one thing swapped: how a Slack answer reaches the
thread. Instead of our pacer and sink it does what popular Slack GPT bots do: post a
placeholder, ``chat.update`` the whole text so far every :data:`EDIT_EVERY` deltas and once at
the end, with no rate budget, through a ``WebClient`` without retry handlers, and give up on the
first error (a 429 included), leaving the thread as it stands.

The swap is made here, by patching the host's wiring before ``bots.cli.main`` runs, so the
production code carries no benchmark switch. Only ``bench.peak`` launches this module.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bots import cli
from bots.local import app as local_app
from bots.slack.ingress import SLACK_MESSAGE
from core.assistant import Assistant
from core.config import Settings
from core.domain import Reply, SourceCitation
from core.errors import ChatbotError
from core.jobs import Job, JobRouter, turn_from_payload
from core.models.base import ModelEvent, StreamEnd, TextDelta
from core.pacer import ReplyPacer, ReplySink

EDIT_EVERY = 8  # deltas per chat.update
PLACEHOLDER = "Typing…"
_GIVE_UP_ON = (SlackApiError, SlackRequestError, OSError, ChatbotError)


class NaiveSlackSink:
    """Plain ``text`` messages in the thread, straight through the Web API."""

    max_chars = 40_000  # never split: the naive bot does not know Slack's real limits

    def __init__(self, client: WebClient, *, channel: str, thread_ts: str | None) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts

    def post(self, text: str) -> str:
        response = self._client.chat_postMessage(
            channel=self._channel, thread_ts=self._thread_ts, text=text
        )
        return str(response["ts"])

    def update(self, ref: str, text: str) -> None:
        self._client.chat_update(channel=self._channel, ts=ref, text=text)

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self.update(ref, text)

    def close(self) -> None:
        """Nothing held: no budget to give back."""


class NaivePacer:
    """Edit every ``every`` deltas; stop at the first error, whatever it is."""

    def __init__(self, sink: ReplySink, *, every: int = EDIT_EVERY) -> None:
        self._sink = sink
        self._every = every

    def deliver(
        self,
        events: Iterable[ModelEvent],
        *,
        sources: tuple[SourceCitation, ...] = (),
        **production_only: object,
    ) -> Reply:
        """``production_only``: options of our pacer the naive bot has no equivalent for
        (resuming a crashed reply, reporting the message id); ignored."""
        text, end, deltas = "", None, 0
        try:
            ref = self._sink.post(PLACEHOLDER)
            for event in events:
                if isinstance(event, TextDelta):
                    text += event.text
                    deltas += 1
                    if deltas % self._every == 0:
                        self._sink.update(ref, text)
                elif isinstance(event, StreamEnd):
                    end = event
            self._sink.update(ref, text)
        except _GIVE_UP_ON as exc:  # the assistant logs the reply's error as its cause
            _close(events)
            return Reply(text=text, complete=False, error=type(exc).__name__)
        return Reply(text=text, complete=end is not None)

    def deliver_message(self, text: str, *, error: str = "", **production_only: object) -> Reply:
        try:
            self._sink.post(text)
        except _GIVE_UP_ON as exc:
            return Reply(text=text, complete=False, error=type(exc).__name__)
        return Reply(text=text, complete=not error, error=error)


class BaselineJobRouter(JobRouter):
    """Our router, except that Slack message jobs take the naive reply path."""

    assistant: Assistant | None = None
    client: WebClient | None = None

    def register(self, kind: str, handler: Any, **options: Any) -> None:
        super().register(
            kind, self._answer_naively if kind == SLACK_MESSAGE else handler, **options
        )

    def _answer_naively(self, job: Job) -> None:
        assert self.assistant is not None and self.client is not None
        turn = turn_from_payload(job.payload["turn"])
        sink = NaiveSlackSink(
            self.client, channel=str(job.payload["channel"]), thread_ts=job.payload.get("thread_ts")
        )
        # Only NaivePacer (see install) ever drives this sink, so it needs none of the members
        # our pacer uses beyond post/update/finish/close.
        self.assistant.answer(turn, sink)  # type: ignore[arg-type]


def install() -> None:
    """Patch the local host's wiring (this process only) to the naive reply path."""
    production_pacer = Assistant.pacer
    production_build = local_app.build_local_app

    def pacer(self: Assistant, sink: ReplySink) -> ReplyPacer:
        if isinstance(sink, NaiveSlackSink):
            return NaivePacer(sink)  # type: ignore[return-value]
        return production_pacer(self, sink)

    def build_local_app(settings: Settings, **parts: Any) -> local_app.LocalApp:
        app = production_build(settings, **parts)
        if isinstance(app.jobs, BaselineJobRouter):
            app.jobs.assistant = app.assistant
            app.jobs.client = WebClient(
                token=settings.slack_bot_token, base_url=settings.slack_api_url, retry_handlers=[]
            )
        return app

    Assistant.pacer = pacer  # type: ignore[method-assign]
    local_app.JobRouter = BaselineJobRouter  # type: ignore[attr-defined]
    local_app.build_local_app = build_local_app


def _close(events: object) -> None:
    close = getattr(events, "close", None)
    if callable(close):
        close()


if __name__ == "__main__":
    install()
    sys.exit(cli.main(sys.argv[1:]))
