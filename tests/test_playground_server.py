"""The browser playground's server half, end to end: the page's actions become signed Slack
requests and Teams activities to the host's own endpoints; the bot's real Slack and Bot
Framework clients answer into the emulators; every change reaches the page's event stream.

Runs on the embedded defaults (offline model, SQLite), through the real local server."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from bots.local.app import QUEUE_FILE
from bots.local.queue import InProcessQueue
from bots.slack.panel import NO_CONTEXT
from core.jobs import Job
from core.sinks import PLACEHOLDER as THINKING
from core.summarize import PLACEHOLDER as SUMMARIZING
from tests.playground_client import TOKEN, Running, start
from tests.standins.bedrock import BedrockStandIn, Stream

OFFLINE = "*Offline mode*"  # how every offline answer starts (core/models/offline.py)

GENERAL, DM = "CGENERAL", "DPLAYBOT"
PLACEHOLDERS = ("", " ", THINKING, SUMMARIZING)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Running]:
    running = start(tmp_path)
    yield running
    running.stop()


def bot_messages(state: dict[str, Any], channel: str, thread_ts: str | None) -> list[Any]:
    return [
        m
        for m in state["slack"]["messages"]
        if m["channel"] == channel
        and m["bot_id"]
        and not m["ephemeral"]
        and m["thread_ts"] == thread_ts
    ]


def final_answer(channel: str, thread_ts: str | None, count: int = 1) -> Any:
    """A function of the state: the ``count``-th finished bot message there, once it exists."""

    def found(state: dict[str, Any]) -> Any:
        done = [
            m
            for m in bot_messages(state, channel, thread_ts)
            if not m["streaming"] and m["blocks"] and markdown_of(m) not in PLACEHOLDERS
        ]
        return done[count - 1] if len(done) >= count else None

    return found


def markdown_of(message: dict[str, Any]) -> str:
    return "\n".join(b["text"] for b in message["blocks"] or () if b["type"] == "markdown")


# --- Slack ----------------------------------------------------------------------------------


def test_a_mention_is_answered_in_its_thread_and_the_page_sees_the_reply_grow(
    pg: Running,
) -> None:
    events = pg.stream()
    events.wait(lambda e: e and e[0][1]["type"] == "hello")
    sent = pg.act(
        "/playground/slack/messages",
        {"channel": GENERAL, "thread_ts": None, "text": "@assistant where is the staging db?"},
    )
    answer = pg.wait_state(final_answer(GENERAL, sent["ts"]))
    assert answer["user"] == "UPLAYBOT" and markdown_of(answer).startswith(OFFLINE)
    person = next(m for m in pg.state()["slack"]["messages"] if m["ts"] == sent["ts"])
    assert person["text"] == "<@UPLAYBOT> where is the staging db?" and person["reply_count"] == 1
    # The page saw the bot's message before it was final (a placeholder or a stream), then final.
    versions = events.wait(
        lambda e: (
            [d["message"] for _, d in e if d["type"] == "slack.message"]
            if any(
                d["type"] == "slack.message"
                and d["message"]["ts"] == answer["ts"]
                and d["message"]["blocks"] == answer["blocks"]
                for _, d in e
            )
            else None
        )
    )
    mine = [v for v in versions if v["ts"] == answer["ts"]]
    assert len(mine) >= 2 and (mine[0]["streaming"] or mine[0]["blocks"] != answer["blocks"])


def test_with_bedrock_configured_the_playground_answers_with_the_model(
    bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    """CHATBOT_LLM=bedrock (credentials present; here the local Bedrock stand-in): the same page,
    the same adapters, answered by the model, and the usage panel names it."""
    bedrock_standin.script(Stream(["Deploys happen ", "on Tuesdays ", "after stand-up."]))
    running = start(tmp_path, llm="bedrock", bedrock_model_id="test.model-v1")
    try:
        sent = running.act(
            "/playground/slack/messages",
            {"channel": GENERAL, "thread_ts": None, "text": "@assistant when do we deploy?"},
        )
        answer = running.wait_state(final_answer(GENERAL, sent["ts"]))
        assert markdown_of(answer) == "Deploys happen on Tuesdays after stand-up."
        (request,) = bedrock_standin.requests
        assert "when do we deploy?" in json.dumps(request.body)
        usage = running.wait_state(lambda s: s["answers"])
        assert usage[0]["model"] == "test.model-v1"
    finally:
        running.stop()


def test_a_thread_follow_up_without_a_mention_keeps_the_context(pg: Running) -> None:
    first = pg.act(
        "/playground/slack/messages",
        {"channel": GENERAL, "thread_ts": None, "text": "@assistant Our deploy day is Tuesday."},
    )
    pg.wait_state(final_answer(GENERAL, first["ts"]))
    pg.act(
        "/playground/slack/messages",
        {"channel": GENERAL, "thread_ts": first["ts"], "text": "Which day do we deploy?"},
    )
    follow_up = pg.wait_state(final_answer(GENERAL, first["ts"], count=2))
    assert "Tuesday" in markdown_of(follow_up)


def test_a_dm_is_answered_at_the_top_level_of_the_dm(pg: Running) -> None:
    pg.act("/playground/slack/messages", {"channel": DM, "thread_ts": None, "text": "hello bot"})
    answer = pg.wait_state(final_answer(DM, None))
    assert markdown_of(answer).startswith(OFFLINE)


def test_an_uploaded_file_is_read_and_then_cited_with_its_source(pg: Running) -> None:
    text = b"Handbook.\n\nThe VPN gateway for the Lisbon office is vpn-lis.example.com.\n"
    shared = pg.act(
        "/playground/slack/files",
        {
            "channel": GENERAL,
            "thread_ts": None,
            "name": "handbook.txt",
            "mime_type": "text/plain",
            "data_base64": base64.b64encode(text).decode(),
        },
    )
    read = pg.wait_state(final_answer(GENERAL, shared["ts"]))
    assert "handbook.txt" in markdown_of(read) and "read" in markdown_of(read)
    asked = pg.act(
        "/playground/slack/messages",
        {"channel": GENERAL, "thread_ts": None, "text": "@assistant what is the VPN gateway?"},
    )
    answer = pg.wait_state(final_answer(GENERAL, asked["ts"]))
    assert "vpn-lis.example.com" in markdown_of(answer)
    context = [b for b in answer["blocks"] if b["type"] == "context"]
    assert context and "handbook.txt" in context[0]["elements"][0]["text"]
    usage = pg.wait_state(
        lambda s: next((u for u in s["answers"] if u["thread_ts"] == asked["ts"]), None)
    )
    assert usage["passages"] >= 1 and usage["platform"] == "slack" and usage["complete"]


def test_a_file_the_bot_cannot_read_gets_the_production_message(pg: Running) -> None:
    shared = pg.act(
        "/playground/slack/files",
        {
            "channel": GENERAL,
            "thread_ts": None,
            "name": "photo.bin",
            "mime_type": "application/octet-stream",
            "data_base64": base64.b64encode(bytes(range(256)) * 4).decode(),
        },
    )
    refusal = pg.wait_state(final_answer(GENERAL, shared["ts"]))
    assert "photo.bin" in markdown_of(refusal) and "can't" in markdown_of(refusal)


def test_summarize_command_answers_privately_then_posts_the_summary(pg: Running) -> None:
    for text in ("We ship the beta on Friday.", "Alex owns the release notes."):
        pg.act("/playground/slack/messages", {"channel": GENERAL, "thread_ts": None, "text": text})
    pg.act("/playground/slack/commands", {"channel": GENERAL, "command": "/summarize", "text": ""})
    ack = pg.wait_state(lambda s: next((m for m in s["slack"]["messages"] if m["ephemeral"]), None))
    assert ack["text"].startswith("Summarizing") and ack["to"] == "UPLAYER"
    summary = pg.wait_state(final_answer(GENERAL, None))
    assert "Friday" in markdown_of(summary) or "release notes" in markdown_of(summary)
    usage = pg.wait_state(lambda s: next((u for u in s["answers"] if u["kind"] == "summary"), None))
    assert usage["platform"] == "slack" and usage["channel"] == GENERAL


def test_a_bad_summarize_argument_is_answered_in_the_ack(pg: Running) -> None:
    pg.act(
        "/playground/slack/commands",
        {"channel": GENERAL, "command": "/summarize", "text": "the whole internet"},
    )
    ack = pg.wait_state(lambda s: next((m for m in s["slack"]["messages"] if m["ephemeral"]), None))
    assert ack["text"] and not ack["text"].startswith("Summarizing")


def test_the_summarize_thread_shortcut_summarizes_in_the_thread(pg: Running) -> None:
    root = pg.act(
        "/playground/slack/messages",
        {"channel": GENERAL, "thread_ts": None, "text": "@assistant The launch moved to May."},
    )
    pg.wait_state(final_answer(GENERAL, root["ts"]))
    pg.act(
        "/playground/slack/shortcut",
        {"channel": GENERAL, "message_ts": root["ts"], "callback_id": "summarize_thread"},
    )
    summary = pg.wait_state(final_answer(GENERAL, root["ts"], count=2))
    assert "May" in markdown_of(summary)


def test_a_feedback_click_is_sent_only_for_a_button_the_message_has(pg: Running) -> None:
    sent = pg.act(
        "/playground/slack/messages",
        {"channel": GENERAL, "thread_ts": None, "text": "@assistant hi there"},
    )
    answer = pg.wait_state(final_answer(GENERAL, sent["ts"]))
    status, refused = pg.send(
        "POST",
        "/playground/slack/feedback",
        {"channel": GENERAL, "message_ts": answer["ts"], "value": "forged"},
    )
    assert status == 400 and "button" in refused["error"]
    buttons = [
        e
        for b in answer["blocks"]
        if b["type"] == "context_actions"
        for e in b["elements"]
        if e["type"] == "feedback_buttons"
    ]
    if not buttons:
        pytest.skip("this build's answers carry no feedback buttons")
    value = buttons[0]["positive_button"]["value"]
    pg.act(
        "/playground/slack/feedback",
        {"channel": GENERAL, "message_ts": answer["ts"], "value": value},
    )


def test_opening_the_assistant_panel_starts_a_thread_in_the_dm(pg: Running) -> None:
    opened = pg.act("/playground/slack/assistant", {"action": "open"})
    root = next(m for m in pg.state()["slack"]["messages"] if m["ts"] == opened["thread_ts"])
    assert root["channel"] == DM and root["subtype"] == "assistant_app_thread"
    # The app answers assistant_thread_started with suggested prompts, shown as Slack would.
    panel = pg.wait_state(
        lambda s: (
            next((t for t in s["slack"]["threads"] if t["thread_ts"] == opened["thread_ts"]), None)
            if any(t.get("prompts") for t in s["slack"]["threads"])
            else None
        )
    )
    assert panel["channel"] == DM and all(p["title"] and p["message"] for p in panel["prompts"])
    pg.act(
        "/playground/slack/messages",
        {"channel": DM, "thread_ts": opened["thread_ts"], "text": "what can you do?"},
    )
    answer = pg.wait_state(final_answer(DM, opened["thread_ts"]))
    assert markdown_of(answer)


def test_summarize_this_channel_from_the_panel_summarizes_the_channel_in_view(
    pg: Running,
) -> None:
    pg.act(
        "/playground/slack/messages",
        {"channel": GENERAL, "thread_ts": None, "text": "The release train leaves on Friday."},
    )
    opened = pg.act("/playground/slack/assistant", {"action": "open"})
    pg.wait_state(lambda s: any(t.get("prompts") for t in s["slack"]["threads"]))
    pg.act(
        "/playground/slack/messages",
        {"channel": DM, "thread_ts": opened["thread_ts"], "text": "Summarize this channel"},
    )
    # The panel's context (the channel in view) is kept in the greeting's metadata by the real
    # adapter and read back through the emulator: the answer is a summary, not "which channel?".
    summary = pg.wait_state(
        lambda s: next(
            (
                m
                for m in bot_messages(s, DM, opened["thread_ts"])
                if not m["streaming"] and "release train" in (markdown_of(m) or m["text"])
            ),
            None,
        )
    )
    assert NO_CONTEXT not in markdown_of(summary)


# --- Teams ----------------------------------------------------------------------------------


def bot_activity(conversation: str, reply_to: str | None = None) -> Any:
    def found(state: dict[str, Any]) -> Any:
        return next(
            (
                a
                for a in state["teams"]["activities"]
                if a["from"] == "bot"
                and a["conversation"] == conversation
                and not a["streaming"]
                and (reply_to is None or a["reply_to"] == reply_to)
            ),
            None,
        )

    return found


def test_teams_personal_chat_is_answered(pg: Running) -> None:
    events = pg.stream()
    sent = pg.act("/playground/teams/messages", {"conversation": "personal", "text": "hello"})
    answer = pg.wait_state(bot_activity("personal"))
    assert answer["text"].startswith(OFFLINE) and answer["reply_to"] == sent["id"]
    # The page saw the answer before it was final (Teams' streaming, or a typing indicator).
    versions = events.wait(
        lambda e: (
            [d["activity"] for _, d in e if d["type"] == "teams.activity"]
            if any(
                d["type"] == "teams.activity"
                and d["activity"]["id"] == answer["id"]
                and not d["activity"]["streaming"]
                for _, d in e
            )
            else None
        )
    )
    mine = [v for v in versions if v["id"] == answer["id"]]
    typing = events.of_type("teams.typing")
    assert typing or (len(mine) >= 2 and mine[0]["streaming"])
    usage = pg.wait_state(
        lambda s: next((u for u in s["answers"] if u["platform"] == "teams"), None)
    )
    assert usage["channel"] == pg.app.playground.teams.personal  # type: ignore[union-attr]


def test_teams_channel_answers_a_mention_in_its_reply_chain(pg: Running) -> None:
    sent = pg.act(
        "/playground/teams/messages", {"conversation": "channel", "text": "@assistant status?"}
    )
    answer = pg.wait_state(bot_activity("channel", reply_to=sent["id"]))
    assert answer["text"].startswith(OFFLINE)
    again = pg.act(
        "/playground/teams/messages",
        {"conversation": "channel", "text": "@assistant and now?", "reply_to": answer["id"]},
    )
    state = pg.state()
    mine = next(a for a in state["teams"]["activities"] if a["id"] == again["id"])
    assert mine["reply_to"] == sent["id"]  # the chain's root


def test_teams_feedback_needs_a_bot_message_with_feedback(pg: Running) -> None:
    sent = pg.act("/playground/teams/messages", {"conversation": "personal", "text": "hi"})
    status, body = pg.send(
        "POST",
        "/playground/teams/feedback",
        {"message_id": sent["id"], "reaction": "like"},
    )
    assert status == 400 and body["error"]
    answer = pg.wait_state(bot_activity("personal"))
    if not answer["feedback"]:
        pytest.skip("this build's Teams answers carry no feedback loop")
    pg.act("/playground/teams/feedback", {"message_id": answer["id"], "reaction": "like"})


# --- the stream, the snapshot, reset and restart ----------------------------------------------


def test_the_stream_numbers_changes_and_replays_what_a_reconnecting_page_missed(
    pg: Running,
) -> None:
    first = pg.stream()
    hello = first.wait(lambda e: e[0][1] if e else None)
    assert hello["type"] == "hello" and hello["resync"] is True  # no Last-Event-ID
    for text in ("one", "two", "three"):
        pg.act(
            "/playground/slack/messages", {"channel": "CRANDOM", "thread_ts": None, "text": text}
        )
    seen = first.wait(lambda e: e if len(first.of_type("slack.message")) >= 3 else None)
    ids = [event_id for event_id, _ in seen]
    run = hello["run"]
    numbers = [int(i.split(":")[1]) for i in ids]
    assert all(i.startswith(run + ":") for i in ids) and numbers[1:] == sorted(set(numbers[1:]))
    # A page that saw the first change reconnects with its id and gets the rest, in order.
    after = next(i for i, d in seen if d["type"] == "slack.message")
    again = pg.stream(last_event_id=after)
    replay = again.wait(lambda e: e if len(e) >= 3 else None)
    assert replay[0][1] == {
        "type": "hello",
        "run": run,
        "seq": replay[0][1]["seq"],
        "resync": False,
    }
    assert [d["message"]["text"] for _, d in replay[1:]] == ["two", "three"]
    # An id from another run (the server restarted) means: fetch the snapshot again.
    stale = pg.stream(last_event_id="0123456789ab:5")
    assert stale.wait(lambda e: e[0][1] if e else None)["resync"] is True


def test_the_snapshot_carries_the_workspaces_and_the_sequence_it_reflects(pg: Running) -> None:
    state = pg.state()
    assert {c["id"] for c in state["slack"]["channels"]} == {"CGENERAL", "CRANDOM", DM}
    assert state["slack"]["enabled"] and state["teams"]["enabled"]
    assert state["bot"]["slack_user_id"] == "UPLAYBOT" and state["llm"] == "offline"
    pg.act("/playground/slack/messages", {"channel": "CRANDOM", "thread_ts": None, "text": "x"})
    later = pg.state()
    assert later["seq"] > state["seq"] and later["run"] == state["run"]


def test_reset_empties_the_workspace_and_tells_the_page(pg: Running) -> None:
    events = pg.stream()
    pg.act("/playground/slack/messages", {"channel": "CRANDOM", "thread_ts": None, "text": "x"})
    pg.act("/playground/reset", {})
    events.wait(lambda e: any(d["type"] == "reset" for _, d in e))
    assert pg.state()["slack"]["messages"] == []


def test_streams_end_when_the_server_shuts_down_and_a_restart_serves_again(
    tmp_path: Path,
) -> None:
    first = start(tmp_path)
    events = first.stream()
    run = events.wait(lambda e: e[0][1]["run"] if e else None)
    first.stop()
    assert events.ended.wait(30)
    second = start(tmp_path)
    try:
        state = second.state()
        assert state["run"] != run and state["slack"]["messages"] == []
        hello = second.stream(last_event_id=f"{run}:1").wait(lambda e: e[0][1] if e else None)
        assert hello["resync"] is True
    finally:
        second.stop()


def test_jobs_a_previous_run_left_for_its_playground_are_dropped_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``chatbot serve`` closes its socket (and with it the emulators) before it drains: the
    playground's unfinished jobs stay in the queue file, and could only fail against the next
    run's empty workspace. The next start drops them and keeps every other job."""
    recorded: list[Job] = []
    monkeypatch.setattr(InProcessQueue, "enqueue", lambda self, job: recorded.append(job))
    first = start(tmp_path)  # its routes take the recording enqueue: no job runs
    try:
        first.act(
            "/playground/slack/messages",
            {"channel": GENERAL, "thread_ts": None, "text": "@assistant left behind?"},
        )
        first.act("/playground/teams/messages", {"conversation": "personal", "text": "and me?"})
        assert first.send("POST", "/local/messages", {"text": "a devchat turn"})[0] == 202
    finally:
        first.stop()
    monkeypatch.undo()
    playground_jobs = [job for job in recorded if job.kind.startswith(("slack.", "teams."))]
    assert {job.kind.split(".")[0] for job in playground_jobs} == {"slack", "teams"}
    assert len(playground_jobs) < len(recorded)  # and the devchat turn
    left = InProcessQueue(lambda job: None, path=tmp_path / QUEUE_FILE, autostart=False)
    for job in recorded:  # as a run stopped mid-answer leaves them
        left.enqueue(job)
    left.close(drain_seconds=0)

    second = start(tmp_path)
    try:
        assert second.app.dropped_jobs == len({job.dedupe_id for job in playground_jobs})
        assert second.app.queue.join()  # the devchat turn ran
        assert second.send("GET", "/local/messages?thread=main")[1]["messages"]
        assert second.state()["slack"]["messages"] == []  # no stray apology
        assert second.state()["teams"]["activities"] == []
    finally:
        second.stop()


