"""How the AWS-backed stores call AWS: one client configuration, one way to call an API.

Every store backend on AWS (DynamoDB history and file records, S3 Vectors) builds its boto3
client here, once per process, and makes every call through :func:`call`, so that a failure
always becomes a :class:`~core.errors.StoreError` saying which service and API failed, with
which error code, while doing what, with the botocore exception as its cause. Endpoints come
from boto3's own resolution (``AWS_ENDPOINT_URL_<SERVICE>``); none is written here.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import StoreError


def store_client(service: str, region: str, *, read_timeout: float = 5.0) -> Any:
    """A client with botocore's standard retries (3 attempts) and short timeouts: a store call
    is small, and a slow one should fail while the answer can still go out without it."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=3,
        read_timeout=read_timeout,
    )
    return boto3.client(service, region_name=region, config=config)


def call(client: Any, service: str, api: str, operation: str, **request: Any) -> dict[str, Any]:
    """``client``'s method for ``api`` (``"PutItem"`` calls ``put_item``) with ``request``.

    ``operation`` says what the call was for ("reading the record of F1 in ..."), for the
    message of the :class:`StoreError` any failure becomes."""
    method = getattr(client, _snake_case(api))
    try:
        response: dict[str, Any] = method(**request)
    except (ClientError, BotoCoreError) as exc:
        raise store_error(f"{service} {api}", operation, exc) from exc
    return response


def error_code(exc: BaseException) -> str:
    """The service's error code, or the class name of a failure below the API."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def store_error(api: str, operation: str, exc: BaseException) -> StoreError:
    return StoreError(f"{api} failed with {error_code(exc)} while {operation}")


def _snake_case(api: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in api).lstrip("_")
