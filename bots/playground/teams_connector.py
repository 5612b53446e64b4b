"""The playground's Teams half: a Bot Framework connector emulator, and the person's side.

The person's messages become the Activities Teams sends (``POST /api/messages``, the local
host's unauthenticated loopback path) with ``serviceUrl`` = ``<server>/playground/teams/<secret>/``,
so the bot's real botbuilder ``ConnectorClient`` sends its replies here:

- ``POST v3/conversations/{id}/activities`` (a new post) and ``.../activities/{replyTo}`` (a
  reply): a message is kept and shown; a ``typing`` activity is a typing indicator, unless it
  carries a ``streaminfo`` entity: then it starts (no ``streamId``) or continues a streamed
  message, as Teams' streaming in personal chats does; a ``message`` whose ``streaminfo`` says
  ``final`` ends that stream with its final text.
- ``PUT v3/conversations/{id}/activities/{activityId}``: an edit.
- ``DELETE`` the same: a deletion.

Two conversations: a personal chat with the bot, and a channel (``#General`` of one team) where
a message reaches the bot only when it @mentions it, and each post starts a reply chain
(``conversation.id`` = ``<channel>;messageid=<root>``). Teams' limits hold: a message over
28 KB is refused with 413; streaming is for personal chats only (400 ``BadArgument``
elsewhere), a stream's sequence numbers must grow, and a stream ends
:data:`STREAM_CAP_SECONDS` after it began (403 ``ContentStreamNotAllowed``, by the injectable
``clock``), so the adapter's fallbacks run here too.

Nobody else can drive this: ``/api/messages`` takes unauthenticated activities from any local
process, so the serviceUrl carries a random per-run secret segment that the connector checks
(404 otherwise: a foreign serviceUrl leads nowhere), and both conversations' ids are random per
run (an activity naming a guessed conversation reaches no conversation of the page, and no
history the playground's conversations built). (Somewhat over our usual module size: both
sides share the conversations, their ids and one lock, and splitting them would spread that.)
"""

from __future__ import annotations

import copy
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from bots.http import HttpRequest, HttpResponse, MalformedJson, parse_json
from bots.playground.hub import Hub

CONNECTOR_PREFIX = "/playground/teams/"
TENANT = "playground-tenant"
BOT = {"id": "28:playground-bot", "name": "Assistant"}
PERSON = {"id": "29:playground-you", "name": "You", "aadObjectId": "aad-playground-you"}
TEAM = "19:playground-team@thread.tacv2"
MAX_ACTIVITY_BYTES = 28_000
MAX_TEXT_CHARS = 28_000
MAX_ACTIVITIES = 2_000
STREAM_CAP_SECONDS = 120.0  # Teams ends a stream two minutes after it began
TIMEOUT_SECONDS = 10.0
_MENTION = re.compile(r"(?<![\w<@])@assistant\b", re.IGNORECASE)
_MESSAGE_ID = re.compile(r";messageid=(?P<root>[^;]+)", re.IGNORECASE)


class BadInput(ValueError):
    """400 with this message."""


class DeliveryFailed(RuntimeError):
    """``/api/messages`` refused or failed: 502 with this message."""


