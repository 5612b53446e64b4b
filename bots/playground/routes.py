"""The playground's routes on the local host: the page, its JSON actions, the change stream,
and the emulators the bot calls.

Every answer's status is chosen on purpose: 400 with a readable ``error`` for anything the page
sent that Slack or Teams would not take (bad JSON, an unknown channel, an empty message), 413
for a file over the playground's own memory cap (:data:`MEMORY_CAP_FACTOR` times the bot's
limit; a file over the bot's limit and under this cap is shared, and the bot refuses it in the
chat as in Slack), 409 for a half of the playground that is off (with the reason), 502
when the host's own ``/slack/events`` or ``/api/messages`` refused what the playground sent
(which would be a bug: the message says what it answered). The guard (bots/local/guard.py) has
already checked the token, the Host and Origin and the JSON content type.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bots.http import HttpRequest, HttpResponse, MalformedJson, Routes, parse_json
from bots.playground import PlaygroundSetup
from bots.playground.hub import Hub
from bots.playground.slack_api import API_PREFIX, FILES_PREFIX, RESPONSE_PREFIX, SlackApi
from bots.playground.slack_client import DeliveryFailed, SlackClient
from bots.playground.slack_wire import BadInput, OverMemoryCap
from bots.playground.slack_workspace import BOT_NAME, BOT_USER_ID, PERSON, SlackWorkspace
from bots.playground.teams_connector import CONNECTOR_PREFIX, TeamsPlayground
from bots.playground.teams_connector import BadInput as TeamsBadInput
from bots.playground.teams_connector import DeliveryFailed as TeamsDeliveryFailed
from bots.playground.usage import UsagePanel

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/playground/static/"
_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
# The page's own scripts and styles only; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL holds the token
    "Cache-Control": "no-store",
}
# The playground keeps uploads in memory: it takes files up to this many times the bot's own
# limit (CHATBOT_MAX_FILE_MB), so that the bot's refusal of a larger file can be tried, and
# refuses larger ones itself (413, saying it is the playground's cap).
MEMORY_CAP_FACTOR = 4
BASE64_OVERHEAD = 4 / 3
JSON_ENVELOPE_BYTES = 64 * 1024  # the upload's other fields, and base64 line slack

Action = Callable[[dict[str, Any]], dict[str, Any]]


class Playground:
    """The playground of one server run: the hub, the emulators, the usage panel."""

    def __init__(self, setup: PlaygroundSetup, *, max_file_bytes: int) -> None:
        self.setup = setup
        self.hub = Hub()
        self.usage = UsagePanel(self.hub)
        self.max_file_bytes = max_file_bytes
        self.memory_cap_bytes = MEMORY_CAP_FACTOR * max_file_bytes
        settings = setup.settings
        self.slack: SlackClient | None = None
        self.slack_workspace: SlackWorkspace | None = None
        self.slack_api: SlackApi | None = None
        if setup.slack_off is None:
            self.slack_workspace = SlackWorkspace(self.hub, setup.base_url)
            self.slack_api = SlackApi(self.slack_workspace, settings.slack_bot_token)
            self.slack = SlackClient(
                self.slack_api,
                events_url=setup.base_url + "/slack/events",
                signing_secret=settings.slack_signing_secret,
            )
        self.teams = TeamsPlayground(self.hub, base_url=setup.base_url)

    def install(self, routes: Routes) -> None:
        routes.add("GET", "/", self._index)
        routes.add("GET", STATIC_PREFIX, self._static, prefix=True)
        routes.add("GET", "/playground/state", lambda _: HttpResponse.json(200, self.snapshot()))
        routes.add("GET", "/playground/events", self._events)
        routes.add("POST", "/playground/reset", self._reset)
        upload_limit = int(self.memory_cap_bytes * BASE64_OVERHEAD) + JSON_ENVELOPE_BYTES
        slack, slack_off, teams_off = self.slack, self.setup.slack_off, self.setup.teams_off
        actions: dict[str, tuple[Action | None, str | None]] = {
            "/playground/teams/messages": (self.teams.message, teams_off),
            "/playground/teams/feedback": (self.teams.feedback, teams_off),
        }
        for name in ("messages", "commands", "shortcut", "feedback", "assistant"):
            method = {"messages": "message", "commands": "command"}.get(name, name)
            found = getattr(slack, method) if slack is not None else None
            actions[f"/playground/slack/{name}"] = (found, slack_off)
        for path, (action, off) in actions.items():
            routes.add("POST", path, _action(action, off))
        upload = None
        if slack is not None:
            upload = lambda body: slack.file(  # noqa: E731
                body, max_bytes=self.max_file_bytes, memory_cap=self.memory_cap_bytes
            )
        routes.add(
            "POST",
            "/playground/slack/files",
            _action(upload, self.setup.slack_off),
            max_body=upload_limit,
        )
        if self.slack_api is not None:
            api = self.slack_api
            routes.add("POST", API_PREFIX, api.api, prefix=True)
            routes.add("GET", API_PREFIX, api.api, prefix=True)
            routes.add("GET", FILES_PREFIX, api.download, prefix=True)
            routes.add("POST", RESPONSE_PREFIX, api.response_url, prefix=True)
        if self.setup.teams_off is None:
            # /playground/teams/<secret>/v3/...: the connector checks the secret (the route
            # names only the prefix, so the secret never appears in the logged route list).
            for method in ("POST", "PUT", "DELETE"):
                routes.add(method, CONNECTOR_PREFIX, self.teams.connector, prefix=True)

    def snapshot(self) -> dict[str, Any]:
        """Everything the page draws, and the sequence number of the last change it reflects
        (changes with a higher number come after it on the stream)."""
        workspace = self.slack_workspace
        slack: dict[str, Any] = {"enabled": workspace is not None}
        with contextlib.ExitStack() as held:  # no change can land between the parts and seq
            if workspace is not None:
                held.enter_context(workspace.lock)
            held.enter_context(self.teams.lock)
            held.enter_context(self.usage.lock)
            if workspace is None:
                slack["disabled_reason"] = self.setup.slack_off
            else:
                slack.update(workspace.snapshot())
            teams = self.teams.snapshot()
            answers = self.usage.answers()
            seq = self.hub.seq
        teams["enabled"] = self.setup.teams_off is None
        if self.setup.teams_off is not None:
            teams["disabled_reason"] = self.setup.teams_off
        return {
            "run": self.hub.run,
            "seq": seq,
            "bot": {"slack_user_id": BOT_USER_ID, "name": BOT_NAME},
            "user": {"id": PERSON, "name": "You"},
            "slack": slack,
            "teams": teams,
            "answers": answers,
            "limits": {
                "max_file_bytes": self.max_file_bytes,
                "upload_cap_bytes": self.memory_cap_bytes,
            },
            "llm": self.setup.settings.llm,
        }

    def reset(self) -> None:
        if self.slack_workspace is not None:
            self.slack_workspace.reset()
        self.teams.reset()
        self.usage.reset()
        self.hub.publish({"type": "reset"})

    def close(self) -> None:
        self.hub.close()

    # routes ------------------------------------------------------------------------------

    def _index(self, request: HttpRequest) -> HttpResponse:
        page = STATIC_DIR / "index.html"
        try:
            body = page.read_bytes()
        except OSError:
            return HttpResponse.error(503, "the playground page is not installed")
        headers = {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS}
        return HttpResponse(200, body, headers)

    def _static(self, request: HttpRequest) -> HttpResponse:
        name = request.path[len(STATIC_PREFIX) :]
        if not name or "/" in name or "\\" in name or name.startswith("."):
            return HttpResponse.error(404, "no such file")
        suffix = Path(name).suffix.lower()
        content_type = _STATIC_TYPES.get(suffix) or mimetypes.guess_type(name)[0]
        path = STATIC_DIR / name
        if content_type is None or not path.is_file():
            return HttpResponse.error(404, "no such file")
        headers = {"Content-Type": content_type, **SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return HttpResponse(200, path.read_bytes(), headers)

    def _events(self, request: HttpRequest) -> HttpResponse:
        last = request.header("last-event-id") or request.query.get("last_event_id", "")
        return HttpResponse(
            200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            },
            stream=self.hub.stream(last),
        )

    def _reset(self, request: HttpRequest) -> HttpResponse:
        self.reset()
        return HttpResponse.json(200, {"ok": True})


def _action(action: Action | None, off: str | None) -> Callable[[HttpRequest], HttpResponse]:
    """A page action as a route: the JSON body in, its answer out, errors mapped to statuses."""

    def route(request: HttpRequest) -> HttpResponse:
        if action is None or off is not None:
            return HttpResponse.json(409, {"ok": False, "error": off or "this view is off"})
        try:
            body = parse_json(request.body)
        except MalformedJson as exc:
            return _refusal(400, f"the request body is not JSON ({exc})")
        if not isinstance(body, dict):
            return _refusal(400, "the request body must be a JSON object")
        try:
            return HttpResponse.json(200, action(body))
        except OverMemoryCap as exc:
            return _refusal(413, str(exc))
        except (BadInput, TeamsBadInput) as exc:
            return _refusal(400, str(exc))
        except (DeliveryFailed, TeamsDeliveryFailed) as exc:
            log.error("playground delivery failed", extra={"path": request.path})
            return _refusal(502, str(exc))

    return route


def _refusal(status: int, message: str) -> HttpResponse:
    return HttpResponse.json(status, {"ok": False, "error": message})
