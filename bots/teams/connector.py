"""Outbound calls to the Bot Framework connector at an activity's ``serviceUrl``.

One :class:`TeamsConnector` per process holds botbuilder's ``BotFrameworkAdapter`` and the bot's
``MicrosoftAppCredentials``, built once: the adapter caches one ``ConnectorClient`` per service
URL, and the one credentials object keeps MSAL's token cache, so a token is fetched from Entra
ID when it expires, not per message. With no app id (local mode) the SDK sends no token.

Every send is a proactive turn: ``BotFrameworkAdapter.continue_conversation`` with the stored
``ConversationReference``, then ``TurnContext.send_activity`` (a reply into the chain, through
``reply_to_activity``) or ``TurnContext.update_activity``. botbuilder is async; each worker
thread runs these coroutines on its own event loop (:func:`run_sync`), kept for the thread's
life: worker threads are long-lived, and requests' keep-alive session belongs to that thread.

Any number of worker threads share the one ``ConnectorClient`` per service URL. That is safe
because the aio ``ConnectorClient`` of botframework-connector 4.17 holds nothing bound to an
event loop: it has no aiohttp session; msrest sends through ``requests`` in the running loop's
default executor, with one ``requests.Session`` per calling thread (a ``threading.local``), each
made on the thread's first call and given its retry policy then. So the client is configured
once, before it is built (:func:`_connector_client`, under the adapter's lock), and never
mutated afterwards: a policy set after construction misses the session the constructor already
made, and a plain urllib3 ``Retry`` in msrest's ``ClientRetryPolicy`` breaks the session every
other thread makes (msrest reads ``Retry.BACKOFF_MAX``, which urllib3 2 removed).

Retries are the pacer's business, not the HTTP stack's: msrest would otherwise retry 5xx (and
honour ``Retry-After`` on PUT) inside the call, unseen and with its own backoff. Only a failed
connection (nothing reached the connector) is retried in the stack, briefly. Failures come
out as the core's errors (:func:`translate`): 429 → :class:`RateLimited` with ``Retry-After``;
412/5xx and network failures → :class:`TransientFailure` (a short wait); 413 →
:class:`MessageTooLong`; other refusals (401, 403, 404, ...) → :class:`ConnectorRefused` naming
the status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import requests
from botbuilder.core import BotFrameworkAdapter, BotFrameworkAdapterSettings, TurnContext
from botbuilder.core.bot_framework_adapter import USER_AGENT
from botbuilder.schema import Activity, ConversationReference
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AppCredentials,
    AuthenticationConstants,
    ClaimsIdentity,
    MicrosoftAppCredentials,
)
from botframework.connector.bot_framework_sdk_client_async import (
    BotFrameworkConnectorConfiguration,
)
from msrest.exceptions import ClientRequestError, HttpOperationError
from msrest.universal_http.requests import ClientRetryPolicy
from urllib3.util.retry import Retry

from bots.teams.auth import BotIdentity
from core.errors import MessageTooLong, RateLimited, SinkError

log = logging.getLogger(__name__)

T = TypeVar("T")

HTTP_TIMEOUT_SECONDS = 20.0
TRANSIENT_WAIT_SECONDS = 0.5  # 412, 502, 504: Teams asks for a retry, not for a pause
DEFAULT_RETRY_AFTER_SECONDS = 1.0
_TRANSIENT_STATUSES = frozenset({412, 500, 502, 503, 504})


class TransientFailure(RateLimited):
    """A failure worth retrying soon (412, 5xx, network): the pacer waits and tries again."""

    cause = "teams_transient"

    def __init__(self, retry_after: float, detail: str, *, status: int | None) -> None:
        super().__init__(retry_after, detail)
        self.status = status


class ConnectorRefused(SinkError):
    """The connector refused for good (401 no token, 403 removed from the team, 404 gone).
    ``code`` and ``reason`` are the connector's error code and message (``BadArgument``,
    ``ContentStreamNotAllowed``, ...), empty when the body had none: streaming tells its
    refusals apart by them."""

    def __init__(self, detail: str, *, status: int, code: str = "", reason: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.reason = reason
        self.cause = f"teams_http_{status}"


class TeamsConnector:
    def __init__(self, identity: BotIdentity) -> None:
        credentials = None
        if identity.authenticated:
            credentials = MicrosoftAppCredentials(
                identity.app_id, identity.password, channel_auth_tenant=identity.tenant_id
            )
        self.credentials: AppCredentials | None = credentials
        self._adapter = _Adapter(
            BotFrameworkAdapterSettings(
                identity.app_id,
                identity.password,
                channel_auth_tenant=identity.tenant_id,
                app_credentials=credentials,
            )
        )
        if identity.authenticated:
            claims = {
                AuthenticationConstants.AUDIENCE_CLAIM: identity.app_id,
                AuthenticationConstants.APP_ID_CLAIM: identity.app_id,
            }
            self._claims = ClaimsIdentity(claims, True)
        else:
            self._claims = ClaimsIdentity({}, True, AuthenticationConstants.ANONYMOUS_AUTH_TYPE)

    def send(
        self, reference: ConversationReference, activity: Activity, *, reply_to_id: str | None
    ) -> str:
        """Send ``activity`` (a reply to ``reply_to_id``, or a new post); returns its id."""

        async def send(context: TurnContext) -> str:
            response = await context.send_activity(activity)
            return str(response.id or "") if response is not None else ""

        return self._turn("send", reference, reply_to_id, send)

    def update(self, reference: ConversationReference, activity: Activity) -> None:
        """Replace the activity whose id is ``activity.id``."""

        async def update(context: TurnContext) -> None:
            await context.update_activity(activity)

        self._turn("update", reference, None, update)

    def _turn(
        self,
        op: str,
        reference: ConversationReference,
        reply_to_id: str | None,
        action: Callable[[TurnContext], Awaitable[T]],
    ) -> T:
        results: list[T] = []

        async def logic(context: TurnContext) -> None:
            # A proactive turn starts from a synthetic event with a fresh uuid for an id, and
            # TurnContext addresses replies to the turn's activity id: make that the message we
            # answer (None: a new post, e.g. a welcome).
            context.activity.id = reply_to_id
            results.append(await action(context))

        try:
            run_sync(
                self._adapter.continue_conversation(reference, logic, claims_identity=self._claims)
            )
        except (HttpOperationError, ClientRequestError) as exc:
            raise translate(op, exc) from exc
        except (requests.RequestException, OSError) as exc:
            # The network, not Teams: the pacer waits briefly and retries, bounded.
            log.warning(
                "teams connector unreachable", extra={"op": op, "detail": type(exc).__name__}
            )
            raise RateLimited(1.0, f"teams {op}: {type(exc).__name__}") from exc
        except PermissionError as exc:  # MSAL refused the app id / password / tenant
            log.error("teams credentials rejected", extra={"op": op, "detail": str(exc)})
            failure = SinkError(f"teams {op}: no token for the bot: {exc}")
            failure.cause = "teams_credentials_rejected"
            raise failure from exc
        return results[0]


class _Adapter(BotFrameworkAdapter):  # type: ignore[misc]  # botbuilder ships no types
    """botbuilder's adapter, with its connector clients built configured, once, under a lock:
    every worker thread asks for them, and the SDK's own check-then-create is not atomic."""

    def __init__(self, settings: BotFrameworkAdapterSettings) -> None:
        super().__init__(settings)
        self._clients_lock = threading.Lock()

    def _get_or_create_connector_client(
        self, service_url: str, credentials: AppCredentials | None
    ) -> ConnectorClient:
        if not credentials:
            credentials = MicrosoftAppCredentials.empty()
        key = self.key_for_connector_client(
            service_url, credentials.microsoft_app_id, credentials.oauth_scope
        )
        with self._clients_lock:
            client: ConnectorClient | None = self._connector_client_cache.get(key)
            if client is None:
                client = _connector_client(service_url, credentials)
                self._connector_client_cache[key] = client
        return client


