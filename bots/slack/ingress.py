"""Slack ingress: verify, translate, enqueue, ack. Nothing slow, nothing that calls Slack.

One Bolt app per process receives Slack's single endpoint (events, slash commands and
interactivity). Its listeners only translate and enqueue; answers happen in the worker. Bolt is
built so that no request waits on a network call: authorization returns the configured bot token
without Bolt's ``auth.test`` round trip (it would land inside the first ack of every cold start),
and bot and self messages are filtered in :mod:`bots.slack.events` from the payload itself.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_bolt import Ack, App, BoltRequest
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bots.http import HttpRequest, HttpResponse, Route
from bots.slack.events import from_event
from bots.slack.files import file_removal, shared_files
from core.config import Settings
from core.jobs import Job, turn_to_payload

log = logging.getLogger(__name__)

SLACK_MESSAGE = "slack.message"
SLACK_FILE = "slack.file"
SLACK_FILE_REMOVED = "slack.file_removed"
SLACK_SUMMARIZE = "slack.summarize"
SUMMARIZING = "Summarizing… it will appear {where} in a moment."


def build_bolt_app(settings: Settings, enqueue: Callable[[Job], None]) -> App:
    token = settings.slack_bot_token

    def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)

    app = App(
        name="chatbot",  # without a name Bolt walks inspect.stack(): ~30 ms of every cold start
        signing_secret=settings.slack_signing_secret,
        # No token on the client: ``authorize`` supplies it per request (a token here makes Bolt
        # warn that it is ignored).
        client=WebClient(base_url=settings.slack_api_url),
        authorize=authorize,
        process_before_response=True,
        token_verification_enabled=False,
        ignoring_self_events_enabled=False,  # needs auth.test; events.py filters bots instead
        logger=logging.getLogger("bots.slack.bolt"),
    )

    def on_message_event(body: dict[str, Any], ack: Ack) -> None:
        ack()
        # Files first: in the same conversation group, so a question asked with the file is
        # answered after the file is read.
        for shared in shared_files(body):
            payload = {
                "file": asdict(shared.file),
                "key": [
                    shared.key.platform,
                    shared.key.workspace,
                    shared.key.channel,
                    shared.key.thread,
                ],
                "channel": shared.channel,
                "thread_ts": shared.thread_ts,
            }
            dedupe = f"slack-file:{shared.key.workspace}:{shared.ts}:{shared.file.file_id}"
            enqueue(Job(SLACK_FILE, shared.key.id, dedupe, payload))
        slack_turn = from_event(body)
        if slack_turn is None or (slack_turn.turn.files and not slack_turn.turn.text):
            return  # nothing asked: a file alone gets its "ready" line from the file job
        payload = {
            "turn": turn_to_payload(slack_turn.turn),
            "channel": slack_turn.channel,
            "thread_ts": slack_turn.thread_ts,
            "needs_history": slack_turn.needs_history,
        }
        enqueue(Job(SLACK_MESSAGE, slack_turn.turn.key.id, slack_turn.dedupe_id, payload))
        log.info(
            "slack event enqueued",
            extra={"event_id": body.get("event_id"), "job_id": slack_turn.dedupe_id},
        )

    def acknowledge(ack: Ack) -> None:
        ack()

    def on_file_removed(body: dict[str, Any], ack: Ack) -> None:
        ack()
        removal = file_removal(body)
        if removal is None:
            return
        payload = {
            "platform_workspace": removal.platform_workspace,
            "file_id": removal.file_id,
            "channel": removal.channel,
        }
        group = f"{removal.platform_workspace}#file#{removal.file_id}"
        enqueue(
            Job(SLACK_FILE_REMOVED, group, f"slack-file-removed:{body.get('event_id')}", payload)
        )

    def on_summarize_command(body: dict[str, Any], ack: Ack) -> None:
        # Parsing is pure and fast: a bad argument is answered in the ack itself.
        from bots.slack.summaries import ArgumentError, ThreadRef, parse_summarize_args

        target = parse_summarize_args(str(body.get("text") or ""), now=time.time())
        if isinstance(target, ArgumentError):
            ack(response_type="ephemeral", text=target.message)
            return
        channel, team = str(body["channel_id"]), str(body["team_id"])
        where = "in that thread" if isinstance(target, ThreadRef) else "in this channel"
        ack(response_type="ephemeral", text=SUMMARIZING.format(where=where))
        request = SummaryJobRequest(
            team=team,
            channel=channel,
            channel_name=str(body.get("channel_name") or ""),
            user=str(body["user_id"]),
            request_id=str(body["trigger_id"]),
            response_url=str(body.get("response_url") or ""),
        )
        enqueue(summary_job(request, target))

    def on_summarize_shortcut(body: dict[str, Any], ack: Ack) -> None:
        from bots.slack.summaries import ThreadRef

        ack()
        message = body.get("message") or {}
        channel = str((body.get("channel") or {}).get("id") or "")
        root = str(message.get("thread_ts") or message.get("ts") or "")
        team = str((body.get("team") or {}).get("id") or body.get("team_id") or "")
        if not (channel and root and team):
            log.warning("summarize shortcut without channel, message or team")
            return
        request = SummaryJobRequest(
            team=team,
            channel=channel,
            channel_name=str((body.get("channel") or {}).get("name") or ""),
            user=str((body.get("user") or {}).get("id") or ""),
            request_id=str(body["trigger_id"]),
            response_url=str(body.get("response_url") or ""),
        )
        enqueue(summary_job(request, ThreadRef(channel, root)))

    app.event("app_mention")(on_message_event)
    app.event("message")(on_message_event)
    app.event("file_deleted")(on_file_removed)
    app.event("file_unshared")(on_file_removed)
    app.event(re.compile(".*"))(acknowledge)  # any other event: acknowledged and ignored
    app.command("/summarize")(on_summarize_command)
    app.shortcut("summarize_thread")(on_summarize_shortcut)
    return app


def slack_route(app: App, signing_secret: str) -> Route:
    """The HTTP face of the Bolt app, shared by the local host and API Gateway."""
    verifier = SignatureVerifier(signing_secret)

    def route(request: HttpRequest) -> HttpResponse:
        if not verifier.is_valid_request(request.body, dict(request.headers)):
            log.warning("slack request rejected: bad signature or stale timestamp")
            return HttpResponse.error(401, "invalid signature")
        try:
            text = request.body.decode("utf-8")
            _check_body(text, request.header("content-type"))
        except (UnicodeDecodeError, ValueError) as exc:
            log.warning("slack request rejected: malformed body", extra={"detail": str(exc)})
            return HttpResponse.error(400, "malformed body")
        bolt_request = BoltRequest(
            body=text,
            query=dict(request.query),
            headers={k: [v] for k, v in request.headers.items()},
        )
        response = app.dispatch(bolt_request)
        headers = {k: v for k, v in response.first_headers_without_set_cookie().items()}
        return HttpResponse(response.status, (response.body or "").encode(), headers)

    return route


def _check_body(text: str, content_type: str) -> None:
    """Slack sends JSON (events) or a form (commands, or ``payload=`` JSON for interactivity)."""
    if content_type.startswith("application/json") or text.lstrip().startswith("{"):
        if not isinstance(json.loads(text), dict):
            raise ValueError("JSON body is not an object")
        return
    form = parse_qs(text, strict_parsing=bool(text))
    if "payload" in form and not isinstance(json.loads(form["payload"][0]), dict):
        raise ValueError("payload is not a JSON object")
    if "payload" not in form and "command" not in form and "ssl_check" not in form:
        raise ValueError("form body has neither a command nor a payload")


@dataclass(frozen=True, slots=True)
class SummaryJobRequest:
    """Who asked for a summary, where, and how to answer them privately."""

    team: str
    channel: str
    channel_name: str
    user: str
    request_id: str
    response_url: str


def summary_job(request: SummaryJobRequest, target: object) -> Job:
    """A summary request for the worker; ``target`` is one of bots.slack.summaries' targets."""
    payload = {
        **asdict(request),
        "target_type": type(target).__name__,
        "target": asdict(target),  # type: ignore[call-overload]
    }
    group = f"slack#{request.team}#{request.channel}#summaries"
    return Job(SLACK_SUMMARIZE, group, f"slack-summary:{request.request_id}", payload)
