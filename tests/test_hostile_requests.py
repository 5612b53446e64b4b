"""Hostile and malformed requests, one regression test per failure seen in the field: every
request path answers with a status chosen on purpose (401 unsigned, 400 malformed, 200 for a
signed Slack payload of an unexpected shape), never a 5xx or an uncaught exception. The
property-based campaign over the same paths is in ``test_fuzz_requests.py``."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest

import bots.aws.ingress as ingress
from bots.http import HttpRequest, HttpResponse, MalformedJson, Routes, parse_json
from bots.slack.events import from_event, payload_problem
from bots.slack.ingress import build_bolt_app, slack_route
from bots.teams.events import is_loopback_url
from bots.teams.ingress import TEAMS_FILE, teams_route
from core.config import Settings
from core.jobs import Job
from tests import slack_requests as sr
from tests.lambda_harness import LambdaContext, drain, provision_aws
from tests.standins import teams as tm
from tests.standins.slack import SlackStandIn
from tests.standins.teams import ConnectorStandIn, TokenIssuer

NESTED = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = b'{"text": ' + b"9" * 5000 + b"}"


# --- Slack ------------------------------------------------------------------------------------


class SlackRoute:
    def __init__(self, standin: SlackStandIn, tmp_path: Path) -> None:
        settings = Settings(
            data_dir=tmp_path,
            slack_signing_secret=sr.DEFAULT_SIGNING_SECRET,
            slack_bot_token=standin.bot_token,
            slack_api_url=standin.api_url,
        )
        self.enqueued: list[Job] = []
        self.route = slack_route(
            build_bolt_app(settings, self.enqueued.append), sr.DEFAULT_SIGNING_SECRET
        )

    def send(self, body: bytes, headers: dict[str, str]) -> HttpResponse:
        lowered = {k.lower(): v for k, v in headers.items()}
        return self.route(HttpRequest("POST", "/slack/events", lowered, body))


@pytest.fixture
def slack(slack_standin: SlackStandIn, tmp_path: Path) -> SlackRoute:
    return SlackRoute(slack_standin, tmp_path)


def now() -> str:
    return str(int(time.time()))


@pytest.mark.parametrize(
    "timestamp",
    ["abc", "1e9", "", " 1700000000", "١٧٠٠٠٠٠٠٠٠", "9" * 5000, "-1", "1700000000.5"],
    ids=["letters", "exponent", "empty", "space", "arabic-digits", "5000-digits", "neg", "float"],
)
def test_a_timestamp_that_is_no_integer_is_401(slack: SlackRoute, timestamp: str) -> None:
    body = b'{"type": "event_callback"}'
    signed = sr.signed_headers(body, sr.DEFAULT_SIGNING_SECRET)
    response = slack.send(body, {**signed, "X-Slack-Request-Timestamp": timestamp})
    assert response.status == 401 and slack.enqueued == []


@pytest.mark.parametrize(
    "signature", ["v0=\xe9", "v0=" + "é" * 64, "\u00ff" * 10, "v0=" + "A" * 64]
)
def test_a_signature_that_is_not_ascii_hex_is_401(slack: SlackRoute, signature: str) -> None:
    body, headers = sr.event_callback(sr.app_mention("<@UBOT> hi"))
    response = slack.send(body, {**headers, "X-Slack-Signature": signature})
    assert response.status == 401 and slack.enqueued == []


def test_invalid_utf8_with_signature_headers_is_401(slack: SlackRoute) -> None:
    headers = {"X-Slack-Request-Timestamp": now(), "X-Slack-Signature": "v0=" + "0" * 64}
    assert slack.send(b"\xff\xfe{\x80}", headers).status == 401


def test_a_validly_signed_body_that_is_not_utf8_or_not_bounded_json_is_400_without_retries(
    slack: SlackRoute,
) -> None:
    for body in (b"\xff\xfe{\x80}", b'{"a": ' + NESTED + b"}", b'{"a": ' + b"1" * 5000 + b"}"):
        headers = {"Content-Type": "application/json"}
        headers.update(sr.signed_headers(body, sr.DEFAULT_SIGNING_SECRET))
        response = slack.send(body, headers)
        assert response.status == 400, body[:20]
        assert response.headers.get("X-Slack-No-Retry") == "1"
    assert slack.enqueued == []


def signed_event(event: Any) -> tuple[bytes, dict[str, str]]:
    body, _ = sr.event_callback({"type": "message"})
    payload = json.loads(body)
    payload["event"] = event
    raw = json.dumps(payload).encode()
    return raw, {
        "Content-Type": "application/json",
        **sr.signed_headers(raw, sr.DEFAULT_SIGNING_SECRET),
    }


@pytest.mark.parametrize("event", [[1, 2], "app_mention", 7, None, {"type": ["message"]}])
def test_a_signed_event_that_is_not_an_object_is_acknowledged_and_ignored(
    slack: SlackRoute, event: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    response = slack.send(*signed_event(event))
    assert response.status == 200 and slack.enqueued == []


@pytest.mark.parametrize("ts", ["abc", "1e400", "nan", 17, {"a": 1}, "", "1700000000.1#2"])
def test_a_signed_message_with_a_ts_that_is_no_slack_ts_is_acknowledged_and_ignored(
    slack: SlackRoute, ts: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    event = sr.app_mention("<@UBOT> the secret plan is in here")
    event["ts"] = ts
    response = slack.send(*sr.event_callback(event))
    assert response.status == 200 and slack.enqueued == []
    warned = [r for r in caplog.records if "unexpected shape" in r.getMessage()]
    assert warned and all(getattr(r, "event_type", "") == "app_mention" for r in warned)
    assert "secret plan" not in caplog.text  # the kind is logged, never the text


def test_signed_events_with_files_or_ids_of_the_wrong_type_are_ignored(slack: SlackRoute) -> None:
    cases: list[Callable[[dict[str, Any]], None]] = [
        lambda e: e.update(files=[1, "x"]),
        lambda e: e.update(files="F1"),
        lambda e: e.update(channel={"id": 5}),
        lambda e: e.update(user=["U1"]),
        lambda e: e.update(channel="C#1"),
        lambda e: e.update(thread_ts=1700000000),
        lambda e: e.update(subtype=["file_share"]),
    ]
    for change in cases:
        event = sr.message("hi", channel_type="im")
        change(event)
        assert slack.send(*sr.event_callback(event)).status == 200
    assert slack.enqueued == []


def test_a_signed_file_of_odd_fields_is_still_read(slack: SlackRoute) -> None:
    event = sr.message("see file", channel_type="im", subtype="file_share")
    event["files"] = [{"id": "F1", "name": ["x"], "size": "big", "url_private": 5}]
    assert slack.send(*sr.event_callback(event)).status == 200
    (file_job,) = [j for j in slack.enqueued if j.kind == "slack.file"]
    assert file_job.payload["file"] == {
        "file_id": "F1",
        "name": "F1",
        "mime_type": "",
        "size": 0,
        "url": "",
        "permalink": "",
    }


def form(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    raw = urlencode(fields).encode()
    return raw, {
        "Content-Type": "application/x-www-form-urlencoded",
        **sr.signed_headers(raw, sr.DEFAULT_SIGNING_SECRET),
    }


@pytest.mark.parametrize("missing", ["trigger_id", "channel_id", "team_id", "user_id"])
def test_a_signed_command_without_what_an_answer_needs_is_acknowledged(
    slack: SlackRoute, missing: str
) -> None:
    body, _ = sr.slash_command("/summarize", text="7d")
    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    del fields[missing]
    assert slack.send(*form(fields)).status == 200
    assert slack.enqueued == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: p.pop("trigger_id"), id="no-trigger_id"),
        pytest.param(lambda p: p.update(message="hello"), id="message-a-string"),
        pytest.param(lambda p: p.update(channel=[1]), id="channel-a-list"),
        pytest.param(lambda p: p["message"].update(ts="yesterday"), id="ts-not-a-ts"),
        pytest.param(lambda p: p.update(team={"id": None}), id="no-team"),
    ],
)
def test_a_signed_shortcut_of_an_unexpected_shape_is_acknowledged(
    slack: SlackRoute, change: Callable[[dict[str, Any]], None]
) -> None:
    body, _ = sr.message_shortcut()
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    change(payload)
    assert slack.send(*form({"payload": json.dumps(payload)})).status == 200
    assert slack.enqueued == []


def test_ids_given_as_strings_in_a_shortcut_are_read(slack: SlackRoute) -> None:
    body, _ = sr.message_shortcut()
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    payload.update(channel="C1", team="T1", user="U1")
    assert slack.send(*form({"payload": json.dumps(payload)})).status == 200
    (job,) = slack.enqueued
    assert (job.payload["channel"], job.payload["team"], job.payload["user"]) == ("C1", "T1", "U1")


def test_signed_requests_nothing_listens_for_are_acknowledged(slack: SlackRoute) -> None:
    for fields in ({"command": "/other", "text": "x"}, {"payload": '{"type": "block_actions"}'}):
        response = slack.send(*form(fields))
        assert response.status == 200 and response.headers.get("X-Slack-No-Retry") == "1"


def test_real_payloads_pass_the_envelope_check() -> None:
    shaped = [
        sr.event_callback(sr.app_mention("<@UBOT> hi", thread_ts=sr.new_ts()))[0],
        sr.event_callback(sr.message("x", subtype="file_share", files=[{"id": "F1"}]))[0],
        sr.url_verification()[0],
    ]
    for body in shaped:
        assert payload_problem(json.loads(body)) is None
    for body in (sr.message_shortcut()[0], sr.block_actions("feedback", "good")[0]):
        assert payload_problem(json.loads(parse_qs(body.decode())["payload"][0])) is None
    assert payload_problem(dict(parse_qs(sr.slash_command()[0].decode()))) is not None  # lists
    fields = {k: v[0] for k, v in parse_qs(sr.slash_command()[0].decode()).items()}
    assert payload_problem(fields) is None


def test_from_event_is_total_over_json_shapes() -> None:
    for event in ([], "x", 1, None, {"type": "message", "ts": [1]}, {"type": {"a": 1}}):
        assert from_event({"event": event, "authorizations": "x"}) is None


# --- bounded JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [NESTED, b'{"a":' * 65 + b"1" + b"}" * 65, b"1" * 5000, b"NaN", b"\xff", b"{"],
    ids=["nested-100000", "nested-65", "5000-digits", "nan", "not-utf8", "truncated"],
)
def test_json_is_parsed_within_bounds(raw: bytes) -> None:
    with pytest.raises(MalformedJson):
        parse_json(raw)


def test_json_within_bounds_parses() -> None:
    assert parse_json(b'{"a":' * 60 + b"1" + b"}" * 60) is not None
    assert parse_json("9" * 4000) == int("9" * 4000)


# --- the local host's devchat and Teams routes, parsed before any auth ---------------------------


@pytest.fixture
def local_routes(tmp_path: Path) -> Iterator[Routes]:
    from bots.local.app import build_local_app

    app = build_local_app(Settings(data_dir=tmp_path))
    yield app.routes
    app.close()


@pytest.mark.parametrize("path", ["/local/messages", "/api/messages"])
@pytest.mark.parametrize("body", [NESTED, HUGE_INT], ids=["nested", "5000-digit-int"])
def test_nested_json_and_huge_integers_are_400(
    local_routes: Routes, path: str, body: bytes
) -> None:
    headers = {"content-type": "application/json"}
    response = local_routes.dispatch(HttpRequest("POST", path, headers, body))
    assert response.status == 400


# --- a route that fails unexpectedly -------------------------------------------------------------


def test_an_unexpected_error_in_a_route_is_a_clean_500_logged_without_the_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    routes = Routes()

    def broken(request: HttpRequest) -> HttpResponse:
        raise KeyError(request.body.decode())

    routes.add("POST", "/broken", broken)
    caplog.set_level(logging.ERROR)
    response = routes.dispatch(HttpRequest("POST", "/broken", body=b"secret-body-text"))
    assert response.status == 500 and json.loads(response.body) == {"error": "internal error"}
    (record,) = [r for r in caplog.records if r.name == "bots.http"]
    assert record.path == "/broken" and record.error_type == "KeyError"  # type: ignore[attr-defined]
    assert "secret-body-text" not in caplog.text


# --- Teams: signing keys -------------------------------------------------------------------------

AUTH = {
    "microsoft_app_id": tm.APP_ID,
    "microsoft_app_password": "dummy-password",
    "microsoft_app_type": "SingleTenant",
    "microsoft_app_tenant_id": tm.TENANT_ID,
}
SERVICE_URL = "https://smba.trafficmanager.net/amer/"


class SilentEndpoint:
    """Accepts connections and never answers: a network that swallows requests."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        port = self._socket.getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/.well-known/openidconfiguration"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self._socket.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentEndpoint]:
    from botframework.connector.auth import ChannelValidation, JwtTokenExtractor

    endpoint = SilentEndpoint()
    monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", endpoint.url)
    monkeypatch.setattr(JwtTokenExtractor, "metadataCache", {})
    yield endpoint
    endpoint.close()


