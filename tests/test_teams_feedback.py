"""Teams' built-in feedback buttons, end to end on the local host: an answer (streamed in a
personal chat, paced elsewhere) is posted with ``feedbackLoopEnabled``; a click arrives as an
``invoke`` ``message/submitAction`` naming the message (``replyToId``), is acknowledged 200, and
the worker records the rating against the answer that message carries, found in the click's
own conversation: once per person and rating, counted in the metrics, never with text, and
without a word in the chat."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bots.teams.stream import StreamSupport
from core.domain import ConversationKey
from core.feedback import Rating
from tests.fakes import timed_stream
from tests.standins import teams as tm
from tests.standins.teams import ConnectorStandIn, OutboundTokens, TokenIssuer
from tests.test_teams import AUTH, Harness, build_harness

PERSONAL_KEY = ConversationKey(
    "teams", tm.TENANT_ID, tm.PERSONAL_CONVERSATION, tm.PERSONAL_CONVERSATION
)
GROUP_KEY = ConversationKey("teams", tm.TENANT_ID, tm.GROUP_CHAT, tm.GROUP_CHAT)
ANSWER = "The SLA is 99.9% [S1]."


@pytest.fixture
def teams(teams_connector: ConnectorStandIn, tmp_path: Path) -> Iterator[Harness]:
    harness = build_harness(teams_connector, tmp_path, streaming=StreamSupport(min_gap=0.05))
    harness.answer = lambda p: timed_stream(["The SLA is ", "99.9% [S1]."], delay=0.01)
    yield harness
    harness.close()


def answered(teams: Harness, activity: dict[str, Any]) -> str:
    """Ask, and return the id of the answer's (last) message."""
    assert teams.send(activity) == 202
    teams.settle()
    message = teams.connector.messages(activity["conversation"]["id"])[-1]
    assert message["text"] == ANSWER and tm.feedback_enabled(message)
    return str(message["id"])


def click(teams: Harness, reaction: Any, message_id: str | None, **kw: Any) -> int:
    status = teams.send(
        tm.feedback_invoke(reaction, reply_to_id=message_id, service_url=teams.service_url, **kw)
    )
    teams.settle()
    return status


def ratings(teams: Harness, key: ConversationKey, answer_id: str) -> list[tuple[str, Rating]]:
    assert teams.history is not None
    return [(f.voter, f.rating) for f in teams.history.feedback_for_answer(key, answer_id)]


def counted(teams: Harness) -> list[tuple[str, ...]]:
    return [seen for seen in teams.observed if seen[0] == "feedback"]


def test_a_like_on_a_streamed_answer_is_recorded_once_and_a_duplicate_changes_nothing(
    teams: Harness,
) -> None:
    question = tm.personal_message("What is our SLA?", service_url=teams.service_url)
    message_id = answered(teams, question)
    calls = len(teams.connector.calls)

    assert click(teams, "like", message_id) == 200
    assert ratings(teams, PERSONAL_KEY, question["id"]) == [(tm.USER["id"], Rating.GOOD)]
    assert counted(teams) == [("feedback", "good", "scripted", "teams")]

    assert click(teams, "like", message_id) == 200  # a second click, a new invoke
    assert ratings(teams, PERSONAL_KEY, question["id"]) == [(tm.USER["id"], Rating.GOOD)]
    assert len(counted(teams)) == 1

    assert click(teams, "dislike", message_id) == 200  # a changed mind replaces the rating
    assert ratings(teams, PERSONAL_KEY, question["id"]) == [(tm.USER["id"], Rating.BAD)]
    assert len(counted(teams)) == 2
    assert len(teams.connector.calls) == calls  # nothing was said in the chat
    assert [j.kind for j in teams.enqueued].count("teams.feedback") == 3


def test_the_same_invoke_delivered_twice_is_one_click(teams: Harness) -> None:
    question = tm.personal_message("What is our SLA?", service_url=teams.service_url)
    message_id = answered(teams, question)
    invoke = tm.feedback_invoke("like", reply_to_id=message_id, service_url=teams.service_url)
    assert teams.send(invoke) == 200
    assert teams.send(invoke) == 200
    teams.settle()
    assert len(counted(teams)) == 1


def test_feedback_on_a_paced_group_chat_answer_is_recorded(teams: Harness) -> None:
    post = tm.group_message("what is our SLA?", service_url=teams.service_url)
    message_id = answered(teams, post)
    group = {"conversationType": "groupChat", "tenantId": tm.TENANT_ID, "id": tm.GROUP_CHAT}

    assert click(teams, "dislike", message_id, conversation=group) == 200
    assert ratings(teams, GROUP_KEY, post["id"]) == [(tm.USER["id"], Rating.BAD)]


def test_feedback_in_a_channel_reply_chain_is_recorded(teams: Harness) -> None:
    post = tm.channel_message("what is our SLA?", service_url=teams.service_url)
    message_id = answered(teams, post)
    chain = {
        "conversationType": "channel",
        "tenantId": tm.TENANT_ID,
        "id": f"{tm.CHANNEL};messageid={post['id']}",
    }
    assert click(teams, "like", message_id, conversation=chain) == 200
    key = ConversationKey("teams", tm.TENANT_ID, tm.CHANNEL, post["id"])
    assert ratings(teams, key, post["id"]) == [(tm.USER["id"], Rating.GOOD)]


