"""Property-based fuzzing of every request path: hostile requests over real HTTP to the local
host, and hostile events to the Lambda ingress handler.

Properties: no request without a valid signature or token gets a 5xx or crashes its host, and
none of them enqueues work (the local chat and unauthenticated Teams on loopback need no
credentials: there, nothing enqueued may point at a URL off this machine). With valid Slack
signatures over payloads of any shape, Slack always gets a 200.

Example counts are small for CI. For a campaign, set ``FUZZ_EXAMPLES`` (examples per local-host
property) and optionally ``FUZZ_LAMBDA_EXAMPLES`` (default: a fifth of it), and ``FUZZ_REPORT``
to a file path for the figures as JSON; they are also printed (``pytest -s``)::

    FUZZ_EXAMPLES=3300 FUZZ_LAMBDA_EXAMPLES=2000 FUZZ_REPORT=/tmp/fuzz.json \
        pytest -s --timeout=0 tests/test_fuzz_requests.py
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bots.aws.ingress as ingress
from bots.aws.sqs import SqsJobQueue
from bots.local.app import LocalApp, build_local_app
from bots.local.queue import InProcessQueue
from bots.local.server import LocalServer
from bots.teams.events import is_loopback_url
from core.config import Settings
from core.jobs import Job
from tests import slack_requests as sr
from tests.lambda_harness import LambdaContext, drain, provision_aws
from tests.standins import teams as tm
from tests.standins.slack import SlackStandIn
from tests.standins.teams import ConnectorStandIn, TokenIssuer

CAMPAIGN = int(os.environ.get("FUZZ_EXAMPLES", "0"))
LAMBDA_CAMPAIGN = int(os.environ.get("FUZZ_LAMBDA_EXAMPLES", "0")) or CAMPAIGN // 5


def fuzz_settings(default: int, *, campaign: int = CAMPAIGN) -> Any:
    return settings(
        max_examples=campaign or default,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# Figures of this run: target -> status (or "crash") -> count.
FIGURES: dict[str, Counter[str]] = defaultdict(Counter)


@pytest.fixture(scope="module", autouse=True)
def report_figures() -> Iterator[None]:
    started = time.monotonic()
    yield
    figures = {target: dict(sorted(counts.items())) for target, counts in FIGURES.items()}
    summary = {
        "seconds": round(time.monotonic() - started, 1),
        "requests": {target: sum(counts.values()) for target, counts in FIGURES.items()},
        "statuses": figures,
    }
    print("\nfuzz figures:", json.dumps(summary, indent=2))
    if os.environ.get("FUZZ_REPORT"):
        Path(os.environ["FUZZ_REPORT"]).write_text(json.dumps(summary, indent=2))


# --- strategies: the pieces of a hostile request --------------------------------------------------

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["", "T1", "C1", "U1", "UBOT", "1700000000.000100", "x#y", "im", "<@UBOT> hi"]),
)
SLACK_KEYS = [
    "type", "event", "team_id", "team", "user", "channel", "ts", "thread_ts", "text", "files",
    "authorizations", "subtype", "bot_id", "channel_type", "id", "user_id", "channel_id",
    "trigger_id", "command", "callback_id", "message", "actions", "view", "enterprise",
    "response_url", "response_urls", "challenge", "is_bot", "size", "name", "event_id",
    "container", "item", "assistant_thread", "is_ext_shared_channel", "file_id", "file",
]  # fmt: skip
TEAMS_KEYS = [
    "type", "id", "text", "serviceUrl", "channelId", "from", "conversation", "recipient",
    "entities", "attachments", "channelData", "membersAdded", "tenant", "tenantId", "name",
    "conversationType", "mentioned", "contentType", "content", "downloadUrl", "timestamp",
]  # fmt: skip


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        JSON_LEAF,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.one_of(st.sampled_from(keys), st.text(max_size=6)), inner, max_size=6
            ),
        ),
        max_leaves=24,
    )


SLACK_JSON = json_values(SLACK_KEYS)
TEAMS_JSON = json_values(TEAMS_KEYS)


def nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


DEEP_JSON = st.builds(
    nested,
    st.sampled_from([60, 64, 65, 70, 999, 1000, 1001, 100_000]),
    st.sampled_from(["list", "dict"]),
)
HUGE_INT = st.builds(
    lambda digits, where: (
        b"9" * digits if where == "bare" else b'{"text": ' + b"9" * digits + b', "event": {}}'
    ),
    st.sampled_from([4299, 4300, 4301, 5000, 50_000]),
    st.sampled_from(["bare", "field"]),
)
INVALID_UTF8 = st.sampled_from(
    [
        b"\xff",
        b"\xfe\xff{}",
        b'{"text": "\xc3\x28"}',
        b"\xed\xa0\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\x80",
    ]
)


@st.composite
def slack_shaped(draw: st.DrawFn) -> Any:
    """A real Slack payload with a few fields replaced by JSON of any shape."""
    kind = draw(st.sampled_from(["mention", "dm", "file", "shortcut", "command", "url"]))
    if kind in ("mention", "dm", "file"):
        event = {
            "mention": lambda: sr.app_mention("<@UBOT> hi"),
            "dm": lambda: sr.message("hi", channel_type="im"),
            "file": lambda: sr.message("x", subtype="file_share", files=[{"id": "F1"}]),
        }[kind]()
        payload: dict[str, Any] = json.loads(sr.event_callback(event)[0])
    elif kind == "shortcut":
        raw = sr.message_shortcut()[0].decode()
        payload = json.loads(dict(_form_fields(raw))["payload"])
    elif kind == "command":
        payload = dict(_form_fields(sr.slash_command()[0].decode()))
    else:
        payload = json.loads(sr.url_verification()[0])
    for _ in range(draw(st.integers(0, 3))):
        target = payload
        if "event" in payload and isinstance(payload["event"], dict) and draw(st.booleans()):
            target = payload["event"]
        key = draw(st.sampled_from([*target.keys(), *SLACK_KEYS]))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(SLACK_JSON)
    return payload


def _form_fields(raw: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(raw, keep_blank_values=True)


@st.composite
def teams_shaped(draw: st.DrawFn, service_urls: list[str]) -> Any:
    """A real Teams activity with a few fields replaced by JSON of any shape."""
    url = draw(st.sampled_from(service_urls))
    make = draw(
        st.sampled_from([tm.personal_message, tm.channel_message, tm.group_message, "update"])
    )
    if make == "update":
        activity = tm.conversation_update(service_url=url)
    else:
        activity = make("hi there", service_url=url)
    activity = json.loads(json.dumps(activity))  # its "from" is a module constant: never mutate it
    if draw(st.booleans()):
        activity["attachments"] = [
            {
                "contentType": "application/vnd.microsoft.teams.file.download.info",
                "name": "notes.txt",
                "content": {
                    "downloadUrl": draw(st.sampled_from(service_urls)) + "file",
                    "uniqueId": "u1",
                    "fileType": "txt",
                },
            }
        ]
    for _ in range(draw(st.integers(0, 3))):
        target = activity
        for key in ("conversation", "from", "channelData", "recipient"):
            if isinstance(activity.get(key), dict) and draw(st.integers(0, 5)) == 0:
                target = activity[key]
        key = draw(st.sampled_from([*target.keys(), *TEAMS_KEYS]))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(TEAMS_JSON)
    return activity


def form_body(payload: Any) -> bytes:
    if isinstance(payload, dict) and "command" in payload:
        return urlencode({k: str(v) for k, v in payload.items()}).encode()
    return urlencode({"payload": json.dumps(payload)}).encode()


def bodies(service_urls: list[str], path: str = "") -> st.SearchStrategy[bytes]:
    """Bodies of every kind; mostly (three in four) of the kind ``path`` takes."""
    hostile = st.one_of(
        st.binary(max_size=512),
        INVALID_UTF8,
        DEEP_JSON,
        HUGE_INT,
        SLACK_JSON.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4).map(
            lambda d: urlencode(d).encode()
        ),
    )
    slack = st.one_of(
        slack_shaped().map(lambda v: json.dumps(v).encode()), slack_shaped().map(form_body)
    )
    teams = teams_shaped(service_urls).map(lambda v: json.dumps(v).encode())
    devchat = st.builds(
        lambda text, user, thread: json.dumps({"text": text, "user": user, "thread": thread}),
        st.one_of(st.text(max_size=30), TEAMS_JSON),
        st.sampled_from(["ada", "", "x" * 65, "a b", 5]),
        st.sampled_from(["main", "t1", "../x", None]),
    ).map(str.encode)
    matching = {"/slack/events": slack, "/api/messages": teams, "/local/messages": devchat}
    any_kind = st.one_of(hostile, slack, teams, devchat)
    if path not in matching:
        return any_kind
    return st.integers(0, 3).flatmap(lambda n: any_kind if n == 0 else matching[path])


LATIN1 = st.binary(max_size=40).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00"))


def slack_timestamps() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b"NOW"),
        st.sampled_from(
            [
                b"abc",
                b"1e9",
                b"-1",
                b"",
                b" 1700000000",
                b"1700000000.5",
                b"9" * 5000,
                "١٧٠٠٠٠٠٠٠٠".encode(),
                b"\xe9\xff",
                b"0x10",
                b"NOW-400",
            ]
        ),
        LATIN1,
    )


def slack_signatures() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(min_size=32, max_size=32).map(lambda b: b"v0=" + b.hex().encode()),
        st.sampled_from([b"v0=\xe9", b"v0=" + b"A" * 64, b"", b"v0=", b"\xff" * 64, b"v1=00"]),
        LATIN1,
    )


def jwt_shaped() -> st.SearchStrategy[bytes]:
    def segment(value: Any) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    return st.builds(
        lambda header, claims, sig: segment(header) + b"." + segment(claims) + b"." + sig,
        st.one_of(
            st.fixed_dictionaries({"alg": st.sampled_from(["RS256", "none", "HS256", 5])}),
            TEAMS_JSON,
        ),
        st.one_of(
            st.fixed_dictionaries(
                {
                    "iss": st.sampled_from([tm.BOTFRAMEWORK_ISSUER, "https://evil.example", 1]),
                    "aud": st.sampled_from([tm.APP_ID, "other", [tm.APP_ID]]),
                    "exp": st.one_of(st.integers(), st.text(max_size=3)),
                }
            ),
            TEAMS_JSON,
        ),
        st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")),
    )


def authorizations() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(
            [b"", b"Bearer", b"Bearer ", b"Bearer garbage", b"Basic eHl6", b"bearer x"]
        ),
        jwt_shaped().map(lambda t: b"Bearer " + t),
        LATIN1,
    )


@dataclass
class Hostile:
    """One request as bytes on the wire."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split(b"?", 1)[0].decode("latin-1")


