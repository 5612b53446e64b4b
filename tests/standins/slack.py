"""A local Slack Web API stand-in.

A real HTTP server on 127.0.0.1 that answers ``/api/{method}`` the way ``slack.com`` does, so the
real ``slack_sdk.WebClient`` (and Bolt on top of it) runs unchanged: point ``SLACK_API_URL`` at
:attr:`SlackStandIn.api_url` (``WebClient(base_url=...)``) and nothing else differs.

Behind it sits a small in-memory workspace: channels holding messages (threads via
``thread_ts``, parents carrying ``reply_count`` / ``latest_reply``), users and files. It answers
``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``,
``conversations.history`` / ``conversations.replies`` (cursor pagination), ``users.info`` and
``files.info``, serves file bytes at ``url_private_download`` to the bot token only, and answers
``unknown_method`` to anything else (tests can add methods with :meth:`SlackStandIn.on`).

Native streaming is modelled as Slack documents it: ``chat.startStream`` (needs ``thread_ts``;
outside a DM also ``recipient_team_id`` and ``recipient_user_id``, else ``invalid_arguments``),
``chat.appendStream`` (``markdown_text`` at most 12,000 characters) and ``chat.stopStream``
(optional ``markdown_text`` and ``blocks``); one streamed message holds at most 12,000
characters of markdown across the three (more answers ``msg_too_long``). The streamed message is
an ordinary bot message whose text is everything streamed so far (also as its first,
``markdown``, block); blocks given to ``chat.stopStream`` follow that block. A stream that was
stopped, or expired (:attr:`SlackStandIn.stream_ttl` seconds of :attr:`SlackStandIn.clock`
without a call, or :meth:`SlackStandIn.expire_streams`), answers
``message_not_in_streaming_state``. A workspace without streaming
(:attr:`SlackStandIn.streaming_enabled` ``False``) answers
:attr:`SlackStandIn.streaming_refusal` to ``chat.startStream``. ``assistant.threads.setStatus``
keeps the last status per thread (:meth:`SlackStandIn.status`); like Slack, a bot message in the
thread clears it.

Like Slack, every answer is HTTP 200 with ``{"ok": false, "error": ...}`` on failure, except
scripted failures with another status (:meth:`SlackStandIn.fail_next`): a 429 carries
``Retry-After`` (1 unless told). Slack's documented size limits are enforced (``text`` 40,000
characters, 50 blocks, 3,000 per section text, 12,000 across markdown blocks, and the shape of a
``context_actions`` block's ``feedback_buttons``: ``invalid_blocks`` otherwise), and
:attr:`SlackStandIn.max_text_chars` lowers the text limit to what Slack has been seen to enforce.

Connection trouble is scripted too: :meth:`SlackStandIn.drop_answer` carries out the next call to
a method and then closes the connection without answering (did it land? the client cannot know),
and :meth:`SlackStandIn.fail_until` refuses every call to a method until another method has
been answered (a rate limit that lasts until the caller gives up and posts anew).

Every API call is recorded (:attr:`SlackStandIn.calls`), parameters merged from the query string
and the form or JSON body, with JSON-encoded form fields (``blocks``, ``attachments``,
``metadata``) decoded.

Slack's rate tiers for the reply methods are enforced on request
(:meth:`SlackStandIn.enforce_rate_limits`; off by default): ``chat.update`` at most
``update_per_minute`` accepted calls in any sliding 60-second window for the workspace (Tier 3),
``chat.postMessage`` a token bucket per channel (about one a second, short bursts allowed; a
``chat.startStream`` takes from the same bucket, as it posts a message), ``chat.appendStream`` at
most ``append_per_minute`` in any 60 seconds for the workspace (Tier 4), ``chat.stopStream`` at
most ``stop_per_minute`` (Tier 2) and ``chat.startStream`` also at most ``start_per_minute`` in
any 60 seconds for the workspace (Slack publishes no tier for it: Tier 2 assumed). A call over
its limit
is refused at arrival with HTTP 429, ``{"ok": false, "error": "ratelimited"}`` and
``Retry-After`` in whole seconds; refused calls do not count toward the limit, are recorded with
status 429 and counted in :attr:`SlackStandIn.rate_limited`.

The module is long (over 1,000 lines) because it is one fake of one API: the workspace's state,
its methods and its limits share one lock and one store of messages.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import pytest

from tests.slack_requests import new_ts, observe_ts, ts_to_micros
from tests.standins import LoopbackHttpService, LoopbackServer, TrackingHandler

DEFAULT_BOT_TOKEN = "xoxb-test-dummy"
DEFAULT_SIGNING_SECRET = "test-signing-secret-dummy"

TEXT_LIMIT = 40_000  # chat.postMessage ``text``, as documented
BLOCKS_LIMIT = 50
SECTION_TEXT_LIMIT = 3_000
MARKDOWN_BLOCKS_LIMIT = 12_000  # cumulative over the markdown blocks of one message

_JSON_FIELDS = ("blocks", "attachments", "metadata")
_HISTORY_DEFAULT_LIMIT = 100
_REPLIES_DEFAULT_LIMIT = 1000
_MAX_LIMIT = 999
_UPDATE_WINDOW_SECONDS = 60.0

Params = dict[str, Any]
MethodHandler = Callable[[Params], dict[str, Any]]


@dataclass(frozen=True)
class SlackCall:
    """One Web API call as the stand-in saw it (``at`` is ``time.monotonic()`` on arrival;
    header names are lower-cased; ``response`` is the JSON body that was sent back)."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass(frozen=True)
class FileDownload:
    path: str
    headers: dict[str, str]
    status: int
    at: float


