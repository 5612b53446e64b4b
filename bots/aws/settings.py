"""Settings in Lambda: environment, plus platform credentials from Secrets Manager."""

from __future__ import annotations

from core.config import Settings, load_settings


def load_aws_settings() -> Settings:
    """Read once per container. Credentials live in the secret named by ``CHATBOT_SECRET_ID``
    (a JSON object keyed by the setting names), never in plain environment variables; Powertools
    caches the value, so a warm container does not fetch it again."""
    settings = load_settings(env_file=None)
    if not settings.secret_id:
        return settings
    from aws_lambda_powertools.utilities import parameters

    secret = parameters.get_secret(settings.secret_id, transform="json")
    if not isinstance(secret, dict):
        raise ValueError("the CHATBOT_SECRET_ID secret must be a JSON object")
    return load_settings(env_file=None, secrets=secret)