ROUTES = ["/slack/events", "/api/messages", "/local/messages"]
PATHS = [*ROUTES, "/healthz", "/", "/slack/events/", "/API/messages", "*", "/local/messages?x=1"]
CONTENT_TYPE_OF = {
    "/slack/events": [b"application/json", b"application/x-www-form-urlencoded"],
    "/api/messages": [b"application/json", b"application/json; charset=utf-8"],
    "/local/messages": [b"application/json", b"application/x-www-form-urlencoded"],
}
CONTENT_TYPES = [
    b"application/json",
    b"application/json; charset=utf-8",
    b"application/x-www-form-urlencoded",
    b"text/plain",
    b"multipart/form-data; boundary=x",
    b"",
]


@st.composite
def hostile_requests(draw: st.DrawFn, host: bytes, service_urls: list[str]) -> Hostile:
    # Mostly POSTs to the three routes with their own content types, so that most requests
    # get past the host's guard to the route; the rest is anything.
    odd = st.sampled_from([b"GET", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"BREW"])
    method = draw(st.integers(0, 9).flatmap(lambda n: odd if n == 0 else st.just(b"POST")))
    path = draw(
        st.integers(0, 9).flatmap(
            lambda n: (
                st.sampled_from(ROUTES)
                if n < 8
                else st.one_of(
                    st.sampled_from(PATHS),
                    st.text(alphabet="/abcdefghijklmnopqrstuvwxyz.%20-_~?=&", max_size=30).map(
                        lambda p: "/" + p
                    ),
                )
            )
        )
    )
    body = draw(bodies(service_urls, path))
    headers: list[tuple[bytes, bytes]] = [
        (b"Host", draw(st.sampled_from([host] * 8 + [b"localhost", b"evil.example", b""])))
    ]
    own_types = CONTENT_TYPE_OF.get(path, [b"application/json"])
    content_type = draw(
        st.integers(0, 4).flatmap(
            lambda n: (
                st.sampled_from(own_types) if n else st.sampled_from([*CONTENT_TYPES, b"\xe9/json"])
            )
        )
    )
    if content_type:
        headers.append((b"Content-Type", content_type))
    if draw(st.booleans()):
        stamp = draw(slack_timestamps())
        if stamp.startswith(b"NOW"):
            offset = -400 if stamp == b"NOW-400" else 0
            stamp = str(int(time.time()) + offset).encode()
        headers.append((b"X-Slack-Request-Timestamp", stamp))
    if draw(st.booleans()):
        headers.append((b"X-Slack-Signature", draw(slack_signatures())))
    if draw(st.integers(0, 2)) == 0:
        headers.append((b"Authorization", draw(authorizations())))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(
            st.sampled_from(
                [b"X-Request-Id", b"Origin", b"Sec-Fetch-Site", b"X-Slack-Retry-Num", b"X-Any"]
            )
        )
        headers.append((name, draw(LATIN1)))
    length = draw(st.sampled_from(["right"] * 8 + ["none", "abc", "-1", "twice"]))
    if length == "right":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif length == "twice":
        headers += [(b"Content-Length", str(len(body)).encode()), (b"Content-Length", b"0")]
    elif length != "none":
        headers.append((b"Content-Length", length.encode()))
    return Hostile(method, path.encode("latin-1", errors="replace"), headers, body)