@pytest.mark.parametrize("limit", [b"1e400", b"[1]", b'{"a": 1}', b'"many"', b"-1e400"])
def test_an_odd_page_limit_is_slacks_invalid_arguments(pg: Running, limit: bytes) -> None:
    token = pg.app.settings.slack_bot_token
    body = b'{"channel": "CGENERAL", "limit": ' + limit + b"}"
    for method in ("conversations.history", "conversations.replies"):
        status, answer = pg.send("POST", "/playground/slack/api/" + method, raw=body, token=token)
        assert status == 200 and answer["ok"] is False, (method, answer)
    status, answer = pg.send(
        "POST", "/playground/slack/api/conversations.history", raw=body, token=token
    )
    assert answer["error"] == "invalid_arguments"


# --- what the page may not do -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/playground/state", "/playground/events"])
def test_without_the_token_nothing_but_the_static_page_and_assets_is_served(
    pg: Running, path: str
) -> None:
    status, body = pg.send("GET", path, token=None)
    assert status == 401 and "token" in body["error"]
    assert pg.send("GET", path, token="wrong")[0] == 401
    assert pg.send("POST", "/playground/slack/messages", {"channel": GENERAL}, token=None)[0] == 401


def test_the_page_is_served_with_the_token_in_its_url_and_strict_headers(pg: Running) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", pg.port, timeout=10)
    connection.request("GET", f"/?token={TOKEN}")
    response = connection.getresponse()
    page = response.read()
    connection.close()
    assert response.status == 200 and b"<html" in page.lower()
    assert "script-src 'self'" in (response.getheader("Content-Security-Policy") or "")
    assert response.getheader("Referrer-Policy") == "no-referrer"
    # The page is static (no data, no token in it): served without the token too, so a reload
    # works once the page dropped the token from its address.
    status, again = pg.send("GET", "/", token=None)
    assert status == 200 and again == page and TOKEN.encode() not in page
    status, _ = pg.send("GET", "/playground/static/../../cli.py", token=None)
    assert status == 404
    assert pg.send("GET", "/playground/static/nope.js", token=None)[0] == 404


