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
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import requests
from botbuilder.schema import Activity
from botframework.connector.auth import (
    AuthenticationConfiguration,
    ClaimsIdentity,
    JwtTokenValidation,
    SimpleCredentialProvider,
)

from core.config import ConfigError, Settings

log = logging.getLogger(__name__)

_APP_TYPES = {"singletenant": "SingleTenant", "multitenant": "MultiTenant"}


class Unauthorized(Exception):
    """The request's token is missing or not valid for this bot."""


class AuthUnavailable(Exception):
    """The Bot Framework's signing keys could not be fetched: not the caller's fault."""


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

    def authenticate(self, activity: Activity, auth_header: str) -> ClaimsIdentity:
        """The caller's claims; raises Unauthorized, or AuthUnavailable when the signing keys
        cannot be fetched (a 5xx, so the Bot Framework tries again)."""
        # The SDK is async but does no async I/O (it fetches keys with ``requests``). The ingress
        # is synchronous and the local server gives each request a short-lived thread, so each
        # check runs on a fresh event loop that is closed again (well under a millisecond).
        try:
            identity = asyncio.run(
                JwtTokenValidation.authenticate_request(
                    activity, auth_header, self._credentials, "", self._configuration
                )
            )
        except requests.RequestException as exc:
            log.error("Bot Framework signing keys unavailable", extra={"detail": str(exc)})
            raise AuthUnavailable(str(exc)) from exc
        except Exception as exc:
            # The SDK signals a bad token with PermissionError, PyJWT errors, KeyError or
            # IndexError (no issuer, unknown key id) and bare Exception alike.
            raise Unauthorized(f"{type(exc).__name__}: {exc}") from exc
        if identity is None or not identity.is_authenticated:
            raise Unauthorized("no authenticated identity")
        return identity