def _connector_client(service_url: str, credentials: AppCredentials) -> ConnectorClient:
    """A client whose configuration is complete before it is built: its constructor already
    makes the first thread's requests session with the configuration's retry policy."""
    config = BotFrameworkConnectorConfiguration(credentials, service_url)
    config.retry_policy = _ConnectRetryPolicy()
    config.connection.timeout = HTTP_TIMEOUT_SECONDS
    config.add_user_agent(USER_AGENT)
    return ConnectorClient(credentials, base_url=service_url, custom_configuration=config)


class _ConnectRetryPolicy(ClientRetryPolicy):
    """msrest's retry settings, holding a urllib3 ``Retry`` that retries only a failed
    connection (nothing was sent), briefly; status codes, ``Retry-After`` included, and read
    errors go to the pacer. msrest reads ``max_backoff`` from ``Retry.BACKOFF_MAX``, gone in
    urllib3 2 (msrest's own default sets it on its instance); here it is ``backoff_max``."""

    def __init__(self) -> None:  # not msrest's: its default Retry retries 5xx and 408
        self.policy = Retry(
            total=2,
            connect=2,
            read=0,
            status=0,
            other=0,
            status_forcelist=(),
            respect_retry_after_header=False,
            raise_on_status=False,
            backoff_factor=0.2,
            backoff_max=1,
        )

    @property
    def max_backoff(self) -> int:  # msrest's type; seconds
        return int(self.policy.backoff_max)

    @max_backoff.setter
    def max_backoff(self, value: int) -> None:
        self.policy.backoff_max = value


