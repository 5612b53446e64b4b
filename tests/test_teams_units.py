"""The Teams adapter's parts on their own: event translation, the send budget, error mapping,
the reply sink's fallbacks, credential rules, and where botbuilder may be imported."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from botbuilder.schema import Activity, ConversationReference

from bots.http import Routes
from bots.teams.auth import bot_identity, require_credentials
from bots.teams.connector import (
    ConnectorRefused,
    TeamsConnector,
    TransientFailure,
    parse_retry_after,
    translate,
)
from bots.teams.events import (
    NO_TENANT,
    Action,
    TeamsEvent,
    from_activity,
    split_conversation_id,
)
from bots.teams.ingress import install_ingress
from bots.teams.sink import WINDOW_MARGIN_SECONDS, TeamsLimits, TeamsReplySink, with_sources
from core.budget import Limit, LocalRateBudget, Priority
from core.config import ConfigError, Settings
from core.domain import Reply, SourceCitation
from core.errors import MessageTooLong, RateLimited, SinkError
from core.pacer import PLACEHOLDER
from tests.standins import teams as tm

URL = "https://smba.trafficmanager.net/amer/"
ROOT = Path(__file__).resolve().parent.parent


def event(body: dict[str, Any]) -> TeamsEvent:
    return from_activity(Activity().deserialize(body))


# --- events ---------------------------------------------------------------------------------


def test_split_conversation_id() -> None:
    assert split_conversation_id("19:a@thread.tacv2;messageid=17") == ("19:a@thread.tacv2", "17")
    assert split_conversation_id("a:1xyz") == ("a:1xyz", None)


def test_personal_message_maps_to_one_conversation_per_chat() -> None:
    body = tm.personal_message("hi there", service_url=URL)
    result = event(body)
    assert result.action is Action.ANSWER and result.turn is not None
    key = result.turn.key
    assert (key.platform, key.workspace, key.channel, key.thread) == (
        "teams",
        tm.TENANT_ID,
        tm.PERSONAL_CONVERSATION,
        tm.PERSONAL_CONVERSATION,
    )
    assert result.turn.turn_id == body["id"] and result.turn.user_name == "Ada Lovelace"
    assert result.turn.created_at == datetime(2026, 11, 2, 9, 30, 0, 123000, UTC).timestamp()
    assert result.dedupe_id == f"teams:{tm.TENANT_ID}:{tm.PERSONAL_CONVERSATION}:{body['id']}"
    assert result.reply is not None and result.reply.reply_to_id == body["id"]
    # Teams' ``conversation.tenantId`` survives into the stored reference.
    assert result.reply.reference["conversation"]["tenantID"] == tm.TENANT_ID


def test_the_tenant_comes_from_the_conversation_when_channel_data_has_none() -> None:
    body = tm.personal_message("hi", service_url=URL, channel_data={})
    assert event(body).turn.key.workspace == tm.TENANT_ID  # type: ignore[union-attr]
    del body["conversation"]["tenantId"]
    assert event(body).turn.key.workspace == NO_TENANT  # type: ignore[union-attr]


def test_emulator_conversations_without_a_type_are_personal() -> None:
    body = tm.personal_message("hello emulator", service_url=URL)
    body["channelId"] = "emulator"
    del body["conversation"]["conversationType"]
    assert event(body).action is Action.ANSWER


def test_a_channel_reply_chain_is_keyed_by_its_root() -> None:
    body = tm.channel_message("q?", service_url=URL, root="1780000000001")
    key = event(body).turn.key  # type: ignore[union-attr]
    assert (key.channel, key.thread) == (tm.CHANNEL, "1780000000001")


def test_mention_stripping_removes_only_the_bots_mention_markup() -> None:
    body = tm.channel_message("ask Chatbot&nbsp;about  <at>Alan Turing</at>", service_url=URL)
    _, entity = tm.mention({"id": tm.OTHER_USER["id"], "name": "Alan Turing"})
    body["entities"].append(entity)
    body["entities"].append({"type": "mention", "text": "<at>broken</at>"})  # no "mentioned"
    assert event(body).turn.text == "ask Chatbot about <at>Alan Turing</at>"  # type: ignore[union-attr]


def test_a_mention_without_entity_text_is_stripped_by_name() -> None:
    body = tm.group_message("what now?", service_url=URL)
    del body["entities"][0]["text"]
    assert event(body).turn.text == "what now?"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b: b.update(id=None), "without sender or id"),
        (lambda b: b.update({"from": {"id": tm.BOT_ID}}), "own activity"),
        (lambda b: b.update(type="messageReaction"), "activity type"),
    ],
)
def test_ignored_activities_say_why(change: Callable[[dict[str, Any]], None], reason: str) -> None:
    body = tm.personal_message("hi", service_url=URL)
    change(body)
    result = event(body)
    assert result.action is Action.IGNORE and reason in result.reason


def test_welcome_has_a_reply_target_without_reply_to_id() -> None:
    result = event(tm.conversation_update(service_url=URL))
    assert result.action is Action.WELCOME and result.reply is not None
    assert result.reply.reply_to_id is None and result.turn is None


# --- send budget ----------------------------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


MARGIN = WINDOW_MARGIN_SECONDS  # each window is taken this much longer than Teams'


def test_the_budget_allows_seven_sends_a_second_per_conversation() -> None:
    clock = FakeClock()
    budget = LocalRateBudget(clock=clock)
    limits = TeamsLimits(budget)
    c1, c2 = limits.conversation("c1"), limits.conversation("c2")
    required = Priority.REQUIRED
    assert [budget.take(c1, "r", required) for _ in range(7)] == [0.0] * 7
    assert budget.take(c1, "r", required) == pytest.approx(1.0 + MARGIN)
    assert budget.take(c2, "r", required) == 0.0  # another thread has its own budget
    clock.now += 1.0 + MARGIN
    assert budget.take(c1, "r", required) == 0.0  # 8 in 2 s is allowed
    assert budget.take(c1, "r", required) == pytest.approx(1.0)  # the 9th in 2 s is not


def test_the_budget_allows_sixty_sends_in_thirty_seconds_and_1800_an_hour() -> None:
    clock = FakeClock()
    budget = LocalRateBudget(clock=clock)
    scope = TeamsLimits(budget).conversation("c")
    for _ in range(60):
        assert budget.take(scope, "r", Priority.REQUIRED) == 0.0
        clock.now += 0.4
    # until the first of the 60 is 30 s old
    assert budget.take(scope, "r", Priority.REQUIRED) == pytest.approx(6.0 + MARGIN)
    clock.now += 31
    assert budget.take(scope, "r", Priority.REQUIRED) == 0.0
    sent = 61
    while budget.take(scope, "r", Priority.REQUIRED) == 0.0:
        sent += 1
        clock.now += 1.0  # 60 a minute: within the 30-second window, not within the hour
    assert sent == 1800 and clock.now - FakeClock().now < 3600


# --- connector errors -----------------------------------------------------------------------


@dataclass
class FakeResponse:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


class FakeHttpError(Exception):
    def __init__(self, status: int, **headers: str) -> None:
        super().__init__(f"HTTP {status}")
        self.response = FakeResponse(status, headers)


def test_connector_errors_map_to_what_the_pacer_understands() -> None:
    limited = translate("update", FakeHttpError(429, **{"Retry-After": "3"}))
    assert type(limited) is RateLimited and limited.retry_after == 3.0
    assert translate("update", FakeHttpError(429)).retry_after == 1.0
    for status in (412, 502, 504):
        transient = translate("update", FakeHttpError(status))
        assert isinstance(transient, TransientFailure) and transient.retry_after == 0.5
    assert isinstance(translate("send", FakeHttpError(413)), MessageTooLong)
    for status in (401, 403, 404):
        refused = translate("send", FakeHttpError(status))
        assert isinstance(refused, ConnectorRefused) and refused.cause == f"teams_http_{status}"
    assert isinstance(translate("send", ConnectionError("refused")), TransientFailure)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 30


# --- the sink with a fake connector ---------------------------------------------------------


@dataclass
class FakeConnector:
    fail_update: Callable[[int], Exception | None] = lambda n: None
    fail_send: Callable[[Activity], Exception | None] = lambda a: None
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    updates: int = 0

    def send(self, reference: Any, activity: Activity, *, reply_to_id: str | None) -> str:
        error = self.fail_send(activity)
        kind = getattr(activity.type, "value", activity.type)
        self.calls.append(("send", str(kind), str(activity.text or "")))
        if error is not None:
            raise error
        return f"m{len(self.calls)}"

    def update(self, reference: Any, activity: Activity) -> None:
        self.updates += 1
        self.calls.append(("update", str(activity.id), str(activity.text)))
        error = self.fail_update(self.updates)
        if error is not None:
            raise error


def make_sink(connector: FakeConnector, limits: TeamsLimits | None = None) -> TeamsReplySink:
    reference = ConversationReference().deserialize(
        {"conversation": {"id": "a:1chat"}, "serviceUrl": URL, "channelId": "msteams"}
    )
    return TeamsReplySink(
        connector,  # type: ignore[arg-type]
        reference=reference,
        reply_to_id="17",
        limits=limits or TeamsLimits(LocalRateBudget(), (Limit(1.0, 1000),)),
    )


def test_the_placeholder_is_a_typing_indicator_and_the_message_starts_with_text() -> None:
    connector = FakeConnector()
    sink = make_sink(connector)
    ref = sink.post(PLACEHOLDER)
    assert connector.calls == [("send", "typing", "")]
    sink.update(ref, "Hello")
    sink.update(ref, "Hello world")
    sink.finish(ref, "Hello world", Reply("Hello world"))  # unchanged: no extra call
    assert connector.calls[1:] == [("send", "message", "Hello"), ("update", "m2", "Hello world")]


def test_typing_is_skipped_when_the_budget_cannot_spare_a_send() -> None:
    connector = FakeConnector()
    sink = make_sink(connector, TeamsLimits(LocalRateBudget(), (Limit(1.0, 1),)))
    ref = sink.post(PLACEHOLDER)  # one send a second: kept for the answer, so no typing
    assert connector.calls == []
    sink.update(ref, "text")
    assert connector.calls == [("send", "message", "text")]
    with pytest.raises(RateLimited):
        sink.update(ref, "more text")


def test_the_final_text_goes_out_as_a_new_message_after_repeated_transient_failures() -> None:
    connector = FakeConnector(
        fail_update=lambda n: TransientFailure(0.5, "412", status=412) if n >= 2 else None
    )
    sink = make_sink(connector)
    ref = sink.post(PLACEHOLDER)
    sink.update(ref, "part")
    sink.update(ref, "part two")  # the first update succeeds
    final = Reply("part two three", sources=(SourceCitation("S1", "Guide", "p. 2"),))
    for _ in range(2):
        with pytest.raises(TransientFailure):
            sink.finish(ref, "part two three", final)
    sink.finish(ref, "part two three", final)
    kind, _, text = connector.calls[-1]
    assert kind == "send" and text.startswith("part two three\n\n**Sources**")
    sink.finish(ref, "part two three", final)  # a retry of finish does not send it twice
    assert [c[0] for c in connector.calls].count("send") == 3


def test_a_refused_final_edit_falls_back_but_rate_limits_and_size_do_not() -> None:
    for error, expected in [
        (RateLimited(1.0), RateLimited),
        (MessageTooLong("413"), MessageTooLong),
    ]:
        connector = FakeConnector(fail_update=lambda n, e=error: e)  # type: ignore[misc]
        sink = make_sink(connector)
        ref = sink.post("first")
        with pytest.raises(expected):
            sink.finish(ref, "final", Reply("final"))
    connector = FakeConnector(fail_update=lambda n: ConnectorRefused("gone", status=404))
    sink = make_sink(connector)
    ref = sink.post("first")
    sink.finish(ref, "final", Reply("final"))
    assert connector.calls[-1] == ("send", "message", "final")


def test_a_message_deleted_while_streaming_continues_in_a_new_one() -> None:
    connector = FakeConnector(
        fail_update=lambda n: ConnectorRefused("gone", status=404) if n == 1 else None
    )
    sink = make_sink(connector)
    ref = sink.post("first")
    sink.update(ref, "first and more")  # 404: sent as a new message
    sink.update(ref, "first and more, and the rest")  # edits the new message
    assert connector.calls[1:] == [
        ("update", "m1", "first and more"),
        ("send", "message", "first and more"),
        ("update", "m3", "first and more, and the rest"),
    ]
    connector.fail_update = lambda n: ConnectorRefused("forbidden", status=403)
    with pytest.raises(SinkError):
        sink.update(ref, "no permission any more")


def test_a_refused_fallback_is_a_sink_error() -> None:
    refused = ConnectorRefused("forbidden", status=403)
    connector = FakeConnector(fail_update=lambda n: refused)
    sink = make_sink(connector)
    ref = sink.post("first")
    connector.fail_send = lambda a: refused
    with pytest.raises(SinkError):
        sink.finish(ref, "final", Reply("final"))


def test_sources_are_a_markdown_list_under_the_answer() -> None:
    sources = (
        SourceCitation("S1", "Runbook [v2]", "page 3", "https://files.example/run book.pdf"),
        SourceCitation("S2", "Notes"),
    )
    assert with_sources("Answer [S1].", sources) == (
        "Answer [S1].\n\n**Sources**\n\n"
        "- [S1] [Runbook (v2), page 3](https://files.example/run%20book.pdf)\n"
        "- [S2] Notes"
    )
    assert with_sources("Plain.", ()) == "Plain."


# --- credentials ----------------------------------------------------------------------------


def test_credential_rules() -> None:
    assert not bot_identity(Settings()).authenticated
    single = Settings(
        microsoft_app_id="app", microsoft_app_password="pw", microsoft_app_tenant_id="t1"
    )
    assert bot_identity(single).tenant_id == "t1"
    multi = Settings(
        microsoft_app_id="app",
        microsoft_app_password="pw",
        microsoft_app_type="multitenant",
        microsoft_app_tenant_id="t1",
    )
    assert bot_identity(multi).tenant_id is None
    with pytest.raises(ConfigError, match="MICROSOFT_APP_TENANT_ID"):
        bot_identity(Settings(microsoft_app_id="app", microsoft_app_password="pw"))
    with pytest.raises(ConfigError, match="MICROSOFT_APP_TYPE"):
        bot_identity(Settings(microsoft_app_id="app", microsoft_app_type="UserAssignedMSI"))


def test_the_lambda_host_refuses_to_start_without_credentials() -> None:
    for settings in (Settings(), Settings(microsoft_app_id="app")):
        with pytest.raises(ConfigError, match="MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD"):
            require_credentials(settings)
        with pytest.raises(ConfigError):
            install_ingress(Routes(), lambda job: None, settings, allow_unauthenticated=False)
    routes = Routes()
    install_ingress(routes, lambda job: None, Settings(), allow_unauthenticated=True)
    assert routes.paths == ["POST /api/messages"]


def test_outbound_credentials_ask_the_right_authority() -> None:
    single = TeamsConnector(
        bot_identity(
            Settings(
                microsoft_app_id="app", microsoft_app_password="pw", microsoft_app_tenant_id="t1"
            )
        )
    )
    assert single.credentials is not None
    assert single.credentials.oauth_endpoint == "https://login.microsoftonline.com/t1"
    multi = TeamsConnector(
        bot_identity(
            Settings(
                microsoft_app_id="app",
                microsoft_app_password="pw",
                microsoft_app_type="MultiTenant",
            )
        )
    )
    assert multi.credentials is not None
    assert multi.credentials.oauth_endpoint.endswith("/botframework.com")
    assert TeamsConnector(bot_identity(Settings())).credentials is None


# --- dependency rule ------------------------------------------------------------------------


def test_only_bots_teams_imports_botbuilder() -> None:
    offenders = []
    for folder in ("core", "bots"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.is_relative_to(ROOT / "bots" / "teams"):
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                if any(n.split(".")[0] in ("botbuilder", "botframework", "msrest") for n in names):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_activities_from_other_bot_framework_channels_are_ignored(tmp_path: Path) -> None:
    from bots.http import HttpRequest, Routes
    from bots.teams.ingress import install_ingress
    from core.config import Settings
    from tests.standins import teams as tm

    enqueued: list[object] = []
    routes = Routes()
    install_ingress(
        routes, enqueued.append, Settings(data_dir=tmp_path), allow_unauthenticated=True
    )
    for channel, expected in (("webchat", 0), ("directline", 0), ("emulator", 1), ("msteams", 2)):
        activity = tm.personal_message("hi", service_url="http://127.0.0.1:9/")
        activity["channelId"] = channel
        response = routes.dispatch(
            HttpRequest("POST", "/api/messages", body=json.dumps(activity).encode())
        )
        assert response.status in (200, 202) and len(enqueued) == expected


def test_the_local_host_refuses_unauthenticated_teams_off_loopback(tmp_path: Path) -> None:
    from bots.http import HttpRequest
    from bots.local.app import build_local_app
    from core.config import Settings

    app = build_local_app(Settings(data_dir=tmp_path, host="0.0.0.0"))  # noqa: S104 - the point
    try:
        response = app.routes.dispatch(HttpRequest("POST", "/api/messages", body=b"{}"))
    finally:
        app.close()
    assert response.status == 503 and b"127.0.0.1" in response.body


def test_a_reply_can_be_found_again_once_its_message_exists_and_resumed() -> None:
    connector = FakeConnector()
    sink = make_sink(connector)
    ref = sink.post(PLACEHOLDER)
    assert sink.message_id(ref) is None  # typing only: nothing to resume
    sink.update(ref, "Half")
    message_id = sink.message_id(ref)
    assert message_id == "m2"

    later = make_sink(connector)  # the next worker, after the first one died
    resumed = later.adopt(message_id)
    later.finish(resumed, "The whole answer.", Reply("The whole answer."))
    assert connector.calls[-1] == ("update", "m2", "The whole answer.")
    assert [c for c in connector.calls if c[1] == "message"] == [("send", "message", "Half")]


def test_only_the_final_ends_a_replys_reservation() -> None:
    connector = FakeConnector()
    budget = LocalRateBudget()
    sink = make_sink(connector, TeamsLimits(budget, (Limit(1.0, 1000),)))
    ref = sink.post(PLACEHOLDER)
    sink.update(ref, "first part")
    scope = "teams:a:1chat"
    assert budget._states[scope].open[sink._holder][1] is True  # shows text now
    more = sink.post("continued")  # a continuation message: required, but not the final
    assert sink._holder in budget._states[scope].open
    sink.finish(more, "continued and done", Reply("continued and done"))
    assert sink._holder not in budget._states[scope].open


def test_a_resumed_teams_reply_shows_its_first_text_first() -> None:
    connector = FakeConnector()
    budget = LocalRateBudget()
    sink = make_sink(connector, TeamsLimits(budget, (Limit(1.0, 1000),)))
    ref = sink.adopt("m7")
    sink.update(ref, "Again")
    assert budget._states["teams:a:1chat"].open[sink._holder][1] is True
    assert connector.calls == [("update", "m7", "Again")]


@pytest.mark.parametrize(
    ("url", "unauthenticated", "allowed"),
    [
        ("http://127.0.0.1:5000/files/1", True, True),
        ("http://localhost/files/1", True, True),
        ("https://10.0.0.5/internal", True, False),  # the Emulator is on this machine
        ("http://169.254.169.254/latest/meta-data", True, False),
        ("https://contoso.sharepoint.com/f", True, False),
        ("https://contoso.sharepoint.com/f", False, True),
        ("http://contoso.sharepoint.com/f", False, False),
    ],
)
def test_downloads_reach_only_what_the_mode_vouches_for(
    url: str, unauthenticated: bool, allowed: bool
) -> None:
    from bots.teams.worker import TeamsWorker

    worker = TeamsWorker(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        TeamsLimits(LocalRateBudget()),
        insecure_downloads=unauthenticated,
    )
    assert worker._download_allowed(url) is allowed