class TeamsRoute:
    def __init__(self, tmp_path: Path, *, prewarm: bool = False, **settings: Any) -> None:
        self.enqueued: list[Job] = []
        self.route = teams_route(
            Settings(data_dir=tmp_path, **settings),
            self.enqueued.append,
            allow_unauthenticated=True,
            prewarm_keys=prewarm,
        )

    def send(self, activity: dict[str, Any] | bytes, token: str | None = None) -> int:
        raw = activity if isinstance(activity, bytes) else json.dumps(activity).encode()
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return self.route(HttpRequest("POST", "/api/messages", headers, raw)).status


def test_a_silent_key_endpoint_is_answered_within_seconds_and_not_asked_again_at_once(
    silent_keys: SilentEndpoint, tmp_path: Path
) -> None:
    teams = TeamsRoute(tmp_path, **AUTH)
    token = TokenIssuer().token(service_url=SERVICE_URL)
    started = time.monotonic()
    assert teams.send(tm.personal_message("hi", service_url=SERVICE_URL), token) == 503
    assert time.monotonic() - started < 5
    started = time.monotonic()
    assert teams.send(tm.personal_message("again", service_url=SERVICE_URL), token) == 503
    assert time.monotonic() - started < 0.5  # the failure is remembered: no second wait
    assert len(silent_keys.accepted) == 1 and teams.enqueued == []


