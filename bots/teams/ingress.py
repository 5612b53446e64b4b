"""Teams ingress: ``POST /api/messages``: verify, translate, enqueue, ack. Nothing slow.

The Bot Framework expects the HTTP call to return quickly (within 15 s) and takes replies only
through the connector, so the answer is always an empty 2xx: 202 when a job was enqueued, 200
when the activity needs nothing. A feedback click (an ``invoke``) is answered 200, the invoke
response Teams waits for, once its job is enqueued; a feedback invoke of the wrong shape is
answered 200 too, with nothing recorded: Teams would show the person an error for a non-200
answer, and a signed activity of an odd shape is nothing the person can fix. 400 for a body that
is no activity (bounded JSON, fields of the right types), 401 for a bad token (a token that
could never be valid is refused before the body is even parsed), 503 when the Bot Framework's
signing keys cannot be fetched (the channel retries).

Unauthenticated (local, Emulator) mode trusts nothing in an activity, so the URLs the bot would
call must be loopback: an activity whose ``serviceUrl`` is not gets 400, and a file whose
download URL is not is answered "I can't read it" by the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, astuple
from typing import Any

from botbuilder.schema import Activity

from bots.http import HttpRequest, HttpResponse, Route, Routes, parse_json
from bots.teams.auth import (
    AuthUnavailable,
    TeamsAuthenticator,
    Unauthorized,
    bot_identity,
    prewarm_signing_keys,
    require_credentials,
)
from bots.teams.events import Action, TeamsEvent, from_activity, is_loopback_url
from core.config import Settings
from core.jobs import Job, turn_to_payload

log = logging.getLogger(__name__)

MESSAGES_PATH = "/api/messages"
TEAMS_MESSAGE = "teams.message"
TEAMS_WELCOME = "teams.welcome"
TEAMS_SUMMARIZE = "teams.summarize"
TEAMS_FORGET = "teams.forget"
TEAMS_FILE = "teams.file"
TEAMS_FEEDBACK = "teams.feedback"
_JOB_KINDS = {
    Action.ANSWER: TEAMS_MESSAGE,
    Action.WELCOME: TEAMS_WELCOME,
    Action.SUMMARIZE: TEAMS_SUMMARIZE,
    Action.FORGET: TEAMS_FORGET,
    Action.FEEDBACK: TEAMS_FEEDBACK,
}


def teams_route(
    settings: Settings,
    enqueue: Callable[[Job], None],
    *,
    allow_unauthenticated: bool,
    prewarm_keys: bool = False,
) -> Route:
    """The route; raises ConfigError at build time when credentials are required but missing
    or inconsistent (``allow_unauthenticated`` is for the local host only). ``prewarm_keys``:
    fetch the Bot Framework's signing keys now, in the background, so the first activity need
    not wait for them (a host's choice; tests that script the key endpoint leave it off)."""
    identity = bot_identity(settings) if allow_unauthenticated else require_credentials(settings)
    authenticator = TeamsAuthenticator(identity)
    allowed_channels = {"msteams"} | ({"emulator"} if not authenticator.enabled else set())
    if not authenticator.enabled:
        log.warning("teams ingress runs unauthenticated (no MICROSOFT_APP_ID): local use only")
    elif prewarm_keys:
        prewarm_signing_keys()

    def route(request: HttpRequest) -> HttpResponse:
        auth_header = request.header("authorization")
        if authenticator.enabled:
            try:  # before the body is parsed: a forged token costs nothing
                authenticator.screen(auth_header)
            except Unauthorized as exc:
                log.warning("teams request rejected: bad token", extra={"detail": str(exc)})
                return HttpResponse.error(401, "unauthorized")
        try:
            body = parse_activity_json(request.body)
            activity = Activity().deserialize(body)
        except ValueError as exc:  # MalformedJson, msrest's DeserializationError
            log.warning("teams request rejected: not an activity", extra={"detail": str(exc)})
            return HttpResponse.error(400, "malformed activity")
        if not authenticator.enabled and not is_loopback_url(activity.service_url):
            log.warning("teams request rejected: unauthenticated serviceUrl is not loopback")
            return HttpResponse.error(400, "serviceUrl must be a loopback URL in this mode")
        try:
            authenticator.authenticate(activity, auth_header)
        except Unauthorized as exc:
            log.warning("teams request rejected: bad token", extra={"detail": str(exc)})
            return HttpResponse.error(401, "unauthorized")
        except AuthUnavailable:
            return HttpResponse.error(503, "cannot validate tokens right now")
        if not isinstance(activity.channel_id, str) or activity.channel_id not in allowed_channels:
            # Direct Line, Web Chat and the rest share the Bot Framework's tokens but let their
            # clients write fields (attachments, tenant) that Teams itself vouches for.
            log.warning(
                "activity from another channel ignored",
                extra={"channel": str(activity.channel_id)[:64]},
            )
            return HttpResponse(200)
        try:
            event = from_activity(
                activity, download_allowed=None if authenticator.enabled else is_loopback_url
            )
        except ValueError as exc:  # fields of the wrong type, an id a ConversationKey cannot hold
            log.warning("teams activity not understood", extra={"detail": str(exc)})
            return HttpResponse.error(400, "malformed activity")
        if event.action is Action.IGNORE:
            log.debug("teams activity ignored", extra={"reason": event.reason})
            return HttpResponse(200)
        jobs = file_jobs(event)  # first: a question sent with a file is answered after reading it
        if not (event.turn is not None and event.turn.files and not event.turn.text):
            jobs.append(to_job(event))
        for job in jobs:
            enqueue(job)
            log.info(
                "teams activity enqueued",
                extra={"activity_id": activity.id, "job_id": job.dedupe_id, "job_kind": job.kind},
            )
        return HttpResponse(200 if event.action is Action.FEEDBACK else 202)

    return route


def install_ingress(
    routes: Routes,
    enqueue: Callable[[Job], None],
    settings: Settings,
    *,
    allow_unauthenticated: bool,
    prewarm_keys: bool = False,
) -> None:
    routes.add(
        "POST",
        MESSAGES_PATH,
        teams_route(
            settings,
            enqueue,
            allow_unauthenticated=allow_unauthenticated,
            prewarm_keys=prewarm_keys,
        ),
    )


def parse_activity_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object with what every reply needs (a conversation, a serviceUrl);
    ValueError (MalformedJson for a body that is not bounded JSON) otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None
    body = parse_json(text)
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    if not isinstance(body.get("type"), str):
        raise ValueError("activity has no type")
    conversation = body.get("conversation")
    if not isinstance(conversation, dict) or not conversation.get("id"):
        raise ValueError("activity has no conversation")
    if not isinstance(body.get("serviceUrl"), str) or not body["serviceUrl"]:
        raise ValueError("activity has no serviceUrl")
    # msrest turns a list or a number into its Python repr where a string belongs: the fields
    # that become ids and names are checked before it can.
    for where, fields in _TEXT_FIELDS:
        holder = body if where is None else body.get(where)
        if holder is None:
            continue
        if not isinstance(holder, dict):
            raise ValueError(f"activity {where} is not an object")
        for name in fields:
            if not isinstance(holder.get(name), str | None):
                raise ValueError(f"activity {where or ''}.{name} is not a string")
    return body


_TEXT_FIELDS: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    (None, ("id", "channelId", "text", "replyToId", "locale", "name")),
    ("conversation", ("id", "conversationType", "tenantId", "name")),
    ("from", ("id", "name", "aadObjectId")),
    ("recipient", ("id", "name")),
)


def to_job(event: TeamsEvent) -> Job:
    assert event.key is not None and event.reply is not None
    payload: dict[str, Any] = event.reply.to_payload()
    if event.turn is not None:
        payload["turn"] = turn_to_payload(event.turn)
    if event.feedback is not None:
        payload["feedback"] = event.feedback.to_payload()
        payload["key"] = list(astuple(event.key))
    return Job(_JOB_KINDS[event.action], event.key.id, event.dedupe_id, payload)


def file_jobs(event: TeamsEvent) -> list[Job]:
    if event.turn is None or event.key is None or event.reply is None:
        return []
    return [
        Job(
            TEAMS_FILE,
            event.key.id,
            f"{event.dedupe_id}:file:{file.file_id}",
            {**event.reply.to_payload(), "file": asdict(file), "key": list(astuple(event.key))},
        )
        for file in event.turn.files
    ]
