"""The Slack stand-in and the signed-request helpers behave like Slack, through real slack_sdk."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_handlers
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier

from tests import slack_requests
from tests.standins.slack import SlackStandIn


@pytest.fixture
def client(slack_standin: SlackStandIn) -> WebClient:
    return WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])


def _error(excinfo: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(excinfo.value.response["error"])


def test_fixture_points_the_environment_at_the_standin(slack_standin: SlackStandIn) -> None:
    assert os.environ["SLACK_API_URL"] == slack_standin.api_url
    assert slack_standin.api_url.endswith("/api/")
    assert os.environ["SLACK_BOT_TOKEN"] == "xoxb-test-dummy"
    assert os.environ["SLACK_SIGNING_SECRET"] == "test-signing-secret-dummy"


def test_auth_test_and_tokens(slack_standin: SlackStandIn, client: WebClient) -> None:
    me = client.auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == ("UBOT", "BBOT", "T1")
    assert slack_standin.calls_to("auth.test")[0].headers["authorization"] == (
        "Bearer xoxb-test-dummy"
    )

    stranger = WebClient(token="xoxb-someone-else", base_url=slack_standin.api_url)
    with pytest.raises(SlackApiError) as excinfo:
        stranger.auth_test()
    assert _error(excinfo) == "invalid_auth"

    with pytest.raises(SlackApiError) as excinfo:
        client.api_call("admin.apps.approve", json={"app_id": "A1"})
    assert _error(excinfo) == "unknown_method"


def test_post_update_and_read_back_a_thread(slack_standin: SlackStandIn, client: WebClient) -> None:
    parent = slack_standin.add_message("C1", "what changed in Q3?", "U1")

    posted = client.chat_postMessage(channel="C1", thread_ts=parent, text="Thinking…")
    assert posted["channel"] == "C1"
    assert float(posted["ts"]) > float(parent)
    assert posted["message"]["bot_id"] == "BBOT"
    assert posted["message"]["user"] == "UBOT"

    blocks = [{"type": "markdown", "text": "Revenue *rose* 4%."}]
    client.chat_update(channel="C1", ts=posted["ts"], text="Revenue rose 4%.", blocks=blocks)

    thread = client.conversations_replies(channel="C1", ts=parent)["messages"]
    assert [m["ts"] for m in thread] == [parent, posted["ts"]]
    assert thread[0]["reply_count"] == 1
    assert thread[0]["latest_reply"] == posted["ts"]
    assert thread[1]["text"] == "Revenue rose 4%."
    assert thread[1]["blocks"] == blocks
    assert thread[1]["thread_ts"] == parent
    assert "edited" in thread[1]
    assert slack_standin.messages("C1", parent) == thread
    # Replies stay out of the channel's top level.
    assert [m["ts"] for m in client.conversations_history(channel="C1")["messages"]] == [parent]

    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C1", ts=parent, text="not mine")
    assert _error(excinfo) == "cant_update_message"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C1", ts="1.000001", text="gone")
    assert _error(excinfo) == "message_not_found"


def test_form_encoded_blocks_are_decoded(slack_standin: SlackStandIn, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    client.api_call(
        "chat.postMessage", params={"channel": "C1", "text": "hi", "blocks": json.dumps(blocks)}
    )
    call = slack_standin.calls_to("chat.postMessage")[0]
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert call.params["blocks"] == blocks
    assert slack_standin.messages("C1")[-1]["blocks"] == blocks


def test_ephemeral_and_users_info(slack_standin: SlackStandIn, client: WebClient) -> None:
    answer = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert answer["message_ts"]
    assert slack_standin.ephemeral_messages("C1")[0]["text"] == "only you"
    assert slack_standin.messages("C1") == []

    user = client.users_info(user="U1")["user"]
    assert user["real_name"] == "Ada Lovelace"
    assert user["profile"]["display_name"] == "ada"
    with pytest.raises(SlackApiError) as excinfo:
        client.users_info(user="UNOBODY")
    assert _error(excinfo) == "user_not_found"
    assert slack_standin.users_info_count("U1") == 1


def test_history_pages_newest_first_with_cursor(
    slack_standin: SlackStandIn, client: WebClient
) -> None:
    sent = [slack_standin.add_message("C1", f"message {i}", "U1") for i in range(7)]

    pages, cursor = [], None
    while True:
        page = client.conversations_history(channel="C1", limit=3, cursor=cursor)
        pages.append([m["ts"] for m in page["messages"]])
        cursor = page.get("response_metadata", {}).get("next_cursor")
        assert page["has_more"] is bool(cursor)
        if not cursor:
            break
    assert pages == [sent[6:3:-1], sent[3:0:-1], sent[0:1]]
    assert [len(p["messages"]) for p in client.conversations_history(channel="C1", limit=3)] == [
        3,
        3,
        1,
    ]  # slack_sdk's own cursor iteration agrees

    window = client.conversations_history(channel="C1", oldest=sent[1], latest=sent[4])
    assert [m["ts"] for m in window["messages"]] == [sent[3], sent[2]]  # both bounds exclusive


def test_replies_page_oldest_first(slack_standin: SlackStandIn, client: WebClient) -> None:
    parent = slack_standin.add_message("C1", "root", "U1")
    replies = [slack_standin.add_message("C1", f"r{i}", "U1", thread_ts=parent) for i in range(4)]
    pages = [
        [m["ts"] for m in p["messages"]]
        for p in client.conversations_replies(channel="C1", ts=parent, limit=2)
    ]
    assert pages == [[parent, replies[0]], replies[1:3], replies[3:]]


def test_unreadable_channels(slack_standin: SlackStandIn, client: WebClient) -> None:
    slack_standin.add_channel("C2", "secret", member=False)
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_history(channel="C2")
    assert _error(excinfo) == "not_in_channel"
    with pytest.raises(SlackApiError) as excinfo:
        client.conversations_replies(channel="C404", ts="1.000001")
    assert _error(excinfo) == "channel_not_found"


def test_429_surfaces_with_retry_after(slack_standin: SlackStandIn, client: WebClient) -> None:
    """WebClient's default retry handlers are only ConnectionErrorRetryHandler, so a 429 is
    not retried: it raises SlackApiError whose ``.response`` (a SlackResponse) has
    ``status_code == 429``, ``headers["Retry-After"] == "2"`` (a str) and ``["error"]``."""
    assert [type(h) for h in client.retry_handlers] == [ConnectionErrorRetryHandler]
    ts = client.chat_postMessage(channel="C1", text="draft")["ts"]
    slack_standin.fail_next("chat.update", status=429, error="ratelimited", retry_after=2)

    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(channel="C1", ts=ts, text="more")

    response = excinfo.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response["error"] == "ratelimited"
    assert len(slack_standin.calls_to("chat.update")) == 1
    assert slack_standin.messages("C1")[0]["text"] == "draft"
    client.chat_update(channel="C1", ts=ts, text="more")  # the failure was used up
    assert slack_standin.messages("C1")[0]["text"] == "more"


def test_opt_in_rate_limit_handler_sleeps_retry_after(
    slack_standin: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=sleeps.append))
    client = WebClient(
        token="xoxb-test-dummy",
        base_url=slack_standin.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack_standin.fail_next("chat.postMessage", status=429, retry_after=2)

    client.chat_postMessage(channel="C1", text="hello")

    assert [c.status for c in slack_standin.calls_to("chat.postMessage")] == [429, 200]
    assert len(sleeps) == 1 and 2 <= sleeps[0] < 3  # Retry-After plus up to 1 s of jitter


def test_scripted_errors_are_fifo(slack_standin: SlackStandIn, client: WebClient) -> None:
    slack_standin.fail_next("chat.postMessage", error="channel_not_found")
    slack_standin.fail_next("chat.postMessage", error="invalid_auth")
    errors = []
    for _ in range(2):
        with pytest.raises(SlackApiError) as excinfo:
            client.chat_postMessage(channel="C1", text="x")
        errors.append(_error(excinfo))
    assert errors == ["channel_not_found", "invalid_auth"]
    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    assert slack_standin.messages("C1")[0]["text"] == "x"


class FakeClock:
    """The stand-in's rate clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refusal(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(SlackApiError) as excinfo:
        call()
    response = excinfo.value.response
    return response.status_code, str(response["error"]), str(response.headers["Retry-After"])