def forged_tokens(issuer: TokenIssuer) -> dict[str, str]:
    import jwt

    claims = {"serviceurl": SERVICE_URL, "iss": tm.BOTFRAMEWORK_ISSUER, "aud": tm.APP_ID}
    return {
        "not-a-jwt": "garbage.not.a-jwt",
        "alg-none": jwt.encode({**claims, "exp": int(time.time()) + 600}, None, algorithm="none"),
        "hs256": jwt.encode({**claims, "exp": int(time.time()) + 600}, "k" * 32, algorithm="HS256"),
        "wrong-issuer": issuer.token(service_url=SERVICE_URL, issuer="https://evil.example"),
        "wrong-audience": issuer.token(service_url=SERVICE_URL, audience="someone-else"),
        "wrong-service-url": issuer.token(service_url="https://elsewhere.example/"),
        "expired": issuer.token(service_url=SERVICE_URL, expires_in=-600),
        "no-key-id": jwt.encode(
            {**claims, "exp": int(time.time()) + 600}, TokenIssuer.forged_key(), algorithm="RS256"
        ),
        "skill": issuer.token(service_url=SERVICE_URL, ver="2.0", azp="another-bot"),
        "not-ascii": "ey\u00e9.\u00e9.\u00e9",
        "two-words": "a b",
    }


