"""The README's commands, run as a person would: ``chatbot ask`` and ``chatbot serve``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.models.offline import OFFLINE_BANNER


def chatbot(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bots.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=data_dir,
        env={**os.environ, "CHATBOT_DATA_DIR": str(data_dir), **env},
    )


def test_ask_streams_an_answer_and_remembers_the_conversation(tmp_path: Path) -> None:
    first = chatbot(["ask", "The staging database lives in eu-west-1."], tmp_path)
    assert first.returncode == 0, first.stderr
    second = chatbot(["ask", "Where does the staging database live?"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(OFFLINE_BANNER)
    assert "> The staging database lives in eu-west-1." in second.stdout
    # A new conversation does not see the old one.
    fresh = chatbot(["ask", "--new", "Where does the staging database live?"], tmp_path)
    assert "eu-west-1" not in fresh.stdout


def test_ask_with_empty_text_explains_and_fails(tmp_path: Path) -> None:
    result = chatbot(["ask", "   "], tmp_path)
    assert result.returncode == 1 and "didn't find a question" in result.stdout


def test_configuration_errors_are_named(tmp_path: Path) -> None:
    result = chatbot(["ask", "hi"], tmp_path, CHATBOT_LLM="gpt-9")
    assert result.returncode == 2 and "CHATBOT_LLM" in result.stderr


def test_serve_starts_answers_healthz_and_stops_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = None
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.05)
        assert body is not None and body["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(line.get("message") == "chatbot serving" for line in lines)
    assert all("request_id" in line for line in lines if line.get("message") == "http request")


def test_the_local_token_survives_a_restart_on_the_same_data_directory(tmp_path: Path) -> None:
    """A playground page left open across a restart reconnects: the token is kept, owner-only."""
    from bots.cli import TOKEN_FILE, local_token

    first = local_token(tmp_path / "data")
    assert len(first) >= 32
    assert local_token(tmp_path / "data") == first
    assert (tmp_path / "data" / TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    assert local_token(tmp_path / "other") != first  # another data directory, another token
    (tmp_path / "data" / TOKEN_FILE).write_text("short")  # damaged: replaced, not trusted
    renewed = local_token(tmp_path / "data")
    assert renewed != "short" and len(renewed) >= 32


def test_an_unwritable_data_directory_still_gets_a_token_for_the_run(tmp_path: Path) -> None:
    from bots.cli import local_token

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    token = local_token(blocked / "data")
    assert len(token) >= 32 and local_token(blocked / "data") != token