def send_raw(address: tuple[str, int], request: Hostile) -> tuple[int, bytes]:
    """Send exactly these bytes; the status and body of the answer."""
    lines = [request.method + b" " + request.target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers]
    lines.append(b"Connection: close")
    wire = b"\r\n".join(lines) + b"\r\n\r\n" + request.body
    with socket.create_connection(address, timeout=20) as connection:
        connection.sendall(wire)
        response = http.client.HTTPResponse(connection, method=request.method.decode("latin-1"))
        response.begin()
        return response.status, response.read()


# --- the local host ----------------------------------------------------------------------------


@dataclass
class LocalHost:
    app: LocalApp
    server: LocalServer
    jobs: list[Job] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @property
    def host_header(self) -> bytes:
        return f"127.0.0.1:{self.address[1]}".encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.close()


@pytest.fixture(scope="module")
def recorded_jobs() -> Iterator[dict[int, list[Job]]]:
    """Enqueued jobs per queue (by id), recorded instead of run: these properties are about
    requests, and a run would only add the workers' load to every example."""
    by_queue: dict[int, list[Job]] = defaultdict(list)

    def record(self: InProcessQueue, job: Job, *args: Any, **kwargs: Any) -> None:
        by_queue[id(self)].append(job)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InProcessQueue, "enqueue", record)
        yield by_queue