@dataclass(frozen=True)
class RateLimits:
    """The rate tiers the stand-in enforces (see :meth:`SlackStandIn.enforce_rate_limits`)."""

    update_per_minute: int = 50  # chat.update, Tier 3, per workspace (sliding 60 s window)
    post_per_second: float = 1.0  # chat.postMessage refill, per channel
    post_burst: int = 3  # chat.postMessage bucket capacity, per channel
    append_per_minute: int = 100  # chat.appendStream, Tier 4, per workspace (sliding 60 s)
    stop_per_minute: int = 20  # chat.stopStream, Tier 2, per workspace (sliding 60 s)
    start_per_minute: int = 20  # chat.startStream, Tier 2 assumed, per workspace (sliding 60 s)


@dataclass(frozen=True)
class _Failure:
    error: str
    status: int
    retry_after: int | None


@dataclass
class _Channel:
    id: str
    name: str
    member: bool
    is_im: bool
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # ts -> message

    def ordered(self) -> list[dict[str, Any]]:
        return sorted(self.messages.values(), key=lambda m: ts_to_micros(m["ts"]))


@dataclass
class _Stream:
    """A message being streamed: its channel, and when it was last appended to."""

    channel: str
    last_at: float
    open: bool = True
    chars: int = 0  # markdown streamed so far (Slack: at most 12,000 per message)


@dataclass
class _File:
    id: str
    name: str
    content: bytes
    mimetype: str
    channel: str
    user: str
    title: str
    created: int


class SlackApiFailure(Exception):
    """Raised inside a method handler to answer ``{"ok": false, "error": error}``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# --- the server ---------------------------------------------------------------------------


class _Handler(TrackingHandler):
    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        standin: SlackStandIn = self.server.standin
        if path.startswith("/api/"):
            method = path[len("/api/") :].strip("/")
            params = _parse_params(query, raw_body, headers.get("content-type", ""))
            try:
                status, body, extra_headers = standin._api_call(method, params, headers, arrived)
            except Exception as exc:  # a bug in the stand-in: answer, and fail the test later
                traceback.print_exc()
                standin.internal_errors.append(f"{method}: {exc!r}")
                status, body, extra_headers = 500, {"ok": False, "error": "standin_bug"}, {}
            if standin._take_drop(method):
                self.close_connection = True  # carried out, never answered
                return
            self._send(status, json.dumps(body).encode("utf-8"), "application/json", extra_headers)
        elif path.startswith("/commands/") and self.command == "POST":
            # A slash command's response_url (Slack's hooks.slack.com): kept as an ephemeral
            # message for the channel the command was used in (from the URL, as registered).
            payload = json.loads(raw_body or b"{}")
            with standin._lock:
                standin._ephemeral.append(
                    {
                        "channel": standin.response_urls.get(path, ""),
                        "user": "",
                        "text": payload.get("text", ""),
                        "via": "response_url",
                        "response_type": payload.get("response_type", "ephemeral"),
                    }
                )
            self._send(200, b"ok", "text/plain", {})
        elif path.startswith("/files-pri/") and self.command == "GET":
            status, content, content_type = standin._download(path, headers, arrived)
            self._send(status, content, content_type, {})
        else:
            self._send(404, b"not found", "text/plain", {})

    def _send(self, status: int, payload: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        textual = content_type.startswith(("text/", "application/json"))
        charset = "; charset=utf-8" if textual else ""
        self.send_header("Content-Type", content_type + charset)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


def _parse_params(query: str, body: bytes, content_type: str) -> Params:
    params: Params = dict(parse_qsl(query, keep_blank_values=True))
    if body:
        if content_type.startswith("application/json"):
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = {"_invalid_json": body.decode("utf-8", errors="replace")}
            if isinstance(decoded, dict):
                params.update(decoded)
        elif content_type.startswith("multipart/form-data"):
            params["_multipart"] = True  # file uploads are out of scope
        else:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    for name in _JSON_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and value.strip().startswith(("[", "{")):
            try:
                params[name] = json.loads(value)
            except ValueError:
                params[name] = SlackApiFailure(f"invalid_{name}_format")
    return params


def _whole_seconds(seconds: float) -> int:
    """``Retry-After`` as Slack sends it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode("ascii")).decode("ascii")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.b64decode(cursor.encode("ascii"), validate=True).decode("ascii")
        prefix, _, ts = raw.partition(":")
        if prefix != "next_ts":
            raise ValueError(raw)
        return ts_to_micros(ts)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise SlackApiFailure("invalid_cursor") from exc


def _limit(params: Params, default: int) -> int:
    raw = params.get("limit")
    if raw in (None, "", 0, "0"):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise SlackApiFailure("invalid_limit") from exc
    return max(1, min(value, max(default, _MAX_LIMIT)))