def translate(op: str, exc: Exception) -> Exception:
    """An SDK exception as the error the pacer understands."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        log.warning("teams connector unreachable", extra={"op": op, "detail": str(exc)})
        return TransientFailure(DEFAULT_RETRY_AFTER_SECONDS, f"{op}: {exc}", status=None)
    headers = getattr(response, "headers", None) or {}
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429:
        return RateLimited(
            DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after,
            f"teams {op}: HTTP 429",
        )
    if status in _TRANSIENT_STATUSES:
        wait = TRANSIENT_WAIT_SECONDS if retry_after is None else retry_after
        return TransientFailure(wait, f"teams {op}: HTTP {status}", status=status)
    if status == 413:
        return MessageTooLong(f"teams {op}: HTTP 413")
    code, reason = error_of(exc)
    # A stream's end (the 2-minute cap, or the person pressed Stop) and streaming refused where
    # it is not offered are expected answers that the stream sink handles: not errors.
    level = logging.INFO if code in _EXPECTED_STREAM_CODES else logging.ERROR
    log.log(
        level, "teams connector refused a reply", extra={"op": op, "status": status, "code": code}
    )
    return ConnectorRefused(f"teams {op}: HTTP {status}", status=status, code=code, reason=reason)


_EXPECTED_STREAM_CODES = frozenset({"ContentStreamNotAllowed"})


def error_of(exc: Exception) -> tuple[str, str]:
    """The connector's ``{"error": {"code", "message"}}`` from a refusal (botbuilder's
    ``ErrorResponseException`` has it deserialized; otherwise the body is read), bounded."""
    error = getattr(getattr(exc, "error", None), "error", None)
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if not isinstance(code, str):
        try:
            body = json.loads(getattr(getattr(exc, "response", None), "text", "") or "{}")
            inner = body.get("error") if isinstance(body, dict) else None
            if isinstance(inner, dict):
                code, message = inner.get("code"), inner.get("message")
        except ValueError:
            pass
    return (
        code[:100] if isinstance(code, str) else "",
        message[:300] if isinstance(message, str) else "",
    )


def parse_retry_after(value: object) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date); None when absent or unreadable."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


_local = threading.local()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a botbuilder coroutine to completion on this thread's own event loop."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop.run_until_complete(coro)
