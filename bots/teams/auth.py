"""Who may call ``/api/messages``, and which credentials each host needs.

Inbound requests carry ``Authorization: Bearer <JWT>`` signed by the Bot Framework. They are
checked by botframework-connector's own ``JwtTokenValidation.authenticate_request`` with a
``SimpleCredentialProvider`` (the same pair ``BotFrameworkAdapter`` uses): issuer, signature
against the published OpenID keys (endorsed for the activity's channel), expiry, audience = our
app id, and the ``serviceurl`` claim = the activity's ``serviceUrl``.

Single- and multi-tenant bots receive the same channel tokens; the tenant only changes where the
bot gets its own outbound token (see :func:`bot_identity` and :mod:`bots.teams.connector`).

With an empty ``MICROSOFT_APP_ID`` the SDK accepts requests without a token: unauthenticated
local mode, for the Bot Framework Emulator. Only a host that says so may run that way
(``allow_unauthenticated``); the Lambda host calls :func:`require_credentials` at start-up.

Two things are added to the SDK's check, so that a forged token costs nothing:

- :meth:`TeamsAuthenticator.screen` refuses, without any network call, a token that could never
  be valid: not a Bearer JWT, an algorithm other than RS256/384/512, no key id, an issuer other
  than the Bot Framework's, an audience other than this bot, a skill token, an expired one, or
  (in :meth:`~TeamsAuthenticator.authenticate`) a ``serviceurl`` claim other than the activity's.
- :class:`SigningKeys` replaces the SDK's OpenID key cache (which fetches with no timeout, and
  again on every request while the endpoint fails): each fetch has a deadline, a failure is
  remembered for :data:`KEY_RETRY_SECONDS` (stale keys keep serving meanwhile), and
  :func:`prewarm_signing_keys` fetches in the background when the route is built. Only a token
  that passed the screen can get 503, and only while no key was ever fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
import requests
from botbuilder.schema import Activity
from botframework.connector.auth import (
    AuthenticationConfiguration,
    AuthenticationConstants,
    ChannelValidation,
    ClaimsIdentity,
    JwtTokenExtractor,
    JwtTokenValidation,
    SimpleCredentialProvider,
    SkillValidation,
)
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata

from core.config import ConfigError, Settings

log = logging.getLogger(__name__)

_APP_TYPES = {"singletenant": "SingleTenant", "multitenant": "MultiTenant"}
KEY_FETCH_TIMEOUT_SECONDS = 3.0  # for both requests of one fetch (metadata, then keys)
KEY_RETRY_SECONDS = 30.0  # after a failed fetch, no new attempt for this long
KEY_MAX_AGE_SECONDS = 24 * 3600.0  # the SDK's own refresh period
UNKNOWN_KEY_REFRESH_SECONDS = 3600.0  # the SDK's: an unknown key id refreshes at most hourly
CLOCK_SKEW_SECONDS = 5 * 60  # the SDK's ``clock_tolerance`` for channel tokens


class Unauthorized(Exception):
    """The request's token is missing or not valid for this bot."""


class AuthUnavailable(Exception):
    """The Bot Framework's signing keys could not be fetched: not the caller's fault."""


class KeysUnavailable(Exception):
    """No signing keys: the fetch failed now or within the last :data:`KEY_RETRY_SECONDS`."""


class UnknownSigningKey(Exception):
    """The token names a key id the Bot Framework does not publish."""