def test_a_request_from_another_origin_is_refused(pg: Running) -> None:
    status, body = pg.send(
        "POST",
        "/playground/slack/messages",
        {"channel": GENERAL, "text": "hi"},
        headers={"Origin": "https://evil.example"},
    )
    assert status == 403 and body["error"]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/playground/slack/messages", b"{not json", 400, "not JSON"),
        ("/playground/slack/messages", b"[1, 2]", 400, "JSON object"),
        ("/playground/slack/messages", b'{"channel": "CNOPE", "text": "hi"}', 400, "no channel"),
        ("/playground/slack/messages", b'{"channel": "CGENERAL", "text": " "}', 400, "text"),
        ("/playground/slack/messages", b'{"channel": "CGENERAL", "text": 5}', 400, "text"),
        (
            "/playground/slack/messages",
            b'{"channel": "CGENERAL", "text": "hi", "thread_ts": "1.000001"}',
            400,
            "thread",
        ),
        (
            "/playground/slack/commands",
            b'{"channel": "CGENERAL", "command": "/deploy", "text": ""}',
            400,
            "not a valid command",
        ),
        (
            "/playground/slack/shortcut",
            b'{"channel": "CGENERAL", "message_ts": "1.000001"}',
            400,
            "no such message",
        ),
        ("/playground/slack/assistant", b'{"action": "dance"}', 400, "action"),
        (
            "/playground/slack/files",
            b'{"channel": "CGENERAL", "name": "a.txt", "data_base64": "%%%"}',
            400,
            "base64",
        ),
        (
            "/playground/slack/files",
            b'{"channel": "CGENERAL", "name": "../a.txt", "data_base64": ""}',
            400,
            "slashes",
        ),
        ("/playground/teams/messages", b'{"conversation": "group", "text": "hi"}', 400, "personal"),
        (
            "/playground/teams/messages",
            b'{"conversation": "channel", "text": "hi", "reply_to": "nope"}',
            400,
            "reply_to",
        ),
        ("/playground/teams/feedback", b'{"message_id": "x", "reaction": "meh"}', 400, "reaction"),
    ],
)
def test_bad_input_gets_a_readable_400_and_changes_nothing(
    pg: Running, path: str, body: bytes, status: int, words: str
) -> None:
    before = pg.state()
    got, answer = pg.send("POST", path, raw=body)
    assert got == status and words in answer["error"], answer
    after = pg.state()
    assert after["slack"]["messages"] == before["slack"]["messages"]
    assert after["teams"]["activities"] == before["teams"]["activities"]


