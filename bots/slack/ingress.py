"""Slack ingress: verify, translate, enqueue, ack. Nothing slow, nothing that calls Slack.

Slack's single endpoint takes events, slash commands and interactivity. Events API callbacks,
nearly all of the traffic, need nothing from Bolt once the signature is checked and the body
read: :func:`slack_route` hands them straight to the event listeners (:func:`enqueue_event`), so
a cold start that acks an event never imports Bolt and slack_sdk (about a third of the ingress's
cold start, docs/benchmarks.md). Everything else goes through one Bolt app per process, built on
the first request that needs it. Listeners only translate and enqueue; answers happen in the
worker. Bolt is built so that no request waits on a network call: authorization returns the
configured bot token without Bolt's ``auth.test`` round trip (it would land inside the first ack
of every cold start), and bot and self messages are filtered in :mod:`bots.slack.events` from
the payload itself. The assistant panel's events and feedback clicks are made into jobs by
:mod:`bots.slack.panel_jobs`, on both paths.

Every request gets a status chosen on purpose: 401 for anything not validly signed (whatever its
headers hold), 400 for a signed body that is not JSON or a form (with ``X-Slack-No-Retry``), and
200 with no work for a signed payload of an unexpected shape, or one no listener handles: any
other answer only brings Slack's retries. A 5xx means the enqueue itself failed, and then
Slack's retry is wanted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import parse_qsl

from bots.http import HttpRequest, HttpResponse, MalformedJson, Route, parse_json
from bots.slack import panel_jobs
from bots.slack.events import from_event, id_of, is_slack_ts, payload_problem, text_of
from bots.slack.files import file_removal, shared_files
from core.config import Settings
from core.jobs import Job, turn_to_payload

if TYPE_CHECKING:  # Bolt is imported where an app is built: events never need it
    from slack_bolt import Ack, App

log = logging.getLogger(__name__)

SLACK_MESSAGE = "slack.message"
SLACK_FILE = "slack.file"
SLACK_FILE_REMOVED = "slack.file_removed"
SLACK_SUMMARIZE = "slack.summarize"
SLACK_FORGET = "slack.forget"
FORGETTING = "Forgetting what I stored about you in this workspace… I'll confirm here."
SUMMARIZING = "Summarizing… it will appear {where} in a moment."
SIGNATURE_MAX_AGE_SECONDS = 5 * 60  # Slack's own rule: older requests may be replays
NO_RETRY = {"X-Slack-No-Retry": "1"}  # Slack sends the same request again on any non-2xx
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


def import_bolt() -> None:
    """Import what a Bolt app needs ahead of its first request (a SnapStart init does)."""
    import slack_bolt  # noqa: F401
    import slack_sdk.web  # noqa: F401


def build_bolt_app(settings: Settings, enqueue: Callable[[Job], None]) -> App:
    from slack_bolt import App
    from slack_bolt.authorization import AuthorizeResult
    from slack_sdk import WebClient

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
        enqueue_message_event(body, enqueue)

    def acknowledge(ack: Ack) -> None:
        ack()

    def on_file_removed(body: dict[str, Any], ack: Ack) -> None:
        ack()
        enqueue_file_removal(body, enqueue)

    def on_summarize_command(body: dict[str, Any], ack: Ack) -> None:
        # Parsing is pure and fast: a bad argument is answered in the ack itself.
        from bots.slack.summary_args import ThreadRef, parse_summarize_args
        from core.summary_request import ArgumentError

        request = command_summary_request(body)
        if request is None:
            log.warning("summarize command without channel, team, user or trigger_id ignored")
            ack()
            return
        target = parse_summarize_args(text_of(body.get("text")), now=time.time())
        if isinstance(target, ArgumentError):
            ack(response_type="ephemeral", text=target.message)
            return
        where = "in that thread" if isinstance(target, ThreadRef) else "in this channel"
        ack(response_type="ephemeral", text=SUMMARIZING.format(where=where))
        enqueue(summary_job(request, target))

    def on_forget_command(body: dict[str, Any], ack: Ack) -> None:
        # Erasure is the worker's job; the ack only says it is under way, privately.
        job = forget_job(body)
        if job is None:
            log.warning("forget command without team, user or trigger_id ignored")
            ack()
            return
        ack(response_type="ephemeral", text=FORGETTING)
        enqueue(job)

    def on_summarize_shortcut(body: dict[str, Any], ack: Ack) -> None:
        from bots.slack.summary_args import ThreadRef

        ack()
        found = shortcut_summary_request(body)
        if found is None:
            log.warning("summarize shortcut without channel, message, team or trigger_id ignored")
            return
        request, root = found
        enqueue(summary_job(request, ThreadRef(request.channel, root)))

    app.event("app_mention")(on_message_event)
    app.event("message")(on_message_event)
    app.event("file_deleted")(on_file_removed)
    app.event("file_unshared")(on_file_removed)
    panel_jobs.add_listeners(app, enqueue)  # the assistant panel's events, feedback clicks
    app.event(re.compile(".*"))(acknowledge)  # any other event: acknowledged and ignored
    app.command("/summarize")(on_summarize_command)
    app.command("/forget")(on_forget_command)
    app.shortcut("summarize_thread")(on_summarize_shortcut)
    return app


# Event listeners: Bolt runs them for Socket Mode and for a Bolt-dispatched request;
# slack_route calls enqueue_event directly for every HTTP event callback. What they enqueue is
# the same either way.
MESSAGE_EVENTS = frozenset({"app_mention", "message"})
FILE_REMOVAL_EVENTS = frozenset({"file_deleted", "file_unshared"})


def enqueue_event(body: dict[str, Any], enqueue: Callable[[Job], None]) -> None:
    """An Events API callback's jobs, routed as the Bolt app's event listeners route it: a
    message or mention, a file removal, an assistant-panel thread event, or (any other event)
    nothing."""
    event = body.get("event")
    kind = event.get("type") if isinstance(event, dict) else None
    if kind in MESSAGE_EVENTS:
        enqueue_message_event(body, enqueue)
    elif kind in FILE_REMOVAL_EVENTS:
        enqueue_file_removal(body, enqueue)
    elif kind in panel_jobs.PANEL_EVENTS:
        panel_jobs.enqueue_panel_event(body, enqueue)


def enqueue_message_event(body: dict[str, Any], enqueue: Callable[[Job], None]) -> None:
    """A message or mention: a job per shared file, then one for the question, if any."""
    # Files first: in the same conversation group, so a question asked with the file is
    # answered after the file is read.
    for shared in shared_files(body):
        payload: dict[str, Any] = {
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
    if slack_turn.dm_thread and panel_jobs.enqueue_thread_jobs(body, slack_turn, enqueue):
        return  # "summarize this channel" in an assistant-panel thread: a summary job
    payload = {
        "turn": turn_to_payload(slack_turn.turn),
        "channel": slack_turn.channel,
        "thread_ts": slack_turn.thread_ts,
        "needs_history": slack_turn.needs_history,
        "user_team": slack_turn.user_team,  # native streaming's recipient_team_id
    }
    enqueue(Job(SLACK_MESSAGE, slack_turn.turn.key.id, slack_turn.dedupe_id, payload))
    log.info(
        "slack event enqueued",
        extra={"event_id": body.get("event_id"), "job_id": slack_turn.dedupe_id},
    )


def enqueue_file_removal(body: dict[str, Any], enqueue: Callable[[Job], None]) -> None:
    """A file deleted or unshared: the worker drops it from the channel's knowledge."""
    removal = file_removal(body)
    if removal is None:
        return
    payload = {
        "platform_workspace": removal.platform_workspace,
        "file_id": removal.file_id,
        "channel": removal.channel,
    }
    group = f"{removal.platform_workspace}#file#{removal.file_id}"
    enqueue(Job(SLACK_FILE_REMOVED, group, f"slack-file-removed:{body.get('event_id')}", payload))