@pytest.fixture(scope="module")
def standins() -> Iterator[tuple[SlackStandIn, ConnectorStandIn, TokenIssuer]]:
    from botframework.connector.auth import ChannelValidation, JwtTokenExtractor

    with (
        SlackStandIn() as slack,
        ConnectorStandIn() as connector,
        pytest.MonkeyPatch.context() as m,
    ):
        issuer = TokenIssuer().start()
        m.setattr(ChannelValidation, "open_id_metadata_endpoint", issuer.metadata_url)
        m.setattr(JwtTokenExtractor, "metadataCache", {})
        yield slack, connector, issuer
        issuer.stop()


def local_host(
    tmp_path: Path, slack: SlackStandIn, recorded: dict[int, list[Job]], **teams: str
) -> LocalHost:
    settings = Settings(
        data_dir=tmp_path,
        slack_signing_secret=sr.DEFAULT_SIGNING_SECRET,
        slack_bot_token=slack.bot_token,
        slack_api_url=slack.api_url,
        local_workers=2,
        **teams,
    )
    app = build_local_app(settings)
    server = LocalServer(("127.0.0.1", 0), app.routes, request_timeout=5)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return LocalHost(app, server, recorded[id(app.queue)])


@pytest.fixture(scope="module")
def open_host(
    tmp_path_factory: pytest.TempPathFactory,
    standins: tuple[SlackStandIn, ConnectorStandIn, TokenIssuer],
    recorded_jobs: dict[int, list[Job]],
) -> Iterator[LocalHost]:
    """Slack configured, Teams unauthenticated on loopback."""
    host = local_host(tmp_path_factory.mktemp("open"), standins[0], recorded_jobs)
    yield host
    host.close()