def test_a_wrong_content_type_is_refused(pg: Running) -> None:
    status, body = pg.send(
        "POST",
        "/playground/slack/messages",
        raw=b'{"channel": "CGENERAL", "text": "hi"}',
        headers={"Content-Type": "text/plain"},
    )
    assert status == 415 and body["error"]


def test_a_file_over_the_bots_limit_is_shared_and_the_bot_refuses_it_in_the_chat(
    tmp_path: Path,
) -> None:
    running = start(tmp_path, max_file_mb=1)
    try:
        limits = running.state()["limits"]
        limit = limits["max_file_bytes"]
        assert limit == 1024 * 1024 and limits["upload_cap_bytes"] == 4 * limit
        data = base64.b64encode(b"x" * (limit + 1)).decode()
        shared = running.act(
            "/playground/slack/files",
            {"channel": GENERAL, "name": "big.txt", "mime_type": "text/plain", "data_base64": data},
        )
        # Slack takes the file; the bot answers in the share's thread with production's words
        # (bots/downloads.py), without downloading it.
        refusal = running.wait_state(final_answer(GENERAL, shared["ts"]))
        assert markdown_of(refusal) == "I can't read big.txt: it is 2 MB and the limit is 1 MB."
        token = running.app.settings.slack_bot_token
        info = running.send(
            "POST", "/playground/slack/api/files.info", {"file": shared["file_id"]}, token=token
        )[1]
        assert info["file"]["size"] == limit + 1  # the true size, as Slack reports it
        path = f"/playground/slack/files/{shared['file_id']}/big.txt"
        assert running.send("GET", path, token=token)[0] == 404  # no bytes were kept
    finally:
        running.stop()


