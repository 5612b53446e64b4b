"""API Gateway (HTTP API v2 or REST v1) → the shared ingress routes → API Gateway.

A thin shell in the manner of Bolt's own Lambda adapter: translate the event into an
:class:`~bots.http.HttpRequest`, dispatch, translate the response back. The routes (with their
Bolt app and SQS client) are built once per container, on the first request.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Any

from bots.aws.settings import load_aws_settings
from bots.aws.sqs import SqsJobQueue
from bots.http import HttpRequest, HttpResponse, LazyRoute, Route, Routes
from core.config import Settings
from core.observability import bind, configure_logging

log = logging.getLogger(__name__)
_routes: Routes | None = None
TEAMS_NOT_CONFIGURED = "Teams is not configured: this host never accepts unauthenticated activities"


def build_routes(settings: Settings) -> Routes:
    routes = Routes()
    queue = SqsJobQueue(settings.queue_url, region=settings.aws_region)
    if settings.slack_signing_secret and settings.slack_bot_token:
        from bots.slack.ingress import build_bolt_app, slack_route

        app = build_bolt_app(settings, queue.enqueue)
        routes.add("POST", "/slack/events", slack_route(app, settings.slack_signing_secret))
    else:
        log.error("Slack is not configured: SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are empty")

    if settings.microsoft_app_id or settings.microsoft_app_password:
        # Built on the first Teams request, so botbuilder never lands on a Slack cold start.
        # Never unauthenticated here: incomplete credentials fail that build loudly.
        def build_teams() -> Route:
            from bots.teams.ingress import teams_route

            return teams_route(settings, queue.enqueue, allow_unauthenticated=False)

        routes.add("POST", "/api/messages", LazyRoute(build_teams))
    else:
        log.error("Teams is not configured: MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD are empty")
        routes.add("POST", "/api/messages", lambda _: HttpResponse.error(503, TEAMS_NOT_CONFIGURED))
    return routes


def handler(event: Mapping[str, Any], context: object) -> dict[str, Any]:
    global _routes
    if _routes is None:
        configure_logging()
        _routes = build_routes(load_aws_settings())
    request_id = str(getattr(context, "aws_request_id", "") or "")
    with bind(request_id=request_id):
        request = request_from_event(event)
        response = _routes.dispatch(request) if request else HttpResponse.error(400, "bad event")
        return response_to_event(response)


def request_from_event(event: Mapping[str, Any]) -> HttpRequest | None:
    context = event.get("requestContext") or {}
    method = (context.get("http") or {}).get("method") or event.get("httpMethod")
    path = event.get("rawPath") or event.get("path")
    if not method or not path:
        return None
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else str(body).encode()
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
    return HttpRequest(method=str(method), path=str(path), headers=headers, body=raw, query=query)


def response_to_event(response: HttpResponse) -> dict[str, Any]:
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "body": response.body.decode("utf-8", errors="replace"),
        "isBase64Encoded": False,
    }
