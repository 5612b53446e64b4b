"""The Slack app manifest: the scopes its events need, and nothing it does not use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bots.slack.panel_jobs import PANEL_EVENTS
from core.config import MAX_SUGGESTED_PROMPTS, Settings

MANIFEST = Path(__file__).resolve().parents[1] / "manifest" / "slack" / "manifest.yml"

# The scope Slack's Events API reference lists for each bot event.
EVENT_SCOPE = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.mpim": "mpim:history",
    "message.im": "im:history",
    "file_shared": "files:read",
    "file_unshared": "files:read",
    "file_deleted": "files:read",
    # The assistant panel (Agents & AI Apps): its events come with the scope its methods need.
    "assistant_thread_started": "assistant:write",
    "assistant_thread_context_changed": "assistant:write",
}
# Scopes needed by Web API calls rather than events: replies, names, command and shortcut.
# Scopes for Web API calls the product makes (not for events): posting, names, the command,
# and conversations.info/members to check who may see a linked thread.
CALL_SCOPES = {"chat:write", "users:read", "commands", "channels:read", "groups:read"}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_bot_event_has_the_scope_it_needs(manifest: dict[str, Any]) -> None:
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert set(events) == set(EVENT_SCOPE)
    assert {EVENT_SCOPE[e] for e in events} <= scopes


def test_no_scope_beyond_what_the_product_uses(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert len(scopes) == len(set(scopes))
    assert set(scopes) == set(EVENT_SCOPE.values()) | CALL_SCOPES


def test_summarize_command_and_thread_shortcut(manifest: dict[str, Any]) -> None:
    command, _ = manifest["features"]["slash_commands"]
    assert command["command"] == "/summarize"
    assert command["usage_hint"] == "[24h | 7d | 200 | <thread link> | file [name]]"
    assert command["should_escape"] is False
    (shortcut,) = manifest["features"]["shortcuts"]
    assert (shortcut["type"], shortcut["callback_id"]) == ("message", "summarize_thread")
    assert shortcut["name"] == "Summarize thread"


def test_forget_command_sits_next_to_summarize(manifest: dict[str, Any]) -> None:
    commands = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert list(commands) == ["/summarize", "/forget"]
    forget = commands["/forget"]
    assert "usage_hint" not in forget  # it takes no argument
    assert forget["should_escape"] is False
    assert "forget" in forget["description"].lower()
    assert forget["url"] == commands["/summarize"]["url"]


def test_every_request_url_is_the_one_slack_endpoint(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    urls = {
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        *(c["url"] for c in manifest["features"]["slash_commands"]),
    }
    assert urls == {"https://YOUR-API-ID.execute-api.REGION.amazonaws.com/slack/events"}
    assert settings["interactivity"]["is_enabled"] is True


def test_settings_for_an_http_deployment(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    assert manifest["features"]["bot_user"]["always_online"] is False
    app_home = manifest["features"]["app_home"]
    assert app_home["messages_tab_enabled"] is True  # people can DM the assistant
    assert app_home["messages_tab_read_only_enabled"] is False


def test_the_assistant_panel_is_turned_on_with_the_default_prompts(
    manifest: dict[str, Any],
) -> None:
    view = manifest["features"]["assistant_view"]
    assert 0 < len(view["assistant_description"]) <= 200
    prompts = [(p["title"], p["message"]) for p in view["suggested_prompts"]]
    assert len(prompts) <= MAX_SUGGESTED_PROMPTS
    assert tuple(prompts) == Settings().slack_suggested_prompts  # one list, not two to drift
    assert prompts[0] == ("Summarize this channel", "Summarize this channel")


def test_the_panel_events_are_the_ones_the_ingress_routes(manifest: dict[str, Any]) -> None:
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert events >= PANEL_EVENTS
    assert "message.im" in events  # a panel thread's messages
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"assistant:write", "chat:write", "im:history"} <= scopes


def test_feedback_clicks_reach_the_endpoint(manifest: dict[str, Any]) -> None:
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert (
        interactivity["request_url"] == manifest["settings"]["event_subscriptions"]["request_url"]
    )