class SigningKeys(_OpenIdMetadata):  # type: ignore[misc]
    """botframework-connector's OpenID key cache for one metadata URL, fetched with a deadline.

    The SDK looks its cache up in ``JwtTokenExtractor.metadataCache`` by URL and calls
    ``await get(key_id)``; :func:`signing_keys` puts one of these there instead of the SDK's
    own. Thread-safe: one fetch at a time, and requests waiting for it reuse its result.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = KEY_FETCH_TIMEOUT_SECONDS,
        retry_after: float = KEY_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(url)
        self.keys: list[dict[str, Any]] = []
        self._timeout = timeout
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._failure = ""

    @property
    def known(self) -> bool:
        return bool(self.keys)

    async def get(self, key_id: str) -> Any:
        """The SDK's lookup: the key's public key and endorsements (UnknownSigningKey,
        KeysUnavailable)."""
        self.refresh(max_age=KEY_MAX_AGE_SECONDS)
        key = self._find(key_id)
        if key is None:
            self.refresh(max_age=UNKNOWN_KEY_REFRESH_SECONDS)
            key = self._find(key_id)
        if key is None:
            raise UnknownSigningKey("the token's key id is not published")
        return key

    def refresh(self, *, max_age: float = KEY_MAX_AGE_SECONDS) -> None:
        """Fetch unless the keys are younger than ``max_age`` or a fetch failed within
        ``retry_after``; raises KeysUnavailable only when there are no keys at all."""
        with self._lock:
            now = self._clock()
            if self.keys and self._fetched_at is not None and now - self._fetched_at < max_age:
                return
            if self._failed_at is not None and now - self._failed_at < self._retry_after:
                if self.keys:
                    return
                raise KeysUnavailable(self._failure)
            try:
                self.keys = self._fetch()
            except KeysUnavailable as exc:
                self._failed_at, self._failure = self._clock(), str(exc)
                log.error(
                    "Bot Framework signing keys unavailable",
                    extra={"detail": self._failure, "stale_keys": len(self.keys)},
                )
                if self.keys:
                    return
                raise
            self._fetched_at, self._failed_at = self._clock(), None
            self.last_updated = datetime.now()  # what the SDK's own code would read

    def _fetch(self) -> list[dict[str, Any]]:
        deadline = self._clock() + self._timeout
        metadata = self._get_json(self.url, deadline)
        keys_url = metadata.get("jwks_uri") if isinstance(metadata, dict) else None
        if not isinstance(keys_url, str):
            raise KeysUnavailable("OpenID metadata without jwks_uri")
        document = self._get_json(keys_url, deadline)
        keys = document.get("keys") if isinstance(document, dict) else None
        if not (isinstance(keys, list) and keys and all(isinstance(k, dict) for k in keys)):
            raise KeysUnavailable("signing key document without keys")
        return keys

    def _get_json(self, url: str, deadline: float) -> Any:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise KeysUnavailable(f"no time left to fetch {url}")
        try:
            response = requests.get(url, timeout=remaining)
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, ValueError) as exc:
            raise KeysUnavailable(f"{type(exc).__name__} fetching {url}") from None

    def _find(self, key_id: str) -> Any:
        if not any(key.get("kid") == key_id for key in self.keys):
            return None  # the SDK's own _find raises IndexError here
        return super()._find(key_id)


_install_lock = threading.Lock()


def channel_metadata_url() -> str:
    """Where the SDK's channel validation reads its keys (tests and clouds may override it)."""
    return str(
        ChannelValidation.open_id_metadata_endpoint
        or AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL
    )


def signing_keys(url: str | None = None) -> SigningKeys:
    """The process's key cache for ``url`` (default: the channel's), installed where the SDK
    looks for it."""
    url = url or channel_metadata_url()
    with _install_lock:
        cache = JwtTokenExtractor.metadataCache
        keys = cache.get(url)
        if not isinstance(keys, SigningKeys):
            keys = cache[url] = SigningKeys(url)
        return keys