@pytest.fixture(scope="module")
def secured_host(
    tmp_path_factory: pytest.TempPathFactory,
    standins: tuple[SlackStandIn, ConnectorStandIn, TokenIssuer],
    recorded_jobs: dict[int, list[Job]],
) -> Iterator[LocalHost]:
    """Slack configured, Teams authenticated against the token issuer stand-in."""
    host = local_host(
        tmp_path_factory.mktemp("secured"),
        standins[0],
        recorded_jobs,
        microsoft_app_id=tm.APP_ID,
        microsoft_app_password="dummy-password",
        microsoft_app_tenant_id=tm.TENANT_ID,
    )
    yield host
    host.close()


def service_urls(connector: ConnectorStandIn) -> list[str]:
    return [
        connector.service_url,
        "https://smba.trafficmanager.net/amer/",
        "http://169.254.169.254/latest/",
        "http://127.0.0.1@10.0.0.1/",
        "http://localhost.evil.example/",
        "not a url",
        "",
    ]


def record(target: str, status: int | str) -> None:
    FIGURES[target][str(status)] += 1


def job_urls(job: Job) -> list[str]:
    urls = [str(job.payload.get("service_url", ""))]
    if isinstance(job.payload.get("file"), dict):
        urls.append(str(job.payload["file"].get("url", "")))
    turn = job.payload.get("turn")
    if isinstance(turn, dict):
        urls += [str(f.get("url", "")) for f in turn.get("files", [])]
    return [u for u in urls if u]


def check_unsigned(host: LocalHost, request: Hostile, target: str) -> None:
    before = len(host.jobs)
    try:
        status, _ = send_raw(host.address, request)
    except (OSError, http.client.HTTPException) as exc:
        record(target, "crash")
        raise AssertionError(f"the host did not answer: {exc!r}") from exc
    record(target, status)
    assert status < 500, (status, request)
    for job in host.jobs[before:]:
        json.dumps(job.payload)  # what a real queue would do with it
        if job.kind.startswith("slack."):
            raise AssertionError(f"a Slack job without a valid signature: {request}")
        if job.kind.startswith("teams."):
            assert all(is_loopback_url(url) for url in job_urls(job)), job


def test_unsigned_hostile_requests_to_the_local_host_never_get_a_5xx(
    open_host: LocalHost, standins: tuple[SlackStandIn, ConnectorStandIn, TokenIssuer]
) -> None:
    @fuzz_settings(250)
    @given(hostile_requests(open_host.host_header, service_urls(standins[1])))
    def run(request: Hostile) -> None:
        check_unsigned(open_host, request, "local host (Teams unauthenticated)")

    run()