def _bound(params: Params, name: str, default: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return ts_to_micros(str(raw))
    except ValueError as exc:
        raise SlackApiFailure(f"invalid_ts_{name}") from exc


def _block_texts(blocks: list[Any]) -> Iterator[tuple[str, str]]:
    """(block type, text) for each text a section or markdown block shows."""
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type", "")
        if kind == "markdown":
            yield kind, str(block.get("text", ""))
        elif kind == "section":
            text = block.get("text")
            if isinstance(text, dict):
                yield kind, str(text.get("text", ""))
            for item in block.get("fields") or []:
                if isinstance(item, dict):
                    yield kind, str(item.get("text", ""))


def _context_actions_problem(block: dict[str, Any]) -> str | None:
    """What Slack would refuse in a ``context_actions`` block (its documented fields: 1 to 5
    ``feedback_buttons`` or ``icon_button`` elements; a feedback button has ``plain_text`` text
    of at most 75 characters and a ``value`` of at most 2,000), or None."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= 5:
        return "context_actions needs 1 to 5 elements"
    for element in elements:
        kind = element.get("type") if isinstance(element, dict) else None
        if kind == "icon_button":
            continue
        if kind != "feedback_buttons":
            return f"context_actions cannot hold {kind!r}"
        assert isinstance(element, dict)
        action_id = element.get("action_id")
        if action_id is not None and not (isinstance(action_id, str) and 0 < len(action_id) <= 255):
            return "feedback_buttons action_id must be 1 to 255 characters"
        for side in ("positive_button", "negative_button"):
            button = element.get(side)
            if not isinstance(button, dict):
                return f"feedback_buttons needs {side}"
            text = button.get("text")
            if not (
                isinstance(text, dict)
                and text.get("type") == "plain_text"
                and isinstance(text.get("text"), str)
                and 0 < len(text["text"]) <= 75
            ):
                return f"{side}.text must be plain_text of 1 to 75 characters"
            value = button.get("value")
            if not (isinstance(value, str) and 0 < len(value) <= 2000):
                return f"{side}.value must be 1 to 2000 characters"
            label = button.get("accessibility_label")
            if label is not None and not (isinstance(label, str) and len(label) <= 75):
                return f"{side}.accessibility_label must be at most 75 characters"
    return None


class _BurstServer(LoopbackServer):
    # Many replies call at once under load; the default listen queue (5) would drop their
    # connections and delay them by a SYN retransmit, which real Slack does not do.
    request_queue_size = 256


class SlackStandIn(LoopbackHttpService):
    """A scriptable Slack Web API and workspace on 127.0.0.1; see the module docstring.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Thread-safe. With
    ``seed=True`` the workspace starts with channel ``C1`` (``#general``, bot is a member) and
    user ``U1`` (Ada Lovelace), the defaults of ``tests.slack_requests``; the bot user always
    exists.
    """

    handler_class = _Handler
    thread_name = "slack-standin"
    description = "the Slack stand-in"

    def __init__(
        self,
        *,
        bot_token: str = DEFAULT_BOT_TOKEN,
        team_id: str = "T1",
        team_name: str = "Stand-in Workspace",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A0STANDIN",
        bot_name: str = "chatbot",
        seed: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.bot_name = bot_name
        self.max_text_chars: int | None = None
        # Slack's conversations.replies is reported both ways; code should cope with either.
        self.replies_parent_on_every_page = False
        # Real Slack answers an unauthorised file download with its HTML login page and 200.
        self.html_on_unauthorized_download = False

        super().__init__(host)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._channels: dict[str, _Channel] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._files: dict[str, _File] = {}
        self._ephemeral: list[dict[str, Any]] = []
        self._failures: dict[str, deque[_Failure]] = {}
        self._failing_until: dict[str, tuple[str, _Failure]] = {}  # see fail_until()
        self._drops: Counter[str] = Counter()  # see drop_answer()
        self._latency: dict[str, float] = {}
        self._extra_methods: dict[str, MethodHandler] = {}
        self._calls: list[SlackCall] = []
        self._downloads: list[FileDownload] = []
        self.users_info_calls: Counter[str] = Counter()
        self.response_urls: dict[str, str] = {}  # path -> channel, see response_url()
        self.internal_errors: list[str] = []  # stand-in bugs; the fixture fails the test on any
        # Rate tiers (off unless enforce_rate_limits is called); ``clock`` may be replaced by a
        # fake for deterministic tests: it times the rate accounting, not ``SlackCall.at``.
        self.clock: Callable[[], float] = time.monotonic
        self.rate_limited: Counter[str] = Counter()  # method -> calls refused with 429
        self._rate_limits: RateLimits | None = None
        self._update_window: deque[float] = deque()  # arrival of each accepted chat.update
        self._append_window: deque[float] = deque()  # ... and of each chat.appendStream
        self._stop_window: deque[float] = deque()  # ... of each chat.stopStream
        self._start_window: deque[float] = deque()  # ... of each chat.startStream
        # Native streaming (see the module docstring).
        self.streaming_enabled = True
        self.streaming_refusal = "feature_not_enabled"
        self.stream_ttl: float | None = None
        self._streams: dict[tuple[str, str], _Stream] = {}  # (channel, ts) -> stream
        self._statuses: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, thread) -> last
        self.status_history: list[dict[str, Any]] = []  # every status set, in order
        self._post_buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)

        self.add_user(bot_user_id, bot_name, bot_name, is_bot=True)
        if seed:
            self.add_channel("C1", "general")
            self.add_user("U1", "Ada Lovelace", "ada")

    def _make_server(self) -> LoopbackServer:
        return _BurstServer((self._host, 0), self.handler_class)

    # addresses

    @property
    def api_url(self) -> str:
        """The ``SLACK_API_URL`` / ``WebClient(base_url=...)`` value; ends with ``/api/``."""
        return self.url + "/api/"

    # seeding

    def add_channel(self, id: str, name: str, member: bool = True, *, is_im: bool = False) -> None:
        with self._lock:
            self._channels[id] = _Channel(id=id, name=name, member=member, is_im=is_im)

    def set_member(self, channel: str, member: bool) -> None:
        with self._lock:
            self._channel_for_seeding(channel).member = member

    def add_user(
        self, id: str, real_name: str, display_name: str = "", *, is_bot: bool = False
    ) -> None:
        handle = (display_name or real_name).lower().replace(" ", ".")
        with self._lock:
            self._users[id] = {
                "id": id,
                "team_id": self.team_id,
                "name": handle,
                "deleted": False,
                "real_name": real_name,
                "tz": "Europe/London",
                "tz_label": "Greenwich Mean Time",
                "tz_offset": 0,
                "is_admin": False,
                "is_owner": False,
                "is_bot": is_bot,
                "is_app_user": False,
                "updated": int(time.time()),
                "profile": {
                    "real_name": real_name,
                    "real_name_normalized": real_name,
                    "display_name": display_name,
                    "display_name_normalized": display_name,
                    "first_name": real_name.split(" ")[0],
                    "image_48": f"https://avatars.invalid/{id}_48.png",
                    "team": self.team_id,
                },
            }

    def add_message(
        self,
        channel: str,
        text: str,
        user: str | None = "U1",
        ts: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        *,
        blocks: list[dict[str, Any]] | None = None,
        files: list[str] | None = None,
        subtype: str | None = None,
    ) -> str:
        """Store a message as if someone had posted it; returns its ts. ``files`` are ids of
        :meth:`add_file` files, attached as Slack attaches them (``subtype`` ``file_share``)."""
        with self._lock:
            target = self._channel_for_seeding(channel)
            if ts is None:
                ts = new_ts()
            else:
                observe_ts(ts)
            msg: dict[str, Any] = {"type": "message", "ts": ts, "text": text, "team": self.team_id}
            if user is not None:
                msg["user"] = user
            if bot_id is not None:
                msg["bot_id"] = bot_id
            if blocks is not None:
                msg["blocks"] = blocks
            if files:
                msg["files"] = [self.file_payload(f) for f in files]
                msg["upload"] = False
                subtype = subtype or "file_share"
            if subtype is not None:
                msg["subtype"] = subtype
            self._store(target, msg, thread_ts)
            return ts

    def add_file(
        self,
        file_id: str,
        name: str,
        content: bytes,
        mimetype: str,
        channel: str = "C1",
        *,
        user: str = "U1",
        title: str | None = None,
    ) -> dict[str, Any]:
        """Store a file shared in ``channel``; returns its object as events and files.info
        carry it."""
        with self._lock:
            self._files[file_id] = _File(
                id=file_id,
                name=name,
                content=content,
                mimetype=mimetype,
                channel=channel,
                user=user,
                title=title or name,
                created=int(time.time()),
            )
        return self.file_payload(file_id)

    def file_payload(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            f = self._files[file_id]
        extension = f.name.rsplit(".", 1)[-1].lower() if "." in f.name else "binary"
        base = f"{self.url}/files-pri/{self.team_id}-{f.id}"
        return {
            "id": f.id,
            "created": f.created,
            "timestamp": f.created,
            "name": f.name,
            "title": f.title,
            "mimetype": f.mimetype,
            "filetype": extension,
            "pretty_type": extension.upper(),
            "user": f.user,
            "user_team": self.team_id,
            "editable": False,
            "size": len(f.content),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{base}/{quote(f.name)}",
            "url_private_download": f"{base}/download/{quote(f.name)}",
            "permalink": f"{self.url}/files/{f.user}/{f.id}/{quote(f.name)}",
            "channels": [f.channel],
            "groups": [],
            "ims": [],
            "comments_count": 0,
        }

    # scripting

    def fail_next(
        self,
        method: str,
        *,
        error: str = "ratelimited",
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls to ``method`` answer ``{"ok": false, "error": error}`` with
        HTTP ``status`` (first in first out, per method), before auth or any state change.
        A 429 carries ``Retry-After: retry_after`` (1 if not given), as Slack's always do."""
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            queue = self._failures.setdefault(method, deque())
            queue.extend(_Failure(error, status, retry_after) for _ in range(times))

    def fail_until(
        self,
        method: str,
        *,
        until: str,
        error: str = "ratelimited",
        status: int = 429,
        retry_after: int | None = 1,
    ) -> None:
        """Every call to ``method`` answers ``{"ok": false, "error": error}`` (HTTP ``status``,
        ``Retry-After`` for a 429) until a call to ``until`` has been answered ok."""
        with self._lock:
            self._failing_until[method] = (until, _Failure(error, status, retry_after))

    def drop_answer(self, method: str, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` are carried out, then their connection is
        closed without an answer (the client sees the server disconnect)."""
        with self._lock:
            self._drops[method] += times

    def _take_drop(self, method: str) -> bool:
        with self._lock:
            if self._drops[method] > 0:
                self._drops[method] -= 1
                return True
            return False

    def pending_failures(self, method: str) -> int:
        with self._lock:
            return len(self._failures.get(method, ()))

    def enforce_rate_limits(
        self,
        update_per_minute: int = 50,
        post_per_second: float = 1.0,
        post_burst: int = 3,
        append_per_minute: int = 100,
        stop_per_minute: int = 20,
        start_per_minute: int = 20,
    ) -> RateLimits:
        """Refuse calls over Slack's rate tiers with 429 (see the module docstring), starting
        with empty windows and full buckets; call again to change the limits (and reset)."""
        if update_per_minute < 1 or post_per_second <= 0 or post_burst < 1:
            raise ValueError("rate limits must be positive")
        if min(append_per_minute, stop_per_minute, start_per_minute) < 1:
            raise ValueError("rate limits must be positive")
        limits = RateLimits(
            update_per_minute,
            post_per_second,
            post_burst,
            append_per_minute,
            stop_per_minute,
            start_per_minute,
        )
        with self._lock:
            self._rate_limits = limits
            self._clear_rate_windows()
        return limits

    def disable_rate_limits(self) -> None:
        """Stop refusing calls over the rate tiers (the default)."""
        with self._lock:
            self._rate_limits = None
            self._clear_rate_windows()

    def _clear_rate_windows(self) -> None:
        for window in (
            self._update_window,
            self._append_window,
            self._stop_window,
            self._start_window,
        ):
            window.clear()
        self._post_buckets.clear()

    def delete_message(self, channel: str, ts: str) -> None:
        """Remove a message as a person deleting it would (a later edit: ``message_not_found``)."""
        with self._lock:
            self._channel_for_seeding(channel).messages.pop(ts, None)

    def expire_streams(self) -> int:
        """End every open stream as Slack does when one idles too long; returns how many."""
        with self._lock:
            open_streams = [s for s in self._streams.values() if s.open]
            for stream in open_streams:
                stream.open = False
            return len(open_streams)

    def stream_state(self, channel: str, ts: str) -> str | None:
        """``streaming``, ``stopped`` (or expired), or None for a message never streamed."""
        with self._lock:
            stream = self._streams.get((channel, ts))
            if stream is None:
                return None
            return "streaming" if self._stream_alive(stream) else "stopped"

    def status(self, channel: str, thread_ts: str) -> dict[str, Any] | None:
        """The thread's current status (``status``, ``loading_messages``), or None."""
        with self._lock:
            found = self._statuses.get((channel, thread_ts))
            return copy.deepcopy(found) if found else None

    @property
    def rate_limits(self) -> RateLimits | None:
        return self._rate_limits

    def set_latency(self, method: str, seconds: float) -> None:
        """Delay every answer to ``method`` (0 to stop)."""
        with self._lock:
            self._latency[method] = seconds

    def on(self, method: str, handler: MethodHandler) -> None:
        """Answer ``method`` with ``handler(params)`` (raise :class:`SlackApiFailure` for an
        error); for methods this stand-in does not model."""
        with self._lock:
            self._extra_methods[method] = handler

    # inspection

    @property
    def calls(self) -> list[SlackCall]:
        """A snapshot of every API call so far, in arrival order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [c for c in self._calls if c.method == method]

    def wait_for_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> list[SlackCall]:
        """Block until ``method`` has been called ``count`` times (for work done on another
        thread); raises TimeoutError with what did arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := [c for c in self._calls if c.method == method]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [c.method for c in self._calls]
                    raise TimeoutError(f"{len(found)}/{count} calls to {method}; calls: {seen}")
                self._changed.wait(remaining)
            return found

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()
            self._downloads.clear()
            self.users_info_calls.clear()
            self.rate_limited.clear()

    @property
    def downloads(self) -> list[FileDownload]:
        with self._lock:
            return list(self._downloads)

    def messages(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Current messages (edits applied), oldest first: the channel's top level, or with
        ``thread_ts`` the thread (parent first, then replies)."""
        with self._lock:
            target = self._channel_for_seeding(channel)
            if thread_ts is None:
                found = [m for m in target.ordered() if self._is_top_level(m)]
            else:
                found = self._thread_of(target, thread_ts)
            return copy.deepcopy(found)

    def response_url(self, channel: str) -> str:
        """A slash command's ``response_url`` that leads here; what is posted to it shows up in
        :meth:`ephemeral_messages` for ``channel``."""
        path = f"/commands/{self.team_id}/{uuid.uuid4().hex[:10]}/{uuid.uuid4().hex[:24]}"
        with self._lock:
            self.response_urls[path] = channel
        return self.url + path

    def ephemeral_messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(
                [e for e in self._ephemeral if channel is None or e["channel"] == channel]
            )

    def users_info_count(self, user: str) -> int:
        with self._lock:
            return self.users_info_calls[user]

    # used by the handler

    def _api_call(
        self, method: str, params: Params, headers: dict[str, str], arrived: float
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            retry_after = self._over_rate_limit(method, params)  # decided at arrival
            latency = self._latency.get(method, 0.0)
        if latency:
            time.sleep(latency)
        status, extra_headers = 200, {}
        with self._lock:
            queue = self._failures.get(method) if retry_after is None else None
            failure = queue.popleft() if queue else None
            if failure is None and retry_after is None and method in self._failing_until:
                failure = self._failing_until[method][1]
            body: dict[str, Any]
            if retry_after is not None:
                status = 429
                body = {"ok": False, "error": "ratelimited"}
                extra_headers["Retry-After"] = str(retry_after)
                self.rate_limited[method] += 1
            elif failure is not None:
                status = failure.status
                body = {"ok": False, "error": failure.error}
                if failure.retry_after is not None:
                    extra_headers["Retry-After"] = str(failure.retry_after)
            else:
                body = self._answer(method, params, headers)
                if body.get("ok"):
                    for failing, (until, _) in list(self._failing_until.items()):
                        if until == method:
                            del self._failing_until[failing]
            recorded = {
                k: copy.deepcopy(v) for k, v in params.items() if not isinstance(v, SlackApiFailure)
            }
            self._calls.append(SlackCall(method, recorded, headers, arrived, status, body))
            self._changed.notify_all()
        return status, body, extra_headers

    def _over_rate_limit(self, method: str, params: Params) -> int | None:
        """With the lock held: None if the call is within its tier (and now counts toward it),
        else the whole seconds until it would be (``Retry-After``, at least 1)."""
        limits = self._rate_limits
        if limits is None:
            return None
        now = self.clock()
        windows = {
            "chat.update": (self._update_window, limits.update_per_minute),
            "chat.appendStream": (self._append_window, limits.append_per_minute),
            "chat.stopStream": (self._stop_window, limits.stop_per_minute),
            "chat.startStream": (self._start_window, limits.start_per_minute),
        }
        counted = windows.get(method)
        if counted is not None:
            window, per_minute = counted
            while window and window[0] <= now - _UPDATE_WINDOW_SECONDS:
                window.popleft()
            if len(window) >= per_minute:
                return _whole_seconds(window[0] + _UPDATE_WINDOW_SECONDS - now)
        if method in ("chat.postMessage", "chat.startStream"):
            channel = str(params.get("channel") or "")
            tokens, last = self._post_buckets.get(channel, (float(limits.post_burst), now))
            tokens = min(float(limits.post_burst), tokens + (now - last) * limits.post_per_second)
            if tokens < 1.0:
                self._post_buckets[channel] = (tokens, now)
                return _whole_seconds((1.0 - tokens) / limits.post_per_second)
            self._post_buckets[channel] = (tokens - 1.0, now)
        if counted is not None:
            counted[0].append(now)  # accepted: it counts toward its tier
        return None

    def _answer(self, method: str, params: Params, headers: dict[str, str]) -> dict[str, Any]:
        handler = self._extra_methods.get(method) or getattr(
            self, "_m_" + method.replace(".", "_"), None
        )
        if handler is None:
            return {"ok": False, "error": "unknown_method", "req_method": method}
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        token = token or str(params.get("token", ""))
        try:
            if not token:
                raise SlackApiFailure("not_authed")
            if token != self.bot_token:
                raise SlackApiFailure("invalid_auth")
            for value in params.values():
                if isinstance(value, SlackApiFailure):
                    raise value
            answer = handler(params)
        except SlackApiFailure as failure:
            return {"ok": False, "error": failure.error, **failure.extra}
        return {"ok": True, **answer}

    def _download(
        self, path: str, headers: dict[str, str], arrived: float
    ) -> tuple[int, bytes, str]:
        parts = path.split("/")  # ["", "files-pri", "T1-F1", ("download",) "name"]
        file_id = parts[2].partition("-")[2] if len(parts) > 3 else ""
        with self._lock:
            f = self._files.get(file_id)
            authorised = headers.get("authorization") == f"Bearer {self.bot_token}"
            if f is None:
                result = (404, b"file not found", "text/plain")
            elif authorised:
                result = (200, f.content, f.mimetype)
            elif self.html_on_unauthorized_download:
                result = (200, b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html")
            else:
                result = (403, b"forbidden", "text/plain")
            self._downloads.append(FileDownload(unquote(path), headers, result[0], arrived))
            self._changed.notify_all()
        return result

    # workspace internals (called with the lock held)

    def _channel_for_seeding(self, channel: str) -> _Channel:
        if channel not in self._channels:
            raise KeyError(f"no channel {channel!r} in the stand-in; add_channel() it first")
        return self._channels[channel]

    def _readable_channel(self, params: Params) -> _Channel:
        channel = self._channels.get(str(params.get("channel") or ""))
        if channel is None:
            raise SlackApiFailure("channel_not_found")
        if not channel.member:
            raise SlackApiFailure("not_in_channel")
        return channel

    @staticmethod
    def _is_top_level(msg: dict[str, Any]) -> bool:
        thread_ts = msg.get("thread_ts")
        return (
            thread_ts is None or thread_ts == msg["ts"] or msg.get("subtype") == "thread_broadcast"
        )

    def _thread_of(self, channel: _Channel, ts: str) -> list[dict[str, Any]]:
        msg = channel.messages.get(ts)
        root = msg.get("thread_ts", ts) if msg else ts
        parent = channel.messages.get(root)
        replies = [m for m in channel.ordered() if m.get("thread_ts") == root and m["ts"] != root]
        return ([parent] if parent else []) + replies

    def _store(self, channel: _Channel, msg: dict[str, Any], thread_ts: str | None) -> None:
        if thread_ts is not None and msg.get("bot_id") == self.bot_id:
            self._statuses.pop((channel.id, thread_ts), None)  # the reply clears the status
        if thread_ts is not None and thread_ts != msg["ts"]:
            msg["thread_ts"] = thread_ts
            parent = channel.messages.get(thread_ts)
            if parent is not None:
                msg["parent_user_id"] = parent.get("user", "")
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                users = parent.setdefault("reply_users", [])
                if msg.get("user") and msg["user"] not in users:
                    users.append(msg["user"])
                parent["reply_users_count"] = len(users)
                if ts_to_micros(msg["ts"]) > ts_to_micros(parent.get("latest_reply", "0")):
                    parent["latest_reply"] = msg["ts"]
                parent.setdefault("is_locked", False)
                parent.setdefault("subscribed", False)
        channel.messages[msg["ts"]] = msg

    def _check_content(self, params: Params, *, required: bool = True) -> None:
        text = params.get("text")
        blocks = params.get("blocks")
        if required and not text and not blocks and not params.get("attachments"):
            raise SlackApiFailure("no_text")
        limit = TEXT_LIMIT if self.max_text_chars is None else self.max_text_chars
        if text is not None and len(str(text)) > limit:
            raise SlackApiFailure("msg_too_long")
        if blocks is None:
            return
        if not isinstance(blocks, list):
            raise SlackApiFailure("invalid_blocks_format")
        if len(blocks) > BLOCKS_LIMIT:
            raise SlackApiFailure(
                "invalid_blocks",
                response_metadata={"messages": ["[ERROR] no more than 50 items allowed"]},
            )
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "context_actions":
                problem = _context_actions_problem(block)
                if problem:
                    raise SlackApiFailure(
                        "invalid_blocks", response_metadata={"messages": [f"[ERROR] {problem}"]}
                    )
        markdown_total = 0
        for kind, block_text in _block_texts(blocks):
            if self.max_text_chars is not None and len(block_text) > self.max_text_chars:
                raise SlackApiFailure("msg_too_long")
            if kind == "section" and len(block_text) > SECTION_TEXT_LIMIT:
                raise SlackApiFailure(
                    "invalid_blocks",
                    response_metadata={"messages": ["[ERROR] must be less than 3001 characters"]},
                )
            if kind == "markdown":
                markdown_total += len(block_text)
        if markdown_total > MARKDOWN_BLOCKS_LIMIT:
            raise SlackApiFailure(
                "invalid_blocks",
                response_metadata={"messages": ["[ERROR] markdown blocks exceed 12000 characters"]},
            )

    def _bot_message(self, params: Params, ts: str) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "user": self.bot_user_id,
            "type": "message",
            "ts": ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": str(params.get("text") or ""),
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "deleted": False,
                "team_id": self.team_id,
            },
        }
        for name in ("blocks", "attachments", "metadata"):
            if params.get(name) is not None:
                msg[name] = params[name]
        return msg

    # Web API methods (called with the lock held)

    def _m_auth_test(self, params: Params) -> dict[str, Any]:
        return {
            "url": f"{self.url}/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, params: Params) -> dict[str, Any]:
        channel = self._readable_channel(params)
        self._check_content(params)
        msg = self._bot_message(params, new_ts())
        thread_ts = params.get("thread_ts") or None
        if thread_ts and _flag(params.get("reply_broadcast")):
            msg["subtype"] = "thread_broadcast"
        self._store(channel, msg, thread_ts)
        return {"channel": channel.id, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _m_chat_update(self, params: Params) -> dict[str, Any]:
        channel = self._channels.get(str(params.get("channel") or ""))
        if channel is None:
            raise SlackApiFailure("channel_not_found")
        msg = channel.messages.get(str(params.get("ts") or ""))
        if msg is None:
            raise SlackApiFailure("message_not_found")
        if msg.get("bot_id") != self.bot_id and msg.get("user") != self.bot_user_id:
            raise SlackApiFailure("cant_update_message")
        self._check_content(params)
        if params.get("text") is not None:
            msg["text"] = str(params["text"])
        for name in ("blocks", "attachments", "metadata"):
            if params.get(name) is not None:
                if params[name] == [] and name != "metadata":
                    msg.pop(name, None)
                else:
                    msg[name] = params[name]
        msg["edited"] = {"user": self.bot_user_id, "ts": new_ts()}
        return {
            "channel": channel.id,
            "ts": msg["ts"],
            "text": msg["text"],
            "message": copy.deepcopy(msg),
        }

    # native streaming (called with the lock held)

    def _stream_alive(self, stream: _Stream) -> bool:
        if not stream.open:
            return False
        if self.stream_ttl is not None and self.clock() - stream.last_at > self.stream_ttl:
            stream.open = False  # idled too long: Slack ends it
        return stream.open

    def _open_stream(self, params: Params) -> tuple[_Channel, dict[str, Any], _Stream]:
        channel = self._channels.get(str(params.get("channel") or ""))
        if channel is None:
            raise SlackApiFailure("channel_not_found")
        ts = str(params.get("ts") or "")
        if not ts:
            raise SlackApiFailure("invalid_arguments")
        msg = channel.messages.get(ts)
        if msg is None:
            raise SlackApiFailure("message_not_found")
        stream = self._streams.get((channel.id, ts))
        if stream is None or not self._stream_alive(stream):
            raise SlackApiFailure("message_not_in_streaming_state")
        return channel, msg, stream

    @staticmethod
    def _markdown(params: Params, *, required: bool) -> str:
        text = params.get("markdown_text")
        if text is None or text == "":
            if required:
                raise SlackApiFailure("invalid_arguments")
            return ""
        if len(str(text)) > MARKDOWN_BLOCKS_LIMIT:
            raise SlackApiFailure("msg_too_long")
        return str(text)

    @staticmethod
    def _count_streamed(stream: _Stream, text: str) -> None:
        if stream.chars + len(text) > MARKDOWN_BLOCKS_LIMIT:
            raise SlackApiFailure("msg_too_long")
        stream.chars += len(text)

    @staticmethod
    def _show_streamed(msg: dict[str, Any], text: str) -> None:
        msg["text"] = text
        msg["blocks"] = [{"type": "markdown", "text": text}]

    def _m_chat_startStream(self, params: Params) -> dict[str, Any]:
        if not self.streaming_enabled:
            raise SlackApiFailure(self.streaming_refusal)
        channel = self._readable_channel(params)
        thread_ts = str(params.get("thread_ts") or "")
        if not thread_ts:
            raise SlackApiFailure("invalid_arguments")
        recipients = params.get("recipient_team_id"), params.get("recipient_user_id")
        if not channel.is_im and not all(recipients):
            raise SlackApiFailure("invalid_arguments")
        text = self._markdown(params, required=False)
        msg = self._bot_message({}, new_ts())
        self._show_streamed(msg, text)
        self._store(channel, msg, thread_ts)
        self._streams[(channel.id, msg["ts"])] = _Stream(channel.id, self.clock(), chars=len(text))
        return {"channel": channel.id, "ts": msg["ts"]}

    def _m_chat_appendStream(self, params: Params) -> dict[str, Any]:
        channel, msg, stream = self._open_stream(params)
        text = self._markdown(params, required=True)
        self._count_streamed(stream, text)
        self._show_streamed(msg, msg["text"] + text)
        stream.last_at = self.clock()
        return {"channel": channel.id, "ts": msg["ts"]}

    def _m_chat_stopStream(self, params: Params) -> dict[str, Any]:
        channel, msg, stream = self._open_stream(params)
        text = self._markdown(params, required=False)
        blocks = params.get("blocks")
        if blocks is not None:
            self._check_content({"blocks": blocks}, required=False)
        self._count_streamed(stream, text)
        self._show_streamed(msg, msg["text"] + text)
        if blocks:
            msg["blocks"] = msg["blocks"] + list(blocks)
        stream.open = False
        return {"channel": channel.id, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _m_assistant_threads_setStatus(self, params: Params) -> dict[str, Any]:
        channel = self._readable_channel({"channel": params.get("channel_id")})
        thread_ts = str(params.get("thread_ts") or "")
        status = params.get("status")
        if not thread_ts or status is None:
            raise SlackApiFailure("invalid_arguments")
        entry = {
            "channel": channel.id,
            "thread_ts": thread_ts,
            "status": str(status),
            "loading_messages": list(params.get("loading_messages") or []),
        }
        self.status_history.append(entry)
        if status:
            self._statuses[(channel.id, thread_ts)] = entry
        else:
            self._statuses.pop((channel.id, thread_ts), None)
        return {}

    def _m_chat_postEphemeral(self, params: Params) -> dict[str, Any]:
        channel = self._readable_channel(params)
        user = str(params.get("user") or "")
        if user not in self._users:
            raise SlackApiFailure("user_not_in_channel")
        self._check_content(params)
        message_ts = new_ts()
        self._ephemeral.append(
            {
                "channel": channel.id,
                "user": user,
                "text": str(params.get("text") or ""),
                "blocks": params.get("blocks"),
                "thread_ts": params.get("thread_ts"),
                "message_ts": message_ts,
            }
        )
        return {"message_ts": message_ts}

    def _m_conversations_history(self, params: Params) -> dict[str, Any]:
        channel = self._readable_channel(params)
        inclusive = _flag(params.get("inclusive"))
        oldest = _bound(params, "oldest", 0)
        latest = _bound(params, "latest", sys.maxsize)
        limit = _limit(params, _HISTORY_DEFAULT_LIMIT)
        cursor = params.get("cursor")
        start = _decode_cursor(str(cursor)) if cursor else None

        def wanted(m: dict[str, Any]) -> bool:
            key = ts_to_micros(m["ts"])
            if start is not None and key > start:
                return False
            if start is None and (key > latest or (key == latest and not inclusive)):
                return False
            return key > oldest or (key == oldest and inclusive)

        found = [m for m in reversed(channel.ordered()) if self._is_top_level(m) and wanted(m)]
        return self._page(found, limit, {"pin_count": 0, "channel_actions_ts": None})

    def _m_conversations_replies(self, params: Params) -> dict[str, Any]:
        channel = self._readable_channel(params)
        ts = str(params.get("ts") or "")
        if not ts:
            raise SlackApiFailure("invalid_arguments")
        thread = self._thread_of(channel, ts)
        if not thread or ts not in channel.messages:
            raise SlackApiFailure("thread_not_found")
        inclusive = _flag(params.get("inclusive"))
        oldest = _bound(params, "oldest", 0)
        latest = _bound(params, "latest", sys.maxsize)
        limit = _limit(params, _REPLIES_DEFAULT_LIMIT)
        cursor = params.get("cursor")
        start = _decode_cursor(str(cursor)) if cursor else None
        root = channel.messages.get(channel.messages[ts].get("thread_ts", ts))

        def wanted(m: dict[str, Any]) -> bool:
            key = ts_to_micros(m["ts"])
            if start is not None and key < start:
                return False
            low = key > oldest or (key == oldest and inclusive)
            high = key < latest or (key == latest and inclusive)
            return low and high

        found = [m for m in thread if wanted(m)]
        page = self._page(found, limit, {})
        first = page["messages"][0]["ts"] if page["messages"] else None
        later_page = start is not None and self.replies_parent_on_every_page
        if later_page and root is not None and first != root["ts"]:
            page["messages"].insert(0, copy.deepcopy(root))
        return page

    @staticmethod
    def _page(found: list[dict[str, Any]], limit: int, extra: dict[str, Any]) -> dict[str, Any]:
        page = copy.deepcopy(found[:limit])
        answer: dict[str, Any] = {"messages": page, "has_more": len(found) > limit, **extra}
        if len(found) > limit:
            answer["response_metadata"] = {"next_cursor": _encode_cursor(found[limit]["ts"])}
        return answer

    def _m_users_info(self, params: Params) -> dict[str, Any]:
        user = str(params.get("user") or "")
        self.users_info_calls[user] += 1
        if user not in self._users:
            raise SlackApiFailure("user_not_found")
        return {"user": copy.deepcopy(self._users[user])}

    def _m_files_info(self, params: Params) -> dict[str, Any]:
        file_id = str(params.get("file") or "")
        if file_id not in self._files:
            raise SlackApiFailure("file_not_found")
        return {
            "file": self.file_payload(file_id),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }


@pytest.fixture
def slack_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackStandIn]:
    """A running, seeded stand-in (``C1``, ``U1``, bot ``UBOT``), with ``SLACK_API_URL``,
    ``SLACK_BOT_TOKEN`` and ``SLACK_SIGNING_SECRET`` set for it. Build clients and apps after
    this fixture."""
    with SlackStandIn() as standin:
        monkeypatch.setenv("SLACK_API_URL", standin.api_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", standin.bot_token)
        monkeypatch.setenv("SLACK_SIGNING_SECRET", DEFAULT_SIGNING_SECRET)
        yield standin
    if standin.internal_errors:
        pytest.fail(f"the Slack stand-in itself failed: {standin.internal_errors}")