def slack_route(
    app: App | Callable[[], App],
    signing_secret: str,
    *,
    enqueue: Callable[[Job], None] | None = None,
) -> Route:
    """Slack's endpoint, shared by the local host and API Gateway. ``app`` is the Bolt app, or a
    function that builds it on the first request that needs it. With ``enqueue``, an Events API
    callback goes straight to :func:`enqueue_event` and is acknowledged without Bolt; anything
    else (and every request, without ``enqueue``) is dispatched by the Bolt app."""
    secret = signing_secret.encode("utf-8")
    bolt_app = _OnFirstUse(app)

    def route(request: HttpRequest) -> HttpResponse:
        if not signature_is_valid(secret, request, now=time.time()):
            log.warning("slack request rejected: bad signature or stale timestamp")
            return HttpResponse.error(401, "invalid signature")
        content_type = request.header("content-type")
        try:
            text = request.body.decode("utf-8")
            payload = parse_body(text, content_type)
        except (UnicodeDecodeError, MalformedJson) as exc:
            log.warning("slack request rejected: malformed body", extra={"detail": str(exc)})
            return HttpResponse.json(400, {"error": "malformed body"}, NO_RETRY)
        problem = payload_problem(payload) or _form_problem(payload, content_type, text)
        if problem is not None:
            # Signed, so Slack (or someone holding the secret) sent it: an answer other than
            # 2xx would only be retried. Logged by kind, never with its text.
            log.warning(
                "slack payload of an unexpected shape acknowledged and ignored",
                extra={"problem": problem, **payload_kind(payload)},
            )
            return HttpResponse(200, b"", NO_RETRY)
        if enqueue is not None and _is_event_callback(payload):
            enqueue_event(payload, enqueue)  # an enqueue that fails is a 5xx: Slack retries
            return HttpResponse(200, b"", ACKNOWLEDGED)
        from slack_bolt import BoltRequest

        bolt_request = BoltRequest(
            body=text,
            query=dict(request.query),
            headers={k: [v] for k, v in request.headers.items()},
        )
        response = bolt_app().dispatch(bolt_request)
        if response.status == 404:  # Bolt's "unhandled request": nothing here listens for it
            log.warning("slack request not handled: acknowledged", extra=payload_kind(payload))
            return HttpResponse(200, b"", NO_RETRY)
        headers = {k: v for k, v in response.first_headers_without_set_cookie().items()}
        return HttpResponse(response.status, (response.body or "").encode(), headers)

    return route