def prewarm_signing_keys() -> threading.Thread:
    """Fetch the channel's signing keys in the background, so that the first activity does not
    wait for them (and a cold start does not either)."""
    keys = signing_keys()

    def warm() -> None:
        # A failure is logged by refresh; the first request tries again after KEY_RETRY_SECONDS.
        with contextlib.suppress(KeysUnavailable):
            keys.refresh()

    thread = threading.Thread(target=warm, name="teams-signing-keys", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """The bot's Entra ID app registration. ``tenant_id`` is None for a multi-tenant app (its
    outbound token then comes from the ``botframework.com`` tenant)."""

    app_id: str = ""
    password: str = ""
    tenant_id: str | None = None

    @property
    def authenticated(self) -> bool:
        return bool(self.app_id)


def bot_identity(settings: Settings) -> BotIdentity:
    """The identity the settings describe; a ConfigError names the setting that is wrong."""
    if not settings.microsoft_app_id:
        return BotIdentity()
    app_type = _APP_TYPES.get(settings.microsoft_app_type.strip().lower())
    if app_type is None:
        raise ConfigError(
            "MICROSOFT_APP_TYPE must be 'SingleTenant' or 'MultiTenant', "
            f"not {settings.microsoft_app_type!r}"
        )
    tenant = settings.microsoft_app_tenant_id.strip() or None
    if app_type == "SingleTenant" and tenant is None:
        raise ConfigError("MICROSOFT_APP_TYPE=SingleTenant needs MICROSOFT_APP_TENANT_ID")
    return BotIdentity(
        app_id=settings.microsoft_app_id,
        password=settings.microsoft_app_password,
        tenant_id=tenant if app_type == "SingleTenant" else None,
    )


def require_credentials(settings: Settings) -> BotIdentity:
    """For hosts that must never run unauthenticated (AWS Lambda): fail at build time."""
    if not settings.microsoft_app_id or not settings.microsoft_app_password:
        raise ConfigError(
            "Teams needs MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD on this host: without them "
            "anyone could post activities to the bot. Unauthenticated mode is only for the "
            "local host (chatbot serve) and the Bot Framework Emulator."
        )
    return bot_identity(settings)


class TeamsAuthenticator:
    """Validates the ``Authorization`` header of one incoming activity."""

    def __init__(self, identity: BotIdentity) -> None:
        self._identity = identity
        self._credentials = SimpleCredentialProvider(identity.app_id, identity.password)
        self._configuration = AuthenticationConfiguration()

    @property
    def enabled(self) -> bool:
        return self._identity.authenticated

    def screen(self, auth_header: str) -> Mapping[str, Any]:
        """The token's unverified claims, if it could be a Bot Framework channel token for this
        bot; Unauthorized otherwise. No network call: a forged token fails here at once."""
        scheme, _, token = auth_header.partition(" ")
        if scheme != "Bearer" or not token or " " in token or not token.isascii():
            raise Unauthorized("not a Bearer token")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, RecursionError) as exc:  # PyJWT's JSON parse is unbounded
            raise Unauthorized(f"not a JWT: {type(exc).__name__}") from None
        if header.get("alg") not in AuthenticationConstants.ALLOWED_SIGNING_ALGORITHMS:
            raise Unauthorized("signing algorithm not allowed")
        if not isinstance(header.get("kid"), str) or not header["kid"]:
            raise Unauthorized("no signing key id")
        if claims.get("iss") != AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER:
            raise Unauthorized("issuer is not the Bot Framework")
        if not self.enabled or claims.get("aud") != self._identity.app_id:
            raise Unauthorized("audience is not this bot")
        if SkillValidation.is_skill_claim(claims):
            raise Unauthorized("skill tokens are not accepted")
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            raise Unauthorized("no expiry")
        if not math.isfinite(expires):
            raise Unauthorized("no expiry")
        if expires + CLOCK_SKEW_SECONDS < time.time():
            raise Unauthorized("expired")
        return claims

    def authenticate(self, activity: Activity, auth_header: str) -> ClaimsIdentity:
        """The caller's claims; raises Unauthorized, or AuthUnavailable when the signing keys
        cannot be fetched (a 5xx, so the Bot Framework tries again)."""
        if not self.enabled:
            if auth_header:  # no token can name an empty app id: the SDK would fetch keys
                raise Unauthorized("this host takes no tokens (unauthenticated mode)")
        else:
            claims = self.screen(auth_header)
            if claims.get("serviceurl") != activity.service_url:
                raise Unauthorized("serviceurl claim is not the activity's serviceUrl")
            signing_keys()  # the SDK reads keys through this cache, never its own
        # The SDK is async but does no async I/O (it fetches keys with ``requests``). The ingress
        # is synchronous and the local server gives each request a short-lived thread, so each
        # check runs on a fresh event loop that is closed again (well under a millisecond).
        try:
            identity = asyncio.run(
                JwtTokenValidation.authenticate_request(
                    activity, auth_header, self._credentials, "", self._configuration
                )
            )
        except KeysUnavailable as exc:
            raise AuthUnavailable(str(exc)) from exc
        except Exception as exc:
            # The SDK signals a bad token with PermissionError, PyJWT errors, KeyError or
            # IndexError (no issuer, unknown key id) and bare Exception alike.
            raise Unauthorized(f"{type(exc).__name__}: {exc}") from exc
        if identity is None or not identity.is_authenticated:
            raise Unauthorized("no authenticated identity")
        return identity
