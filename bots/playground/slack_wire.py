"""Slack's wire formats and limits, as the playground's emulator and client need them.

Kept apart from :mod:`.slack_api` (the Web API's methods) and :mod:`.slack_client` (what the
person does) so each stays small: how a Web API call's arguments arrive (query, form or JSON,
with JSON-encoded form fields), Slack's documented size limits, cursor pages, how Slack stores
message text (escaped, mentions as ``<@U…>``) and where a message's buttons are.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import time
import uuid
from collections import OrderedDict
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from bots.http import HttpRequest, MalformedJson, parse_json
from bots.playground.slack_workspace import BOT_NAME, BOT_USER_ID

TEXT_LIMIT = 40_000
BLOCKS_LIMIT = 50
MARKDOWN_BLOCKS_LIMIT = 12_000
PAGE_LIMIT = 200
_JSON_FIELDS = ("blocks", "attachments", "metadata", "prompts", "loading_messages")

MAX_RESPONSE_URLS = 1_000
Params = dict[str, Any]
T = TypeVar("T")


class BoundedDict(OrderedDict[str, T]):
    """A dict that forgets its oldest entries beyond :data:`MAX_RESPONSE_URLS`."""

    def __setitem__(self, key: str, value: T) -> None:
        super().__setitem__(key, value)
        while len(self) > MAX_RESPONSE_URLS:
            self.popitem(last=False)


class Refused(Exception):
    """A Web API refusal: ``{"ok": false, "error": error}``."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


MAX_NAME_CHARS = 255
_MENTION_WORD = re.compile(rf"(?<![\w<@])@{BOT_NAME}\b", re.IGNORECASE)
_ESCAPED_MENTION = re.compile(r"&lt;@([A-Z0-9]+)&gt;")


class BadInput(ValueError):
    """What the person sent cannot be sent to Slack: 400 with this message."""


class OverMemoryCap(BadInput):
    """A file over the playground's own memory cap (not Slack's, not the bot's limit): 413.
    A file over the bot's limit and under this cap is shared, and the bot refuses it in the
    chat as it does in Slack."""

    def __init__(self, size: int, cap: int) -> None:
        mb = 1024 * 1024
        super().__init__(
            f"the file is {-(-size // mb)} MB: the playground itself keeps uploads of up to "
            f"{cap // mb} MB in memory (its own cap, 4 times CHATBOT_MAX_FILE_MB), so it was "
            "not shared"
        )


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def base64_size(raw: str) -> int:
    """The size of the bytes ``raw`` encodes, without decoding them; BadInput if it is not
    base64 (what :func:`base64.b64decode` with ``validate=True`` takes)."""
    if len(raw) % 4 or not _BASE64.fullmatch(raw):
        raise BadInput("data_base64 is not valid base64")
    return len(raw) // 4 * 3 - (len(raw) - len(raw.rstrip("=")))


def slack_text(text: str) -> str:
    """Text as Slack stores it: ``&``, ``<`` and ``>`` escaped, and a mention of the bot
    (``@assistant``, or ``<@UPLAYBOT>`` as Slack's own markup) as ``<@UPLAYBOT>``."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    escaped = _ESCAPED_MENTION.sub(lambda m: f"<@{m.group(1)}>", escaped)
    return _MENTION_WORD.sub(f"<@{BOT_USER_ID}>", escaped)


def required_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{name} must be non-empty text")
    if len(value) > TEXT_LIMIT:
        raise BadInput(f"a message has at most {TEXT_LIMIT:,} characters (Slack's limit)")
    return value


def trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def button(msg: dict[str, Any], action_id: object, value: object) -> tuple[str, str] | None:
    """(block_id, element type) of the button ``action_id`` with ``value`` in ``msg``."""
    if not isinstance(value, str) or not value:
        return None
    for index, block in enumerate(msg.get("blocks") or ()):
        if not isinstance(block, dict):
            continue
        block_id = str(block.get("block_id") or f"block-{index}")
        for element in block.get("elements") or ():
            if not isinstance(element, dict) or element.get("action_id") != action_id:
                continue
            kind = str(element.get("type") or "button")
            values = [element.get("value")]
            for side in ("positive_button", "negative_button"):
                button = element.get(side)
                if isinstance(button, dict):
                    values.append(button.get("value"))
            if value in values:
                return block_id, kind
    return None


def params(request: HttpRequest) -> Params:
    """The call's arguments: query string, then the form or JSON body, with Slack's
    JSON-encoded form fields (``blocks`` ...) decoded; a field that does not decode stays a
    string, and the method refuses it."""
    params: Params = dict(request.query)
    body = request.body
    if body:
        media_type = request.header("content-type").split(";", 1)[0].strip().lower()
        if media_type == "application/json":
            decoded = parse_json(body)
            if isinstance(decoded, dict):
                params.update(decoded)
        else:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    for name in _JSON_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and value.strip().startswith(("[", "{")):
            try:
                params[name] = parse_json(value)
            except MalformedJson:
                params[name] = None
    return params


def bearer(request: HttpRequest) -> str:
    scheme, _, credential = request.header("authorization").strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


def text(value: object) -> str:
    return value if isinstance(value, str) else ""


def check_length(text: str) -> None:
    if len(text) > TEXT_LIMIT:
        raise Refused("msg_too_long")


def check_content(params: Params) -> None:
    text = params.get("text")
    blocks = params.get("blocks")
    if not text and not blocks and not params.get("attachments"):
        raise Refused("no_text")
    check_length(str(text or ""))
    if blocks is None:
        return
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise Refused("invalid_blocks_format")
    if len(blocks) > BLOCKS_LIMIT:
        raise Refused("invalid_blocks")
    markdown = sum(len(str(b.get("text", ""))) for b in blocks if b.get("type") == "markdown")
    if markdown > MARKDOWN_BLOCKS_LIMIT:
        raise Refused("invalid_blocks")


def public(msg: dict[str, Any]) -> dict[str, Any]:
    """A message as the Web API returns it (without the emulator's own bookkeeping)."""
    return {k: copy.deepcopy(v) for k, v in msg.items() if not k.startswith("_")}


def micros(ts: str) -> int:
    seconds, _, fraction = ts.partition(".")
    try:
        return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0")[:6] or 0)
    except ValueError:
        raise Refused("invalid_ts_latest") from None


def within(ts: str, params: Params) -> bool:
    inclusive = str(params.get("inclusive")).lower() in ("1", "true")
    key = micros(ts)
    oldest, latest = params.get("oldest"), params.get("latest")
    if oldest not in (None, ""):
        low = micros(str(oldest))
        if key < low or (key == low and not inclusive):
            return False
    if latest not in (None, ""):
        high = micros(str(latest))
        if key > high or (key == high and not inclusive):
            return False
    return True


def page(found: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """One page of ``found`` from the ``cursor`` on (an opaque offset, as Slack's is)."""
    try:
        # A number as text or JSON; anything else (a list, 1e400, NaN) is Slack's
        # invalid_arguments, never a server error.
        limit = max(1, min(int(params.get("limit") or PAGE_LIMIT), 1000))
    except (TypeError, ValueError, OverflowError):
        raise Refused("invalid_arguments") from None
    try:
        cursor = text(params.get("cursor"))
        start = int(base64.b64decode(cursor, validate=True).decode()) if cursor else 0
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Refused("invalid_cursor") from None
    page = [public(m) for m in found[start : start + limit]]
    more = start + limit < len(found)
    next_cursor = base64.b64encode(str(start + limit).encode()).decode() if more else ""
    return {
        "messages": page,
        "has_more": more,
        "response_metadata": {"next_cursor": next_cursor},
    }