@st.composite
def teams_requests(
    draw: st.DrawFn, host: bytes, urls: list[str], issuer: TokenIssuer
) -> tuple[Hostile, bool]:
    """A request to /api/messages with a token of any kind; True when the token is valid."""
    body_value = draw(st.one_of(teams_shaped(urls), TEAMS_JSON))
    body = json.dumps(body_value).encode()
    service_url = body_value.get("serviceUrl") if isinstance(body_value, dict) else None
    kind = draw(st.sampled_from(["valid", "forged", "wrong", "expired", "random", "none"]))
    valid = False
    token: bytes | None
    if kind == "valid" and isinstance(service_url, str):
        token = issuer.token(service_url=service_url).encode()
        valid = True
    elif kind == "forged":
        token = issuer.token(
            service_url=str(service_url), signing_key=TokenIssuer.forged_key()
        ).encode()
    elif kind == "wrong":
        token = issuer.token(
            service_url=str(service_url),
            **draw(
                st.sampled_from(
                    [{"audience": "other"}, {"issuer": "https://evil.example"}, {"key_id": "k2"}]
                )
            ),
        ).encode()
    elif kind == "expired":
        token = issuer.token(service_url=str(service_url), expires_in=-3600).encode()
    elif kind == "random":
        token = draw(jwt_shaped())
    else:
        token = None
    headers = [(b"Host", host), (b"Content-Type", b"application/json")]
    headers.append((b"Content-Length", str(len(body)).encode()))
    if token is not None:
        headers.append((b"Authorization", b"Bearer " + token))
    return Hostile(b"POST", b"/api/messages", headers, body), valid


def test_teams_requests_with_any_token_to_the_secured_local_host_never_get_a_5xx(
    secured_host: LocalHost, standins: tuple[SlackStandIn, ConnectorStandIn, TokenIssuer]
) -> None:
    target = "local host (Teams authenticated)"

    @fuzz_settings(120)
    @given(teams_requests(secured_host.host_header, service_urls(standins[1]), standins[2]))
    def run(case: tuple[Hostile, bool]) -> None:
        request, valid = case
        before = len(secured_host.jobs)
        status, _ = send_raw(secured_host.address, request)
        record(target, status)
        assert status < 500, (status, request)
        if not valid:
            assert len(secured_host.jobs) == before, request
        for job in secured_host.jobs[before:]:
            json.dumps(job.payload)

    run()

    @fuzz_settings(30, campaign=CAMPAIGN // 20)
    @given(hostile_requests(secured_host.host_header, service_urls(standins[1])))
    def unsigned(request: Hostile) -> None:
        before = len(secured_host.jobs)
        check_unsigned(secured_host, request, target)
        assert len(secured_host.jobs) == before or request.path == "/local/messages"

    unsigned()


def signed(body: bytes, content_type: bytes, host: bytes) -> Hostile:
    headers = [(b"Host", host), (b"Content-Type", content_type)]
    for name, value in sr.signed_headers(body, sr.DEFAULT_SIGNING_SECRET).items():
        headers.append((name.encode(), value.encode()))
    headers.append((b"Content-Length", str(len(body)).encode()))
    return Hostile(b"POST", b"/slack/events", headers, body)


def test_validly_signed_slack_payloads_of_any_shape_are_always_acknowledged(
    open_host: LocalHost,
) -> None:
    target = "local host (Slack, valid signatures)"
    json_type, form_type = b"application/json", b"application/x-www-form-urlencoded"

    @fuzz_settings(150)
    @given(
        st.one_of(
            slack_shaped().map(lambda p: (json.dumps(p).encode(), json_type)),
            st.dictionaries(st.sampled_from(SLACK_KEYS), SLACK_JSON, max_size=6).map(
                lambda p: (json.dumps(p).encode(), json_type)
            ),
            slack_shaped().map(lambda p: (form_body(p), form_type)),
            SLACK_JSON.map(lambda p: (form_body(p), form_type)),
        )
    )
    def run(case: tuple[bytes, bytes]) -> None:
        body, content_type = case
        before = len(open_host.jobs)
        status, _ = send_raw(open_host.address, signed(body, content_type, open_host.host_header))
        record(target, status)
        assert status == 200, (status, body[:300])
        for job in open_host.jobs[before:]:
            json.dumps(job.payload)

    run()


# --- the Lambda ingress handler ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lambda_host(
    moto_url: str,
    standins: tuple[SlackStandIn, ConnectorStandIn, TokenIssuer],
) -> Iterator[tuple[dict[str, Any], list[Job]]]:
    secret = {
        "SLACK_SIGNING_SECRET": sr.DEFAULT_SIGNING_SECRET,
        "SLACK_BOT_TOKEN": standins[0].bot_token,
        "MICROSOFT_APP_ID": tm.APP_ID,
        "MICROSOFT_APP_PASSWORD": "dummy-password",
        "MICROSOFT_APP_TENANT_ID": tm.TENANT_ID,
    }
    enqueued: list[Job] = []
    original = SqsJobQueue.enqueue

    def record_enqueue(self: SqsJobQueue, job: Job) -> None:
        enqueued.append(job)
        original(self, job)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SqsJobQueue, "enqueue", record_enqueue)
        aws = provision_aws(patch, moto_url, secret, llm="offline")
        yield aws, enqueued