def status_of_headers(running: Running, length: int, *, token: str | None) -> int:
    """The status of an upload whose headers announce ``length`` bytes and whose body is never
    sent: an answer means the server did not wait for the body."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as raw:
        raw.sendall(
            "POST /playground/slack/files HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n{auth}Content-Length: {length}\r\n\r\n".encode()
        )
        return int(raw.makefile("rb").readline().split()[1])


def test_files_over_the_playgrounds_own_memory_cap_are_refused_with_413(tmp_path: Path) -> None:
    running = start(tmp_path, max_file_mb=1)
    try:
        cap = running.state()["limits"]["upload_cap_bytes"]
        data = base64.b64encode(b"x" * (cap + 1)).decode()
        status, body = running.send(
            "POST",
            "/playground/slack/files",
            {"channel": GENERAL, "name": "big.txt", "mime_type": "text/plain", "data_base64": data},
        )
        assert status == 413 and "the playground itself" in body["error"]
        assert "4 MB" in body["error"]
        # Far over the body limit: refused from Content-Length, before the body is read (the
        # headers alone get the answer) ...
        assert status_of_headers(running, 2 * cap, token=TOKEN) == 413
        # ... and without the token, so is a body within the limit.
        assert status_of_headers(running, cap, token=None) == 401
        assert running.state()["slack"]["messages"] == []
    finally:
        running.stop()


# --- the emulators answer as Slack and the Bot Framework do -----------------------------------


def test_the_slack_emulator_checks_the_bot_token_and_names_unknown_methods(pg: Running) -> None:
    token = pg.app.settings.slack_bot_token
    assert token.startswith("xoxb-playground-")
    api = "/playground/slack/api/"
    status, answer = pg.send("POST", api + "auth.test", {}, token=None)
    assert status == 200 and answer == {"ok": False, "error": "not_authed"}
    assert pg.send("POST", api + "auth.test", {}, token="xoxb-wrong")[1]["error"] == "invalid_auth"
    assert pg.send("POST", api + "auth.test", {}, token=token)[1]["user_id"] == "UPLAYBOT"
    assert pg.send("POST", api + "chat.scheduleMessage", {}, token=token)[1] == {
        "ok": False,
        "error": "unknown_method",
    }
    posted = pg.send(
        "POST", api + "chat.postMessage", {"channel": "CNOPE", "text": "x"}, token=token
    )
    assert posted[1] == {"ok": False, "error": "channel_not_found"}


def test_the_slack_emulator_streams_and_ends_a_message_like_slack(pg: Running) -> None:
    token = pg.app.settings.slack_bot_token
    api = "/playground/slack/api/"
    root = pg.act(
        "/playground/slack/messages", {"channel": "CRANDOM", "thread_ts": None, "text": "q"}
    )
    start_ = pg.send(
        "POST",
        api + "chat.startStream",
        {"channel": "CRANDOM", "thread_ts": root["ts"], "markdown_text": "Hel"},
        token=token,
    )[1]
    assert start_["ok"]
    ts = start_["ts"]
    streaming = next(m for m in pg.state()["slack"]["messages"] if m["ts"] == ts)
    assert streaming["streaming"] and streaming["text"] == "Hel"
    pg.send(
        "POST",
        api + "chat.appendStream",
        {"channel": "CRANDOM", "ts": ts, "markdown_text": "lo"},
        token=token,
    )
    blocks = [{"type": "context", "elements": [{"type": "mrkdwn", "text": "*Sources:* [S1] a"}]}]
    stopped = pg.send(
        "POST",
        api + "chat.stopStream",
        {"channel": "CRANDOM", "ts": ts, "blocks": blocks},
        token=token,
    )[1]
    assert stopped["ok"]
    final = next(m for m in pg.state()["slack"]["messages"] if m["ts"] == ts)
    assert not final["streaming"] and final["text"] == "Hello"
    assert final["blocks"] == [{"type": "markdown", "text": "Hello"}, *blocks]
    again = pg.send(
        "POST",
        api + "chat.appendStream",
        {"channel": "CRANDOM", "ts": ts, "markdown_text": "!"},
        token=token,
    )
    assert again[1] == {"ok": False, "error": "message_not_in_streaming_state"}


def test_file_downloads_need_the_bot_token(pg: Running) -> None:
    shared = pg.act(
        "/playground/slack/files",
        {
            "channel": "CRANDOM",
            "thread_ts": None,
            "name": "notes.txt",
            "mime_type": "text/plain",
            "data_base64": base64.b64encode(b"secret notes").decode(),
        },
    )
    path = f"/playground/slack/files/{shared['file_id']}/notes.txt"
    assert pg.send("GET", path, token=None)[0] == 403
    status, data = pg.send("GET", path, token=pg.app.settings.slack_bot_token)
    assert status == 200 and data == b"secret notes"


def connector_path(pg: Running, conversation: str, *rest: str) -> str:
    """The connector emulator's path for ``conversation``, with this run's secret."""
    base = urlsplit(pg.app.playground.teams.service_url).path  # type: ignore[union-attr]
    return "/".join([f"{base}v3/conversations/{quote(conversation, safe='')}/activities", *rest])


def test_the_teams_connector_emulator_refuses_what_teams_refuses(pg: Running) -> None:
    teams = pg.app.playground.teams  # type: ignore[union-attr]
    status, body = pg.send("POST", connector_path(pg, "nope"), {"type": "message"}, token=None)
    assert status == 404 and body["error"]["code"] == "ConversationNotFound"
    big = {"type": "message", "text": "x" * 30_000}
    assert pg.send("POST", connector_path(pg, teams.personal), big, token=None)[0] == 413
    status, _ = pg.send(
        "PUT", connector_path(pg, teams.personal, "123"), {"type": "message"}, token=None
    )
    assert status == 404


def test_the_connector_answers_only_this_runs_service_url(pg: Running) -> None:
    teams = pg.app.playground.teams  # type: ignore[union-attr]
    conversation = quote(teams.personal, safe="")
    message = {"type": "message", "text": "forged"}
    mine = connector_path(pg, teams.personal)
    # The old secret-less serviceUrl: a page request, refused without the page's token, and
    # nothing there with it.
    old = f"/playground/teams/v3/conversations/{conversation}/activities"
    assert pg.send("POST", old, message, token=None)[0] == 401
    assert pg.send("POST", old, message)[0] == 404
    # Another secret: nothing there, whatever the method.
    forged = mine.replace(urlsplit(teams.service_url).path, "/playground/teams/guessed/")
    assert forged != mine
    for method in ("POST", "PUT", "DELETE"):
        status, body = pg.send(method, forged + "/1", message, token=None)
        assert status == 404 and body["error"]["code"] == "NotFound", method
    assert pg.send("POST", forged, message, token=None)[0] == 404
    assert pg.state()["teams"]["activities"] == []
    # The conversations' ids are this run's own, not constants a process could guess.
    ids = {c["id"] for c in pg.state()["teams"]["conversations"]}
    assert ids == {teams.personal, teams.channel}
    assert "a:playground-personal-chat" not in ids


def test_the_teams_conversation_ids_and_secret_change_with_every_run(tmp_path: Path) -> None:
    seen = []
    for run in ("first", "second"):
        running = start(tmp_path / run)
        try:
            teams = running.app.playground.teams  # type: ignore[union-attr]
            seen.append((teams.personal, teams.channel, teams.service_url))
        finally:
            running.stop()
    assert all(a != b for a, b in zip(*seen, strict=True))


def test_an_activity_with_a_foreign_service_url_reaches_no_playground_conversation(
    pg: Running,
) -> None:
    teams = pg.app.playground.teams  # type: ignore[union-attr]
    # Even knowing the conversation's id, a local process posting an activity with another
    # serviceUrl (here the secret-less one) cannot make the bot write into the page.
    forged = {
        "type": "message",
        "id": "forged-1",
        "timestamp": "2025-01-01T00:00:00Z",
        "serviceUrl": f"http://127.0.0.1:{pg.port}/playground/teams/",
        "channelId": "msteams",
        "from": {"id": "29:someone-else", "name": "Mallory"},
        "conversation": {
            "conversationType": "personal",
            "tenantId": "playground-tenant",
            "id": teams.personal,
        },
        "recipient": {"id": "28:playground-bot", "name": "Assistant"},
        "text": "hello from elsewhere",
        "channelData": {"tenant": {"id": "playground-tenant"}},
    }
    status, _ = pg.send("POST", "/api/messages", forged, token=None)
    assert status in (200, 202)  # unauthenticated loopback Teams takes it ...
    assert pg.app.queue.join()  # ... and its job has run (and failed to reply)
    assert pg.state()["teams"]["activities"] == []  # ... without reaching the page


def open_stream(pg: Running, conversation: str) -> Any:
    status, body = pg.send(
        "POST",
        connector_path(pg, conversation),
        {
            "type": "typing",
            "text": "Thinking…",
            "entities": [{"type": "streaminfo", "streamType": "informative", "streamSequence": 1}],
        },
        token=None,
    )
    return status, body


def chunk(pg: Running, stream_id: str, sequence: int, text: str) -> tuple[int, Any]:
    teams = pg.app.playground.teams  # type: ignore[union-attr]
    info = {"type": "streaminfo", "streamType": "streaming", "streamId": stream_id}
    return pg.send(
        "POST",
        connector_path(pg, teams.personal),
        {"type": "typing", "text": text, "entities": [{**info, "streamSequence": sequence}]},
        token=None,
    )


def test_the_connector_streams_like_teams_personal_chats_only(pg: Running) -> None:
    teams = pg.app.playground.teams  # type: ignore[union-attr]
    status, body = open_stream(pg, f"{teams.channel};messageid=1")
    assert status == 400 and body["error"]["code"] == "BadArgument"
    status, body = open_stream(pg, teams.personal)
    assert status == 201
    stream_id = body["id"]
    status, body = chunk(pg, stream_id, 1, "Hel")  # the informative update was 1
    assert status == 400 and body["error"]["code"] == "BadArgument"
    assert chunk(pg, stream_id, 2, "Hel")[0] == 202
    assert chunk(pg, stream_id, 2, "Hello")[0] == 400  # not growing
    assert chunk(pg, stream_id, 3, "Hello")[0] == 202
    shown = next(a for a in pg.state()["teams"]["activities"] if a["id"] == stream_id)
    assert shown["streaming"] and shown["text"] == "Hello"


def test_the_connector_ends_a_stream_at_teams_two_minute_cap(pg: Running) -> None:
    teams = pg.app.playground.teams  # type: ignore[union-attr]
    now = [1_000.0]
    teams.clock = lambda: now[0]
    stream_id = open_stream(pg, teams.personal)[1]["id"]
    now[0] += 100
    assert chunk(pg, stream_id, 2, "Part")[0] == 202  # within the cap
    now[0] += 21  # 121 s after the stream began
    status, body = chunk(pg, stream_id, 3, "Part one")
    assert status == 403 and body["error"]["code"] == "ContentStreamNotAllowed"
    # Teams keeps what the stream showed, as a message; the stream takes nothing more ...
    shown = next(a for a in pg.state()["teams"]["activities"] if a["id"] == stream_id)
    assert not shown["streaming"] and shown["text"] == "Part"
    final = {
        "type": "message",
        "text": "Part one, final",
        "entities": [{"type": "streaminfo", "streamType": "final", "streamId": stream_id}],
    }
    status, body = pg.send("POST", connector_path(pg, teams.personal), final, token=None)
    assert status == 403 and body["error"]["code"] == "ContentStreamNotAllowed"
    # ... but the message can be edited: the adapter's fallback delivers the rest that way.
    edit = {"type": "message", "text": "Part one, final"}
    path = connector_path(pg, teams.personal, stream_id)
    assert pg.send("PUT", path, edit, token=None)[0] == 200
    shown = next(a for a in pg.state()["teams"]["activities"] if a["id"] == stream_id)
    assert shown["text"] == "Part one, final"


ODD_VALUES: list[Any] = [None, 7, -1.5, True, [], ["x"], {}, {"a": [1]}, "", "x" * 300, "../../"]
ACTIONS = [
    ("/playground/slack/messages", ("channel", "thread_ts", "text", "user")),
    ("/playground/slack/files", ("channel", "name", "mime_type", "data_base64", "comment")),
    ("/playground/slack/commands", ("channel", "command", "text", "thread_ts")),
    ("/playground/slack/shortcut", ("channel", "message_ts", "callback_id")),
    ("/playground/slack/feedback", ("channel", "message_ts", "value", "action_id")),
    ("/playground/slack/assistant", ("action", "context_channel", "thread_ts")),
    ("/playground/teams/messages", ("conversation", "text", "reply_to")),
    ("/playground/teams/feedback", ("message_id", "reaction", "feedback")),
]


@pytest.mark.parametrize(("path", "fields"), ACTIONS)
def test_fields_of_any_type_never_make_a_server_error(
    pg: Running, path: str, fields: tuple[str, ...]
) -> None:
    valid = {"channel": GENERAL, "text": "hi", "conversation": "personal", "action": "open"}
    for name in fields:
        for value in ODD_VALUES:
            status, answer = pg.send("POST", path, {**valid, name: value})
            assert status < 500 and isinstance(answer, dict), (name, value, status, answer)
            if status != 200:
                assert answer["error"]


def test_the_emulators_answer_odd_calls_without_a_server_error(pg: Running) -> None:
    token = pg.app.settings.slack_bot_token
    api = "/playground/slack/api/"
    odd: list[dict[str, Any]] = [
        {"channel": GENERAL, "limit": "many"},
        {"channel": GENERAL, "cursor": "%%%"},
        {"channel": GENERAL, "oldest": "yesterday"},
        {"channel": [GENERAL], "text": {"a": 1}},
        {"channel": GENERAL, "text": "x", "blocks": [1, 2]},
        {"channel_id": GENERAL, "thread_ts": "1.1", "prompts": "none"},
        {"channel": GENERAL, "ts": 5, "markdown_text": 5},
    ]
    methods = [
        "conversations.history",
        "conversations.replies",
        "chat.postMessage",
        "chat.update",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
        "assistant.threads.setSuggestedPrompts",
        "assistant.threads.setStatus",
        "users.info",
        "files.info",
    ]
    for method in methods:
        for params in odd:
            status, answer = pg.send("POST", api + method, params, token=token)
            assert status == 200 and answer["ok"] in (True, False), (method, params, answer)
    connector = connector_path(pg, pg.app.playground.teams.personal)  # type: ignore[union-attr]
    for body in (
        {"type": "typing", "entities": 5},
        {"type": 5},
        [1],
        {"type": "message", "text": {}},
    ):
        status, _ = pg.send("POST", connector, body, token=None)
        assert status < 500, body