@pytest.mark.parametrize(
    "where",
    [
        pytest.param({"message": "1799999999999"}, id="unknown-or-deleted-message"),
        pytest.param({"tenant": "tenant-2222"}, id="another-tenant"),
        pytest.param({"conversation": "a:1personal-chat-with-alan"}, id="another-conversation"),
    ],
)
def test_a_click_that_names_no_answer_of_its_own_conversation_records_nothing(
    teams: Harness, where: dict[str, str]
) -> None:
    question = tm.personal_message("What is our SLA?", service_url=teams.service_url)
    message_id = answered(teams, question)
    tenant = where.get("tenant", tm.TENANT_ID)
    conversation = {
        "conversationType": "personal",
        "tenantId": tenant,
        "id": where.get("conversation", tm.PERSONAL_CONVERSATION),
    }
    calls = len(teams.connector.calls)

    status = click(
        teams,
        "like",
        where.get("message", message_id),
        conversation=conversation,
        channel_data={"tenant": {"id": tenant}},
        sender=tm.OTHER_USER,
    )

    assert status == 200  # acknowledged: the person sees no error for what is not theirs
    assert ratings(teams, PERSONAL_KEY, question["id"]) == []
    assert counted(teams) == []
    assert len(teams.connector.calls) == calls


@pytest.mark.parametrize(
    ("invoke", "status"),
    [
        pytest.param({"value": "feedback"}, 200, id="value-not-an-object"),
        pytest.param({"value": {"actionName": "feedback"}}, 200, id="no-action-value"),
        pytest.param(
            {"value": {"actionName": "feedback", "actionValue": "like"}}, 200, id="flat-value"
        ),
        pytest.param({"reaction": "love"}, 200, id="unknown-reaction"),
        pytest.param({"reaction": ["like"]}, 200, id="reaction-not-a-string"),
        pytest.param({"value": {"actionName": "other"}}, 200, id="another-submit-action"),
        pytest.param({"message": None}, 200, id="no-reply-to-id"),
        pytest.param({"name": "message/fetchTask"}, 200, id="another-invoke"),
        pytest.param({"message": ["1"]}, 400, id="reply-to-id-not-a-string"),
        pytest.param({"name": 7}, 400, id="name-not-a-string"),
    ],
)
def test_a_malformed_feedback_invoke_gets_a_deliberate_status_and_records_nothing(
    teams: Harness, invoke: dict[str, Any], status: int
) -> None:
    question = tm.personal_message("What is our SLA?", service_url=teams.service_url)
    message_id = answered(teams, question)
    body = tm.feedback_invoke(
        invoke.get("reaction", "like"), reply_to_id=message_id, service_url=teams.service_url
    )
    if "value" in invoke:
        body["value"] = invoke["value"]
    if "name" in invoke:
        body["name"] = invoke["name"]
    if "message" in invoke:
        body["replyToId"] = invoke["message"]
        if invoke["message"] is None:
            del body["replyToId"]
    jobs = len(teams.enqueued)

    assert teams.send(body) == status
    teams.settle()
    assert len(teams.enqueued) == jobs
    assert ratings(teams, PERSONAL_KEY, question["id"]) == []


@pytest.fixture
def secured(
    teams_connector: ConnectorStandIn,
    tmp_path: Path,
    token_issuer: TokenIssuer,
    outbound_token: OutboundTokens,
) -> Iterator[Harness]:
    harness = build_harness(teams_connector, tmp_path, **AUTH)
    harness.answer = lambda p: timed_stream(["The SLA is ", "99.9% [S1]."], delay=0.01)
    yield harness
    harness.close()


def test_a_signed_click_is_recorded_and_an_unsigned_one_refused(
    secured: Harness, token_issuer: TokenIssuer
) -> None:
    post = tm.group_message("what is our SLA?", service_url=secured.service_url)
    assert secured.send(post, token=token_issuer.token(service_url=secured.service_url)) == 202
    secured.settle()
    message_id = secured.connector.messages(tm.GROUP_CHAT)[-1]["id"]
    group = {"conversationType": "groupChat", "tenantId": tm.TENANT_ID, "id": tm.GROUP_CHAT}
    invoke = tm.feedback_invoke(
        "like", reply_to_id=message_id, service_url=secured.service_url, conversation=group
    )

    assert secured.send(invoke) == 401  # no token
    assert secured.send(invoke, token=token_issuer.token(service_url=secured.service_url)) == 200
    secured.settle()
    assert ratings(secured, GROUP_KEY, post["id"]) == [(tm.USER["id"], Rating.GOOD)]


def test_forget_me_erases_the_persons_ratings(teams: Harness) -> None:
    question = tm.personal_message("What is our SLA?", service_url=teams.service_url)
    message_id = answered(teams, question)
    assert click(teams, "like", message_id) == 200
    assert ratings(teams, PERSONAL_KEY, question["id"]) != []

    assert teams.send(tm.personal_message("forget me", service_url=teams.service_url)) == 202
    teams.settle()
    assert ratings(teams, PERSONAL_KEY, question["id"]) == []
