"""The ingress on Lambda, beyond what one request shows: which platforms a cold start says are
missing (and how loudly), what an Events API cold start loads, and SnapStart's init."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bots.aws.ingress as ingress
from bots.http import HttpRequest
from core.config import Settings
from core.jobs import Job
from tests import slack_requests as sr

ROOT = Path(__file__).resolve().parent.parent
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo"
SLACK = {"slack_signing_secret": sr.DEFAULT_SIGNING_SECRET, "slack_bot_token": "xoxb-x"}
TEAMS = {"microsoft_app_id": "app", "microsoft_app_password": "p", "microsoft_app_tenant_id": "t"}


class RecordingQueue:
    """SqsJobQueue's interface; records the jobs instead of sending them."""

    def __init__(self, queue_url: str, *, region: str) -> None:
        self.jobs: list[Job] = []

    def enqueue(self, job: Job) -> None:
        self.jobs.append(job)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """What bots.aws.ingress logs, at INFO and above."""
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    logger = logging.getLogger("bots.aws.ingress")
    handler, level = Catch(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield caught
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def settings(**values: str) -> Settings:
    return Settings(queue_url=QUEUE_URL, aws_region="eu-west-1", **values)  # type: ignore[arg-type]


def lines(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in records]


def test_a_slack_only_deployment_says_once_at_info_that_teams_is_not_configured(
    records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingress, "SqsJobQueue", RecordingQueue)
    routes = ingress.build_routes(settings(**SLACK))
    assert lines(records) == [
        ("INFO", "Teams is not configured (MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD): Slack only")
    ]
    teams = routes.dispatch(HttpRequest("POST", "/api/messages", body=b"{}"))
    assert teams.status == 503  # and Teams' requests are still refused, as before


def test_a_teams_only_deployment_says_once_at_info_that_slack_is_not_configured(
    records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingress, "SqsJobQueue", RecordingQueue)
    ingress.build_routes(settings(**TEAMS))
    assert [level for level, _ in lines(records)] == ["INFO"]
    assert "Slack is not configured" in lines(records)[0][1]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({}, "Slack is not configured: SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are empty"),
        ({"slack_signing_secret": "s"}, "Slack is not configured: SLACK_BOT_TOKEN is empty"),
        ({"slack_bot_token": "xoxb-x", **TEAMS}, "SLACK_SIGNING_SECRET is empty"),
    ],
    ids=["nothing", "no-bot-token", "no-signing-secret"],
)
def test_a_mistake_is_one_error(
    records: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, str],
    says: str,
) -> None:
    monkeypatch.setattr(ingress, "SqsJobQueue", RecordingQueue)
    ingress.build_routes(settings(**values))
    ((level, message),) = lines(records)
    assert level == "ERROR" and says in message


def test_both_platforms_configured_log_nothing(
    records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingress, "SqsJobQueue", RecordingQueue)
    ingress.build_routes(settings(**SLACK, **TEAMS))
    assert lines(records) == []


def slack_request(request: sr.Request) -> HttpRequest:
    body, headers = request
    return HttpRequest("POST", "/slack/events", {k.lower(): v for k, v in headers.items()}, body)


def test_a_command_builds_the_bolt_app_on_first_use_and_is_answered_by_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingress, "SqsJobQueue", RecordingQueue)
    routes = ingress.build_routes(settings(**SLACK))
    mention = sr.event_callback(sr.app_mention(f"<@{sr.DEFAULT_BOT_USER}> what is the SLA?"))
    assert routes.dispatch(slack_request(mention)).status == 200
    response = routes.dispatch(slack_request(sr.slash_command("/summarize", "")))
    assert response.status == 200
    assert json.loads(response.body)["response_type"] == "ephemeral"  # Bolt's ack, with text
    second = routes.dispatch(slack_request(sr.slash_command("/summarize", "")))
    assert second.status == 200  # the same app, built once


EVENT_COLD_START = """
import json, os, sys
import bots.aws.ingress as ingress

class Queue:
    def __init__(self, queue_url, *, region):
        self.jobs = []
    def enqueue(self, job):
        self.jobs.append(job)
        print(json.dumps({"job": job.kind}), flush=True)

class Context:
    aws_request_id = "cold-start"

ingress.SqsJobQueue = Queue
response = ingress.handler(json.loads(sys.argv[1]), Context())
print(json.dumps({
    "status": response["statusCode"],
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("slack_bolt", "slack_sdk")),
}))
"""


def api_gateway_event(request: sr.Request) -> dict[str, Any]:
    body, headers = request
    return {
        "version": "2.0",
        "rawPath": "/slack/events",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": "POST", "path": "/slack/events"}},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def test_an_events_api_cold_start_imports_neither_bolt_nor_slack_sdk() -> None:
    """An event callback (nearly all of Slack's traffic) is acknowledged and enqueued by our
    own listener: Bolt and slack_sdk, about a third of a cold start, are never imported."""
    mention = sr.event_callback(sr.app_mention(f"<@{sr.DEFAULT_BOT_USER}> hello"))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_REGION": "eu-west-1",
        "CHATBOT_QUEUE_URL": QUEUE_URL,
        "SLACK_SIGNING_SECRET": sr.DEFAULT_SIGNING_SECRET,
        "SLACK_BOT_TOKEN": "xoxb-x",
    }
    done = subprocess.run(
        [sys.executable, "-c", EVENT_COLD_START, json.dumps(api_gateway_event(mention))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    *jobs, result = [json.loads(line) for line in done.stdout.splitlines()]
    assert jobs == [{"job": "slack.message"}]
    assert result == {"status": 200, "loaded": []}


def test_snap_start_init_keeps_no_credential_and_reseeds_random(tmp_path: Path) -> None:
    """The ingress's SnapStart init (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start) imports what
    the first request would, builds the SQS client, reads no secret, and registers a re-seed of
    ``random`` to run after every restore (the runtime's snapshot_restore_py, faked here)."""
    (tmp_path / "snapshot_restore_py.py").write_text(
        "AFTER_RESTORE = []\n"
        "def register_after_restore(func, *args, **kwargs):\n"
        "    AFTER_RESTORE.append(func)\n"
    )
    code = (
        "import json, random, sys\n"
        "import bots.aws.ingress as ingress\n"
        "import snapshot_restore_py as hooks\n"
        "print(json.dumps({\n"
        "    'queue': ingress._queue is not None, 'routes': ingress._routes is not None,\n"
        "    'hooks': [f is random.seed for f in hooks.AFTER_RESTORE],\n"
        "    'bolt': 'slack_bolt' in sys.modules, 'teams': 'botbuilder.core' in sys.modules,\n"
        "}))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        "AWS_REGION": "eu-west-1",
        "CHATBOT_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo",
        # A secret read would have to reach this endpoint, which nothing answers.
        "CHATBOT_SECRET_ID": "chatbot-secret",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:9",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {
        "queue": True,
        "routes": False,  # routes need the credentials: built on the first request
        "hooks": [True],
        "bolt": True,
        "teams": True,
    }
