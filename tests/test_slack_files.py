"""Shared files through the Slack path end to end: a share event, the download with the bot
token, extraction, indexing in the channel's scope, the "ready" line, answers with citations,
scope isolation, re-shares, deletions and every kind of unreadable file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.knowledge.sqlite import SqliteKnowledgeStore
from core.models.base import ModelEvent
from core.models.bedrock import BedrockChatModel
from core.prompt import Prompt
from tests import files_factory as ff
from tests import slack_requests as sr
from tests.fakes import timed_stream
from tests.standins.bedrock import BedrockStandIn
from tests.standins.slack import SlackStandIn
from tests.test_slack import Harness, build_harness

CANARY = "The canary phrase is purple-giraffe-42."


@pytest.fixture
def slack(slack_standin: SlackStandIn, tmp_path: Path) -> Iterator[Harness]:
    slack_standin.add_channel("C2", "random")
    slack_standin.add_channel("D1", "dm-ada", is_im=True)
    harness = build_harness(slack_standin, tmp_path)
    harness.answer = cite_first_passage
    yield harness
    harness.server.shutdown()
    harness.server.server_close()
    harness.app.close()


def cite_first_passage(prompt: Prompt) -> Iterator[ModelEvent]:
    """A model that answers from the first passage it was given, citing it."""
    if prompt.passages:
        return timed_stream([f"From the file: {prompt.passages[0].text[:80]} [S1]"])
    return timed_stream(["I found nothing relevant in the shared files."])


def share(
    slack: Harness,
    file_id: str,
    name: str,
    content: bytes,
    mimetype: str,
    *,
    channel: str = "C1",
    text: str = "",
    channel_type: str = "channel",
    size: int | None = None,
) -> dict[str, Any]:
    payload = slack.standin.add_file(file_id, name, content, mimetype, channel)
    if size is not None:
        payload["size"] = size
    event = sr.message(
        text, channel=channel, subtype="file_share", files=[payload], channel_type=channel_type
    )
    assert slack.send(sr.event_callback(event))[0] == 200
    slack.settle()
    return event


def bot_lines(slack: Harness, channel: str, thread_ts: str | None) -> list[str]:
    return [m["blocks"][0]["text"] for m in slack.thread(thread_ts, channel)]


def store(slack: Harness) -> SqliteKnowledgeStore:
    return SqliteKnowledgeStore(slack.app.settings.data_dir / "knowledge.sqlite3")


def ask(slack: Harness, question: str, channel: str = "C1") -> dict[str, Any]:
    mention = sr.app_mention(f"<@UBOT> {question}", channel=channel)
    slack.send(sr.event_callback(mention))
    slack.settle()
    return mention


def test_a_shared_pdf_is_read_announced_and_cited(slack: Harness) -> None:
    pdf = ff.make_pdf(
        ["Quarterly plan overview.", "Budget details. " + CANARY, "Risks and owners."]
    )
    event = share(slack, "F1", "plan.pdf", pdf, "application/pdf")

    assert bot_lines(slack, "C1", event["ts"]) == [
        "📄 I've read plan.pdf (3 pages): ask me about it in this channel."
    ]
    (download,) = slack.standin.downloads
    assert download.status == 200
    assert download.headers["authorization"] == f"Bearer {slack.standin.bot_token}"

    mention = ask(slack, "What is the canary phrase?")
    prompt = slack.model.prompts[-1]
    assert prompt.passages and "purple-giraffe-42" in prompt.passages[0].text
    assert prompt.passages[0].source.location == "page 2"
    (reply,) = slack.thread(mention["ts"])
    assert reply["blocks"][0]["text"].endswith("[S1]")
    sources = reply["blocks"][1]["elements"][0]["text"]
    assert "plan.pdf, page 2" in sources and "/files/U1/F1/plan.pdf" in sources


def test_a_file_never_answers_outside_the_channel_it_was_shared_in(slack: Harness) -> None:
    share(slack, "F1", "secret.md", f"# Notes\n\n{CANARY}\n".encode(), "text/markdown")
    ask(slack, "What is the canary phrase?", channel="C2")
    dm = sr.message("What is the canary phrase?", channel="D1", channel_type="im")
    slack.send(sr.event_callback(dm))
    slack.settle()

    assert len(slack.model.prompts) == 2
    for prompt in slack.model.prompts:
        rendered = prompt.system + "".join(m.text for m in prompt.messages)
        assert "purple-giraffe" not in rendered
        assert prompt.passages == ()


def test_a_dm_file_belongs_to_that_dm_alone(slack: Harness) -> None:
    share(slack, "F9", "dm.txt", CANARY.encode(), "text/plain", channel="D1", channel_type="im")
    (line,) = bot_lines(slack, "D1", None)
    assert line == "📄 I've read dm.txt (1 section): ask me about it in this conversation."
    ask(slack, "What is the canary phrase?", channel="C1")
    assert all(
        "purple-giraffe" not in "".join(m.text for m in p.messages) for p in slack.model.prompts
    )


def test_a_question_asked_with_the_file_is_answered_after_reading_it(slack: Harness) -> None:
    csv = ff.make_csv(120)
    event = share(
        slack, "F2", "sales.csv", csv, "text/csv", text="<@UBOT> where does person7 live?"
    )
    lines = bot_lines(slack, "C1", event["ts"])
    assert lines[0].startswith("📄 I've read sales.csv (") and "rows)" in lines[0]
    assert len(lines) == 2 and slack.model.prompts[-1].passages  # the answer came second


def test_sharing_the_same_file_again_does_not_index_it_twice(slack: Harness) -> None:
    content = b"# Runbook\n\nDeploys happen on Tuesdays.\n"
    share(slack, "F3", "runbook.md", content, "text/markdown")
    chunks_before = len(store(slack).file_chunks("slack#T1#C1", "F3"))
    event = share(slack, "F3", "runbook.md", content, "text/markdown")
    assert bot_lines(slack, "C1", event["ts"]) == [
        "📄 I already have runbook.md (1 section): ask me about it in this channel."
    ]
    assert len(store(slack).file_chunks("slack#T1#C1", "F3")) == chunks_before
    assert len(store(slack).list_files("slack#T1#C1")) == 1


def test_deleting_or_unsharing_a_file_removes_it_from_the_index(slack: Harness) -> None:
    share(slack, "F4", "a.txt", b"Alpha facts about deploys.", "text/plain")
    share(slack, "F4", "a.txt", b"Alpha facts about deploys.", "text/plain", channel="C2")
    unshared = {"type": "file_unshared", "file_id": "F4", "user_id": "U1", "channel_id": "C1"}
    slack.send(sr.event_callback(unshared))
    slack.settle()
    assert store(slack).list_files("slack#T1#C1") == []
    assert [f.file_id for f in store(slack).list_files("slack#T1#C2")] == ["F4"]

    slack.send(sr.event_callback({"type": "file_deleted", "file_id": "F4"}))
    slack.settle()
    assert store(slack).list_files("slack#T1#C2") == []


def test_when_the_files_hold_nothing_relevant_the_model_is_told_so(slack: Harness) -> None:
    share(slack, "F5", "menu.md", b"# Menu\n\nSoup on Fridays.\n", "text/markdown")
    mention = ask(slack, "What is our refund policy?")
    prompt = slack.model.prompts[-1]
    assert prompt.passages == ()
    assert "no passage of them matched" in prompt.messages[-1].text
    (reply,) = slack.thread(mention["ts"])
    # no sources block: nothing was cited (the answer ends with its feedback buttons only)
    assert [b["type"] for b in reply["blocks"]] == ["markdown", "context_actions"]


@pytest.mark.parametrize(
    ("name", "content", "mimetype", "expected"),
    [
        ("locked.pdf", ff.make_encrypted_pdf(), "application/pdf", "password"),
        ("broken.pdf", ff.truncate(ff.make_pdf(["a", "b"])), "application/pdf", "damaged"),
        ("empty.txt", b"", "text/plain", "empty"),
        ("scan.pdf", ff.make_scanned_pdf(), "application/pdf", "no OCR"),
        ("tool.exe", b"MZ\x90\x00binary", "application/octet-stream", "supported"),
        (
            "bomb.docx",
            ff.make_docx_bomb(),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "unpack",
        ),
    ],
    ids=["encrypted", "truncated", "zero-byte", "scanned", "unsupported", "docx-bomb"],
)
def test_unreadable_files_get_one_clear_line_and_leave_nothing_behind(
    slack: Harness, name: str, content: bytes, mimetype: str, expected: str
) -> None:
    event = share(slack, "F6", name, content, mimetype)
    (line,) = bot_lines(slack, "C1", event["ts"])
    assert line.startswith(f"I can't read {name}") and expected.lower() in line.lower()
    assert store(slack).list_files("slack#T1#C1") == []
    # The service keeps serving.
    ask(slack, "still there?")
    assert slack.model.prompts


def test_a_file_over_the_size_limit_is_refused_without_downloading_it(slack: Harness) -> None:
    event = share(
        slack, "F7", "huge.pdf", b"%PDF-1.4 small", "application/pdf", size=26 * 1024 * 1024
    )
    (line,) = bot_lines(slack, "C1", event["ts"])
    assert "26 MB" in line and "25 MB" in line
    assert slack.standin.downloads == []


def test_a_refused_download_is_reported(slack: Harness) -> None:
    slack.standin.html_on_unauthorized_download = True
    payload = slack.standin.add_file("F8", "notes.txt", b"hello", "text/plain", "C1")
    payload["url_private_download"] = payload["url_private_download"].replace("F8", "F0")
    event = sr.message("", subtype="file_share", files=[payload])
    slack.send(sr.event_callback(event))
    slack.settle()
    (line,) = bot_lines(slack, "C1", event["ts"])
    assert line.startswith("I can't read notes.txt") and "download" in line
    assert store(slack).list_files("slack#T1#C1") == []


def test_the_bot_token_is_never_sent_outside_slack(slack: Harness) -> None:
    payload = slack.standin.add_file("F10", "x.txt", b"x", "text/plain", "C1")
    payload["url_private_download"] = "https://evil.example/steal"
    event = sr.message("", subtype="file_share", files=[payload])
    slack.send(sr.event_callback(event))
    slack.settle()
    (line,) = bot_lines(slack, "C1", event["ts"])
    assert line.startswith("I can't read x.txt")
    assert slack.standin.downloads == []


def test_the_canary_never_reaches_a_bedrock_request_made_from_another_channel(
    slack_standin: SlackStandIn, bedrock_standin: BedrockStandIn, tmp_path: Path
) -> None:
    """The literal check: every request body sent to (a stand-in for) Bedrock is inspected."""
    model = BedrockChatModel(model_id="global.anthropic.claude-sonnet-4-6", region="us-east-1")
    slack_standin.add_channel("C2", "random")
    harness = build_harness(slack_standin, tmp_path, "bedrock", model=model)
    try:
        share(harness, "F1", "secret.md", f"# Notes\n\n{CANARY}\n".encode(), "text/markdown")
        ask(harness, "What is the canary phrase?", channel="C1")
        ask(harness, "What is the canary phrase?", channel="C2")
    finally:
        harness.server.shutdown()
        harness.server.server_close()
        harness.app.close()
    first, second = bedrock_standin.requests
    assert "purple-giraffe-42" in json.dumps(first.body)  # the check can see the canary
    assert "purple-giraffe" not in json.dumps(second.body)


def test_a_mention_carrying_a_file_reads_the_file_first_whichever_event_comes_first(
    slack: Harness,
) -> None:
    payload = slack.standin.add_file(
        "F11", "facts.md", f"# Facts\n\n{CANARY}\n".encode(), "text/markdown"
    )
    ts = sr.new_ts()
    text = "<@UBOT> what is the canary phrase?"
    mention = sr.app_mention(text, ts=ts)
    mention["files"] = [payload]
    share_event = sr.message(text, ts=ts, subtype="file_share", files=[payload])
    slack.send(sr.event_callback(mention))  # the mention first
    slack.send(sr.event_callback(share_event))
    slack.settle()
    assert len(slack.model.prompts) == 1
    assert "purple-giraffe-42" in slack.model.prompts[0].passages[0].text


def test_a_storage_failure_while_reading_a_file_gets_one_line_not_silence(
    slack: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.errors import StoreError

    def broken(*args: object, **kwargs: object) -> None:
        raise StoreError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(slack.app.jobs._handlers["slack.file"].__self__._indexer, "ingest", broken)  # type: ignore[attr-defined]
    event = share(slack, "F12", "notes.txt", b"some notes", "text/plain")
    (line,) = bot_lines(slack, "C1", event["ts"])
    assert line.startswith("I couldn't read notes.txt right now")
