"""The assistant panel in the worker: greeting, thread context, titles, summaries, feedback.

Slack's Agents & AI Apps surface opens the app in a side panel; each conversation there is a
thread of the person's DM with the app. Bolt's ``Assistant`` middleware handles these events in
a listener, but the ingress does not run Bolt for events (cold start and robustness,
:mod:`bots.slack.ingress`), so the panel is built here from the same Web API methods Bolt's
``Assistant`` calls, with slack_sdk, in the worker (:mod:`bots.slack.panel_jobs` makes the jobs):

- A new thread: a short greeting in it, and the suggested prompts
  (``assistant.threads.setSuggestedPrompts``, ``CHATBOT_SLACK_SUGGESTED_PROMPTS``).
- The thread's context, the channel the person is viewing, is kept where Bolt's default store
  keeps it: in the greeting's message metadata (``assistant_thread_context``), updated with
  ``chat.update`` when the context changes and read back with ``conversations.replies`` when a
  summary needs it. It lives and dies with the thread, needs no table of its own, and only the
  app can write it.
- The first question titles the thread (``assistant.threads.setTitle``, best effort), once:
  never a second title (:meth:`AssistantPanel.handle_title`); a refusal (a DM thread outside
  the panel) is logged at debug level only.
- "Summarize this channel" summarizes the context channel into the thread, with the same checks
  as ``/summarize`` (the person must be able to see the channel, a private one needs their
  membership, and the bot reads with its own rights), reusing :class:`SlackWorker`'s.
- A feedback click is recorded (:meth:`core.assistant.Assistant.record_feedback`): by ids and
  rating, never text; a duplicate changes nothing. Nothing is posted: Slack's buttons show the
  choice themselves.

Answers themselves (their loading status and streaming) are the worker's ordinary answer path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bots.slack.events import is_slack_ts
from bots.slack.panel_jobs import (
    SLACK_FEEDBACK,
    SLACK_PANEL_SUMMARIZE,
    SLACK_PANEL_THREAD,
    SLACK_PANEL_TITLE,
)
from bots.slack.summary_args import ThreadRef
from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey
from core.errors import ChatbotError
from core.feedback import AnswerRef, Feedback, Rating
from core.jobs import Job, JobRouter, turn_from_payload
from core.summarize import Summarizer
from core.summary_request import ChannelCount, ChannelWindow, FileTarget
from core.summary_sources import SummaryUnavailable

if TYPE_CHECKING:
    from bots.slack.worker import SlackWorker

log = logging.getLogger(__name__)

GREETING = (
    "Hi! Ask me anything, or pick a suggestion below. I can also summarize the channel "
    "you're viewing."
)
PROMPTS_TITLE = "Try asking"
CONTEXT_EVENT = "assistant_thread_context"  # the metadata event type Bolt's store uses
READING_STATUS = "is reading the channel…"
READING_LOADING = ["Reading the channel…", "Following the threads…", "Getting ready to summarize…"]
NO_CONTEXT = (
    "Which channel? Open the channel you'd like summarized, keep this panel open, and ask me again."
)
OTHER_WORKSPACE = "That channel belongs to another workspace, so I can't summarize it from here."
CHANNEL_HIDDEN = (
    "I can't see that channel. If it's a private channel, invite me with /invite @{bot} "
    "there, then ask again."
)
MEMBERS_ONLY = "I only summarize a private channel for its members."
CHECK_FAILED = "I couldn't check that channel just now; please try again shortly."
SUMMARY_FAILED = "I couldn't prepare that summary right now (a temporary error). Try again soon?"
_TARGETS = {t.__name__: t for t in (ChannelWindow, ChannelCount, ThreadRef, FileTarget)}
_REPLIES_READ = 10  # the greeting is the thread's first bot message: it is on the first page


@dataclass(frozen=True, slots=True)
class ThreadContext:
    """The channel the person is viewing with the panel open (as Slack sent it)."""

    channel: str
    team: str = ""

    @classmethod
    def of(cls, data: object) -> ThreadContext | None:
        if not isinstance(data, Mapping):
            return None
        channel, team = data.get("channel_id"), data.get("team_id")
        if not (isinstance(channel, str) and channel):
            return None
        return cls(channel, team if isinstance(team, str) else "")


class AssistantPanel:
    def __init__(
        self,
        worker: SlackWorker,
        assistant: Assistant,
        client: WebClient,
        settings: Settings,
        summarizer: Summarizer | None,
        *,
        bot_name: str,
    ) -> None:
        self._worker = worker
        self._assistant = assistant
        self._client = client
        self._prompts = settings.slack_suggested_prompts
        self._summarizer = summarizer
        self._bot_name = bot_name

    # -- thread events ------------------------------------------------------------------------

    def handle_thread(self, job: Job) -> None:
        """A new panel thread is greeted; a context change updates the kept context."""
        p = job.payload
        channel, thread_ts = str(p["channel"]), str(p["thread_ts"])
        context = {k: v for k, v in dict(p.get("context") or {}).items() if isinstance(v, str)}
        if p.get("started"):
            self._greet(channel, thread_ts, context)
        else:
            self._save_context(channel, thread_ts, str(p.get("bot_user") or ""), context)

    def _greet(self, channel: str, thread_ts: str, context: dict[str, str]) -> None:
        # The greeting carries the context: a rate limit or a network error raises (the job
        # runs again); a refusal will not change on a retry (logged). Prompts are a courtesy.
        message: dict[str, Any] = {"channel": channel, "thread_ts": thread_ts, "text": GREETING}
        if context:
            message["metadata"] = {"event_type": CONTEXT_EVENT, "event_payload": context}
        try:
            self._client.chat_postMessage(**message)
        except SlackApiError as exc:
            if exc.response.status_code == 429 or exc.response.get("error") == "ratelimited":
                raise
            log.warning("assistant thread not greeted", extra={"cause": _cause(exc)})
            return
        if not self._prompts:
            return
        prompts = [{"title": title, "message": text} for title, text in self._prompts]
        try:
            self._client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, title=PROMPTS_TITLE, prompts=prompts
            )
        except (SlackApiError, OSError) as exc:
            log.warning("suggested prompts not set", extra={"cause": _cause(exc)})

    def _save_context(
        self, channel: str, thread_ts: str, bot_user: str, context: dict[str, str]
    ) -> None:
        greeting = self._greeting(channel, thread_ts, bot_user)
        if greeting is None:
            log.info("context change in a thread without a greeting: not kept")
            return
        update: dict[str, Any] = {
            "channel": channel,
            "ts": greeting["ts"],
            "text": greeting.get("text") or GREETING,
            "metadata": {"event_type": CONTEXT_EVENT, "event_payload": context},
        }
        if greeting.get("blocks"):
            update["blocks"] = greeting["blocks"]
        try:
            self._client.chat_update(**update)
        except (SlackApiError, OSError) as exc:
            log.warning("thread context not kept", extra={"cause": _cause(exc)})

    def _greeting(self, channel: str, thread_ts: str, bot_user: str) -> Mapping[str, Any] | None:
        """The thread's greeting (the first message of this app that carries, or can carry, the
        context), or None; a read that fails counts as none (logged)."""
        messages = self._thread(channel, thread_ts, include_all_metadata=True)
        if messages is None:
            return None
        for message in messages:
            if not isinstance(message, Mapping) or message.get("subtype") is not None:
                continue
            mine = message.get("user") == bot_user if bot_user else bool(message.get("bot_id"))
            metadata = message.get("metadata")
            kind = metadata.get("event_type") if isinstance(metadata, Mapping) else None
            if mine and (kind == CONTEXT_EVENT or message.get("text") == GREETING):
                return message
        return None

    def _thread(self, channel: str, thread_ts: str, **bounds: Any) -> list[Any] | None:
        """The first page of a panel thread's messages from its root on (``bounds``: more
        ``conversations.replies`` arguments), or None when it cannot be read (logged)."""
        try:
            page = self._client.conversations_replies(
                channel=channel, ts=thread_ts, oldest=thread_ts, limit=_REPLIES_READ, **bounds
            )
        except (SlackApiError, OSError) as exc:
            log.info("assistant thread not readable", extra={"cause": _cause(exc)})
            return None
        return list(page.get("messages") or ())

    def context(self, channel: str, thread_ts: str, bot_user: str) -> ThreadContext | None:
        greeting = self._greeting(channel, thread_ts, bot_user)
        metadata = greeting.get("metadata") if greeting is not None else None
        if not isinstance(metadata, Mapping):
            return None
        return ThreadContext.of(metadata.get("event_payload"))

    # -- questions ----------------------------------------------------------------------------

    def handle_title(self, job: Job) -> None:
        """Title the thread from its first question, and never again. Best effort: never
        fails, never delays the answer by more than two calls (the second only for a thread
        with no history here).

        The job's dedupe id (one per thread) runs it once per thread while its record lasts;
        after that, a thread is titled only when it has no history here (no answered question)
        and Slack shows no earlier question in it (a summary or a failed answer leaves no
        history). When that cannot be read, the thread is not titled: a missing title is better
        than a second one."""
        p = job.payload
        channel, thread_ts = str(p["channel"]), str(p["thread_ts"])
        if self._assistant.knows(ConversationKey(*p["key"])):
            return  # not the first question: the thread has its title
        question_ts = p.get("question_ts")
        checkable = is_slack_ts(question_ts) and is_slack_ts(thread_ts)
        if checkable and self._asked_before(channel, thread_ts, str(question_ts)):
            log.debug("assistant thread has an earlier question: title left as it is")
            return
        try:
            self._client.assistant_threads_setTitle(
                channel_id=channel, thread_ts=thread_ts, title=str(p["title"])
            )
        except SlackApiError as exc:  # e.g. a DM thread outside the panel: expected, quiet
            log.debug("assistant thread title refused", extra={"cause": _cause(exc)})
        except OSError as exc:
            log.info("assistant thread title not set", extra={"cause": _cause(exc)})

    def _asked_before(self, channel: str, thread_ts: str, question_ts: str) -> bool:
        """Whether the thread holds a person's message before ``question_ts`` (its root
        aside); True when the thread cannot be read (so no second title)."""
        messages = self._thread(channel, thread_ts, latest=question_ts, inclusive=False)
        if messages is None:
            return True
        for message in messages:
            if not isinstance(message, Mapping) or not is_slack_ts(message.get("ts")):
                continue
            if not _ts_key(thread_ts) < _ts_key(message["ts"]) < _ts_key(question_ts):
                continue  # the root, the question itself, or beyond the bounds asked for
            if message.get("subtype") is None and not message.get("bot_id"):
                return True
        return False

    def handle_summarize(self, job: Job) -> None:
        """Summarize what the panel's message asks for (by default the channel the person is
        viewing) into the panel thread."""
        p = job.payload
        turn = turn_from_payload(p["turn"])
        team, user = turn.key.workspace, turn.user_id
        channel, thread_ts = str(p["channel"]), str(p["thread_ts"])
        if self._summarizer is None:  # summaries off: an ordinary question
            self._worker.handle_message(job)
            return
        target = _TARGETS[str(p["target_type"])](**p["target"])
        sink = self._worker.answer_sink(job, turn, self._summarizer.model)
        self._status(channel, thread_ts)
        try:
            if isinstance(target, ThreadRef):  # a link: checked as /summarize checks one
                request, _, _ = self._worker.summary_request(team, channel, target, "", user)
            else:
                source = self._source_channel(
                    team, channel, thread_ts, str(p.get("bot_user") or "")
                )
                self._check_channel(source, user)
                request, _, _ = self._worker.summary_request(team, source, target, "", user)
        except SummaryUnavailable as exc:
            log.info("panel summary unavailable", extra={"cause": exc.cause})
            self._assistant.notify(sink, exc.message, error=exc.cause)
            return
        except (ChatbotError, SlackApiError, OSError) as exc:
            log.error("panel summary could not be prepared", extra={"cause": type(exc).__name__})
            self._assistant.notify(sink, SUMMARY_FAILED, error="summary_failed")
            return
        self._summarizer.summarize(request, sink)

    def report_summary_failure(self, job: Job) -> None:
        """A summary job that raised ends with one line in the thread. Never raises."""
        try:
            self._client.chat_postMessage(
                channel=str(job.payload["channel"]),
                thread_ts=job.payload.get("thread_ts"),
                text=SUMMARY_FAILED,
            )
        except Exception:
            log.exception("could not tell the person that their summary failed")

    def _source_channel(self, team: str, channel: str, thread_ts: str, bot_user: str) -> str:
        context = self.context(channel, thread_ts, bot_user)
        if context is None:
            raise SummaryUnavailable(NO_CONTEXT, cause="no_thread_context")
        if context.team and context.team != team:
            raise SummaryUnavailable(OTHER_WORKSPACE, cause="context_other_workspace")
        return context.channel

    def _check_channel(self, channel: str, user: str) -> None:
        """/summarize's check, with words about a channel rather than a linked thread."""
        try:
            self._worker.check_can_see(channel, user)
        except SummaryUnavailable as exc:
            if exc.cause == "requester_not_member":
                raise SummaryUnavailable(MEMBERS_ONLY, cause=exc.cause) from exc
            if exc.cause == "slack_channel_not_found":
                message = CHANNEL_HIDDEN.format(bot=self._bot_name)
                raise SummaryUnavailable(message, cause=exc.cause) from exc
            raise SummaryUnavailable(CHECK_FAILED, cause=exc.cause) from exc

    def _status(self, channel: str, thread_ts: str) -> None:
        """While the channel is read: a status in the thread, not a message. Best effort."""
        try:
            self._client.assistant_threads_setStatus(
                channel_id=channel,
                thread_ts=thread_ts,
                status=READING_STATUS,
                loading_messages=READING_LOADING,
            )
        except (SlackApiError, OSError) as exc:
            log.info("assistant thread status not set", extra={"cause": _cause(exc)})

    # -- feedback -----------------------------------------------------------------------------

    def handle_feedback(self, job: Job) -> None:
        """Record one click (ids and rating only). A duplicate changes nothing; a store
        failure is logged by the assistant and loses only this click."""
        p = job.payload
        answer = AnswerRef(ConversationKey(*p["key"]), str(p["answer_id"]), str(p["model_id"]))
        feedback = Feedback(answer, str(p["voter"]), Rating(p["rating"]), float(p["at"]))
        self._assistant.record_feedback(feedback)


def _ts_key(ts: str) -> tuple[int, int]:
    """A Slack ts as a number to compare exactly ("1700000000.0001" < "1700000000.000200")."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds or 0), int((fraction + "000000000")[:9])


def _cause(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return "slack_" + str(exc.response.get("error"))
    return type(exc).__name__


def install_panel(
    router: JobRouter,
    worker: SlackWorker,
    assistant: Assistant,
    client: WebClient,
    settings: Settings,
    summarizer: Summarizer | None,
    *,
    bot_name: str,
) -> AssistantPanel:
    panel = AssistantPanel(worker, assistant, client, settings, summarizer, bot_name=bot_name)
    router.register(SLACK_PANEL_THREAD, panel.handle_thread)
    router.register(SLACK_PANEL_TITLE, panel.handle_title)
    router.register(
        SLACK_PANEL_SUMMARIZE, panel.handle_summarize, on_failure=panel.report_summary_failure
    )
    router.register(SLACK_FEEDBACK, panel.handle_feedback)
    return panel
