"""Teams through the AWS hosts: a signed activity → ingress Lambda → SQS FIFO → worker Lambda →
the connector at the activity's serviceUrl. Credentials come from the Secrets Manager secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

import bots.aws.ingress as ingress
import bots.aws.worker as worker
from tests.lambda_harness import LambdaContext, drain, provision_aws, sqs_event
from tests.standins import teams as tm
from tests.standins.teams import ConnectorStandIn, OutboundTokens, TokenIssuer


@pytest.fixture
def aws(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, outbound_token: OutboundTokens
) -> dict[str, Any]:
    secret = {
        "MICROSOFT_APP_ID": tm.APP_ID,
        "MICROSOFT_APP_PASSWORD": "dummy-teams-client-secret",
        "MICROSOFT_APP_TENANT_ID": tm.TENANT_ID,
        "MICROSOFT_APP_TYPE": "SingleTenant",
    }
    return provision_aws(monkeypatch, moto_url, secret, llm="offline")


def api_event(activity: dict[str, Any] | bytes, token: str | None) -> dict[str, Any]:
    body = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return {
        "version": "2.0",
        "rawPath": "/api/messages",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/api/messages"}},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def test_personal_chat_through_api_gateway_sqs_and_the_worker(
    aws: dict[str, Any], teams_connector: ConnectorStandIn, token_issuer: TokenIssuer
) -> None:
    message = tm.personal_message(
        "Our release train leaves on Thursdays.", service_url=teams_connector.service_url
    )
    token = token_issuer.token(service_url=teams_connector.service_url)
    response = ingress.handler(api_event(message, token), LambdaContext())
    assert response["statusCode"] in (200, 202)
    assert teams_connector.calls == []  # the ack path never calls the connector

    messages = drain(aws)
    assert len(messages) == 1
    assert worker.handler(sqs_event(messages), LambdaContext()) == {"batchItemFailures": []}
    replies = [
        c for c in teams_connector.calls if c.activity and c.activity.get("type") == "message"
    ]
    assert replies, "no reply reached the connector"
    assert all(c.authorization == f"Bearer {tm.OUTBOUND_TOKEN}" for c in teams_connector.calls)

    # The same activity again (SQS at least once): no second answer.
    before = len(teams_connector.calls)
    worker.handler(sqs_event(messages), LambdaContext())
    assert len(teams_connector.calls) == before


@pytest.mark.parametrize("token", [None, "garbage", "expired"])
def test_rejected_tokens_enqueue_nothing(
    aws: dict[str, Any],
    teams_connector: ConnectorStandIn,
    token_issuer: TokenIssuer,
    token: str | None,
) -> None:
    if token == "expired":
        token = token_issuer.token(service_url=teams_connector.service_url, expires_in=-600)
    message = tm.personal_message("hi", service_url=teams_connector.service_url)
    assert ingress.handler(api_event(message, token), LambdaContext())["statusCode"] == 401
    assert drain(aws) == []


def test_without_credentials_the_lambda_host_refuses_teams_traffic(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, teams_connector: ConnectorStandIn
) -> None:
    aws = provision_aws(monkeypatch, moto_url, {}, llm="offline")
    message = tm.personal_message("hi", service_url=teams_connector.service_url)
    response = ingress.handler(api_event(message, None), LambdaContext())
    assert response["statusCode"] == 503
    assert drain(aws) == []


def test_a_slack_cold_start_never_imports_botbuilder() -> None:
    import subprocess
    import sys

    code = (
        "import os, sys, json\n"
        "os.environ.update(CHATBOT_QUEUE_URL='x', AWS_REGION='us-east-1', MICROSOFT_APP_ID='a',"
        " MICROSOFT_APP_PASSWORD='p', SLACK_SIGNING_SECRET='s', SLACK_BOT_TOKEN='xoxb-x')\n"
        "import bots.aws.ingress as i\n"
        "i._routes = i.build_routes(i.load_aws_settings())\n"
        "heavy = [m for m in sys.modules if m.startswith(('botbuilder', 'botframework'))]\n"
        "print(json.dumps(sorted(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