def test_tokens_that_could_never_be_valid_are_401_at_once_without_any_fetch(
    silent_keys: SilentEndpoint, tmp_path: Path
) -> None:
    teams = TeamsRoute(tmp_path, **AUTH)
    for name, token in forged_tokens(TokenIssuer()).items():
        started = time.monotonic()
        status = teams.send(tm.personal_message("hi", service_url=SERVICE_URL), token)
        assert status == 401, name
        assert time.monotonic() - started < 0.5, name
    assert teams.send(tm.personal_message("hi", service_url=SERVICE_URL)) == 401  # no token
    assert silent_keys.accepted == [] and teams.enqueued == []


def test_a_token_that_fails_the_screen_is_401_before_its_body_is_parsed(
    silent_keys: SilentEndpoint, tmp_path: Path
) -> None:
    teams = TeamsRoute(tmp_path, **AUTH)
    assert teams.send(NESTED, "garbage") == 401
    assert teams.send(b"\xff", None) == 401


def test_a_forged_signature_is_401_once_the_keys_are_known(
    token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    teams = TeamsRoute(tmp_path, **AUTH)
    valid = token_issuer.token(service_url=SERVICE_URL)
    forged = token_issuer.token(service_url=SERVICE_URL, signing_key=TokenIssuer.forged_key())
    unknown_key = token_issuer.token(service_url=SERVICE_URL, key_id="unpublished")
    assert teams.send(tm.personal_message("hi", service_url=SERVICE_URL), valid) == 202
    fetches = len(token_issuer.fetches)
    for token in (forged, unknown_key, forged):
        assert teams.send(tm.personal_message("hi", service_url=SERVICE_URL), token) == 401
    # An unknown key id may refresh the keys at most hourly: not on every forged request.
    assert len(token_issuer.fetches) == fetches
    assert [j.kind for j in teams.enqueued] == ["teams.message"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stale_keys_keep_serving_while_the_endpoint_is_down_and_it_is_retried_later(
    token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    from botframework.connector.auth import JwtTokenExtractor

    from bots.teams.auth import KEY_MAX_AGE_SECONDS, KEY_RETRY_SECONDS, SigningKeys

    clock = FakeClock()
    keys = SigningKeys(token_issuer.metadata_url, clock=clock)
    JwtTokenExtractor.metadataCache[token_issuer.metadata_url] = keys
    teams = TeamsRoute(tmp_path, **AUTH)

    def send(token: str) -> int:
        return teams.send(tm.personal_message("x", service_url=SERVICE_URL), token)

    valid = token_issuer.token(service_url=SERVICE_URL)
    forged = token_issuer.token(service_url=SERVICE_URL, signing_key=TokenIssuer.forged_key())
    assert send(valid) == 202
    fetched = len(token_issuer.fetches)
    token_issuer.stop()
    clock.now += KEY_MAX_AGE_SECONDS + 1  # due for a refresh, which fails
    assert (send(forged), send(valid)) == (401, 202)
    clock.now += KEY_RETRY_SECONDS / 2  # no new attempt yet
    assert (send(forged), send(valid)) == (401, 202)
    token_issuer.start()  # on a new port
    keys.url = token_issuer.metadata_url
    clock.now += KEY_RETRY_SECONDS  # now the next request fetches again
    assert send(valid) == 202 and len(token_issuer.fetches) == fetched + 2


def test_keys_are_fetched_in_the_background_when_the_route_is_built(
    token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    from bots.teams.auth import signing_keys

    TeamsRoute(tmp_path, prewarm=True, **AUTH)
    deadline = time.monotonic() + 5
    while not signing_keys().known and time.monotonic() < deadline:
        time.sleep(0.01)
    assert signing_keys().known and token_issuer.fetches


def test_building_the_route_does_not_wait_for_a_silent_key_endpoint(
    silent_keys: SilentEndpoint, tmp_path: Path
) -> None:
    started = time.monotonic()
    TeamsRoute(tmp_path, prewarm=True, **AUTH)
    assert time.monotonic() - started < 1


# --- Teams: unauthenticated mode takes only loopback URLs ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5/",
        "http://169.254.169.254/latest/meta-data/",
        "https://smba.trafficmanager.net/amer/",
        "http://127.0.0.1@evil.example/",
        "http://localhost.evil.example/",
        "http://[::ffff:10.0.0.1]/",
        "http://127.0.0.1:99999/",
        "ftp://127.0.0.1/",
        "http://127.0.0.1\t.evil.example/",
        "not a url",
    ],
)
def test_unauthenticated_activities_with_a_service_url_off_loopback_are_400(
    tmp_path: Path, url: str
) -> None:
    teams = TeamsRoute(tmp_path)
    assert teams.send(tm.personal_message("hi", service_url=url)) == 400
    assert teams.enqueued == []


def test_unauthenticated_mode_takes_no_token_and_fetches_no_keys(
    silent_keys: SilentEndpoint, tmp_path: Path
) -> None:
    teams = TeamsRoute(tmp_path)
    token = TokenIssuer().token(service_url="http://127.0.0.1:3978/", audience="")
    assert teams.send(tm.personal_message("hi", service_url="http://127.0.0.1:3978/"), token) == 401
    assert silent_keys.accepted == [] and teams.enqueued == []


def test_loopback_urls() -> None:
    for url in (
        "http://127.0.0.1:3978/",
        "http://localhost:9/x",
        "https://[::1]/",
        "http://127.8.9.1",
    ):
        assert is_loopback_url(url), url
    for url in ("http://0.0.0.0/", "http://[::]/", "http://127.1/", "file:///etc/passwd", None, 5):
        assert not is_loopback_url(url), url


def test_unauthenticated_loopback_activities_are_still_answered(tmp_path: Path) -> None:
    teams = TeamsRoute(tmp_path)
    assert teams.send(tm.personal_message("hi", service_url="http://127.0.0.1:3978/")) == 202
    assert teams.send(tm.personal_message("hi", service_url="http://localhost:3978/")) == 202


def with_file(activity: dict[str, Any], url: str) -> dict[str, Any]:
    activity["attachments"] = [
        {
            "contentType": "application/vnd.microsoft.teams.file.download.info",
            "name": "notes.txt",
            "content": {"downloadUrl": url, "uniqueId": "u1", "fileType": "txt"},
        }
    ]
    return activity


def test_an_unauthenticated_download_url_off_loopback_is_refused_readably(
    tmp_path: Path,
    teams_connector: ConnectorStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bots.local.app import build_local_app

    app = build_local_app(Settings(data_dir=tmp_path, edit_interval_seconds=0.01))
    internal = "http://169.254.169.254/latest/meta-data/iam"
    activity = with_file(tm.personal_message("", service_url=teams_connector.service_url), internal)
    try:
        response = app.routes.dispatch(
            HttpRequest(
                "POST",
                "/api/messages",
                {"content-type": "application/json"},
                json.dumps(activity).encode(),
            )
        )
        assert response.status == 202
        assert teams_connector.wait_for(
            lambda: any("can't read notes.txt" in m["text"] for m in teams_connector.messages())
        )
    finally:
        app.close()
    assert not any("169.254" in (m["text"] or "") for m in teams_connector.messages())


def test_an_unauthenticated_download_url_on_loopback_is_kept(tmp_path: Path) -> None:
    teams = TeamsRoute(tmp_path)
    url = "http://127.0.0.1:3978/files/notes.txt"
    assert teams.send(with_file(tm.personal_message("", service_url=url), url)) == 202
    (job,) = teams.enqueued
    assert job.kind == TEAMS_FILE and job.payload["file"]["url"] == url


def test_an_authenticated_download_url_keeps_todays_rules(
    token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    teams = TeamsRoute(tmp_path, **AUTH)
    url = "https://contoso.sharepoint.com/personal/file.txt?tempauth=x"
    activity = with_file(tm.personal_message("", service_url=SERVICE_URL), url)
    assert teams.send(activity, token_issuer.token(service_url=SERVICE_URL)) == 202
    (job,) = teams.enqueued
    assert job.payload["file"]["url"] == url


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a["channelData"].update(tenant=[1]),
        lambda a: a["conversation"].update(tenantId={"id": "t"}),
        lambda a: a["from"].update(name=["Ada"]),
        lambda a: a["conversation"].update(id=["a:1"]),
        lambda a: a.update(entities=[None]),
        lambda a: a.update(channelId=["msteams"]),
        lambda a: a["conversation"].update(id="a#b"),
    ],
)
def test_activities_with_fields_of_the_wrong_type_are_400_or_ignored(
    tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    teams = TeamsRoute(tmp_path)
    activity = tm.personal_message("hi", service_url="http://127.0.0.1:3978/")
    activity = json.loads(json.dumps(activity))  # its "from" is a module constant
    change(activity)
    assert teams.send(activity) in (200, 400)
    assert teams.enqueued == []


# --- the Lambda ingress handler ------------------------------------------------------------------


@pytest.fixture
def lambda_host(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, slack_standin: SlackStandIn
) -> dict[str, Any]:
    secret = {
        "SLACK_SIGNING_SECRET": sr.DEFAULT_SIGNING_SECRET,
        "SLACK_BOT_TOKEN": slack_standin.bot_token,
        "MICROSOFT_APP_ID": tm.APP_ID,
        "MICROSOFT_APP_PASSWORD": "dummy",
        "MICROSOFT_APP_TENANT_ID": tm.TENANT_ID,
    }
    return provision_aws(monkeypatch, moto_url, secret, llm="offline")


def api_event(body: bytes, headers: dict[str, str], path: str = "/slack/events") -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": path,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": "POST", "path": path}},
        "body": body.decode("utf-8", errors="surrogateescape"),
        "isBase64Encoded": False,
    }