def test_chat_update_tier_3_sliding_window(slack_standin: SlackStandIn, client: WebClient) -> None:
    clock = FakeClock()
    slack_standin.clock = clock
    slack_standin.enforce_rate_limits(update_per_minute=50, post_per_second=1.0, post_burst=3)
    ts = client.chat_postMessage(channel="C1", text="draft")["ts"]

    for i in range(50):
        clock.now = 1000.0 + i * 0.2  # the first at 1000.0, the last at 1009.8
        client.chat_update(channel="C1", ts=ts, text=f"edit {i}")
    clock.now = 1010.0
    assert _refusal(lambda: client.chat_update(channel="C1", ts=ts, text="one too many")) == (
        429,
        "ratelimited",
        "50",  # the oldest accepted call leaves the window at 1060.0
    )
    assert slack_standin.messages("C1")[0]["text"] == "edit 49"  # refused: nothing changed

    clock.now = 1059.5  # refusals do not count toward the window; it is still full
    assert _refusal(lambda: client.chat_update(channel="C1", ts=ts, text="x"))[2] == "1"
    clock.now = 1060.0  # the first edit has left the window: exactly one slot is free
    client.chat_update(channel="C1", ts=ts, text="after the window")
    assert _refusal(lambda: client.chat_update(channel="C1", ts=ts, text="x"))[0] == 429

    updates = slack_standin.calls_to("chat.update")
    assert [c.status for c in updates].count(429) == 3
    assert slack_standin.rate_limited == Counter({"chat.update": 3})
    assert updates[-1].response == {"ok": False, "error": "ratelimited"}
    assert slack_standin.messages("C1")[0]["text"] == "after the window"


