"""Slack through the AWS hosts: API Gateway event → ingress Lambda → SQS FIFO → worker Lambda.

AWS is a real moto server on loopback, reached the way production code reaches AWS: boto3's
``AWS_ENDPOINT_URL_<SERVICE>`` variables, no endpoint in the code. Credentials come from the
Secrets Manager secret, not the environment. Bedrock and Slack are the local stand-ins.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import bots.aws.ingress as ingress
import bots.aws.worker as worker
from tests import slack_requests as sr
from tests.lambda_harness import LambdaContext, drain, provision_aws, sqs_event
from tests.standins.bedrock import BedrockStandIn, Stream
from tests.standins.slack import SlackStandIn


@pytest.fixture
def aws(
    moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
    slack_standin: SlackStandIn,
    bedrock_standin: BedrockStandIn,
) -> dict[str, Any]:
    # Credentials must come from the secret: none in the environment.
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    # These tests check the paced path's calls; native streaming has its own tests.
    monkeypatch.setenv("CHATBOT_SLACK_STREAMING", "off")
    secret = {
        "SLACK_SIGNING_SECRET": sr.DEFAULT_SIGNING_SECRET,
        "SLACK_BOT_TOKEN": slack_standin.bot_token,
    }
    return provision_aws(monkeypatch, moto_url, secret, llm="bedrock")


def api_event(request: sr.Request, version: int = 2) -> dict[str, Any]:
    body, headers = request
    if version == 2:
        return {
            "version": "2.0",
            "rawPath": "/slack/events",
            "rawQueryString": "",
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {"http": {"method": "POST", "path": "/slack/events"}},
            "body": body.decode(),
            "isBase64Encoded": False,
        }
    return {
        "resource": "/slack/events",
        "path": "/slack/events",
        "httpMethod": "POST",
        "headers": headers,
        "requestContext": {"httpMethod": "POST"},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def test_mention_through_api_gateway_sqs_and_the_worker(
    aws: dict[str, Any], slack_standin: SlackStandIn, bedrock_standin: BedrockStandIn
) -> None:
    bedrock_standin.script(Stream(["The SLA ", "is 99.9%."]))
    mention = sr.app_mention("<@UBOT> what is the SLA?")
    response = ingress.handler(api_event(sr.event_callback(mention)), LambdaContext())
    assert response["statusCode"] == 200
    assert slack_standin.calls == []  # the ack path never calls Slack

    messages = drain(aws)
    assert len(messages) == 1
    assert messages[0]["Attributes"]["MessageGroupId"] == f"slack#T1#C1#{mention['ts']}"
    result = worker.handler(sqs_event(messages), LambdaContext())
    assert result == {"batchItemFailures": []}

    (reply,) = [m for m in slack_standin.messages("C1", mention["ts"]) if m.get("bot_id")]
    assert reply["blocks"][0]["text"] == "The SLA is 99.9%."
    request = bedrock_standin.requests[0]
    assert "what is the SLA?" in request.body["messages"][-1]["content"][0]["text"]
    items = aws["dynamodb"].scan(TableName=aws["history"])["Items"]
    turns = [i for i in items if i["sk"]["S"].startswith("TURN#")]
    assert sorted(i["role"]["S"] for i in turns) == ["assistant", "user"]
    (record,) = [i for i in items if i["sk"]["S"].startswith("REPLY#")]
    assert record["message_id"]["S"] == reply["ts"]  # recorded, should the worker die mid-way
    # Slack's calls were counted in the table every worker container shares.
    budgets = aws["dynamodb"].scan(TableName=aws["budgets"])["Items"]
    assert {i["scope"]["S"] for i in budgets} == {
        "slack:T1:chat.update",
        "slack:T1:C1:chat.postMessage",
    }


def test_retries_are_deduplicated_by_sqs_and_by_the_idempotency_table(
    aws: dict[str, Any], slack_standin: SlackStandIn, bedrock_standin: BedrockStandIn
) -> None:
    mention = sr.app_mention("<@UBOT> once please")
    event_id = sr.new_event_id()
    for retry in (None, 1, 2):
        request = sr.event_callback(
            mention,
            event_id=event_id,
            retry_num=retry,
            retry_reason="http_timeout" if retry else None,
        )
        assert ingress.handler(api_event(request), LambdaContext())["statusCode"] == 200
    messages = drain(aws)
    assert len(messages) == 1  # FIFO dedupe within its five-minute window

    worker.handler(sqs_event(messages), LambdaContext())
    # SQS delivers at least once: the same record again (or Slack's last retry, after the
    # FIFO window) must not answer twice.
    worker.handler(sqs_event(messages), LambdaContext())
    assert len(slack_standin.calls_to("chat.postMessage")) == 1
    assert len(bedrock_standin.requests) == 1


def test_rest_api_v1_events_work_too(aws: dict[str, Any]) -> None:
    mention = sr.app_mention("<@UBOT> via REST API")
    response = ingress.handler(api_event(sr.event_callback(mention), version=1), LambdaContext())
    assert response["statusCode"] == 200 and len(drain(aws)) == 1


def test_bad_signature_is_refused_and_nothing_is_enqueued(aws: dict[str, Any]) -> None:
    body, headers = sr.event_callback(sr.app_mention("<@UBOT> hi"))
    headers["X-Slack-Signature"] = "v0=" + "f" * 64
    response = ingress.handler(api_event((body, headers)), LambdaContext())
    assert response["statusCode"] == 401
    assert drain(aws) == []


def test_a_bad_record_holds_back_its_conversation_but_not_others(
    aws: dict[str, Any], slack_standin: SlackStandIn
) -> None:
    same = sr.app_mention("<@UBOT> same conversation")
    other = sr.app_mention("<@UBOT> another conversation")
    for mention in (same, other):
        ingress.handler(api_event(sr.event_callback(mention)), LambdaContext())
    messages = {json.loads(m["Body"])["group"]: m for m in drain(aws)}
    same_msg = messages[f"slack#T1#C1#{same['ts']}"]
    other_msg = messages[f"slack#T1#C1#{other['ts']}"]
    broken = dict(same_msg, MessageId="broken-1", Body="{not a job")
    result = worker.handler(sqs_event([broken, same_msg, other_msg]), LambdaContext())
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    # The conversation's later message comes back with the broken one (never out of order);
    # the other conversation is answered now.
    assert failed == {"broken-1", same_msg["MessageId"]}
    answered = [m for m in slack_standin.messages("C1", other["ts"]) if m.get("bot_id")]
    assert len(answered) == 1 and slack_standin.messages("C1", same["ts"])[1:] == []


_DOOMED_WORKER = """
import json, sys
import bots.aws.worker as worker
from tests.lambda_harness import LambdaContext

