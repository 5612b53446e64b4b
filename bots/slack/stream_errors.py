"""How the native streaming sink (:mod:`bots.slack.stream`) reads Slack's refusals of
``chat.startStream``, ``chat.appendStream`` and ``chat.stopStream``: which mean "no streaming
here" (remembered for the workspace), which condemn the channel or token, which may hide a call
that landed, and how a broken connection is told to the pacer."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bots.slack.sink import NETWORK_RETRY_SECONDS
from core.errors import RateLimited

log = logging.getLogger(__name__)

# Refusals of chat.startStream that mean "no streaming in this workspace (for this app)":
# remembered, so its next replies skip the try. Slack documents unknown_method, missing_scope,
# not_allowed_token_type, method_deprecated, deprecated_endpoint, access_denied,
# enterprise_is_restricted and is_bot for the method; the others are seen for features that are
# off for a team.
NO_STREAMING = frozenset(
    {
        "unknown_method",
        "missing_scope",
        "not_allowed_token_type",
        "feature_not_enabled",
        "method_deprecated",
        "deprecated_endpoint",
        "team_not_allowed",
        "not_allowed",
        "access_denied",
        "enterprise_is_restricted",
        "is_bot",
    }
)
# Refusals that condemn the channel or the token, not streaming: no fallback can succeed.
FATAL = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "invalid_blocks"})
# "It's possible some aspect of the operation succeeded": the stream may exist.
AMBIGUOUS = frozenset({"fatal_error", "internal_error"})
STREAM_OVER = frozenset({"message_not_in_streaming_state"})


def slack_error(exc: SlackApiError) -> str:
    """Slack's error code (never the message text)."""
    return str(exc.response.get("error") or "unknown_error")


def rate_limited(exc: SlackApiError) -> bool:
    return exc.response.status_code == 429 or slack_error(exc) == "ratelimited"


def unreachable(method: str, exc: Exception) -> RateLimited:
    """The network, not Slack: a short wait, and the pacer's bounded retries."""
    log.warning("slack unreachable", extra={"method": method, "detail": type(exc).__name__})
    return RateLimited(NETWORK_RETRY_SECONDS, f"{method}: {type(exc).__name__}")
