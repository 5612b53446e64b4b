"""Build Slack's inbound requests the way Slack sends them: bodies, and real v0 signatures.

Every builder returns ``(body_bytes, headers)``, ready to hand to a Bolt app, the local host or a
Lambda event. Signatures use Slack's real algorithm (``v0=`` + hex HMAC-SHA256 of
``v0:{timestamp}:{body}`` keyed by the signing secret), so the verifier under test runs
unchanged; :data:`DEFAULT_SIGNING_SECRET` matches what the ``slack_standin`` fixture puts in
``SLACK_SIGNING_SECRET``.

Event payloads carry the fields Slack documents for them (``event_id``, ``event_time``,
``authorizations``, ``event_ts``, ``client_msg_id``, ...), but no ``blocks``: code under test
should read ``text``. Timestamps come from :func:`new_ts`, which the Slack stand-in shares, so
every ``ts`` in one test run is unique and increasing, shaped like ``"1700000100.000100"``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlencode

DEFAULT_SIGNING_SECRET = "test-signing-secret-dummy"
DEFAULT_TEAM = "T1"
DEFAULT_BOT_USER = "UBOT"
DEFAULT_API_APP_ID = "A0STANDIN"
VERIFICATION_TOKEN = "verification-token-dummy"  # deprecated by Slack; still sent in bodies

Headers = dict[str, str]
Request = tuple[bytes, Headers]

# --- timestamps ---------------------------------------------------------------------------

_ts_lock = threading.Lock()
_last_micros = 0
_ids = itertools.count(1)


def ts_to_micros(ts: str) -> int:
    """``"1700000100.000100"`` -> microseconds since the epoch. Raises ValueError if malformed."""
    seconds, _, fraction = ts.partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > 6:
        raise ValueError(f"not a Slack ts: {ts!r}")
    return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0") or "0")


def micros_to_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def new_ts() -> str:
    """A fresh message ts: the wall clock, nudged so that each value exceeds every earlier one
    (from this function or passed to :func:`observe_ts`)."""
    global _last_micros
    with _ts_lock:
        _last_micros = max(time.time_ns() // 1000, _last_micros + 1)
        return micros_to_ts(_last_micros)


def observe_ts(ts: str) -> None:
    """Make later :func:`new_ts` values larger than ``ts`` (for explicitly chosen ts values)."""
    global _last_micros
    with _ts_lock:
        _last_micros = max(_last_micros, ts_to_micros(ts))


def _unique_suffix(length: int = 10) -> str:
    return f"{next(_ids):04d}{uuid.uuid4().hex.upper()}"[:length]


def new_event_id() -> str:
    return "Ev" + _unique_suffix()


def new_trigger_id() -> str:
    return f"{int(time.time())}.{next(_ids)}.{uuid.uuid4().hex}"


def new_response_url(team: str = DEFAULT_TEAM) -> str:
    # Never dialled by tests (the network guard would refuse); tests read it back.
    return f"https://hooks.slack.com/commands/{team}/{next(_ids)}/{uuid.uuid4().hex[:24]}"


# --- signatures ---------------------------------------------------------------------------


def signature(body: bytes, secret: str, timestamp: int) -> str:
    base = b"v0:" + str(timestamp).encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def signed_headers(body: bytes, secret: str, timestamp: int | None = None) -> Headers:
    """``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` for ``body`` (now, by default;
    pass an old ``timestamp`` to build a replayed request)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": signature(body, secret, ts),
    }


def _json_request(payload: dict[str, Any], secret: str, timestamp: int | None) -> Request:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    headers.update(signed_headers(body, secret, timestamp))
    return body, headers


def _form_request(fields: dict[str, str], secret: str, timestamp: int | None) -> Request:
    body = urlencode(fields).encode("utf-8")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    headers.update(signed_headers(body, secret, timestamp))
    return body, headers


# --- Events API ---------------------------------------------------------------------------


def event_callback(
    event: dict[str, Any],
    team: str = DEFAULT_TEAM,
    event_id: str | None = None,
    bot_user: str = DEFAULT_BOT_USER,
    retry_num: int | None = None,
    retry_reason: str | None = None,
    *,
    secret: str = DEFAULT_SIGNING_SECRET,
    timestamp: int | None = None,
    api_app_id: str = DEFAULT_API_APP_ID,
) -> Request:
    """An ``event_callback`` envelope around ``event``. ``retry_num`` adds Slack's retry
    headers (``X-Slack-Retry-Reason`` defaults to ``http_timeout``); reuse ``event_id`` to build
    the retry of an earlier delivery."""
    now = int(time.time())
    payload = {
        "token": VERIFICATION_TOKEN,
        "team_id": team,
        "context_team_id": team,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": now,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team,
                "user_id": bot_user,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + uuid.uuid4().hex,
    }
    body, headers = _json_request(payload, secret, timestamp)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return body, headers


def url_verification(
    challenge: str | None = None,
    *,
    secret: str = DEFAULT_SIGNING_SECRET,
    timestamp: int | None = None,
) -> Request:
    """The signed handshake Slack sends when the Request URL is saved; answer ``challenge``."""
    payload = {
        "token": VERIFICATION_TOKEN,
        "challenge": challenge or uuid.uuid4().hex,
        "type": "url_verification",
    }
    return _json_request(payload, secret, timestamp)


def app_mention(
    text: str,
    channel: str = "C1",
    user: str = "U1",
    ts: str | None = None,
    thread_ts: str | None = None,
    *,
    team: str = DEFAULT_TEAM,
) -> dict[str, Any]:
    """An ``app_mention`` event; ``text`` should contain ``<@UBOT>`` as Slack's does."""
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "client_msg_id": str(uuid.uuid4()),
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event


def message(
    text: str,
    channel: str = "C1",
    user: str | None = "U1",
    ts: str | None = None,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    subtype: str | None = None,
    bot_id: str | None = None,
    files: list[dict[str, Any]] | None = None,
    *,
    team: str = DEFAULT_TEAM,
) -> dict[str, Any]:
    """A ``message`` event (``channel_type`` ``"im"`` for a DM, ``subtype`` e.g.
    ``"file_share"``, ``"bot_message"``, ``"message_changed"``; ``user=None`` omits it)."""
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if user is not None:
        event["user"] = user
    if subtype is None and bot_id is None:
        event["client_msg_id"] = str(uuid.uuid4())
    if subtype is not None:
        event["subtype"] = subtype
    if bot_id is not None:
        event["bot_id"] = bot_id
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
        if user is not None:
            event["parent_user_id"] = user
    if files is not None:
        event["files"] = files
        event["upload"] = False
        event["display_as_bot"] = False
    return event


# --- interactivity ------------------------------------------------------------------------


def slash_command(
    command: str = "/summarize",
    text: str = "",
    channel: str = "C1",
    user: str = "U1",
    team: str = DEFAULT_TEAM,
    trigger_id: str | None = None,
    response_url: str | None = None,
    *,
    channel_name: str = "general",
    user_name: str = "ada",
    secret: str = DEFAULT_SIGNING_SECRET,
    timestamp: int | None = None,
    api_app_id: str = DEFAULT_API_APP_ID,
) -> Request:
    """A slash command, form-encoded as Slack posts it."""
    fields = {
        "token": VERIFICATION_TOKEN,
        "team_id": team,
        "team_domain": "standin",
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url or new_response_url(team),
        "trigger_id": trigger_id or new_trigger_id(),
    }
    return _form_request(fields, secret, timestamp)


def message_shortcut(
    callback_id: str = "summarize_thread",
    message: dict[str, Any] | None = None,
    channel: str = "C1",
    user: str = "U1",
    team: str = DEFAULT_TEAM,
    response_url: str | None = None,
    trigger_id: str | None = None,
    *,
    channel_name: str = "general",
    secret: str = DEFAULT_SIGNING_SECRET,
    timestamp: int | None = None,
) -> Request:
    """A message shortcut: form-encoded ``payload=`` JSON of type ``message_action``.
    ``message`` is the message the shortcut was used on (default: a fresh one by ``user``)."""
    msg = message or {"type": "message", "user": user, "text": "a message", "ts": new_ts()}
    payload = {
        "type": "message_action",
        "token": VERIFICATION_TOKEN,
        "action_ts": new_ts(),
        "team": {"id": team, "domain": "standin"},
        "user": {"id": user, "username": "ada", "team_id": team, "name": "ada"},
        "channel": {"id": channel, "name": channel_name},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or new_trigger_id(),
        "response_url": response_url or new_response_url(team),
        "message_ts": msg["ts"],
        "message": msg,
    }
    return _form_request({"payload": json.dumps(payload)}, secret, timestamp)


def block_actions(
    action_id: str,
    value: str = "",
    *,
    message: dict[str, Any] | None = None,
    block_id: str = "actions",
    channel: str = "C1",
    user: str = "U1",
    team: str = DEFAULT_TEAM,
    response_url: str | None = None,
    secret: str = DEFAULT_SIGNING_SECRET,
    timestamp: int | None = None,
    api_app_id: str = DEFAULT_API_APP_ID,
) -> Request:
    """A button click (``block_actions``) on ``message`` (e.g. the bot's final answer)."""
    msg = message or {"type": "message", "user": DEFAULT_BOT_USER, "text": "", "ts": new_ts()}
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "ada", "name": "ada", "team_id": team},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": msg["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": new_trigger_id(),
        "team": {"id": team, "domain": "standin"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "general"},
        "message": msg,
        "response_url": response_url or new_response_url(team),
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "action_ts": new_ts(),
            }
        ],
    }
    return _form_request({"payload": json.dumps(payload)}, secret, timestamp)