class Dying(LambdaContext):
    def get_remaining_time_in_millis(self) -> int:
        return 1000  # its in-progress mark lapses a second after it starts

worker.handler(json.loads(sys.stdin.read()), Dying())
"""


def test_a_worker_killed_mid_answer_is_finished_in_the_same_message_on_redelivery(
    aws: dict[str, Any], slack_standin: SlackStandIn, bedrock_standin: BedrockStandIn
) -> None:
    """A real worker process is killed (SIGKILL) after its placeholder and first words are up;
    SQS redelivers the job, and the next worker completes that message: one answer, no orphan."""
    import subprocess
    import sys
    import time

    bedrock_standin.script(
        Stream(["Half an ans", "wer that never ends"] + ["."] * 50, delay=0.5),
        Stream(["The whole ", "answer."]),
    )
    mention = sr.app_mention("<@UBOT> tell me everything")
    assert (
        ingress.handler(api_event(sr.event_callback(mention)), LambdaContext())["statusCode"] == 200
    )
    event = sqs_event(drain(aws))
    doomed = subprocess.Popen(
        [sys.executable, "-c", _DOOMED_WORKER], stdin=subprocess.PIPE, text=True
    )
    assert doomed.stdin is not None
    doomed.stdin.write(json.dumps(event))
    doomed.stdin.close()
    try:
        deadline = time.monotonic() + 30
        while not any(
            "Half an ans" in c.params.get("text", "") for c in slack_standin.calls_to("chat.update")
        ):
            assert doomed.poll() is None and time.monotonic() < deadline, "no first words shown"
            time.sleep(0.05)
    finally:
        doomed.kill()
        doomed.wait(10)
    (half,) = [m for m in slack_standin.messages("C1", mention["ts"]) if m.get("bot_id")]
    assert half["text"].startswith("Half an ans")  # left half-written by the dead worker
    time.sleep(1.0)  # past the dead invocation's in-progress mark, as SQS's visibility timeout

    assert worker.handler(event, LambdaContext()) == {"batchItemFailures": []}

    (reply,) = [m for m in slack_standin.messages("C1", mention["ts"]) if m.get("bot_id")]
    assert reply["ts"] == half["ts"]
    assert reply["blocks"][0]["text"] == "The whole answer."
    assert len(slack_standin.calls_to("chat.postMessage")) == 1  # no second placeholder


# -- what an answer cost: one usage line and EMF metrics --------------------------------------


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    """The EMF lines Powertools printed (one per invocation's flush)."""
    documents = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def emitted(document: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Metric name -> (unit, values) of one EMF document (one value per answer)."""
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["service"]]
    return {m["Name"]: (m["Unit"], document[m["Name"]]) for m in directive["Metrics"]}


@pytest.fixture
def core_log_lines() -> Any:
    """The usage and metrics log lines as the worker writes them (Powertools' JSON formatter,
    with the keys bound per answer). The handler sits on the loggers that write them, below
    the ``core`` and ``bots`` loggers whose handlers the worker's start-up replaces."""
    import io
    import logging

    from core.observability import logger

    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logger().registered_handler.formatter)
    sources = [logging.getLogger("core.usage"), logging.getLogger("bots.aws.metrics")]
    for source in sources:
        source.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in handler.stream.getvalue().splitlines()]
    finally:
        for source in sources:
            source.removeHandler(handler)


