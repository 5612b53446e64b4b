"""Local stand-ins for Microsoft Teams: the Bot Framework connector, and the token issuer.

:class:`ConnectorStandIn` is a real HTTP server on 127.0.0.1 that answers the connector REST API
the way a Teams ``serviceUrl`` does, so botbuilder's real ``BotFrameworkAdapter`` /
``ConnectorClient`` run unchanged: put :attr:`ConnectorStandIn.service_url` in an activity's
``serviceUrl`` and nothing else differs. It answers

- ``POST /v3/conversations/{conversationId}/activities`` (send: a new post),
- ``POST /v3/conversations/{conversationId}/activities/{activityId}`` (reply to an activity),
- ``PUT  /v3/conversations/{conversationId}/activities/{activityId}`` (update),

with conversation ids URL-encoded as the SDK sends them (they hold ``:`` ``;`` ``@`` ``=``),
under a path prefix (``/amer/`` by default: real service URLs look like
``https://smba.trafficmanager.net/amer/``, and the SDK must keep the prefix).
Every call is recorded (:attr:`ConnectorStandIn.calls`), the current text of each message is
kept, bodies over :attr:`ConnectorStandIn.max_body_bytes` get 413, an update of an unknown
activity gets 404, and failures can be scripted per operation (:meth:`ConnectorStandIn.fail`):
429 with ``Retry-After``, 412, 502, 403, 404, ... (with the connector's error ``code``).

It also speaks Teams' native streaming (activities with a ``streaminfo`` entity): the first
streaming request (``informative`` or ``streaming``, ``streamSequence`` 1) opens a stream whose
id is the id answered; later ones name it (``streamId``) and must carry an increasing
``streamSequence`` (else 400) and, for ``streaming`` chunks, text that continues the text
streamed so far (else 400); the ``final`` (a ``message``) ends the stream and becomes the
stream's message, which then shows, and keeps, the final's text, ``channelData`` and entities.
A streamed message shows its chunks' text as they arrive (an informative update alone shows no
message), and keeps it when the stream ends otherwise. Streaming is for personal chats only
(group chats and channels answer 405 ``Method Not Allowed``);
:attr:`ConnectorStandIn.refuse_streaming` makes personal chats refuse it too (400
``BadArgument``, "streaming api is not enabled", or another status); a stream older than
:attr:`ConnectorStandIn.stream_cap_seconds` by :attr:`ConnectorStandIn.clock` answers 403
``ContentStreamNotAllowed`` and is over (its message stays); a request on a finished stream
answers 403 ``ContentStreamNotAllowed`` too; :attr:`ConnectorStandIn.stream_min_gap` (off by
default) answers 429 with ``Retry-After`` to a stream's requests closer together than that.
:meth:`ConnectorStandIn.press_stop` is the person pressing Stop: the stream is over (its message
keeps the text streamed so far) and its next requests answer 403 ``ContentStreamNotAllowed``,
as Teams does.
:attr:`ConnectorStandIn.streams` records each stream.

:class:`TokenIssuer` plays the Bot Framework's token service for INBOUND requests: an RSA key
pair, OpenID metadata and JWKS served on loopback, and tokens minted with PyJWT. The
``token_issuer`` fixture points botframework-connector's channel validation at it
(``ChannelValidation.open_id_metadata_endpoint``, the override hook the SDK itself sets from
``BotOpenIdMetadata``) and empties the SDK's process-wide metadata cache.

For OUTBOUND calls, the ``outbound_token`` fixture replaces
``MicrosoftAppCredentials.get_access_token`` (where MSAL would ask Entra ID for a token) with a
dummy token, recording which credentials asked.

The module also builds the activities Teams sends (:func:`personal_message`,
:func:`channel_message`, :func:`group_message`, :func:`conversation_update`,
:func:`feedback_invoke`).

It is one module of about 850 lines because it is one fixture plugin (``conftest`` loads it by
name) playing one service: the connector's REST routes, its streaming protocol and the token
issuer share the same ids, conversations and activity builders.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.standins import LoopbackHttpService, TrackingHandler

TENANT_ID = "tenant-1111"
APP_ID = "00000000-0000-0000-0000-00000000b0t1"
BOT_ID = f"28:{APP_ID}"
BOT_NAME = "Chatbot"
USER = {"id": "29:1ada", "name": "Ada Lovelace", "aadObjectId": "aad-ada"}
OTHER_USER = {"id": "29:1alan", "name": "Alan Turing", "aadObjectId": "aad-alan"}
PERSONAL_CONVERSATION = "a:1personal-chat-with-ada"
CHANNEL = "19:general0123@thread.tacv2"
GROUP_CHAT = "19:group-chat-42@thread.v2"
TEAM = "19:team0123@thread.tacv2"
BOTFRAMEWORK_ISSUER = "https://api.botframework.com"
OUTBOUND_TOKEN = "dummy-outbound-token"

MAX_ACTIVITY_BYTES = 28_000  # Teams refuses larger messages with 413

_ids = itertools.count(1)


def new_activity_id() -> str:
    """Ids like Teams' message ids (milliseconds since the epoch, unique in a test run)."""
    return str(1_780_000_000_000 + next(_ids))