def api_gateway_events(urls: list[str]) -> st.SearchStrategy[Any]:
    @st.composite
    def wrapped(draw: st.DrawFn) -> dict[str, Any]:
        request = draw(hostile_requests(b"api.example", urls))
        headers: dict[str, Any] = {}
        for name, value in request.headers:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        if draw(st.integers(0, 9)) == 0:
            headers[draw(st.text(max_size=5))] = draw(st.one_of(st.text(max_size=5), JSON_LEAF))
        encode = draw(st.booleans())
        body: Any = (
            base64.b64encode(request.body).decode()
            if encode
            else request.body.decode(
                "utf-8", errors=draw(st.sampled_from(["replace", "surrogateescape"]))
            )
        )
        method = request.method.decode("latin-1")
        if draw(st.booleans()):
            event: dict[str, Any] = {
                "version": "2.0",
                "rawPath": request.path,
                "headers": headers,
                "requestContext": {"http": {"method": method, "path": request.path}},
                "body": body,
                "isBase64Encoded": encode,
            }
        else:
            event = {
                "httpMethod": method,
                "path": request.path,
                "headers": headers,
                "queryStringParameters": None,
                "body": body,
                "isBase64Encoded": encode,
            }
        for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
            key = draw(st.sampled_from([*event.keys(), "rawPath", "body", "headers"]))
            if draw(st.booleans()):
                event.pop(key, None)
            else:
                event[key] = draw(st.one_of(SLACK_JSON, st.just("%%%not-base64")))
        return event

    return st.one_of(wrapped(), wrapped(), wrapped(), SLACK_JSON)


def test_hostile_events_to_the_lambda_handler_never_raise_nor_get_a_5xx(
    lambda_host: tuple[dict[str, Any], list[Job]],
    standins: tuple[SlackStandIn, ConnectorStandIn, TokenIssuer],
) -> None:
    aws, enqueued = lambda_host
    target = "lambda ingress"

    @fuzz_settings(200, campaign=LAMBDA_CAMPAIGN)
    @given(api_gateway_events(service_urls(standins[1])))
    def run(event: Any) -> None:
        context = LambdaContext()
        context.aws_request_id = uuid.uuid4().hex
        try:
            response = ingress.handler(event, context)
        except Exception:
            record(target, "crash")
            raise
        record(target, response["statusCode"])
        assert isinstance(response["statusCode"], int) and response["statusCode"] < 500
        assert isinstance(response["body"], str) and isinstance(response["headers"], dict)
        assert response["isBase64Encoded"] is False

    run()
    assert enqueued == [] and drain(aws) == []
