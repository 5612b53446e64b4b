"""API Gateway (HTTP API v2 or REST v1) → the shared ingress routes → API Gateway.

A thin shell in the manner of Bolt's own Lambda adapter: translate the event into an
:class:`~bots.http.HttpRequest`, dispatch, translate the response back. The routes (with their
SQS client) are built once per container, on the first request: they need the credentials,
which are read from Secrets Manager then. Bolt is built only for a Slack request that needs it
(bots/slack/ingress.py), botbuilder only for a Teams request.

Under Lambda SnapStart (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``) the init phase runs once,
when a version is published, and every new container resumes from its snapshot: so init then
also imports what the first request would (Bolt, the Teams ingress) and builds the SQS client,
which moves that work out of every cold start. Credentials are still read after the restore,
never kept in the snapshot, and the ``random`` module is re-seeded after each restore so that
containers resumed from one snapshot do not share its state (botocore's and slack_sdk's retry
jitter use it).

The handler never raises: an exception would reach API Gateway as a bare 502. An event that is
not an API Gateway request (missing keys, wrong types, bad base64) is answered 400, and anything
unexpected 500, logged with the request id and the path.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import traceback
from collections.abc import Mapping
from functools import partial
from typing import Any

from bots.aws.settings import load_aws_settings
from bots.aws.sqs import SqsJobQueue
from bots.http import HttpRequest, HttpResponse, LazyRoute, Route, Routes
from core.config import Settings, load_settings
from core.observability import bind, configure_logging

log = logging.getLogger(__name__)
_routes: Routes | None = None
_queue: SqsJobQueue | None = None  # built at init under SnapStart, else with the routes
TEAMS_NOT_CONFIGURED = "Teams is not configured: this host never accepts unauthenticated activities"
SNAP_START = "snap-start"  # AWS_LAMBDA_INITIALIZATION_TYPE of a SnapStart function's init


def build_routes(settings: Settings) -> Routes:
    routes = Routes()
    queue = _queue or SqsJobQueue(settings.queue_url, region=settings.aws_region)
    slack = bool(settings.slack_signing_secret and settings.slack_bot_token)
    teams = bool(settings.microsoft_app_id or settings.microsoft_app_password)
    _log_platforms(settings, slack=slack, teams=teams)
    if slack:
        from bots.slack.ingress import build_bolt_app, slack_route

        # Events are enqueued without Bolt; the Bolt app is built for the first command,
        # shortcut or interaction.
        build_app = partial(build_bolt_app, settings, queue.enqueue)
        route = slack_route(build_app, settings.slack_signing_secret, enqueue=queue.enqueue)
        routes.add("POST", "/slack/events", route)

    if teams:
        # Built on the first Teams request, so botbuilder never lands on a Slack cold start.
        # Never unauthenticated here: incomplete credentials fail that build loudly.
        def build_teams() -> Route:
            from bots.teams.ingress import teams_route

            return teams_route(
                settings, queue.enqueue, allow_unauthenticated=False, prewarm_keys=True
            )

        routes.add("POST", "/api/messages", LazyRoute(build_teams))
    else:
        routes.add("POST", "/api/messages", lambda _: HttpResponse.error(503, TEAMS_NOT_CONFIGURED))
    return routes


def _log_platforms(settings: Settings, *, slack: bool, teams: bool) -> None:
    """One line per cold start about a platform left out: an ERROR only when it is a mistake
    (no platform at all, or half of Slack's credentials), INFO when a deployment simply serves
    one platform (its other route then answers 404 for Slack, 503 for Teams)."""
    half_slack = bool(settings.slack_signing_secret) != bool(settings.slack_bot_token)
    if half_slack:
        empty = "SLACK_BOT_TOKEN" if settings.slack_signing_secret else "SLACK_SIGNING_SECRET"
        log.error("Slack is not configured: %s is empty", empty)
    elif not (slack or teams):
        log.error(
            "Slack is not configured: SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are empty, and "
            "neither is Teams (MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD)"
        )
    elif not slack:
        log.info("Slack is not configured (SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN): Teams only")
    elif not teams:
        log.info("Teams is not configured (MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD): Slack only")


def prepare_snapshot() -> None:
    """SnapStart's init: import and build now what needs no credential, so that the snapshot
    holds it, and re-seed ``random`` after every restore."""
    global _queue
    configure_logging()
    import bots.slack.ingress
    import bots.teams.ingress  # botbuilder: free once it is in the snapshot

    bots.slack.ingress.import_bolt()
    settings = load_settings(env_file=None)  # the environment only: no secret in a snapshot
    _queue = SqsJobQueue(settings.queue_url, region=settings.aws_region)
    try:
        from snapshot_restore_py import register_after_restore  # Lambda's Python runtimes
    except ImportError:
        log.warning("SnapStart init without snapshot_restore_py: random is not re-seeded")
        return
    register_after_restore(random.seed)  # no argument: fresh entropy from os.urandom


class MalformedEvent(ValueError):
    """The event is not an API Gateway HTTP request."""


def handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    global _routes
    if _routes is None:
        configure_logging()
    request_id = str(getattr(context, "aws_request_id", "") or "")
    with bind(request_id=request_id):
        try:
            if _routes is None:
                _routes = build_routes(load_aws_settings())
            try:
                request = request_from_event(event)
            except MalformedEvent as exc:
                log.warning("event refused: not an API Gateway request", extra={"detail": str(exc)})
                return response_to_event(HttpResponse.error(400, "bad event"))
            return response_to_event(_routes.dispatch(request))
        except Exception as exc:  # noqa: BLE001 - the last guard: API Gateway would answer 502
            log.error(
                "ingress failed: unexpected error",
                extra={
                    "path": _path_for_log(event),
                    "error_type": type(exc).__name__,
                    "stack": "".join(traceback.format_tb(exc.__traceback__)),
                },
            )
            return response_to_event(HttpResponse.error(500, "internal error"))


def request_from_event(event: object) -> HttpRequest:
    """The request an HTTP API (v2) or REST API (v1) event carries; MalformedEvent otherwise."""
    if not isinstance(event, Mapping):
        raise MalformedEvent("event is not an object")
    context = _mapping(event, "requestContext")
    method = _mapping(context, "http").get("method") or event.get("httpMethod")
    path = event.get("rawPath") or event.get("path")
    if not (isinstance(method, str) and method and isinstance(path, str) and path):
        raise MalformedEvent("event has no method or path")
    body = event.get("body")
    if not isinstance(body, str | None):
        raise MalformedEvent("body is not a string")
    encoded = event.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise MalformedEvent("isBase64Encoded is not a boolean")
    try:
        raw = base64.b64decode(body or "", validate=True) if encoded else (body or "").encode()
    except ValueError as exc:  # binascii.Error, non-ASCII base64, a lone surrogate
        raise MalformedEvent(f"body cannot be read: {type(exc).__name__}") from None
    return HttpRequest(
        method=method,
        path=path,
        headers={k.lower(): v for k, v in _strings(event, "headers").items()},
        body=raw,
        query=_strings(event, "queryStringParameters"),
    )


def _mapping(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedEvent(f"{key} is not an object")
    return value


def _strings(parent: Mapping[str, Any], key: str) -> dict[str, str]:
    """A map of strings (headers, query), each valid Unicode; None values are left out."""
    pairs = {k: v for k, v in _mapping(parent, key).items() if v is not None}
    for name, value in pairs.items():
        if not (isinstance(name, str) and isinstance(value, str)):
            raise MalformedEvent(f"{key} holds a value that is not a string")
        try:
            name.encode(), value.encode()
        except UnicodeEncodeError:  # a lone surrogate: no HTTP request carries one
            raise MalformedEvent(f"{key} holds text that is not Unicode") from None
    return pairs


def _path_for_log(event: object) -> str:
    if not isinstance(event, Mapping):
        return ""
    path = event.get("rawPath") or event.get("path")
    return path[:256] if isinstance(path, str) else ""


def response_to_event(response: HttpResponse) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "body": response.body.decode("utf-8", errors="replace"),
        "isBase64Encoded": False,
    }


if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == SNAP_START:
    prepare_snapshot()
