"""Teams ingress: ``POST /api/messages``: verify, translate, enqueue, ack. Nothing slow.

The Bot Framework expects the HTTP call to return quickly (within 15 s) and takes replies only
through the connector, so the answer is always an empty 2xx: 202 when a job was enqueued, 200
when the activity needs nothing. 400 for a body that is no activity, 401 for a bad token, 503
when the Bot Framework's signing keys cannot be fetched (the channel retries).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, astuple
from typing import Any

from botbuilder.schema import Activity

from bots.http import HttpRequest, HttpResponse, Route, Routes
from bots.teams.auth import (
    AuthUnavailable,
    TeamsAuthenticator,
    Unauthorized,
    bot_identity,
    require_credentials,
)
from bots.teams.events import Action, TeamsEvent, from_activity
from core.config import Settings
from core.jobs import Job, turn_to_payload

log = logging.getLogger(__name__)

MESSAGES_PATH = "/api/messages"
TEAMS_MESSAGE = "teams.message"
TEAMS_WELCOME = "teams.welcome"
TEAMS_SUMMARIZE = "teams.summarize"
TEAMS_FILE = "teams.file"
_JOB_KINDS = {
    Action.ANSWER: TEAMS_MESSAGE,
    Action.WELCOME: TEAMS_WELCOME,
    Action.SUMMARIZE: TEAMS_SUMMARIZE,
}


def teams_route(
    settings: Settings, enqueue: Callable[[Job], None], *, allow_unauthenticated: bool
) -> Route:
    """The route; raises ConfigError at build time when credentials are required but missing
    or inconsistent (``allow_unauthenticated`` is for the local host only)."""
    identity = bot_identity(settings) if allow_unauthenticated else require_credentials(settings)
    authenticator = TeamsAuthenticator(identity)
    allowed_channels = {"msteams"} | ({"emulator"} if not authenticator.enabled else set())
    if not authenticator.enabled:
        log.warning("teams ingress runs unauthenticated (no MICROSOFT_APP_ID): local use only")

    def route(request: HttpRequest) -> HttpResponse:
        try:
            body = parse_activity_json(request.body)
            activity = Activity().deserialize(body)
        except ValueError as exc:  # msrest's DeserializationError is a ValueError
            log.warning("teams request rejected: not an activity", extra={"detail": str(exc)})
            return HttpResponse.error(400, "malformed activity")
        try:
            authenticator.authenticate(activity, request.header("authorization"))
        except Unauthorized as exc:
            log.warning("teams request rejected: bad token", extra={"detail": str(exc)})
            return HttpResponse.error(401, "unauthorized")
        except AuthUnavailable:
            return HttpResponse.error(503, "cannot validate tokens right now")
        if activity.channel_id not in allowed_channels:
            # Direct Line, Web Chat and the rest share the Bot Framework's tokens but let their
            # clients write fields (attachments, tenant) that Teams itself vouches for.
            log.warning(
                "activity from another channel ignored", extra={"channel": activity.channel_id}
            )
            return HttpResponse(200)
        try:
            event = from_activity(activity)
        except ValueError as exc:  # e.g. an id a ConversationKey cannot hold
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
        return HttpResponse(202)

    return route


def install_ingress(
    routes: Routes,
    enqueue: Callable[[Job], None],
    settings: Settings,
    *,
    allow_unauthenticated: bool,
) -> None:
    routes.add(
        "POST",
        MESSAGES_PATH,
        teams_route(settings, enqueue, allow_unauthenticated=allow_unauthenticated),
    )


def parse_activity_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object with what every reply needs (a conversation, a serviceUrl)."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")
    if not isinstance(body.get("type"), str):
        raise ValueError("activity has no type")
    conversation = body.get("conversation")
    if not isinstance(conversation, dict) or not conversation.get("id"):
        raise ValueError("activity has no conversation")
    if not isinstance(body.get("serviceUrl"), str) or not body["serviceUrl"]:
        raise ValueError("activity has no serviceUrl")
    return body


def to_job(event: TeamsEvent) -> Job:
    assert event.key is not None and event.reply is not None
    payload: dict[str, Any] = event.reply.to_payload()
    if event.turn is not None:
        payload["turn"] = turn_to_payload(event.turn)
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