ACKNOWLEDGED = {"content-type": "text/plain;charset=utf-8"}  # what Bolt's bare ack() answers


def _is_event_callback(payload: object) -> TypeGuard[dict[str, Any]]:
    """An Events API callback the event listeners read: Bolt's own test (``event_callback``
    with an event that has a type), so that any other shape still meets Bolt's answer."""
    if not (isinstance(payload, dict) and payload.get("type") == "event_callback"):
        return False
    event = payload.get("event")
    return isinstance(event, dict) and isinstance(event.get("type"), str)


class _OnFirstUse:
    """The Bolt app, built (and Bolt imported) by the first request that needs it."""

    def __init__(self, app: App | Callable[[], App]) -> None:
        self._build = app if callable(app) else None
        self._app = None if callable(app) else app
        self._lock = threading.Lock()

    def __call__(self) -> App:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    assert self._build is not None
                    self._app = self._build()
        return self._app


def signature_is_valid(secret: bytes, request: HttpRequest, *, now: float) -> bool:
    """Slack's v0 signature over the raw body, within five minutes of ``now``. Headers of any
    shape (absent, not a number, not ASCII, huge) are simply not valid: slack_sdk's verifier
    raises on several of them."""
    timestamp = request.header("x-slack-request-timestamp")
    signature = request.header("x-slack-signature")
    if not (_TIMESTAMP.fullmatch(timestamp) and _SIGNATURE.fullmatch(signature)):
        return False
    if abs(now - int(timestamp)) > SIGNATURE_MAX_AGE_SECONDS:
        return False
    base = b"v0:" + timestamp.encode("ascii") + b":" + request.body
    expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def parse_body(text: str, content_type: str) -> object:
    """The payload exactly as Bolt will read it (JSON for events, a form for commands, or a
    form's ``payload=`` JSON for interactivity), with JSON bounded (MalformedJson)."""
    media_type = content_type.split(";", 1)[0]  # as Bolt reads it: no strip, no case
    if media_type == "application/json" or text.startswith("{"):
        return parse_json(text)
    if not text:
        return {}
    form = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in text:
        return parse_json(form["payload"]) if "payload" in form else {}
    return form


