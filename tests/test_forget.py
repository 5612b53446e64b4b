"""Erasure on request, end to end on both stores: Slack's signed ``/forget`` through the local
host, the queue and the worker, answered privately through ``response_url`` into the Slack
stand-in; Teams' ``forget me`` in a personal chat through the connector stand-in. History and
quota counters live in SQLite or in DynamoDB (moto)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bots.http import Routes
from bots.local.app import build_local_app
from bots.local.queue import InProcessQueue
from bots.local.server import LocalServer
from bots.slack.ingress import FORGETTING
from bots.teams.ingress import install_ingress
from bots.teams.worker import FORGET_IN_PERSONAL_CHAT, install_worker
from core.assistant import Assistant
from core.config import Settings
from core.dedupe import DedupedHandler, build_persistence
from core.domain import ConversationKey
from core.history.base import HistoryStore
from core.history.dynamodb import DynamoDbHistoryStore
from core.history.dynamodb import create_table as create_history_table
from core.history.sqlite import SqliteHistoryStore
from core.jobs import Job, JobRouter
from core.quota.base import QuotaLimits, QuotaStore, day_of, user_key, workspace_key
from core.quota.dynamodb import DynamoDbQuotaStore
from core.quota.dynamodb import create_table as create_quota_table
from core.quota.sqlite import SqliteQuotaStore
from core.runtime import build_knowledge
from tests import slack_requests as sr
from tests.fakes import ScriptedModel
from tests.standins import teams as tm
from tests.standins.slack import SlackStandIn
from tests.standins.teams import ConnectorStandIn
from tests.test_slack import Harness as SlackHarness
from tests.test_slack import default_answer
from tests.test_teams import Harness as TeamsHarness

REGION = "us-east-1"
LIMITS = QuotaLimits(questions_per_user=50, questions_per_workspace=500)


@dataclass
class Stores:
    history: HistoryStore
    quota: QuotaStore


@pytest.fixture(params=["sqlite", "dynamodb"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "sqlite":
        yield Stores(
            SqliteHistoryStore(tmp_path / "history.sqlite3"),
            SqliteQuotaStore(tmp_path / "quota.sqlite3", LIMITS),
        )
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_history_table(client, "history")
        create_quota_table(client, "quota")
        yield Stores(
            DynamoDbHistoryStore("history", region=REGION),
            DynamoDbQuotaStore("quota", LIMITS, region=REGION),
        )


def counted(stores: Stores, platform: str, workspace: str, user: str) -> int:
    return stores.quota.used(user_key(platform, workspace, user), day_of(time.time())).questions


# --------------------------------------------------------------------------------- Slack


@pytest.fixture
def slack(slack_standin: SlackStandIn, tmp_path: Path, stores: Stores) -> Iterator[SlackHarness]:
    settings = Settings(
        data_dir=tmp_path / "data",
        slack_signing_secret=sr.DEFAULT_SIGNING_SECRET,
        slack_bot_token=slack_standin.bot_token,
        slack_api_url=slack_standin.api_url,
        edit_interval_seconds=0.05,
    )
    holder: dict[str, SlackHarness] = {}
    model = ScriptedModel(lambda p: holder["h"].answer(p))
    assistant = Assistant(
        settings=settings, history=stores.history, model=model, quota=stores.quota
    )
    app = build_local_app(settings, assistant=assistant, knowledge=build_knowledge(settings))
    server = LocalServer(("127.0.0.1", 0), app.routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    harness = SlackHarness(slack_standin, app, server, model, default_answer)
    holder["h"] = harness
    yield harness
    server.shutdown()
    server.server_close()
    app.close()


def ask_in_slack(slack: SlackHarness, text: str, user: str) -> str:
    mention = sr.app_mention(f"<@UBOT> {text}", user=user)
    status, _ = slack.send(sr.event_callback(mention))
    assert status == 200
    slack.settle()
    return str(mention["ts"])


def forget_in_slack(slack: SlackHarness, user: str = "U1") -> tuple[dict[str, Any], str]:
    """A signed ``/forget`` from ``user`` in C1: the ack, and the private answer that came
    through ``response_url``."""
    before = len(slack.standin.ephemeral_messages("C1"))
    response_url = slack.standin.response_url("C1")
    request = sr.slash_command("/forget", user=user, response_url=response_url)
    status, body = slack.send(request)
    assert status == 200
    slack.settle()
    later = slack.standin.ephemeral_messages("C1")[before:]
    (private,) = later
    assert (private["via"], private["response_type"]) == ("response_url", "ephemeral")
    return json.loads(body), str(private["text"])


def test_slack_forget_erases_the_persons_history_and_counters_and_answers_privately(
    slack: SlackHarness, stores: Stores
) -> None:
    first = ask_in_slack(slack, "who owns billing?", "U1")
    ask_in_slack(slack, "and payroll?", "U1")
    other = ask_in_slack(slack, "and sales?", "U2")
    assert counted(stores, "slack", "T1", "U1") == 2
    posts = len(slack.standin.calls_to("chat.postMessage"))
    prompts = len(slack.model.prompts)

    ack, answer = forget_in_slack(slack)

    assert ack == {"response_type": "ephemeral", "text": FORGETTING}
    # Two questions, the two answers to them, the two records of where those answers are, and
    # the two records of which answer each final message carries (for feedback clicks).
    assert answer == (
        "I've forgotten what I stored about you in this workspace: 8 records of your messages "
        "and my answers to them and your usage counts for the daily limits. "
        "Messages in the chat itself are not affected."
    )
    # Nothing said in the channel, nothing asked of the model.
    assert len(slack.standin.calls_to("chat.postMessage")) == posts
    assert not slack.standin.calls_to("chat.postEphemeral")
    assert len(slack.model.prompts) == prompts
    # U1's data is gone; U2's stays, and so does the workspace's count.
    assert stores.history.recent_turns(ConversationKey("slack", "T1", "C1", first), 10) == []
    kept = stores.history.recent_turns(ConversationKey("slack", "T1", "C1", other), 10)
    assert [t.user_id for t in kept] == ["U2", "U2"]
    assert counted(stores, "slack", "T1", "U1") == 0
    assert counted(stores, "slack", "T1", "U2") == 1
    day = day_of(time.time())
    assert stores.quota.used(workspace_key("slack", "T1"), day).questions == 3

    _, again = forget_in_slack(slack)
    assert again == "I had nothing stored about you in this workspace."


def test_slack_forget_with_nothing_stored_says_so(slack: SlackHarness) -> None:
    _, answer = forget_in_slack(slack, user="U9")
    assert answer == "I had nothing stored about you in this workspace."
    assert not slack.standin.calls_to("chat.postMessage")


# --------------------------------------------------------------------------------- Teams

NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")  # turns unexpired whatever the date


@pytest.fixture
def teams(
    teams_connector: ConnectorStandIn, tmp_path: Path, stores: Stores
) -> Iterator[TeamsHarness]:
    config = Settings(data_dir=tmp_path / "data", edit_interval_seconds=0.05)
    holder: dict[str, TeamsHarness] = {}
    model = ScriptedModel(lambda p: holder["h"].answer(p))
    assistant = Assistant(settings=config, history=stores.history, model=model, quota=stores.quota)
    jobs = JobRouter()
    queue = InProcessQueue(DedupedHandler(jobs.handle, build_persistence(config)))
    enqueued: list[Job] = []

    def enqueue(job: Job) -> None:
        enqueued.append(job)
        queue.enqueue(job)

    routes = Routes()
    install_ingress(routes, enqueue, config, allow_unauthenticated=True)
    install_worker(jobs, assistant, config)
    server = LocalServer(("127.0.0.1", 0), routes)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    harness = TeamsHarness(teams_connector, server, queue, model, enqueued, default_answer)
    holder["h"] = harness
    yield harness
    harness.close()


def say_in_teams(teams: TeamsHarness, text: str, **kw: Any) -> None:
    assert (
        teams.send(tm.personal_message(text, service_url=teams.service_url, timestamp=NOW, **kw))
        == 202
    )
    teams.settle()


def last_text(teams: TeamsHarness, conversation: str) -> str:
    return str(teams.connector.messages(conversation)[-1]["text"])


def test_teams_forget_me_in_a_personal_chat_erases_and_answers_there(
    teams: TeamsHarness, stores: Stores
) -> None:
    say_in_teams(teams, "My team is Payments.")
    say_in_teams(teams, "Which team am I on?")
    alan_chat = "a:1personal-chat-with-alan"
    say_in_teams(teams, "Hello", sender=tm.OTHER_USER, conversation_id=alan_chat)
    ada, alan = tm.USER["id"], tm.OTHER_USER["id"]
    assert counted(stores, "teams", tm.TENANT_ID, ada) == 2
    prompts = len(teams.model.prompts)

    say_in_teams(teams, "Forget me")

    assert last_text(teams, tm.PERSONAL_CONVERSATION) == (  # 2 questions, answers, reply and
        # answer records (see the Slack case above)
        "I've forgotten what I stored about you in this workspace: 8 records of your messages "
        "and my answers to them and your usage counts for the daily limits. "
        "Messages in the chat itself are not affected."
    )
    assert len(teams.model.prompts) == prompts  # a command, not a question
    assert [job.kind for job in teams.enqueued][-1] == "teams.forget"
    ada_chat = ConversationKey(
        "teams", tm.TENANT_ID, tm.PERSONAL_CONVERSATION, tm.PERSONAL_CONVERSATION
    )
    assert stores.history.recent_turns(ada_chat, 10) == []
    alan_key = ConversationKey("teams", tm.TENANT_ID, alan_chat, alan_chat)
    assert [t.user_id for t in stores.history.recent_turns(alan_key, 10)] == [alan, alan]
    assert counted(stores, "teams", tm.TENANT_ID, ada) == 0
    assert counted(stores, "teams", tm.TENANT_ID, alan) == 1
    assert not teams.connector.messages(alan_chat)[1:]  # nothing said in anyone else's chat

    say_in_teams(teams, "forget me")
    assert last_text(teams, tm.PERSONAL_CONVERSATION) == (
        "I had nothing stored about you in this workspace."
    )


def test_teams_forget_me_in_a_channel_erases_nothing_and_points_to_the_personal_chat(
    teams: TeamsHarness, stores: Stores
) -> None:
    say_in_teams(teams, "My team is Payments.")
    post = tm.channel_message("forget me", service_url=teams.service_url, timestamp=NOW)
    assert teams.send(post) == 202
    teams.settle()

    (reply,) = teams.connector.messages(f"{tm.CHANNEL};messageid={post['id']}")
    assert reply["text"] == FORGET_IN_PERSONAL_CHAT
    ada_chat = ConversationKey(
        "teams", tm.TENANT_ID, tm.PERSONAL_CONVERSATION, tm.PERSONAL_CONVERSATION
    )
    assert len(stores.history.recent_turns(ada_chat, 10)) == 2
    assert counted(stores, "teams", tm.TENANT_ID, tm.USER["id"]) == 1
