"""The browser playground: try the product with no Slack, Teams or AWS account.

``chatbot serve`` on its defaults also serves a page (``/?token=...``) with a Slack-like and a
Teams-like workspace. The page never calls the core: what the person does becomes what Slack
or Teams would send (signed Events API callbacks, slash commands and interactivity payloads to
``/slack/events``; Activities to ``/api/messages``), and the bot's answers go out through its
real Slack and Bot Framework clients to emulators inside this host (:mod:`.slack_api`,
:mod:`.teams_connector`), which push every change to the page (:mod:`.hub`). So the playground
runs the production code paths, and its emulators are also fixtures for end-to-end tests.

:func:`prepare` decides which halves run: the Slack half when the operator configured no Slack
app (the host then runs the Slack adapter with a per-run signing secret and bot token against
the emulator), the Teams half when Teams runs unauthenticated on loopback. A half that does not
run says why on the page.

Its workspaces live in memory, so a job a previous run left in the queue file for them (the
server stopped mid-answer: ``chatbot serve`` closes its socket, and with it the emulators,
before it drains) can only fail against the new, empty workspace, leaving a stray apology:
:func:`left_for_playground` names such jobs, and the local host drops them at start.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

from core.config import Settings
from core.jobs import Job

SLACK_TAKEN = (
    "Slack is configured for a real workspace (SLACK_SIGNING_SECRET / SLACK_BOT_TOKEN), so "
    "/slack/events belongs to that app: the playground's Slack view is off. Unset them to use it."
)
TEAMS_TAKEN = (
    "Teams is configured with MICROSOFT_APP_ID, so /api/messages takes only the Bot Framework's "
    "signed requests: the playground's Teams view is off. Unset it to use it."
)
TEAMS_NOT_LOOPBACK = (
    "The playground's Teams view needs the server on 127.0.0.1 (unauthenticated Teams is "
    "allowed on loopback only)."
)


@dataclass(frozen=True)
class PlaygroundSetup:
    """What :func:`prepare` decided: the settings the host runs with, and each half's state
    (None: it runs; else why not)."""

    settings: Settings
    base_url: str
    slack_off: str | None
    teams_off: str | None


def prepare(settings: Settings, base_url: str, *, teams_unauthenticated: bool) -> PlaygroundSetup:
    """The host's settings with the Slack adapter pointed at the emulator, unless the operator
    configured Slack. The secrets are this run's, random, and never printed."""
    slack_off = SLACK_TAKEN if settings.slack_signing_secret or settings.slack_bot_token else None
    if slack_off is None:
        settings = replace(
            settings,
            slack_signing_secret=secrets.token_hex(16),
            slack_bot_token="xoxb-playground-" + secrets.token_hex(12),
            slack_api_url=f"{base_url}/playground/slack/api/",
            slack_app_token="",  # Socket Mode would connect to the real Slack
        )
    teams_off = None
    if settings.microsoft_app_id:
        teams_off = TEAMS_TAKEN
    elif not teams_unauthenticated:
        teams_off = TEAMS_NOT_LOOPBACK
    return PlaygroundSetup(settings, base_url, slack_off, teams_off)


def left_for_playground(job: Job) -> bool:
    """Whether ``job`` targets a playground workspace (its group starts with the platform and
    the workspace: ``slack#T-PLAYGROUND#...``, ``teams#playground-tenant#...``)."""
    from bots.playground.slack_workspace import TEAM_ID
    from bots.playground.teams_connector import TENANT

    return job.group.startswith((f"slack#{TEAM_ID}#", f"teams#{TENANT}#"))
