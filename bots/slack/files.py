"""Slack files: what a share or deletion asks of the worker, and the download itself.

The download sends the bot token, so it only ever goes to Slack's own file hosts (or, for
tests and proxies, the host of ``SLACK_API_URL``), and a redirect is followed only to such a
host: the token never leaves Slack. Slack answers a download it refuses with its HTML login
page and status 200; that is recognised and reported as a refusal, not indexed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bots.downloads import UrlCheck, fetch
from bots.slack.events import PLATFORM, _file
from core.domain import ConversationKey, FileRef
from core.files.types import DownloadRefused


@dataclass(frozen=True, slots=True)
class SharedFile:
    file: FileRef
    key: ConversationKey  # where the share happened; its scope is where the file may answer
    channel: str
    thread_ts: str | None  # where to say "ready"; None: top level of a DM
    ts: str


def shared_files(body: Mapping[str, Any]) -> list[SharedFile]:
    """Files shared by a person in a ``message`` event (subtype ``file_share``)."""
    event = body.get("event") or {}
    # A share reaches us as ``message``/``file_share``, and, when it also mentions the bot, as
    # ``app_mention`` with the same files: either may come first, and both map to the same
    # file jobs (same dedupe ids), so the file is read before the question whichever wins.
    is_share = event.get("type") == "message" and event.get("subtype") == "file_share"
    is_mention_with_files = event.get("type") == "app_mention" and bool(event.get("files"))
    if not (is_share or is_mention_with_files):
        return []
    if event.get("bot_id"):
        return []
    team = body.get("team_id") or event.get("team")
    channel, ts = event.get("channel"), event.get("ts")
    if not (team and channel and ts):
        return []
    thread_ts = event.get("thread_ts")
    is_dm = event.get("channel_type") == "im"
    key_thread = thread_ts or ("dm" if is_dm else ts)
    reply_thread = thread_ts if is_dm else (thread_ts or ts)
    key = ConversationKey(PLATFORM, str(team), str(channel), str(key_thread))
    return [
        SharedFile(_file(f), key, str(channel), reply_thread, str(ts))
        for f in event.get("files") or ()
        if f.get("id") and f.get("mode") not in ("tombstone", "hidden_by_limit")
    ]


@dataclass(frozen=True, slots=True)
class FileRemoval:
    platform_workspace: str
    file_id: str
    channel: str | None  # None: deleted everywhere


def file_removal(body: Mapping[str, Any]) -> FileRemoval | None:
    event = body.get("event") or {}
    kind = event.get("type")
    if kind not in ("file_deleted", "file_unshared"):
        return None
    team = body.get("team_id")
    file_id = event.get("file_id") or (event.get("file") or {}).get("id")
    if not (team and file_id):
        return None
    channel = event.get("channel_id") if kind == "file_unshared" else None
    return FileRemoval(f"{PLATFORM}#{team}", str(file_id), str(channel) if channel else None)


def download(file: FileRef, token: str, *, api_url: str, max_bytes: int) -> bytes:
    """The file's bytes, at most ``max_bytes``; raises DownloadRefused or FileTooLarge."""
    data, content_type = fetch(
        file,
        allowed=slack_hosts(api_url),
        max_bytes=max_bytes,
        headers={"Authorization": f"Bearer {token}"},
        refused_hint="Make sure I'm a member of this channel.",
    )
    if content_type.startswith("text/html") and not file.name.lower().endswith((".html", ".htm")):
        raise DownloadRefused(
            "download answered with an HTML page (Slack's login page)",
            user_message=(
                f"I can't read {file.name}: Slack didn't let me download it. "
                "Make sure I'm a member of this channel and have the files:read scope."
            ),
        )
    return data


def slack_hosts(api_url: str) -> UrlCheck:
    """https to Slack's own hosts, or exactly the scheme, host and port of ``SLACK_API_URL``."""
    api = urlsplit(api_url)

    def allowed(url: str) -> bool:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com")):
            return True
        return (parts.scheme, host, parts.port) == (api.scheme, api.hostname, api.port)

    return allowed