def test_chat_post_message_bucket_per_channel(
    slack_standin: SlackStandIn, client: WebClient
) -> None:
    clock = FakeClock()
    slack_standin.clock = clock
    slack_standin.add_channel("C2", "random")
    slack_standin.enforce_rate_limits(post_per_second=1.0, post_burst=3)

    for i in range(3):
        client.chat_postMessage(channel="C1", text=f"burst {i}")
    assert _refusal(lambda: client.chat_postMessage(channel="C1", text="4th")) == (
        429,
        "ratelimited",
        "1",
    )
    for i in range(3):  # another channel has its own bucket
        client.chat_postMessage(channel="C2", text=f"other {i}")

    clock.now += 0.5  # half a token: still refused, and told to wait the rest of a second
    assert _refusal(lambda: client.chat_postMessage(channel="C1", text="x"))[2] == "1"
    clock.now += 0.5
    client.chat_postMessage(channel="C1", text="refilled")
    assert _refusal(lambda: client.chat_postMessage(channel="C1", text="x"))[0] == 429

    assert [m["text"] for m in slack_standin.messages("C1")] == [
        "burst 0",
        "burst 1",
        "burst 2",
        "refilled",
    ]
    assert len(slack_standin.messages("C2")) == 3
    assert slack_standin.rate_limited["chat.postMessage"] == 3
    statuses = [c.status for c in slack_standin.calls_to("chat.postMessage")]
    assert statuses == [200, 200, 200, 429, 200, 200, 200, 429, 200, 429]


def test_rate_limits_are_off_by_default_and_can_be_turned_off(
    slack_standin: SlackStandIn, client: WebClient
) -> None:
    assert slack_standin.rate_limits is None
    ts = client.chat_postMessage(channel="C1", text="draft")["ts"]
    for i in range(60):
        client.chat_update(channel="C1", ts=ts, text=f"edit {i}")
    for i in range(5):
        client.chat_postMessage(channel="C1", text=f"post {i}")

    slack_standin.enforce_rate_limits(update_per_minute=1)
    client.chat_update(channel="C1", ts=ts, text="within")
    with pytest.raises(SlackApiError):
        client.chat_update(channel="C1", ts=ts, text="over")
    slack_standin.disable_rate_limits()
    client.chat_update(channel="C1", ts=ts, text="free again")

    assert all(c.status == 200 for c in slack_standin.calls if c.params.get("text") != "over")
    assert slack_standin.rate_limited == Counter({"chat.update": 1})


