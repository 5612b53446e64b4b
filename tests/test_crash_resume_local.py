"""The local host loses no reply when its process dies mid-answer: `chatbot serve` is killed
(SIGKILL) after the placeholder and the first words are up; started again on the same data dir,
it finds the job in its durable queue, clears the dead run's in-progress mark, and finishes the
same Slack message: one answer, no orphan, no second placeholder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests import slack_requests as sr
from tests.standins.bedrock import BedrockStandIn, Stream
from tests.standins.slack import SlackStandIn


def start_serve(
    tmp_path: Path, slack: SlackStandIn, bedrock: BedrockStandIn, streaming: str = "auto"
) -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "CHATBOT_DATA_DIR": str(tmp_path / "data"),
        "CHATBOT_PORT": str(port),
        "CHATBOT_LLM": "bedrock",
        "CHATBOT_STORE": "sqlite",
        "SLACK_SIGNING_SECRET": sr.DEFAULT_SIGNING_SECRET,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.api_url,
        "CHATBOT_EDIT_INTERVAL_SECONDS": "0.05",
        "CHATBOT_SLACK_STREAMING": streaming,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return proc, url
        except OSError:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("chatbot serve did not start")


def bot_messages(slack: SlackStandIn, ts: str) -> list[dict]:  # type: ignore[type-arg]
    return [m for m in slack.messages("C1", ts) if m.get("bot_id")]


def shown_first_words(slack: SlackStandIn) -> bool:
    """Whether "Half an ans" reached Slack, by an edit (paced) or a stream (native)."""
    for method, name in (("chat.update", "text"), ("chat.startStream", "markdown_text")):
        if any("Half an ans" in c.params.get(name, "") for c in slack.calls_to(method)):
            return True
    return False


@pytest.mark.parametrize("streaming", ["off", "auto"])
def test_serve_killed_mid_answer_finishes_the_same_message_after_a_restart(
    tmp_path: Path, slack_standin: SlackStandIn, bedrock_standin: BedrockStandIn, streaming: str
) -> None:
    bedrock_standin.script(
        Stream(["Half an ans", "wer that never ends"] + ["."] * 50, delay=0.5),
        Stream(["The whole ", "answer."]),
    )
    mention = sr.app_mention("<@UBOT> tell me everything")
    body, headers = sr.event_callback(mention)
    proc, url = start_serve(tmp_path, slack_standin, bedrock_standin, streaming)
    try:
        request = urllib.request.Request(url + "/slack/events", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        deadline = time.monotonic() + 30
        while not shown_first_words(slack_standin):
            assert proc.poll() is None and time.monotonic() < deadline, "no first words shown"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    (half,) = bot_messages(slack_standin, mention["ts"])
    assert half["text"].startswith("Half an ans")

    proc, url = start_serve(tmp_path, slack_standin, bedrock_standin, streaming)
    try:
        deadline = time.monotonic() + 30
        while bot_messages(slack_standin, mention["ts"])[0]["text"] != "The whole answer.":
            assert proc.poll() is None and time.monotonic() < deadline, "not finished"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    (reply,) = bot_messages(slack_standin, mention["ts"])
    assert reply["ts"] == half["ts"]
    assert reply["blocks"][0]["text"] == "The whole answer."
    # no second placeholder (native streaming posts none: its message is the stream's)
    assert len(slack_standin.calls_to("chat.postMessage")) == (1 if streaming == "off" else 0)
    assert len(bedrock_standin.requests) == 2  # the job ran again, once
