"""Shared pieces for tests of the AWS Lambda hosts: a real moto server on loopback (reached
through ``AWS_ENDPOINT_URL_<SERVICE>``, as production code reaches AWS), a Lambda context, and
SQS helpers that turn queued messages into the worker's event."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto.server import ThreadedMotoServer

import bots.aws.ingress as ingress
import bots.aws.worker as worker
from core.budget.dynamodb import table_definition as rate_budget_table
from core.history.dynamodb import create_table


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class LambdaContext:
    function_name = "chatbot-worker"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:chatbot-worker"

    def __init__(self) -> None:
        self.aws_request_id = uuid.uuid4().hex

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def drain(aws: dict[str, Any]) -> list[dict[str, Any]]:
    response = aws["sqs"].receive_message(
        QueueUrl=aws["queue_url"], MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    )
    return response.get("Messages", [])


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:jobs.fifo",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def provision_aws(
    monkeypatch: pytest.MonkeyPatch, moto_url: str, secret: dict[str, str], *, llm: str
) -> dict[str, Any]:
    """Fresh queue, tables and credentials secret on the moto server, and the environment the
    SAM template gives both functions; the hosts' per-container state is reset."""
    for service in ("SQS", "DYNAMODB", "SECRETS_MANAGER"):
        monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", moto_url)
    suffix = uuid.uuid4().hex[:8]
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"jobs-{suffix}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    dynamodb = boto3.client("dynamodb")
    create_table(dynamodb, f"history-{suffix}")
    dynamodb.create_table(
        TableName=f"idempotency-{suffix}",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(**rate_budget_table(f"budgets-{suffix}"))
    secret_arn = boto3.client("secretsmanager").create_secret(
        Name=f"chatbot-{suffix}", SecretString=json.dumps(secret)
    )["ARN"]
    env = {
        "CHATBOT_LLM": llm,
        "CHATBOT_STORE": "dynamodb",
        "CHATBOT_QUEUE_URL": queue_url,
        "CHATBOT_HISTORY_TABLE": f"history-{suffix}",
        "CHATBOT_IDEMPOTENCY_TABLE": f"idempotency-{suffix}",
        "CHATBOT_BUDGET_TABLE": f"budgets-{suffix}",
        "CHATBOT_SECRET_ID": secret_arn,
        "CHATBOT_EDIT_INTERVAL_SECONDS": "0.05",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parameters.clear_caches()
    monkeypatch.setattr(ingress, "_routes", None)
    monkeypatch.setattr(worker, "_handler", None)
    return {
        "sqs": sqs,
        "queue_url": queue_url,
        "dynamodb": dynamodb,
        "history": f"history-{suffix}",
        "budgets": f"budgets-{suffix}",
    }