# --- activities Teams sends -------------------------------------------------------------------


def activity(
    kind: str,
    *,
    service_url: str,
    conversation: dict[str, Any],
    text: str | None = None,
    id: str | None = None,
    sender: dict[str, Any] | None = None,
    entities: list[dict[str, Any]] | None = None,
    channel_data: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": kind,
        "id": id or new_activity_id(),
        "timestamp": "2026-11-02T09:30:00.123Z",
        "localTimestamp": "2026-11-02T10:30:00.123+01:00",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": sender or USER,
        "conversation": conversation,
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "locale": "en-US",
        "entities": entities or [],
        "channelData": {"tenant": {"id": TENANT_ID}} if channel_data is None else channel_data,
    }
    if text is not None:
        body["text"] = text
        body["textFormat"] = "plain"
    body.update(extra)
    return body


def mention(mentioned: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The ``<at>`` markup and the mention entity Teams sends with it."""
    who = mentioned or {"id": BOT_ID, "name": BOT_NAME}
    markup = f"<at>{who['name']}</at>"
    return markup, {"type": "mention", "text": markup, "mentioned": dict(who)}


def personal_message(text: str, *, service_url: str, **kw: Any) -> dict[str, Any]:
    conversation = {
        "conversationType": "personal",
        "tenantId": TENANT_ID,
        "id": kw.pop("conversation_id", PERSONAL_CONVERSATION),
    }
    return activity("message", service_url=service_url, conversation=conversation, text=text, **kw)


def channel_message(
    question: str,
    *,
    service_url: str,
    mentioned: bool = True,
    root: str | None = None,
    id: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """A channel post (``root`` None: a new post, which is its own chain's root) or a reply in
    the chain started by ``root``; ``mentioned``: with ``<at>Chatbot</at>`` in front."""
    id = id or new_activity_id()
    entities = [{"type": "clientInfo", "locale": "en-US", "platform": "Web"}]
    text = question
    if mentioned:
        markup, entity = mention()
        text = f"{markup} {question}"
        entities.append(entity)
    conversation = {
        "isGroup": True,
        "conversationType": "channel",
        "tenantId": TENANT_ID,
        "id": f"{CHANNEL};messageid={root or id}",
    }
    channel_data = {
        "teamsChannelId": CHANNEL,
        "teamsTeamId": TEAM,
        "channel": {"id": CHANNEL},
        "team": {"id": TEAM},
        "tenant": {"id": TENANT_ID},
    }
    return activity(
        "message",
        service_url=service_url,
        conversation=conversation,
        text=text,
        id=id,
        entities=entities,
        channel_data=channel_data,
        **kw,
    )


def group_message(
    question: str, *, service_url: str, mentioned: bool = True, **kw: Any
) -> dict[str, Any]:
    entities = []
    text = question
    if mentioned:
        markup, entity = mention()
        text = f"{markup} {question}"
        entities.append(entity)
    conversation = {
        "isGroup": True,
        "conversationType": "groupChat",
        "tenantId": TENANT_ID,
        "id": GROUP_CHAT,
    }
    return activity(
        "message",
        service_url=service_url,
        conversation=conversation,
        text=text,
        entities=entities,
        **kw,
    )


def conversation_update(
    *,
    service_url: str,
    members_added: list[dict[str, Any]] | None = None,
    conversation_type: str = "personal",
    conversation_id: str = PERSONAL_CONVERSATION,
) -> dict[str, Any]:
    conversation = {
        "conversationType": conversation_type,
        "tenantId": TENANT_ID,
        "id": conversation_id,
    }
    return activity(
        "conversationUpdate",
        service_url=service_url,
        conversation=conversation,
        membersAdded=members_added if members_added is not None else [{"id": BOT_ID}],
    )


def feedback_invoke(
    reaction: Any,
    *,
    reply_to_id: str | None,
    service_url: str,
    conversation: dict[str, Any] | None = None,
    value: Any = None,
    **kw: Any,
) -> dict[str, Any]:
    """A click on Teams' feedback buttons under the bot's message ``reply_to_id``: an
    ``invoke`` named ``message/submitAction`` (``value`` replaces the whole value, to send odd
    shapes; ``conversation`` defaults to the personal chat)."""
    if value is None:
        comment = json.dumps({"feedbackText": "typed by the person"})
        value = {
            "actionName": "feedback",
            "actionValue": {"reaction": reaction, "feedback": comment},
        }
    conversation = conversation or {
        "conversationType": "personal",
        "tenantId": TENANT_ID,
        "id": PERSONAL_CONVERSATION,
    }
    extra: dict[str, Any] = {"name": "message/submitAction", "value": value}
    if reply_to_id is not None:
        extra["replyToId"] = reply_to_id
    return activity("invoke", service_url=service_url, conversation=conversation, **extra, **kw)


# --- the connector ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorCall:
    """One connector call as the stand-in saw it (``at`` is ``time.monotonic()`` on arrival;
    header names lower-cased; ``activity_id`` is the one in the path, if any)."""

    op: str  # "send" | "reply" | "update"
    method: str
    path: str
    conversation_id: str
    activity_id: str | None
    activity: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def type(self) -> str:
        return str(self.activity.get("type") or "")

    @property
    def text(self) -> str:
        return str(self.activity.get("text") or "")

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class _Failure:
    op: str
    status: int
    retry_after: str | None
    remaining: int | None  # None: every matching call
    when: Callable[[dict[str, Any]], bool] | None
    code: str | None = None
    message: str = "scripted"


@dataclass
class Stream:
    """One native stream as the stand-in saw it."""

    id: str
    conversation_id: str
    started: float
    sequence: int  # the last streamSequence accepted
    text: str = ""  # the text streamed so far
    informative: list[str] = field(default_factory=list)
    chunks: int = 0
    final: dict[str, Any] | None = None  # the final activity, once accepted
    over: str = ""  # why the stream ended without a final ("time cap", "stopped"), if it did
    last_request: float = 0.0


STREAM_TIMED_OUT = "Content stream finished due to exceeded streaming time."
STREAM_CANCELLED = "Content stream was cancelled by user."


def stream_info(activity: dict[str, Any]) -> dict[str, Any] | None:
    """The ``streaminfo`` entity of an activity, if it has one."""
    for entity in activity.get("entities") or ():
        if isinstance(entity, dict) and entity.get("type") == "streaminfo":
            return entity
    return None


def stream_type(activity: dict[str, Any]) -> str:
    """``informative`` | ``streaming`` | ``final``, or "" for an activity of no stream."""
    info = stream_info(activity)
    return str(info.get("streamType") or "") if info else ""


def feedback_enabled(message: dict[str, Any]) -> bool:
    data = message.get("channelData") or {}
    return bool(data.get("feedbackLoopEnabled")) or (
        (data.get("feedbackLoop") or {}).get("type") == "default"
    )


class _Handler(TrackingHandler):
    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        arrived = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        standin: ConnectorStandIn = self.server.standin
        try:
            status, body, extra = standin._handle(self.command, self.path, headers, raw, arrived)
        except Exception as exc:  # a stand-in bug: answer, and fail the test later
            traceback.print_exc()
            standin.internal_errors.append(f"{self.command} {self.path}: {exc!r}")
            status, body, extra = 500, {"error": {"code": "StandInBug"}}, {}
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


class ConnectorStandIn(LoopbackHttpService):
    """A scriptable Bot Framework connector on 127.0.0.1; see the module docstring."""

    handler_class = _Handler
    thread_name = "teams-connector-standin"
    description = "the connector stand-in"

    def __init__(self, *, host: str = "127.0.0.1", prefix: str = "/amer/") -> None:
        super().__init__(host)
        self.max_body_bytes = MAX_ACTIVITY_BYTES
        self.internal_errors: list[str] = []
        self._prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[ConnectorCall] = []
        self._failures: list[_Failure] = []
        self._messages: dict[str, dict[str, Any]] = {}  # activity id → the message as shown
        self._order: list[str] = []
        self._ids = itertools.count(1)
        # Native streaming.
        self.refuse_streaming: int | None = None  # a status: personal chats refuse streaming
        self.stream_cap_seconds = 120.0
        self.stream_min_gap: float | None = None
        self.clock: Callable[[], float] = time.monotonic
        self._streams: dict[str, Stream] = {}

    # addresses

    @property
    def service_url(self) -> str:
        """What goes in an activity's ``serviceUrl`` (with a trailing slash, like Teams')."""
        return self.url + self._prefix

    # scripting

    def fail(
        self,
        op: str,
        status: int,
        *,
        retry_after: float | str | None = None,
        times: int | None = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
        code: str | None = None,
        message: str = "scripted",
    ) -> None:
        """The next ``times`` calls of ``op`` ("send", "reply", "update"; None times: all of
        them) whose activity matches ``when`` answer ``status`` (with ``Retry-After``), with
        the error ``code`` (by default one that fits the status) and ``message``."""
        if op not in ("send", "reply", "update"):
            raise ValueError(f"unknown operation {op!r}")
        after = None if retry_after is None else str(retry_after)
        with self._lock:
            self._failures.append(_Failure(op, status, after, times, when, code, message))

    def press_stop(self, conversation_id: str) -> str:
        """The person presses Stop on the conversation's open stream; returns its id."""
        with self._changed:
            (stream,) = [
                s
                for s in self._streams.values()
                if s.conversation_id == conversation_id and s.final is None and not s.over
            ]
            stream.over = "stopped"
            shown = self._messages.get(stream.id)
            if shown is not None:
                shown["streaming"] = False
            self._changed.notify_all()
            return stream.id

    # reading

    @property
    def calls(self) -> list[ConnectorCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, *ops: str, type: str | None = None) -> list[ConnectorCall]:
        return [c for c in self.calls if c.op in ops and (type is None or c.type == type)]

    @property
    def streams(self) -> list[Stream]:
        with self._lock:
            return [json_copy(stream) for stream in self._streams.values()]

    def messages(self, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """The bot's messages as they now show, oldest first (optionally of one conversation,
        given as sent, with or without a ``;messageid=`` suffix)."""
        with self._lock:
            found = [self._messages[i] for i in self._order]
        if conversation_id is not None:
            found = [m for m in found if m["conversation"]["id"] == conversation_id]
        return [json.loads(json.dumps(m)) for m in found]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    # the server side (called from handler threads)

    def _handle(
        self, method: str, raw_path: str, headers: dict[str, str], raw: bytes, arrived: float
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        path = raw_path.split("?", 1)[0]
        route = self._route(method, path)
        if route is None:
            return 404, {"error": {"code": "NotFound", "message": f"{method} {path}"}}, {}
        op, conversation_id, activity_id = route
        try:
            body = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            body = {}
        with self._changed:
            status, response, extra = self._answer(op, conversation_id, activity_id, body, raw)
            self._calls.append(
                ConnectorCall(
                    op=op,
                    method=method,
                    path=path,
                    conversation_id=conversation_id,
                    activity_id=activity_id,
                    activity=body if isinstance(body, dict) else {},
                    headers=headers,
                    at=arrived,
                    status=status,
                    response=response,
                )
            )
            self._changed.notify_all()
        return status, response, extra

    def _route(self, method: str, path: str) -> tuple[str, str, str | None] | None:
        if not path.startswith(self._prefix + "v3/conversations/"):
            return None
        # Split the raw path before decoding: the ids are URL-encoded and may hold '/'.
        parts = path[len(self._prefix + "v3/conversations/") :].split("/")
        if len(parts) == 2 and parts[1] == "activities" and method == "POST":
            return "send", unquote(parts[0]), None
        if len(parts) == 3 and parts[1] == "activities" and parts[2]:
            if method == "POST":
                return "reply", unquote(parts[0]), unquote(parts[2])
            if method == "PUT":
                return "update", unquote(parts[0]), unquote(parts[2])
        return None

    def _answer(
        self,
        op: str,
        conversation_id: str,
        activity_id: str | None,
        body: Any,
        raw: bytes,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        failure = self._scripted(op, body)
        if failure is not None:
            extra = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            code = {429: "Throttled", 412: "PreconditionFailed", 403: "BotNotInConversationRoster"}
            error = {
                "code": failure.code or code.get(failure.status, "ServiceError"),
                "message": failure.message,
            }
            return failure.status, {"error": error}, extra
        if not isinstance(body, dict) or not body.get("type"):
            return 400, {"error": {"code": "BadArgument", "message": "no activity type"}}, {}
        if len(raw) > self.max_body_bytes:
            return 413, {"error": {"code": "MessageSizeTooBig", "message": "too big"}}, {}
        conversation = body.get("conversation") or {}
        if conversation.get("id") != conversation_id:
            return 400, {"error": {"code": "BadArgument", "message": "conversation mismatch"}}, {}
        if op == "update":
            assert activity_id is not None
            shown = self._messages.get(activity_id)
            if shown is None or shown["conversation"]["id"] != conversation_id:
                return 404, {"error": {"code": "ActivityNotFound", "message": activity_id}}, {}
            shown["text"] = body.get("text")
            shown["textFormat"] = body.get("textFormat")
            shown["channelData"] = body.get("channelData")
            shown["edits"] = shown.get("edits", 0) + 1
            return 200, {"id": activity_id}, {}
        if stream_info(body) is not None:
            return self._stream(conversation_id, body)
        if body["type"] != "message":
            return 200, {}, {}  # typing and other non-message activities are not kept
        new_id = str(1_790_000_000_000 + next(self._ids))
        self._messages[new_id] = {
            "id": new_id,
            "type": "message",
            "text": body.get("text"),
            "textFormat": body.get("textFormat"),
            "conversation": {"id": conversation_id},
            "replyToId": body.get("replyToId"),
            "from": body.get("from"),
            "channelData": body.get("channelData"),
            "entities": body.get("entities") or [],
            "edits": 0,
        }
        self._order.append(new_id)
        return 201, {"id": new_id}, {}

    def _stream(
        self, conversation_id: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One streaming request (see the module docstring); called under the lock."""
        info = stream_info(body) or {}
        kind = info.get("streamType")
        kinds = {"informative": "typing", "streaming": "typing", "final": "message"}
        if kind not in kinds or body["type"] != kinds[kind]:
            return _bad(f"streamType {kind!r} in a {body['type']!r} activity")
        conversation_type = (body.get("conversation") or {}).get("conversationType")
        if conversation_type in ("groupChat", "channel"):
            error = {"code": "BadArgument", "message": "Method Not Allowed"}
            return 405, {"error": error}, {}
        if self.refuse_streaming is not None:
            message = "Invalid request: streaming api is not enabled"
            return self.refuse_streaming, {"error": {"code": "BadArgument", "message": message}}, {}
        text = str(body.get("text") or "")
        sequence = info.get("streamSequence")
        now = self.clock()
        stream_id = info.get("streamId")
        if stream_id is None:  # the first request opens a stream
            if kind == "final" or sequence != 1:
                return _bad("a stream starts with streamSequence 1")
            if kind == "informative" and len(text) > 1000:
                return _bad("informative text over 1000 characters")
            new_id = str(1_790_000_000_000 + next(self._ids))
            stream = Stream(new_id, conversation_id, now, 1, last_request=now)
            self._streams[new_id] = stream
            self._streamed(stream, body, kind, text)
            return 201, {"id": new_id}, {}
        stream = self._streams.get(str(stream_id))
        if stream is None or stream.conversation_id != conversation_id:
            return _bad("unknown stream")
        if stream.over == "stopped":
            return 403, _not_allowed(STREAM_CANCELLED), {}
        if stream.final is not None or stream.over:
            return 403, _not_allowed("Content stream is not allowed on a finished stream."), {}
        if now - stream.started > self.stream_cap_seconds:
            stream.over = "time cap"
            return 403, _not_allowed(STREAM_TIMED_OUT), {}
        gap = now - stream.last_request
        if self.stream_min_gap is not None and gap < self.stream_min_gap:
            wait = f"{self.stream_min_gap - gap:.3f}"
            return 429, {"error": {"code": "Throttled", "message": "1 rps"}}, {"Retry-After": wait}
        if kind != "final" or sequence is not None:
            if not isinstance(sequence, int) or sequence <= stream.sequence:
                return _bad(f"streamSequence {sequence!r} after {stream.sequence}")
            stream.sequence = sequence
        if kind == "streaming" and not text.startswith(stream.text):
            return _bad("a streaming chunk must hold the text streamed before it")
        stream.last_request = now
        self._streamed(stream, body, kind, text)
        return 201, {"id": stream.id}, {}

    def _streamed(self, stream: Stream, body: dict[str, Any], kind: str, text: str) -> None:
        if kind == "informative":
            stream.informative.append(text)
            return
        if kind == "streaming":
            stream.chunks += 1
            stream.text = text
        else:
            stream.final = body
        shown = self._messages.get(stream.id)
        if shown is None:
            shown = {
                "id": stream.id,
                "type": "message",
                "conversation": {"id": stream.conversation_id},
                "replyToId": body.get("replyToId"),
                "from": body.get("from"),
                "edits": 0,
            }
            self._messages[stream.id] = shown
            self._order.append(stream.id)
        shown.update(
            text=text,
            textFormat=body.get("textFormat"),
            channelData=body.get("channelData") if kind == "final" else None,
            entities=body.get("entities") or [],
            streaming=kind != "final",
        )

    def _scripted(self, op: str, body: Any) -> _Failure | None:
        for failure in self._failures:
            if failure.op != op or failure.remaining == 0:
                continue
            activity = body if isinstance(body, dict) else {}
            if failure.when is not None and not failure.when(activity):
                continue
            if failure.remaining is not None:
                failure.remaining -= 1
            return failure
        return None


def _bad(message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return 400, {"error": {"code": "BadArgument", "message": message}}, {}


def _not_allowed(message: str) -> dict[str, Any]:
    return {"error": {"code": "ContentStreamNotAllowed", "message": message}}


def json_copy(stream: Stream) -> Stream:
    return copy.deepcopy(stream)


# --- the token issuer (inbound auth) ------------------------------------------------------------

_KEYS: dict[str, Any] = {}


def _rsa_key(name: str) -> Any:
    """RSA keys are slow to make (~0.1 s); one per name per test run."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


class _IssuerHandler(TrackingHandler):
    def do_GET(self) -> None:
        issuer: TokenIssuer = self.server.standin
        body = issuer._document(self.path.split("?", 1)[0])
        payload = json.dumps(body or {"error": "not found"}).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class TokenIssuer(LoopbackHttpService):
    """The Bot Framework's token service for inbound requests; see the module docstring."""

    key_id = "standin-signing-key"
    handler_class = _IssuerHandler
    thread_name = "teams-token-issuer"
    description = "the token issuer"

    def __init__(self, *, endorsements: tuple[str, ...] = ("msteams", "emulator")) -> None:
        super().__init__()
        self.endorsements = list(endorsements)
        self.fetches: list[str] = []
        self._key = _rsa_key("issuer")

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/v1/.well-known/openidconfiguration"

    def _document(self, path: str) -> dict[str, Any] | None:
        import jwt

        self.fetches.append(path)
        if path == "/v1/.well-known/openidconfiguration":
            return {
                "issuer": BOTFRAMEWORK_ISSUER,
                "authorization_endpoint": "https://invalid.example/v1/auth",
                "jwks_uri": f"{self.url}/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        if path == "/v1/.well-known/keys":
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
            jwk.update({"kid": self.key_id, "use": "sig", "endorsements": self.endorsements})
            return {"keys": [jwk]}
        return None

    def token(
        self,
        *,
        service_url: str,
        audience: str = APP_ID,
        issuer: str = BOTFRAMEWORK_ISSUER,
        expires_in: float = 3600,
        signing_key: Any = None,
        key_id: str | None = None,
        **claims: Any,
    ) -> str:
        """A channel → bot token as the Bot Framework mints it; ``expires_in`` may be negative."""
        import jwt

        now = int(time.time())
        payload = {
            "serviceurl": service_url,
            "nbf": now - 60,
            "iat": now - 60,
            "exp": int(now + expires_in),
            "iss": issuer,
            "aud": audience,
            **claims,
        }
        return jwt.encode(
            payload,
            signing_key or self._key,
            algorithm="RS256",
            headers={"kid": key_id or self.key_id},
        )

    @staticmethod
    def forged_key() -> Any:
        """A key the issuer never published: a token signed with it must be refused."""
        return _rsa_key("forger")


@dataclass
class OutboundTokens:
    """What ``MicrosoftAppCredentials.get_access_token`` was asked for."""

    token: str = OUTBOUND_TOKEN
    requests: list[dict[str, Any]] = field(default_factory=list)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def teams_connector() -> Iterator[ConnectorStandIn]:
    with ConnectorStandIn() as standin:
        yield standin
    if standin.internal_errors:
        pytest.fail(f"the connector stand-in itself failed: {standin.internal_errors}")


@pytest.fixture
def token_issuer(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenIssuer]:
    """A running issuer, with botframework-connector's channel validation pointed at it."""
    from botframework.connector.auth import ChannelValidation, JwtTokenExtractor

    issuer = TokenIssuer().start()
    monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", issuer.metadata_url)
    monkeypatch.setattr(JwtTokenExtractor, "metadataCache", {})
    yield issuer
    issuer.stop()


@pytest.fixture
def outbound_token(monkeypatch: pytest.MonkeyPatch) -> OutboundTokens:
    """Outbound credentials get a dummy token instead of asking Entra ID through MSAL."""
    from botframework.connector.auth import MicrosoftAppCredentials

    record = OutboundTokens()

    def get_access_token(self: Any, force_refresh: bool = False) -> str:
        record.requests.append(
            {
                "credentials": id(self),
                "app_id": self.microsoft_app_id,
                "authority": self.oauth_endpoint,
                "scope": self.oauth_scope,
            }
        )
        return record.token

    monkeypatch.setattr(MicrosoftAppCredentials, "get_access_token", get_access_token)
    return record


def encoded(conversation_id: str) -> str:
    """A conversation id as it appears in a connector path."""
    return quote(conversation_id, safe="")