class TeamsPlayground:
    def __init__(
        self, hub: Hub, *, base_url: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.hub = hub
        self.base_url = base_url
        self.clock = clock  # for the stream cap; tests replace it
        self._secret = secrets.token_urlsafe(24)  # never shown to the page or logged
        self.service_url = f"{base_url}{CONNECTOR_PREFIX}{self._secret}/"
        # Random per run (see the module docstring).
        self.personal = f"a:playground-personal-{secrets.token_hex(8)}"
        self.channel = f"19:playground-general-{secrets.token_hex(8)}@thread.tacv2"
        self.lock = threading.RLock()
        self.activities: dict[str, dict[str, Any]] = {}  # id → view, oldest first
        self._ids = itertools.count(1)
        self._sequences: dict[str, int] = {}  # open stream id → last streamSequence
        self._started: dict[str, float] = {}  # open stream id → when it began, by ``clock``
        self._capped: set[str] = set()  # streams Teams' cap ended

    def reset(self) -> None:
        with self.lock:
            self.activities.clear()
            self._sequences.clear()
            self._started.clear()
            self._capped.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "conversations": [
                    {"id": self.personal, "name": BOT["name"], "type": "personal"},
                    {"id": self.channel, "name": "General", "type": "channel"},
                ],
                "bot": dict(BOT),
                "user": {"id": PERSON["id"], "name": PERSON["name"]},
                "activities": [copy.deepcopy(a) for a in self.activities.values()],
            }

    # the person's side -------------------------------------------------------------------

    def message(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("conversation")
        if kind not in ("personal", "channel"):
            raise BadInput("conversation must be 'personal' or 'channel'")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BadInput("text must be non-empty text")
        if len(text) > MAX_TEXT_CHARS:
            raise BadInput(f"a Teams message has at most {MAX_TEXT_CHARS:,} characters")
        reply_to = body.get("reply_to")
        activity_id = self._new_id()
        entities: list[dict[str, Any]] = [{"type": "clientInfo", "locale": "en-US"}]
        conversation: dict[str, Any]
        if kind == "personal":
            if reply_to not in (None, ""):
                raise BadInput("a personal chat has no reply chains: leave reply_to out")
            conversation = {
                "conversationType": "personal",
                "tenantId": TENANT,
                "id": self.personal,
            }
            root = None
        else:
            root = self._root(reply_to) if reply_to not in (None, "") else activity_id
            conversation = {
                "isGroup": True,
                "conversationType": "channel",
                "tenantId": TENANT,
                "id": f"{self.channel};messageid={root}",
            }
        wire_text, mentioned = _mentions(text)
        if mentioned:
            entities.append(
                {"type": "mention", "text": f"<at>{BOT['name']}</at>", "mentioned": dict(BOT)}
            )
        activity = self._activity("message", conversation, activity_id, kind)
        activity.update(text=wire_text, textFormat="plain", entities=entities)
        view = {
            "conversation": kind,
            "conversation_id": conversation["id"],
            "id": activity_id,
            "reply_to": root if kind == "channel" and root != activity_id else None,
            "from": "user",
            "text": text,
            "streaming": False,
            "stream_type": None,
            "attachments": [],
            "feedback": False,
            "updated": 0,
        }
        self._keep(view)
        self._deliver(activity)
        return {"ok": True, "id": activity_id}

    def feedback(self, body: dict[str, Any]) -> dict[str, Any]:
        """A 👍/👎 on a bot message: the ``message/submitAction`` invoke Teams sends."""
        reaction = body.get("reaction")
        if reaction not in ("like", "dislike"):
            raise BadInput("reaction must be 'like' or 'dislike'")
        text = body.get("feedback") or ""
        if not isinstance(text, str) or len(text) > 2_000:
            raise BadInput("feedback must be text of at most 2,000 characters")
        with self.lock:
            target = self.activities.get(str(body.get("message_id")))
            if target is None or target["from"] != "bot":
                raise BadInput("no such answer of the bot")
            if not target["feedback"]:
                raise BadInput("that message has no feedback buttons")
            conversation_id = target["conversation_id"]
            kind = target["conversation"]
        conversation: dict[str, Any] = {
            "conversationType": kind,
            "tenantId": TENANT,
            "id": conversation_id,
        }
        if kind == "channel":
            conversation["isGroup"] = True
        activity = self._activity("invoke", conversation, self._new_id(), kind)
        activity.update(
            name="message/submitAction",
            replyToId=target["id"],
            value={
                "actionName": "feedback",
                "actionValue": {
                    "reaction": reaction,
                    "feedback": json.dumps({"feedbackText": text}),
                },
            },
        )
        status = self._deliver(activity)
        return {"ok": True, "status": status}

    def _activity(
        self, kind: str, conversation: dict[str, Any], activity_id: str, where: str
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        channel_data: dict[str, Any] = {"tenant": {"id": TENANT}}
        if where == "channel":
            channel_data.update(
                teamsChannelId=self.channel,
                teamsTeamId=TEAM,
                channel={"id": self.channel, "name": "General"},
                team={"id": TEAM, "name": "Playground"},
            )
        return {
            "type": kind,
            "id": activity_id,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "localTimestamp": now.isoformat(),
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": dict(PERSON),
            "conversation": conversation,
            "recipient": dict(BOT),
            "locale": "en-US",
            "channelData": channel_data,
        }

    def _deliver(self, activity: dict[str, Any]) -> int:
        request = urllib.request.Request(  # noqa: S310 - our own loopback endpoint
            self.base_url + "/api/messages",
            data=json.dumps(activity).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            detail = exc.read(2_000).decode("utf-8", "replace")
            raise DeliveryFailed(f"the app's /api/messages answered {exc.code}: {detail}") from exc
        except OSError as exc:
            raise DeliveryFailed(f"the app's /api/messages could not be reached: {exc}") from exc

    def _root(self, reply_to: object) -> str:
        with self.lock:
            found = self.activities.get(str(reply_to))
            if found is None or found["conversation"] != "channel":
                raise BadInput("reply_to must be a message of the channel")
            return str(found["reply_to"] or found["id"])

    def _new_id(self) -> str:
        return str(int(time.time() * 1000) * 1000 + next(self._ids) % 1000)

    def _keep(self, view: dict[str, Any]) -> None:
        with self.lock:
            self.activities[view["id"]] = view
            while len(self.activities) > MAX_ACTIVITIES:
                self.activities.pop(next(iter(self.activities)))
            self.hub.publish({"type": "teams.activity", "activity": copy.deepcopy(view)})

    # the connector (called by the bot's botbuilder client) --------------------------------

    def connector(self, request: HttpRequest) -> HttpResponse:
        secret, _, rest = request.path[len(CONNECTOR_PREFIX) :].partition("/")
        if not hmac.compare_digest(secret.encode(), self._secret.encode()):
            # Not this run's serviceUrl: nothing here for whoever sent it.
            return _error(404, "NotFound", "no such service")
        parts = rest.split("/")
        if len(parts) < 4 or parts[:2] != ["v3", "conversations"] or parts[3] != "activities":
            return _error(404, "NotFound", "no such resource")
        conversation_id = unquote(parts[2])
        activity_id = unquote(parts[4]) if len(parts) > 4 and parts[4] else None
        if len(parts) > 5:
            return _error(404, "NotFound", "no such resource")
        base, _ = _split(conversation_id)
        if base not in (self.personal, self.channel):
            return _error(404, "ConversationNotFound", "no such conversation")
        if request.method == "DELETE" and activity_id:
            return self._delete(activity_id)
        if len(request.body) > MAX_ACTIVITY_BYTES:
            return _error(413, "MessageSizeTooBig", "activity over 28 KB")
        try:
            body = parse_json(request.body)
        except MalformedJson:
            return _error(400, "BadArgument", "not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return _error(400, "BadArgument", "no activity type")
        if request.method == "PUT" and activity_id:
            return self._update(activity_id, body)
        if request.method == "POST":
            return self._send(conversation_id, activity_id, body)
        return _error(405, "MethodNotAllowed", request.method)

    def _send(
        self, conversation_id: str, reply_to: str | None, body: dict[str, Any]
    ) -> HttpResponse:
        info = _stream_info(body)
        with self.lock:
            if info is not None:
                return self._stream(conversation_id, reply_to, body, info)
            if body["type"] == "typing":
                kind = self._kind(conversation_id)
                self.hub.publish({"type": "teams.typing", "conversation": kind})
                return HttpResponse.json(200, {})
            if body["type"] != "message":
                return HttpResponse.json(200, {})
            activity_id = self._new_id()
            self._keep(self._bot_view(activity_id, conversation_id, reply_to, body))
            return HttpResponse.json(201, {"id": activity_id})

    def _stream(
        self,
        conversation_id: str,
        reply_to: str | None,
        body: dict[str, Any],
        info: dict[str, Any],
    ) -> HttpResponse:
        if self._kind(conversation_id) != "personal":
            return _error(400, "BadArgument", "streaming is supported in personal chats only")
        stream_type = str(info.get("streamType") or "streaming")
        stream_id = info.get("streamId")
        sequence = info.get("streamSequence")
        if stream_id is None:
            if body["type"] != "typing":
                return _error(400, "BadArgument", "a stream starts with a typing activity")
            if not _positive_int(sequence):
                return _error(400, "BadArgument", "a stream starts with a streamSequence")
            activity_id = self._new_id()
            started = self._bot_view(activity_id, conversation_id, reply_to, body)
            started.update(streaming=True, stream_type=stream_type)
            self._sequences[activity_id] = sequence
            self._started[activity_id] = self.clock()
            self._keep(started)
            return HttpResponse.json(201, {"id": activity_id})
        if str(stream_id) in self._capped:
            return _error(403, "ContentStreamNotAllowed", "the stream has ended")
        view = self.activities.get(str(stream_id))
        if view is None or not view["streaming"]:
            return _error(400, "ContentStreamNotAllowed", "no such open stream")
        began = self._started.get(view["id"])
        if began is not None and self.clock() - began > STREAM_CAP_SECONDS:
            # Teams' cap: the stream ends as a message with the text it showed.
            self._end_stream(view["id"], capped=True)
            view.update(streaming=False, stream_type=None)
            self._keep(view)
            return _error(403, "ContentStreamNotAllowed", "the stream has ended (time cap)")
        if stream_type == "final":
            if body["type"] != "message":
                return _error(400, "BadArgument", "a stream ends with a message activity")
            final = self._bot_view(view["id"], conversation_id, view["reply_to"], body)
            final.update(streaming=False, stream_type="final", updated=view["updated"] + 1)
            self._end_stream(view["id"])
            self._keep(final)
            return HttpResponse.json(200, {"id": view["id"]})
        if not _positive_int(sequence) or sequence <= self._sequences.get(view["id"], 0):
            return _error(400, "BadArgument", "streamSequence must grow")
        self._sequences[view["id"]] = sequence
        view.update(
            text=str(body.get("text") or ""), stream_type=stream_type, updated=view["updated"] + 1
        )
        self._keep(view)
        return HttpResponse.json(202, {"id": view["id"]})

    def _end_stream(self, stream_id: str, *, capped: bool = False) -> None:
        self._sequences.pop(stream_id, None)
        self._started.pop(stream_id, None)
        if capped:
            self._capped.add(stream_id)
            while len(self._capped) > MAX_ACTIVITIES:
                self._capped.pop()

    def _kind(self, conversation_id: str) -> str:
        return "channel" if _split(conversation_id)[0] == self.channel else "personal"

    def _update(self, activity_id: str, body: dict[str, Any]) -> HttpResponse:
        with self.lock:
            view = self.activities.get(activity_id)
            if view is None or view["from"] != "bot":
                return _error(404, "ActivityNotFound", activity_id)
            view.update(
                text=str(body.get("text") or ""),
                attachments=_attachments(body),
                feedback=view["feedback"] or _feedback(body),
                updated=view["updated"] + 1,
            )
            self._keep(view)
            return HttpResponse.json(200, {"id": activity_id})

    def _delete(self, activity_id: str) -> HttpResponse:
        with self.lock:
            view = self.activities.pop(activity_id, None)
            if view is None:
                return _error(404, "ActivityNotFound", activity_id)
            self.hub.publish({"type": "teams.deleted", "id": activity_id})
            return HttpResponse(200)

    def _bot_view(
        self, activity_id: str, conversation_id: str, reply_to: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        kind = self._kind(conversation_id)
        _, root = _split(conversation_id)
        return {
            "conversation": kind,
            "conversation_id": conversation_id,
            "id": activity_id,
            "reply_to": root if kind == "channel" else reply_to,
            "from": "bot",
            "text": str(body.get("text") or ""),
            "streaming": False,
            "stream_type": None,
            "attachments": _attachments(body),
            "feedback": _feedback(body),
            "updated": 0,
        }


def _mentions(text: str) -> tuple[str, bool]:
    """``@assistant`` as Teams' ``<at>Assistant</at>`` markup (the entity goes alongside)."""
    wire, count = _MENTION.subn(f"<at>{BOT['name']}</at>", text)
    return wire, count > 0


def _split(conversation_id: str) -> tuple[str, str | None]:
    match = _MESSAGE_ID.search(conversation_id)
    if match is None:
        return conversation_id, None
    return conversation_id[: match.start()] + conversation_id[match.end() :], match["root"]


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _stream_info(body: dict[str, Any]) -> dict[str, Any] | None:
    entities = body.get("entities")
    for entity in entities if isinstance(entities, list) else ():
        if isinstance(entity, dict) and entity.get("type") == "streaminfo":
            return entity
    channel_data = body.get("channelData")
    if isinstance(channel_data, dict) and channel_data.get("streamType"):
        return {k: channel_data.get(k) for k in ("streamType", "streamSequence", "streamId")}
    return None


def _feedback(body: dict[str, Any]) -> bool:
    channel_data = body.get("channelData")
    return isinstance(channel_data, dict) and bool(channel_data.get("feedbackLoopEnabled"))


def _attachments(body: dict[str, Any]) -> list[Any]:
    found = body.get("attachments")
    return copy.deepcopy(found) if isinstance(found, list) else []


def _error(status: int, code: str, message: str) -> HttpResponse:
    return HttpResponse.json(status, {"error": {"code": code, "message": message}})
