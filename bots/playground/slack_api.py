"""The Slack Web API, emulated inside the local host, for the playground.

The bot's real ``slack_sdk.WebClient`` (the worker's, Bolt's, ``WebhookClient``) is pointed here
through ``SLACK_API_URL`` = ``<server>/playground/slack/api/``; it answers the way
``slack.com/api`` does (HTTP 200 with ``{"ok": false, "error": ...}`` on a refusal, the bot token
required, form or JSON bodies) from the in-memory :class:`SlackWorkspace`, and every change it
makes is pushed to the page. So what the page shows is exactly what the bot asked Slack to show:
placeholder, edits, native streams, the assistant panel's status and prompts, final blocks with
sources and feedback buttons.

Methods: ``auth.test``; ``chat.postMessage``, ``chat.update``, ``chat.delete``,
``chat.postEphemeral``; ``chat.startStream``, ``chat.appendStream``, ``chat.stopStream``;
``assistant.threads.setStatus``, ``.setSuggestedPrompts``, ``.setTitle``;
``conversations.history``, ``.replies``, ``.info``, ``.members``; ``users.info``; ``files.info``.
Any other answers ``unknown_method``, as Slack does, so the adapters' fallbacks run. Slack's
documented size limits are enforced (``text`` 40,000 characters, 50 blocks, 12,000 characters
across markdown blocks). Besides the API: file downloads (``url_private_download``, bot token
only) and slash commands' ``response_url``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

from bots.http import HttpRequest, HttpResponse, MalformedJson, parse_json
from bots.playground import slack_wire as wire
from bots.playground.slack_wire import BoundedDict, Params, Refused
from bots.playground.slack_workspace import (
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_ID,
    TEAM_NAME,
    Channel,
    SlackWorkspace,
)

log = logging.getLogger(__name__)

API_PREFIX = "/playground/slack/api/"
FILES_PREFIX = "/playground/slack/files/"
RESPONSE_PREFIX = "/playground/slack/response/"


class SlackApi:
    """The route handlers of the emulated Web API over one workspace."""

    def __init__(self, workspace: SlackWorkspace, bot_token: str) -> None:
        self.ws = workspace
        self._token = bot_token
        # response_url id → (channel, user, thread ts): the newest MAX_RESPONSE_URLS only.
        self.response_urls: BoundedDict[tuple[str, str, str | None]] = BoundedDict()
        self._methods: dict[str, Callable[[Params], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setSuggestedPrompts": self._set_prompts,
            "assistant.threads.setTitle": self._set_title,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.info": self._info,
            "conversations.members": self._members,
            "users.info": self._users_info,
            "files.info": self._files_info,
        }

    # routes --------------------------------------------------------------------------------

    def api(self, request: HttpRequest) -> HttpResponse:
        method = request.path[len(API_PREFIX) :].strip("/")
        try:
            params = wire.params(request)
        except (UnicodeDecodeError, MalformedJson):
            return HttpResponse.json(200, {"ok": False, "error": "invalid_json"})
        handler = self._methods.get(method)
        if handler is None:
            log.info("playground slack: unknown method", extra={"slack_method": method[:64]})
            return HttpResponse.json(200, {"ok": False, "error": "unknown_method"})
        token = wire.bearer(request) or str(params.get("token") or "")
        try:
            if not token:
                raise Refused("not_authed")
            if token != self._token:
                raise Refused("invalid_auth")
            with self.ws.lock:
                answer = handler(params)
        except Refused as refused:
            return HttpResponse.json(200, {"ok": False, "error": refused.error})
        return HttpResponse.json(200, {"ok": True, **answer})

    def download(self, request: HttpRequest) -> HttpResponse:
        """``url_private_download``: the bytes, to the bot token only (Slack would answer
        anyone else with its login page)."""
        file_id = request.path[len(FILES_PREFIX) :].split("/", 1)[0]
        with self.ws.lock:
            stored = self.ws.files.get(file_id)
        if wire.bearer(request) != self._token:
            return HttpResponse.error(403, "file downloads need the bot token")
        if stored is None or stored.data is None:
            return HttpResponse.error(404, "file not found")
        return HttpResponse(200, stored.data, {"Content-Type": stored.mimetype})

    def response_url(self, request: HttpRequest) -> HttpResponse:
        """A slash command's ``response_url``: what is posted shows to the person who asked."""
        key = request.path[len(RESPONSE_PREFIX) :]
        target = self.response_urls.get(key)
        if target is None:
            return HttpResponse.error(404, "no such response_url")
        try:
            payload = parse_json(request.body)
        except MalformedJson:
            return HttpResponse.error(400, "invalid_payload")
        if not isinstance(payload, dict):
            return HttpResponse.error(400, "invalid_payload")
        channel, user, thread_ts = target
        text = str(payload.get("text") or "")
        with self.ws.lock:
            if payload.get("response_type") == "in_channel":
                found = self.ws.channel(channel)
                if found is not None:
                    msg = self._bot_message({"text": text, "blocks": payload.get("blocks")})
                    self.ws.store(found, msg, thread_ts)
            else:
                self.ws.add_ephemeral(
                    channel, user, text, blocks=payload.get("blocks"), thread_ts=thread_ts
                )
        return HttpResponse(200, b"ok", {"Content-Type": "text/plain"})

    # methods (called with the workspace lock held) ------------------------------------------

    def _auth_test(self, params: Params) -> dict[str, Any]:
        return {
            "url": f"{self.ws.base_url}/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: Params) -> dict[str, Any]:
        channel = self._member_channel(params.get("channel"))
        wire.check_content(params)
        thread_ts = wire.text(params.get("thread_ts")) or None
        if thread_ts and thread_ts not in channel.messages:
            raise Refused("thread_not_found")
        msg = self._bot_message(params)
        self.ws.store(channel, msg, thread_ts)
        return {"channel": channel.id, "ts": msg["ts"], "message": wire.public(msg)}

    def _update(self, params: Params) -> dict[str, Any]:
        channel, msg = self._own_message(params.get("channel"), params.get("ts"))
        wire.check_content(params)
        if msg.get("_streaming"):
            raise Refused("cant_update_message")
        if params.get("text") is not None:
            msg["text"] = str(params["text"])
        if params.get("blocks") is not None:
            msg["blocks"] = params["blocks"] or None
        _keep_metadata(msg, params)
        msg["edited"] = {"user": BOT_USER_ID, "ts": self.ws.new_ts()}
        msg["_edits"] = msg.get("_edits", 0) + 1
        self.ws.publish(channel, msg)
        return {
            "channel": channel.id,
            "ts": msg["ts"],
            "text": msg["text"],
            "message": wire.public(msg),
        }

    def _delete(self, params: Params) -> dict[str, Any]:
        channel, msg = self._own_message(params.get("channel"), params.get("ts"))
        del channel.messages[msg["ts"]]
        self.ws.hub.publish({"type": "slack.deleted", "channel": channel.id, "ts": msg["ts"]})
        return {"channel": channel.id, "ts": msg["ts"]}

    def _post_ephemeral(self, params: Params) -> dict[str, Any]:
        channel = self._member_channel(params.get("channel"))
        user = wire.text(params.get("user"))
        if user not in channel.members:
            raise Refused("user_not_in_channel")
        wire.check_content(params)
        view = self.ws.add_ephemeral(
            channel.id,
            user,
            str(params.get("text") or ""),
            blocks=params.get("blocks"),
            thread_ts=params.get("thread_ts"),
        )
        return {"message_ts": view["ts"]}

    def _start_stream(self, params: Params) -> dict[str, Any]:
        channel = self._member_channel(params.get("channel"))
        thread_ts = wire.text(params.get("thread_ts"))
        if not thread_ts:
            raise Refused("invalid_arguments")  # Slack streams replies in threads only
        if thread_ts not in channel.messages:
            raise Refused("thread_not_found")
        text = wire.text(params.get("markdown_text"))
        wire.check_length(text)
        msg = self._bot_message({"text": text})
        msg["_streaming"] = True
        msg["blocks"] = [{"type": "markdown", "text": text}] if text else None
        self.ws.store(channel, msg, thread_ts)
        return {"channel": channel.id, "ts": msg["ts"]}

    def _append_stream(self, params: Params) -> dict[str, Any]:
        channel, msg = self._streaming_message(params)
        text = msg["text"] + wire.text(params.get("markdown_text"))
        wire.check_length(text)
        msg["text"] = text
        msg["blocks"] = [{"type": "markdown", "text": text}]
        msg["_edits"] = msg.get("_edits", 0) + 1
        self.ws.publish(channel, msg)
        return {"channel": channel.id, "ts": msg["ts"]}

    def _stop_stream(self, params: Params) -> dict[str, Any]:
        channel, msg = self._streaming_message(params)
        text = msg["text"] + wire.text(params.get("markdown_text"))
        wire.check_length(text)
        blocks = params.get("blocks")
        if blocks is not None and not (
            isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks)
        ):
            raise Refused("invalid_blocks_format")
        final = [{"type": "markdown", "text": text}] if text else []
        msg["text"] = text
        msg["blocks"] = final + list(blocks or ()) or None
        msg["_streaming"] = False
        msg["_edits"] = msg.get("_edits", 0) + 1
        self.ws.publish(channel, msg)
        return {"channel": channel.id, "ts": msg["ts"], "message": wire.public(msg)}

    def _set_status(self, params: Params) -> dict[str, Any]:
        channel, thread_ts = self._assistant_thread(params)
        status = wire.text(params.get("status"))
        loading = params.get("loading_messages")
        loading = [str(m) for m in loading] if isinstance(loading, list) else []
        self._thread_state(channel, thread_ts).update(status=status, loading_messages=loading)
        self.ws.hub.publish(
            {
                "type": "slack.status",
                "channel": channel,
                "thread_ts": thread_ts,
                "status": status,
                "loading_messages": loading,
            }
        )
        return {}

    def _set_prompts(self, params: Params) -> dict[str, Any]:
        channel, thread_ts = self._assistant_thread(params)
        prompts = params.get("prompts")
        if not isinstance(prompts, list) or not all(
            isinstance(p, dict) and wire.text(p.get("title")) and wire.text(p.get("message"))
            for p in prompts
        ):
            raise Refused("invalid_arguments")
        cleaned = [{"title": p["title"], "message": p["message"]} for p in prompts[:4]]
        title = wire.text(params.get("title"))
        self._thread_state(channel, thread_ts).update(prompts=cleaned, prompts_title=title)
        self.ws.hub.publish(
            {
                "type": "slack.prompts",
                "channel": channel,
                "thread_ts": thread_ts,
                "title": title,
                "prompts": cleaned,
            }
        )
        return {}

    def _set_title(self, params: Params) -> dict[str, Any]:
        channel, thread_ts = self._assistant_thread(params)
        title = wire.text(params.get("title"))
        self._thread_state(channel, thread_ts)["title"] = title
        self.ws.hub.publish(
            {"type": "slack.title", "channel": channel, "thread_ts": thread_ts, "title": title}
        )
        return {}

    def _history(self, params: Params) -> dict[str, Any]:
        channel = self._member_channel(params.get("channel"))
        found = [m for m in reversed(channel.messages.values()) if self.ws.is_top_level(m)]
        found = [m for m in found if wire.within(m["ts"], params)]
        return wire.page(found, params)

    def _replies(self, params: Params) -> dict[str, Any]:
        channel = self._member_channel(params.get("channel"))
        ts = wire.text(params.get("ts"))
        if not ts:
            raise Refused("invalid_arguments")
        if ts not in channel.messages:
            raise Refused("thread_not_found")
        found = [m for m in self.ws.thread_of(channel, ts) if wire.within(m["ts"], params)]
        return wire.page(found, params)

    def _info(self, params: Params) -> dict[str, Any]:
        channel = self.ws.channel(params.get("channel"))
        if channel is None:
            raise Refused("channel_not_found")
        return {"channel": channel.info()}

    def _members(self, params: Params) -> dict[str, Any]:
        channel = self._member_channel(params.get("channel"))
        return {"members": list(channel.members), "response_metadata": {"next_cursor": ""}}

    def _users_info(self, params: Params) -> dict[str, Any]:
        user = self.ws.users.get(wire.text(params.get("user")))
        if user is None:
            raise Refused("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _files_info(self, params: Params) -> dict[str, Any]:
        stored = self.ws.files.get(wire.text(params.get("file")))
        if stored is None:
            raise Refused("file_not_found")
        return {"file": stored.payload(self.ws.base_url), "comments": []}

    # helpers -------------------------------------------------------------------------------

    def _member_channel(self, channel_id: object) -> Channel:
        channel = self.ws.channel(channel_id)
        if channel is None:
            raise Refused("channel_not_found")
        if BOT_USER_ID not in channel.members:
            raise Refused("not_in_channel")
        return channel

    def _own_message(self, channel_id: object, ts: object) -> tuple[Channel, dict[str, Any]]:
        channel = self.ws.channel(channel_id)
        if channel is None:
            raise Refused("channel_not_found")
        msg = self.ws.message(channel.id, ts)
        if msg is None:
            raise Refused("message_not_found")
        if msg.get("bot_id") != BOT_ID:
            raise Refused("cant_update_message")
        return channel, msg

    def _streaming_message(self, params: Params) -> tuple[Channel, dict[str, Any]]:
        channel, msg = self._own_message(params.get("channel"), params.get("ts"))
        if not msg.get("_streaming"):
            raise Refused("message_not_in_streaming_state")
        return channel, msg

    def _assistant_thread(self, params: Params) -> tuple[str, str]:
        channel = self.ws.channel(params.get("channel_id"))
        thread_ts = wire.text(params.get("thread_ts"))
        if channel is None:
            raise Refused("channel_not_found")
        if not thread_ts:
            raise Refused("invalid_arguments")
        return channel.id, thread_ts

    def _thread_state(self, channel: str, thread_ts: str) -> dict[str, Any]:
        return self.ws.threads.setdefault((channel, thread_ts), {})

    def _bot_message(self, params: Params) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": self.ws.new_ts(),
            "text": str(params.get("text") or ""),
            "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": BOT_NAME, "team_id": TEAM_ID},
        }
        blocks = params.get("blocks")
        if isinstance(blocks, list) and blocks:
            msg["blocks"] = blocks
        _keep_metadata(msg, params)
        return msg


def _keep_metadata(msg: dict[str, Any], params: Params) -> None:
    """Message metadata (``{event_type, event_payload}``), kept as Slack keeps it: the assistant
    panel stores the thread's context there and reads it back with ``conversations.replies``."""
    metadata = params.get("metadata")
    if (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload"), dict)
    ):
        msg["metadata"] = {
            "event_type": metadata["event_type"],
            "event_payload": metadata["event_payload"],
        }