def call_lambda(event: Any) -> dict[str, Any]:
    response = ingress.handler(event, LambdaContext())
    assert isinstance(response["statusCode"], int) and isinstance(response["body"], str)
    return response


def test_the_lambda_handler_answers_401_to_unsigned_hostile_slack_requests(
    lambda_host: dict[str, Any],
) -> None:
    for headers in (
        {"x-slack-request-timestamp": "abc", "x-slack-signature": "v0=00"},
        {"x-slack-request-timestamp": now(), "x-slack-signature": "v0=\u00e9"},
        {"x-slack-request-timestamp": now(), "x-slack-signature": "v0=\udc80"},
    ):
        assert call_lambda(api_event(b"{}", headers))["statusCode"] in (400, 401)
    event = api_event(b"", {"x-slack-request-timestamp": now(), "x-slack-signature": "v0=0"})
    event.update(body="//79gA==", isBase64Encoded=True)  # invalid UTF-8
    assert call_lambda(event)["statusCode"] == 401
    assert drain(lambda_host) == []


@pytest.mark.parametrize(
    "event",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({}, id="empty"),
        pytest.param({"rawPath": "/slack/events"}, id="no-method"),
        pytest.param({"requestContext": [], "rawPath": "/x"}, id="context-a-list"),
        pytest.param({"httpMethod": 5, "path": "/x"}, id="method-a-number"),
        pytest.param({"httpMethod": "POST", "path": "/x", "body": {"a": 1}}, id="body-an-object"),
        pytest.param(
            {"httpMethod": "POST", "path": "/x", "body": "%%%", "isBase64Encoded": True},
            id="bad-base64",
        ),
        pytest.param(
            {"httpMethod": "POST", "path": "/x", "body": "", "isBase64Encoded": "yes"},
            id="base64-flag-a-string",
        ),
        pytest.param({"httpMethod": "POST", "path": "/x", "headers": ["a"]}, id="headers-a-list"),
        pytest.param({"httpMethod": "POST", "path": "/x", "headers": {"a": 1}}, id="header-int"),
        pytest.param(
            {"httpMethod": "POST", "path": "/x", "headers": {"a": "\ud800"}}, id="header-surrogate"
        ),
        pytest.param(
            {"httpMethod": "GET", "path": "/x", "queryStringParameters": "a=b"}, id="query-a-string"
        ),
        pytest.param({"httpMethod": "POST", "path": "/x", "body": "\ud800"}, id="body-surrogate"),
    ],
)
def test_a_malformed_api_gateway_event_is_400(lambda_host: dict[str, Any], event: Any) -> None:
    assert call_lambda(event)["statusCode"] == 400


def test_an_unexpected_error_in_the_lambda_handler_is_a_500_response(
    lambda_host: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_build(settings: Settings) -> Routes:
        raise RuntimeError("no routes today")

    monkeypatch.setattr(ingress, "build_routes", broken_build)
    response = call_lambda(api_event(b"{}", {}))
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"error": "internal error"}
    assert response["headers"]["Content-Type"] == "application/json"


def test_the_lambda_handler_refuses_nested_and_huge_teams_bodies(
    lambda_host: dict[str, Any], token_issuer: TokenIssuer
) -> None:
    token = token_issuer.token(service_url=SERVICE_URL)
    for body in (NESTED, HUGE_INT):
        event = api_event(body, {"authorization": f"Bearer {token}"}, path="/api/messages")
        assert call_lambda(event)["statusCode"] == 400
    assert drain(lambda_host) == []