def test_an_answer_reports_its_usage_as_one_log_line_and_as_emf_metrics(
    aws: dict[str, Any],
    slack_standin: SlackStandIn,
    bedrock_standin: BedrockStandIn,
    core_log_lines: Any,  # before capsys: the log handler must not keep capsys's stream
    capsys: pytest.CaptureFixture[str],
) -> None:
    import bots.aws.metrics as names

    usage = {
        "inputTokens": 1200,
        "outputTokens": 9,
        "totalTokens": 3557,
        "cacheReadInputTokens": 2048,
        "cacheWriteInputTokens": 300,
    }
    bedrock_standin.script(Stream(["The SLA ", "is 99.9%."], delay=0.05, usage=usage))
    slack_standin.fail_next("chat.update", status=429, retry_after=1)  # the first edit: refused
    mention = sr.app_mention("<@UBOT> what is the confidential SLA?")
    ingress.handler(api_event(sr.event_callback(mention)), LambdaContext())
    capsys.readouterr()
    assert worker.handler(sqs_event(drain(aws)), LambdaContext()) == {"batchItemFailures": []}
    (reply,) = [m for m in slack_standin.messages("C1", mention["ts"]) if m.get("bot_id")]
    assert reply["blocks"][0]["text"] == "The SLA is 99.9%."

    # One usage line, with the figures, and no text of the question or the answer.
    (line,) = [entry for entry in core_log_lines() if entry.get("message") == "answered"]
    assert line["model_id"] == "global.anthropic.claude-sonnet-4-6"
    assert line["conversation_id"] == f"slack#T1#C1#{mention['ts']}"
    assert (line["input_tokens"], line["output_tokens"]) == (1200, 9)
    assert (line["cache_read_tokens"], line["cache_write_tokens"]) == (2048, 300)
    assert line["platform_429s"] == 1 and line["edits"] >= 1
    assert 0 < line["time_to_first_token_ms"] <= line["time_to_final_ms"]
    assert "SLA" not in json.dumps(line) and "99.9" not in json.dumps(line)

    # The same figures as metrics, in one EMF document for the invocation.
    (document,) = emf_documents(capsys.readouterr().out)
    metrics = emitted(document)
    assert set(metrics) <= names.EMITTED
    assert metrics[names.INPUT_TOKENS] == ("Count", [1200.0])
    assert metrics[names.OUTPUT_TOKENS] == ("Count", [9.0])
    assert metrics[names.CACHE_READ_TOKENS] == ("Count", [2048.0])
    assert metrics[names.CACHE_WRITE_TOKENS] == ("Count", [300.0])
    assert metrics[names.PLATFORM_429S] == ("Count", [1.0])
    assert metrics[names.REPLY_EDITS] == ("Count", [float(line["edits"])])
    assert metrics[names.ANSWERS_COMPLETED] == ("Count", [1.0])
    unit, (ttft,) = metrics[names.TIME_TO_FIRST_TOKEN]
    assert unit == "Milliseconds" and abs(ttft - line["time_to_first_token_ms"]) <= 1
    assert metrics[names.TIME_TO_FINAL][0] == "Milliseconds"
    assert names.ANSWERS_FAILED not in metrics and names.SUMMARIES not in metrics


def test_metrics_that_cannot_be_written_never_affect_the_answer(
    aws: dict[str, Any],
    slack_standin: SlackStandIn,
    bedrock_standin: BedrockStandIn,
    monkeypatch: pytest.MonkeyPatch,
    core_log_lines: Any,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("metrics are broken")

    add_metric = worker.metrics.add_metric

    def half_broken(*args: Any, **kwargs: Any) -> None:  # keeps the count, then fails
        add_metric(*args, **kwargs)
        raise RuntimeError("metrics are broken")

    monkeypatch.setattr(worker.metrics, "add_metric", half_broken)
    monkeypatch.setattr(worker.metrics, "flush_metrics", broken)
    bedrock_standin.script(Stream(["Still ", "answered."]))
    mention = sr.app_mention("<@UBOT> are you there?")
    ingress.handler(api_event(sr.event_callback(mention)), LambdaContext())

    assert worker.handler(sqs_event(drain(aws)), LambdaContext()) == {"batchItemFailures": []}

    (reply,) = [m for m in slack_standin.messages("C1", mention["ts"]) if m.get("bot_id")]
    assert reply["blocks"][0]["text"] == "Still answered."
    messages = [entry["message"] for entry in core_log_lines()]
    assert "answered" in messages  # the usage line does not depend on the metrics
    assert "metric could not be recorded" in messages
    assert "metrics could not be written; dropped" in messages