def _form_problem(payload: object, content_type: str, text: str) -> str | None:
    """A form that is neither a command, an interactivity payload nor Slack's SSL check."""
    media_type = content_type.split(";", 1)[0]  # as Bolt reads it: no strip, no case
    if media_type == "application/json" or text.startswith("{") or "payload" in text:
        return None
    assert isinstance(payload, dict)  # payload_problem has refused anything else
    if payload and not {"command", "ssl_check"} & payload.keys():
        return "form body has neither a command nor a payload"
    return None


def payload_kind(payload: object) -> dict[str, str]:
    """What a payload is, for a log line (never its text): its type, and its event's type."""
    if not isinstance(payload, dict):
        return {"payload_type": type(payload).__name__}
    event = payload.get("event")
    kind = {
        "payload_type": text_of(payload.get("type")) or ("command" if "command" in payload else ""),
        "event_type": text_of(event.get("type")) if isinstance(event, dict) else "",
    }
    return {k: v[:64] for k, v in kind.items() if v}


def command_summary_request(body: Mapping[str, Any]) -> SummaryJobRequest | None:
    """Who asked ``/summarize`` and where; None when the form lacks what an answer needs."""
    channel, team = text_of(body.get("channel_id")), text_of(body.get("team_id"))
    user, trigger = text_of(body.get("user_id")), text_of(body.get("trigger_id"))
    if not (channel and team and user and trigger):
        return None
    return SummaryJobRequest(
        team=team,
        channel=channel,
        channel_name=text_of(body.get("channel_name")),
        user=user,
        request_id=trigger,
        response_url=text_of(body.get("response_url")),
    )


def forget_job(body: Mapping[str, Any]) -> Job | None:
    """``/forget``: erase what is stored about the person who asked, in this workspace, and
    answer them privately (``response_url``); None when the form lacks who asked."""
    team, user = text_of(body.get("team_id")), text_of(body.get("user_id"))
    trigger = text_of(body.get("trigger_id"))
    if not (team and user and trigger):
        return None
    payload = {
        "team": team,
        "user": user,
        "channel": text_of(body.get("channel_id")),
        "response_url": text_of(body.get("response_url")),
    }
    return Job(SLACK_FORGET, f"slack#{team}#forget#{user}", f"slack-forget:{trigger}", payload)


def shortcut_summary_request(body: Mapping[str, Any]) -> tuple[SummaryJobRequest, str] | None:
    """The summary a "Summarize thread" shortcut asks for, and the thread's root ts; None when
    the payload lacks what an answer needs."""
    message = body.get("message")
    message = message if isinstance(message, Mapping) else {}
    root = message.get("thread_ts") or message.get("ts")
    channel = id_of(body.get("channel"))
    team = id_of(body.get("team")) or text_of(body.get("team_id"))
    trigger = text_of(body.get("trigger_id"))
    if not (channel and team and trigger and is_slack_ts(root)):
        return None
    channel_object = body.get("channel")
    request = SummaryJobRequest(
        team=team,
        channel=channel,
        channel_name=text_of(channel_object.get("name"))
        if isinstance(channel_object, Mapping)
        else "",
        user=id_of(body.get("user")),
        request_id=trigger,
        response_url=text_of(body.get("response_url")),
    )
    return request, str(root)


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
    """A summary request for the worker; ``target`` is a ``SlackSummaryTarget``
    (:mod:`bots.slack.summary_args`)."""
    payload = {
        **asdict(request),
        "target_type": type(target).__name__,
        "target": asdict(target),  # type: ignore[call-overload]
    }
    group = f"slack#{request.team}#{request.channel}#summaries"
    return Job(SLACK_SUMMARIZE, group, f"slack-summary:{request.request_id}", payload)
