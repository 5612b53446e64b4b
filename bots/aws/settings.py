"""Settings in Lambda: environment, plus platform credentials from Secrets Manager."""

from __future__ import annotations

import json
from typing import Any

from core.config import Settings, load_settings


def load_aws_settings() -> Settings:
    """Read once per container. Credentials live in the secret named by ``CHATBOT_SECRET_ID``
    (a JSON object keyed by the setting names), never in plain environment variables."""
    settings = load_settings(env_file=None)
    if not settings.secret_id:
        return settings
    secret = json.loads(read_secret(settings.secret_id, region=settings.aws_region))
    if not isinstance(secret, dict):
        raise ValueError("the CHATBOT_SECRET_ID secret must be a JSON object")
    return load_settings(env_file=None, secrets=secret)


def read_secret(secret_id: str, *, region: str, client: Any | None = None) -> str:
    """The secret's string, through botocore directly: the ingress package carries neither
    boto3 nor Powertools' parameters utility (which imports boto3), and a cold start that reads
    the secret does not pay for their import. ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` applies."""
    if client is None:
        import botocore.session
        from botocore.config import Config

        client = botocore.session.get_session().create_client(
            "secretsmanager",
            region_name=region,
            config=Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard"}),
        )
    value = client.get_secret_value(SecretId=secret_id).get("SecretString")
    if not isinstance(value, str):
        raise ValueError("the CHATBOT_SECRET_ID secret must hold a string (a JSON object)")
    return value