def test_a_rate_limited_call_leaves_scripted_failures_queued(
    slack_standin: SlackStandIn, client: WebClient
) -> None:
    slack_standin.clock = FakeClock()
    slack_standin.enforce_rate_limits(post_burst=1)
    client.chat_postMessage(channel="C1", text="first")
    slack_standin.fail_next("chat.postMessage", error="channel_not_found")
    assert _refusal(lambda: client.chat_postMessage(channel="C1", text="x"))[1] == "ratelimited"
    assert slack_standin.pending_failures("chat.postMessage") == 1


def test_msg_too_long(slack_standin: SlackStandIn, client: WebClient) -> None:
    slack_standin.max_text_chars = 100
    ts = client.chat_postMessage(channel="C1", text="a" * 100)["ts"]
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C1", text="a" * 101)
    assert _error(excinfo) == "msg_too_long"
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_update(
            channel="C1", ts=ts, text="short", blocks=[{"type": "markdown", "text": "b" * 101}]
        )
    assert _error(excinfo) == "msg_too_long"
    assert slack_standin.messages("C1")[0]["text"] == "a" * 100

    slack_standin.max_text_chars = None
    with pytest.raises(SlackApiError) as excinfo:  # Slack's own section limit still holds
        client.chat_update(
            channel="C1",
            ts=ts,
            text="x",
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "c" * 3001}}],
        )
    assert _error(excinfo) == "invalid_blocks"


def test_file_download_needs_the_bot_token(slack_standin: SlackStandIn, client: WebClient) -> None:
    slack_standin.add_file("F1", "report q3.pdf", b"%PDF-1.7 stand-in", "application/pdf")
    info = client.files_info(file="F1")["file"]
    url = info["url_private_download"]
    assert url.startswith(slack_standin.url + "/files-pri/T1-F1/")
    assert info["size"] == len(b"%PDF-1.7 stand-in")

    for headers in ({}, {"Authorization": "Bearer xoxb-wrong"}):
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5)
        assert excinfo.value.code == 403
        excinfo.value.close()

    request = urllib.request.Request(url, headers={"Authorization": "Bearer xoxb-test-dummy"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.read() == b"%PDF-1.7 stand-in"
        assert response.headers["Content-Type"] == "application/pdf"
    assert [d.status for d in slack_standin.downloads] == [403, 403, 200]

    with pytest.raises(SlackApiError) as excinfo:
        client.files_info(file="F404")
    assert _error(excinfo) == "file_not_found"


# --- signed requests --------------------------------------------------------------------------


SECRET = slack_requests.DEFAULT_SIGNING_SECRET


def test_signed_event_passes_slack_sdk_verifier() -> None:
    event = slack_requests.app_mention("<@UBOT> summarize", thread_ts="1700000000.000100")
    body, headers = slack_requests.event_callback(event, retry_num=1)

    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert not SignatureVerifier(SECRET).is_valid_request(body + b" ", headers)
    envelope = json.loads(body)
    assert envelope["authorizations"][0] == {
        "enterprise_id": None,
        "team_id": "T1",
        "user_id": "UBOT",
        "is_bot": True,
        "is_enterprise_install": False,
    }
    assert envelope["event"]["ts"] == envelope["event"]["event_ts"]
    assert headers["X-Slack-Retry-Num"] == "1"
    assert headers["X-Slack-Retry-Reason"] == "http_timeout"


def test_stale_timestamp_is_rejected() -> None:
    body, headers = slack_requests.url_verification(timestamp=int(time.time()) - 6 * 60)
    assert not SignatureVerifier(SECRET).is_valid_request(body, headers)
    body, headers = slack_requests.url_verification()
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)


def test_form_requests_are_signed_and_shaped() -> None:
    body, headers = slack_requests.slash_command(text="last 2 days")
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    fields = parse_qs(body.decode())
    assert fields["command"] == ["/summarize"] and fields["text"] == ["last 2 days"]

    target = slack_requests.message("please summarize", ts=slack_requests.new_ts())
    body, headers = slack_requests.message_shortcut(message=target)
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["type"] == "message_action"
    assert payload["message_ts"] == target["ts"]
    assert payload["channel"]["id"] == "C1"


def test_new_ts_is_unique_and_increasing() -> None:
    values = [slack_requests.new_ts() for _ in range(200)]
    assert values == sorted(values, key=slack_requests.ts_to_micros)
    assert len(set(values)) == len(values)
    assert all(len(v.split(".")[1]) == 6 for v in values)
