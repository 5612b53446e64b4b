"""Slack jobs in the worker: run the core and stream the reply into the thread."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bots.slack.events import PLATFORM
from bots.slack.files import download, slack_hosts
from bots.slack.history_reader import SlackHistory
from bots.slack.ingress import (
    SLACK_FILE,
    SLACK_FILE_REMOVED,
    SLACK_FORGET,
    SLACK_MESSAGE,
    SLACK_SUMMARIZE,
)
from bots.slack.panel import install_panel
from bots.slack.sink import SlackLimits, SlackReplySink
from bots.slack.stream import SlackStreamSink, without_retries
from bots.slack.summary_args import ThreadRef
from bots.slack.user_names import UserNames
from core.assistant import Assistant
from core.config import Settings
from core.domain import ConversationKey, FileRef, Turn
from core.erasure import FORGET_FAILED
from core.errors import ChatbotError
from core.feedback import AnswerRef
from core.files.ingest import FileIndexer
from core.files.types import FileRejected
from core.jobs import JOB_FAILED_MESSAGE, Job, JobRouter, turn_from_payload
from core.knowledge.base import KnowledgeStore
from core.models.base import ChatModel
from core.refusals import RefusalMemory
from core.runtime import build_rate_budget
from core.sinks import ReplySink
from core.summarize import Summarizer, SummaryRequest
from core.summary_request import ChannelCount, ChannelWindow, FileTarget
from core.summary_sources import SummaryUnavailable, file_summary_request

FILE_FAILED = "I couldn't read {name} right now (a temporary error on my side). Share it again?"
SUMMARY_FAILED = "I couldn't prepare that summary right now (a temporary error). Try again soon?"
THREAD_NOT_VISIBLE = (
    "That thread is in a channel you can't see (or in another workspace), so I won't summarize it."
)
BOT_DISPLAY_NAME = "assistant"  # manifest/slack/manifest.yml: features.bot_user.display_name
_TARGETS = {t.__name__: t for t in (ChannelWindow, ChannelCount, ThreadRef, FileTarget)}

log = logging.getLogger(__name__)


class SlackWorker:
    def __init__(
        self,
        assistant: Assistant,
        client: WebClient,
        limits: SlackLimits,
        *,
        settings: Settings,
        indexer: FileIndexer | None = None,
        summarizer: Summarizer | None = None,
        knowledge: KnowledgeStore | None = None,
        stream_support: RefusalMemory | None = None,
    ) -> None:
        self._assistant = assistant
        # Which workspaces refused native streaming lately: one memory for the process.
        self._stream_support = stream_support or RefusalMemory(feature="slack native streaming")
        self._client = client
        self._stream_client = without_retries(client)  # once per process, for every stream
        self._limits = limits
        self._settings = settings
        self._indexer = indexer
        self._summarizer = summarizer
        self._knowledge = knowledge
        self._history = SlackHistory(
            client,
            max_messages=settings.summary_max_messages,
            user_names=UserNames(client),
            bot_name=BOT_DISPLAY_NAME,
        )

    def handle_message(self, job: Job) -> None:
        turn = turn_from_payload(job.payload["turn"])
        if job.payload.get("needs_history") and not self._assistant.knows(turn.key):
            log.info("thread reply in a conversation the bot is not part of: ignored")
            return
        self._assistant.answer(turn, self._answer_sink(job, turn))

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
        except (ChatbotError, OSError) as exc:  # storage, embedding model, network
            cause = str(getattr(exc, "cause", type(exc).__name__))
            log.error("shared file could not be indexed", extra={"cause": cause})
            self._assistant.notify(sink, FILE_FAILED.format(name=file.name), error=cause)
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

    def handle_summarize(self, job: Job) -> None:
        """A summary of a channel, a thread or a file, streamed where it was asked for; anything
        that cannot be summarized is answered privately to the person who asked."""
        assert self._summarizer is not None
        p = job.payload
        team, channel, user = str(p["team"]), str(p["channel"]), str(p["user"])
        target = _TARGETS[str(p["target_type"])](**p["target"])
        try:
            request, post_channel, thread_ts = self.summary_request(
                team, channel, target, str(p.get("channel_name") or ""), user
            )
        except SummaryUnavailable as exc:
            log.info("summary unavailable", extra={"cause": exc.cause})
            self._tell_privately(channel, user, str(p.get("response_url") or ""), exc.message)
            return
        except (ChatbotError, SlackApiError, OSError) as exc:
            log.error("summary could not be prepared", extra={"cause": type(exc).__name__})
            self._tell_privately(channel, user, str(p.get("response_url") or ""), SUMMARY_FAILED)
            return
        sink = SlackReplySink(
            self._client,
            channel=post_channel,
            thread_ts=thread_ts,
            workspace=team,
            limits=self._limits,
        )
        self._summarizer.summarize(request, sink)

    def handle_forget(self, job: Job) -> None:
        """``/forget``: erase what is stored about the person in this workspace and tell them,
        privately, what was removed; never a word in the channel."""
        p = job.payload
        user = str(p["user"])
        try:
            text = self._assistant.forget(PLATFORM, str(p["team"]), user).message
        except ChatbotError as exc:
            log.error("erasure failed", extra={"cause": exc.cause})
            text = FORGET_FAILED
        self._tell_privately(
            str(p.get("channel") or ""), user, str(p.get("response_url") or ""), text
        )

    def report_failure(self, job: Job) -> None:
        """A job that raised (on the local host, which does not redeliver) ends with one short
        line where the person asked, not silence: in the thread for a message or a file, and
        privately for a summary, as its other refusals are. Never raises: it runs after a
        failure, and its own must not hide that one."""
        p = job.payload
        try:
            if job.kind in (SLACK_SUMMARIZE, SLACK_FORGET):
                response_url = str(p.get("response_url") or "")
                text = SUMMARY_FAILED if job.kind == SLACK_SUMMARIZE else FORGET_FAILED
                self._tell_privately(str(p["channel"]), str(p["user"]), response_url, text)
                return
            # A thread reply is answered only where the bot already takes part; elsewhere an
            # apology would be the bot's first word in somebody else's thread.
            if p.get("needs_history") and not self._assistant.knows(
                turn_from_payload(p["turn"]).key
            ):
                return
            self._client.chat_postMessage(
                channel=str(p["channel"]), thread_ts=p.get("thread_ts"), text=JOB_FAILED_MESSAGE
            )
        except Exception:
            log.exception("could not tell the person that their request failed")

    def _tell_privately(self, channel: str, user: str, response_url: str, text: str) -> None:
        """An ephemeral answer to the person who asked. A slash command's ``response_url``
        works even where the bot is not a member (``chat.postEphemeral`` does not)."""
        try:
            if response_url and slack_hosts(self._settings.slack_api_url)(response_url):
                WebhookClient(response_url).send(text=text, response_type="ephemeral")
            else:
                self._client.chat_postEphemeral(channel=channel, user=user, text=text)
        except (SlackApiError, OSError) as exc:
            log.warning("could not answer privately", extra={"detail": type(exc).__name__})

    def check_can_see(self, channel: str, user: str) -> None:
        """A thread link may point into another channel: the bot reads with its own rights, so
        it first checks that the person asking is allowed to see that channel. Public channels
        are open to everyone in the workspace; private ones need membership."""
        try:
            info = self._client.conversations_info(channel=channel)["channel"]
            if not (info.get("is_private") or info.get("is_im") or info.get("is_mpim")):
                return
            cursor = None
            while True:
                page = self._client.conversations_members(
                    channel=channel, cursor=cursor, limit=1000
                )
                if user in page.get("members", []):
                    return
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except SlackApiError as exc:
            raise SummaryUnavailable(
                THREAD_NOT_VISIBLE, cause="slack_" + str(exc.response.get("error"))
            ) from exc
        raise SummaryUnavailable(THREAD_NOT_VISIBLE, cause="requester_not_member")

    def summary_request(
        self, team: str, channel: str, target: object, channel_name: str, user: str
    ) -> tuple[SummaryRequest, str, str | None]:
        """What to summarize, and where the summary goes (channel, thread ts)."""
        if isinstance(target, FileTarget):
            if self._knowledge is None:
                raise SummaryUnavailable("Files are not enabled on this deployment.")
            scope = f"slack#{team}#{channel}"
            return file_summary_request(self._knowledge, scope, target.name), channel, None
        if not isinstance(target, ChannelWindow | ChannelCount | ThreadRef):
            raise SummaryUnavailable("I don't know how to summarize that.")
        if isinstance(target, ThreadRef) and target.channel != channel:
            self.check_can_see(target.channel, user)
        history = self._history.read(target, channel=channel, channel_name=channel_name)
        if isinstance(target, ThreadRef):
            return history.request("this thread"), target.channel, target.ts
        where = f"#{channel_name}" if channel_name else "this channel"
        return history.request(f"{where}, {target.label}"), channel, None

    def _answer_sink(self, job: Job, turn: Turn, model: ChatModel | None = None) -> ReplySink:
        """An answer's sink: native streaming unless turned off (it falls back to paced edits
        by itself), with feedback buttons naming this answer and the model that writes it (the
        assistant's unless told)."""
        model = model or self._assistant.model
        answer = AnswerRef(turn.key, turn.turn_id, model.model_id or model.name)
        if self._settings.slack_streaming == "off":
            return self._sink(job, turn.key.workspace, answer)
        team = job.payload.get("user_team")
        return SlackStreamSink(
            self._client,
            channel=str(job.payload["channel"]),
            thread_ts=job.payload.get("thread_ts"),
            workspace=turn.key.workspace,
            limits=self._limits,
            support=self._stream_support,
            recipient_user=turn.user_id,
            recipient_team=team if isinstance(team, str) and team else None,
            answer=answer,
            stream_client=self._stream_client,
        )

    def _sink(self, job: Job, workspace: str, answer: AnswerRef | None = None) -> SlackReplySink:
        """A paced sink for the job's channel and thread (feedback buttons only for an
        ``answer``)."""
        return SlackReplySink(
            self._client,
            channel=str(job.payload["channel"]),
            thread_ts=job.payload.get("thread_ts"),
            workspace=workspace,
            limits=self._limits,
            answer=answer,
        )

    def answer_sink(self, job: Job, turn: Turn, model: ChatModel | None = None) -> ReplySink:
        """The sink an answer to ``turn`` goes to (for the assistant panel's summaries, whose
        feedback names the summarizer's model)."""
        return self._answer_sink(job, turn, model)


def install_worker(
    router: JobRouter,
    assistant: Assistant,
    settings: Settings,
    indexer: FileIndexer | None = None,
    *,
    summarizer: Summarizer | None = None,
    knowledge: KnowledgeStore | None = None,
) -> SlackWorker:
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url)
    limits = SlackLimits(build_rate_budget(settings), settings.slack_edits_per_minute)
    worker = SlackWorker(
        assistant,
        client,
        limits,
        settings=settings,
        indexer=indexer,
        summarizer=summarizer,
        knowledge=knowledge,
    )
    router.register(SLACK_MESSAGE, worker.handle_message, on_failure=worker.report_failure)
    router.register(SLACK_FORGET, worker.handle_forget, on_failure=worker.report_failure)
    if summarizer is not None:
        router.register(SLACK_SUMMARIZE, worker.handle_summarize, on_failure=worker.report_failure)
    if indexer is not None:
        router.register(SLACK_FILE, worker.handle_file, on_failure=worker.report_failure)
        router.register(SLACK_FILE_REMOVED, worker.handle_file_removed)
    # The assistant panel and feedback clicks (bots/slack/panel.py).
    install_panel(
        router, worker, assistant, client, settings, summarizer, bot_name=BOT_DISPLAY_NAME
    )
    return worker
