"""Peak load: 1, 10 and 50 answers at once through the local host, under Slack's rate tiers.

Each round starts a fresh host as a subprocess, fires N signed ``app_mention`` events at it at
the same moment (one HTTP connection each), and waits until every answer is final in Slack or a
cap passes. Three hosts are measured per round, in the same run, at the same N:

- **native**: ``chatbot serve``, as shipped: Slack's native streaming (``chat.startStream`` /
  ``appendStream`` / ``stopStream``, a loading status before the first text) for the replies
  whose stream is admitted (a stop fits in Slack's Tier 2, about 20 a minute per workspace), the
  paced path for the others; the report counts both.
- **paced**: ``chatbot serve`` with ``CHATBOT_SLACK_STREAMING=off``: a placeholder and paced
  ``chat.update`` edits under our rate budget (the fallback where Slack will not stream).
- **baseline**: the same host with the reply path of a naive Slack GPT bot
  (``python -m bench.peak_baseline serve``): a placeholder, ``chat.update`` every 8 deltas and
  at the end, no budget, giving up at the first error.

Around the host, everything runs in this process on 127.0.0.1:

- the Slack Web API stand-in of ``tests/standins/slack.py`` with its rate tiers on
  (``chat.update`` 50 in any 60 s per workspace; ``chat.postMessage`` a bucket of 3 per channel
  refilling at 1 a second; ``chat.appendStream`` 100, ``chat.stopStream`` and
  ``chat.startStream`` 20 in any 60 s per workspace) and a fixed latency on the reply methods;
- a Bedrock ``ConverseStream`` stand-in (:class:`PacedBedrock`) streaming the same answer to
  every request at a fixed pace, in AWS's event-stream framing, reached through
  ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, so the real boto3 path runs in the host. It notes when it
  sends each answer's first delta, keyed by a marker in the question.

Every timestamp is this process's ``time.monotonic()``: the ack (the HTTP response read), the
stand-ins' arrivals and the model's first delta. Peak resident memory is the host's ``VmHWM``
from ``/proc/<pid>/status`` at the end of the round.

The driver (:func:`run_round`) is exercised by ``tests/test_bench_peak.py`` at N=2. Run with
``python -m bench.peak`` (about a minute and a half when every round ends well, at most about 7
minutes when rounds run to their caps; writes its section of docs/benchmarks.md), or
``python -m bench.peak --quick`` (N=1 and 10 only, prints, writes nothing). Unlike the other
benchmarks this one imports the stand-ins from ``tests/`` (the Slack tiers live there).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    machine_info,
    markdown_table,
    p50,
    p95,
    ratio,
    verdict,
    write_section,
)
from tests import slack_requests
from tests.standins import LoopbackHttpService, LoopbackServer, TrackingHandler
from tests.standins.bedrock import event_message
from tests.standins.slack import SlackCall, SlackStandIn

SECTION = "peak"
REPO = Path(__file__).resolve().parent.parent
clock = time.monotonic

ROUNDS = (1, 10, 50)
QUICK_ROUNDS = (1, 10)
SIDES = ("native", "paced", "baseline")
OURS = ("native", "paced")  # the sides that run our reply path (targets apply to both)
STREAMING = {"native": "auto", "paced": "off", "baseline": "off"}  # CHATBOT_SLACK_STREAMING
REPLY_METHODS = (
    "chat.postMessage",
    "chat.update",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "assistant.threads.setStatus",
)
STREAM_METHODS = frozenset({"chat.startStream", "chat.appendStream", "chat.stopStream"})
PER_CHANNEL = 2  # at most two answers share a channel: chat.postMessage is limited per channel
# A round ends when every answer is final, when every job has ended, or at a cap: generous at
# N=50 (whose target is 90 s), shorter below, where answers need seconds.
CAP_S = 240.0
SMALL_CAP_S = 90.0
QUIET_S = 75.0  # ... or when the model is done and Slack has heard nothing for this long
SLACK_LATENCY_S = 0.1  # on every reply method, before the answer is sent back
ACK_LIMIT_S = 3.0  # Slack retries an event not acknowledged within 3 s
HOST_START_TIMEOUT_S = 60.0

SIGNING_SECRET = "bench-signing-secret-dummy"
BOT_TOKEN = "xoxb-bench-dummy"
BOT_USER = slack_requests.DEFAULT_BOT_USER
ASKER = "U1"

# Targets at N=50, for ours (native and paced).
TARGET_N = 50
TARGET_429_PCT = 1.0
TARGET_FIRST_VISIBLE_P95_S = 1.0
TARGET_TEXT_P95_S = 1.5
TARGET_LAST_FINAL_S = 90.0

_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "Staging promotes a build once every check passes then the pipeline waits for a person "
    "to approve production because release notes need review and the deploy job tags the "
    "commit runs the database migrations drains old tasks and shifts traffic in small steps "
    "while alarms watch error rates and latency so a bad release rolls back on its own"
).split()
_MARKER = re.compile(r"peak-[0-9a-f]{6}-q\d{3}")
_MODEL_PATH = re.compile(r"^/model/[^/?]+/converse-stream/?(?:\?.*)?$")
_OWNED_ENV = re.compile(r"^(CHATBOT_|SLACK_|AWS_|MICROSOFT_|BEDROCK_|POWERTOOLS_)")
_PROXY_ENV = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


@dataclass(frozen=True)
class ModelPace:
    """What the model stand-in streams: after ``ttft`` seconds the first of ``deltas`` text
    deltas, then one every ``gap`` seconds."""

    ttft: float = 0.8
    deltas: int = 60
    gap: float = 0.05

    def chunks(self) -> list[str]:
        return [("" if i == 0 else " ") + _WORDS[i % len(_WORDS)] for i in range(self.deltas)]

    @property
    def answer(self) -> str:
        return "".join(self.chunks())


@dataclass(frozen=True)
class SlackTiers:
    update_per_minute: int = 50
    post_per_second: float = 1.0
    post_burst: int = 3
    append_per_minute: int = 100
    stop_per_minute: int = 20  # chat.stopStream, Tier 2
    start_per_minute: int = 20  # chat.startStream: no tier published, Tier 2 assumed


# -- the model stand-in --------------------------------------------------------------------------


class _BurstServer(LoopbackServer):
    request_queue_size = 256  # fifty streams open at once must not wait on the listen queue


class _ModelHandler(TrackingHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not _MODEL_PATH.match(self.path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        found = _MARKER.search(raw.decode("utf-8", errors="replace"))
        standin: PacedBedrock = self.server.standin
        try:
            standin.stream(self, found.group(0) if found else "")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()


class PacedBedrock(LoopbackHttpService):
    """Bedrock ``ConverseStream`` on 127.0.0.1: every request gets the same answer, paced by
    :class:`ModelPace`, each on its own thread. Notes per question marker when the first delta
    went out and when the stream ended."""

    handler_class = _ModelHandler
    thread_name = "peak-bedrock"
    description = "the paced Bedrock stand-in"

    def __init__(self, pace: ModelPace) -> None:
        super().__init__()
        self.pace = pace
        self._lock = threading.Lock()
        self.requests = 0
        self.first_delta: dict[str, float] = {}
        self.ended: dict[str, float] = {}

    def _make_server(self) -> LoopbackServer:
        return _BurstServer((self._host, 0), self.handler_class)

    def stream(self, handler: _ModelHandler, marker: str) -> None:
        started = clock()
        with self._lock:
            self.requests += 1
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.amazon.eventstream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("x-amzn-RequestId", f"peak-{marker}")
        handler.end_headers()
        handler.chunk(event_message("messageStart", {"role": "assistant"}))
        time.sleep(self.pace.ttft)
        for i, text in enumerate(self.pace.chunks()):
            if i:
                time.sleep(self.pace.gap)
            delta = {"contentBlockIndex": 0, "delta": {"text": text}}
            handler.chunk(event_message("contentBlockDelta", delta))
            if i == 0:
                with self._lock:
                    self.first_delta.setdefault(marker, clock())
        handler.chunk(event_message("contentBlockStop", {"contentBlockIndex": 0}))
        handler.chunk(event_message("messageStop", {"stopReason": "end_turn"}))
        usage = {"inputTokens": 420, "outputTokens": self.pace.deltas, "totalTokens": 480}
        latency_ms = int((clock() - started) * 1000)
        handler.chunk(
            event_message("metadata", {"usage": usage, "metrics": {"latencyMs": latency_ms}})
        )
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
        with self._lock:
            self.ended.setdefault(marker, clock())

    def streams_ended(self) -> int:
        with self._lock:
            return len(self.ended)

    def last_end(self) -> float:
        with self._lock:
            return max(self.ended.values(), default=-math.inf)


# -- the host ------------------------------------------------------------------------------------


def host_command(side: str) -> list[str]:
    if side == "baseline":
        return [sys.executable, "-m", "bench.peak_baseline", "serve"]
    script = Path(sys.executable).parent / "chatbot"
    return (
        [str(script), "serve"] if script.exists() else [sys.executable, "-m", "bots.cli", "serve"]
    )


def host_env(
    *, slack_api_url: str, model_url: str, data_dir: Path, port: int, streaming: str = "auto"
) -> dict[str, str]:
    """The host's environment: dummy credentials, every endpoint on 127.0.0.1."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not _OWNED_ENV.match(k) and k.lower() not in _PROXY_ENV
    }
    env.update(
        {
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_API_URL": slack_api_url,
            "CHATBOT_DATA_DIR": str(data_dir),
            "CHATBOT_HOST": "127.0.0.1",
            "CHATBOT_PORT": str(port),
            "CHATBOT_LLM": "bedrock",
            "CHATBOT_SLACK_STREAMING": streaming,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": model_url,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(data_dir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(data_dir / "no-aws-credentials"),
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Host:
    """One host subprocess; reads its JSON log lines from stderr as they come."""

    def __init__(self, side: str, env: dict[str, str], port: int) -> None:
        self.side = side
        self.command = host_command(side)
        self.env = env
        self.port = port
        self._lock = threading.Lock()
        self.answered = 0
        self.answered_incomplete = 0
        self.failed_jobs = 0
        self.warnings: Counter[str] = Counter()  # "LEVEL: message" of WARNING and above
        self.other_lines: Counter[str] = Counter()  # stderr lines that are not JSON logs
        self.exceptions: Counter[str] = Counter()  # the last line of each logged traceback
        self.settings: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def jobs_ended(self) -> int:
        with self._lock:
            return self.answered + self.failed_jobs

    def start(self) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and entry points
            self.command,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, name=f"host-{self.side}", daemon=True)
        self._reader.start()
        deadline = clock() + HOST_START_TIMEOUT_S
        while clock() < deadline:
            if not self.alive:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/healthz")
                    response = conn.getresponse()
                    health = json.loads(response.read() or b"{}")
                finally:
                    conn.close()
                if response.status == 200 and health.get("slack") and health.get("llm"):
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"benchmark invalid: the {self.side} host did not come up: {self.describe_output()}"
        )

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._note(line)

    def _note(self, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        with self._lock:
            if not isinstance(record, dict):
                if line.strip():
                    self.other_lines[line.strip()[:120]] += 1
                return
            message = str(record.get("message", ""))
            level = str(record.get("level", ""))
            if message == "answered":
                self.answered += 1
                self.answered_incomplete += record.get("complete") is False
            elif message == "job failed":
                self.failed_jobs += 1
            elif message == "chatbot serving" and isinstance(record.get("settings"), dict):
                self.settings = record["settings"]
            if level in ("WARNING", "ERROR", "CRITICAL"):
                self.warnings[f"{level}: {message}"] += 1
            trace = record.get("exception")
            if isinstance(trace, str) and trace.strip():
                self.exceptions[trace.strip().splitlines()[-1][:200]] += 1

    def forget_start_up(self) -> None:
        """Count only what the host logs from here on (not its start-up notices)."""
        with self._lock:
            self.warnings.clear()
            self.other_lines.clear()
            self.exceptions.clear()

    def memory_kb(self) -> dict[str, int]:
        """``VmHWM`` (peak resident) and ``VmRSS`` of the host, in kB."""
        found: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    found[name] = int(value.split()[0])
        return found

    def describe_output(self) -> str:
        with self._lock:
            lines = list(self.other_lines)[-5:]
            warnings = dict(self.warnings)
        return f"exit={self._proc.poll() if self._proc else None}; stderr={lines}; log={warnings}"

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)


# -- the burst -----------------------------------------------------------------------------------


@dataclass
class Mention:
    index: int
    channel: str
    ts: str
    marker: str
    body: bytes
    headers: dict[str, str]
    sent_at: float = math.nan
    ack_at: float = math.nan
    status: int = 0
    error: str = ""

    @property
    def ack_s(self) -> float:
        return self.ack_at - self.sent_at


def channel_id(index: int) -> str:
    return f"CPEAK{index:02d}"


def make_mentions(n: int, round_id: str, slack: SlackStandIn) -> list[Mention]:
    """N mentions, each a new top-level message (a distinct ts) in its own thread, at most
    :data:`PER_CHANNEL` to a channel; the channels and messages exist in the stand-in."""
    mentions = []
    for i in range(n):
        channel = channel_id(i // PER_CHANNEL)
        if i % PER_CHANNEL == 0:
            slack.add_channel(channel, f"peak-{i // PER_CHANNEL:02d}")
        marker = f"peak-{round_id}-q{i:03d}"
        text = f"<@{BOT_USER}> {marker}: what does the deploy pipeline do after staging?"
        ts = slack.add_message(channel, text, ASKER)
        event = slack_requests.app_mention(text, channel=channel, user=ASKER, ts=ts)
        body, headers = slack_requests.event_callback(event, secret=SIGNING_SECRET)
        mentions.append(Mention(i, channel, ts, marker, body, headers))
    return mentions


def fire(mentions: Sequence[Mention], port: int, timeout: float = 30.0) -> float:
    """Send every mention at once, each on a new connection; returns the moment of the burst."""
    barrier = threading.Barrier(len(mentions) + 1)

    def send(mention: Mention) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            barrier.wait()
            mention.sent_at = clock()
            conn.request("POST", "/slack/events", body=mention.body, headers=mention.headers)
            response = conn.getresponse()
            response.read()
            mention.ack_at = clock()
            mention.status = response.status
        except (OSError, http.client.HTTPException) as exc:
            mention.error = type(exc).__name__
        finally:
            conn.close()

    threads = [threading.Thread(target=send, args=(m,), daemon=True) for m in mentions]
    for thread in threads:
        thread.start()
    barrier.wait()
    burst_at = clock()
    for thread in threads:
        thread.join(timeout + 5)
    return burst_at


# -- following the answers in Slack --------------------------------------------------------------


def shown_texts(message: Mapping[str, Any]) -> list[str]:
    """The texts a message (or a call's parameters) shows: ``text``, and the text of its
    markdown and section blocks."""
    texts = [message["text"]] if isinstance(message.get("text"), str) else []
    blocks = message.get("blocks")
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "markdown" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "section" and isinstance(block.get("text"), dict):
            texts.append(str(block["text"].get("text", "")))
    return texts


@dataclass
class Trace:
    """One answer as Slack saw it (arrival times of accepted calls)."""

    mention: Mention
    # first accepted chat.postMessage, chat.startStream or status in the thread
    placeholder_at: float = math.inf
    first_text_at: float = math.inf  # first accepted call showing the answer's first words
    final_at: float = math.inf  # first accepted call showing the whole answer
    complete: bool = False  # at the end: a message in the thread shows the whole answer
    streamed: bool = False  # Slack accepted a chat.startStream in the thread (native streaming)
    shown: list[tuple[float, int]] = field(default_factory=list)  # (arrival, answer chars shown)


def _common_prefix(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


class Tracker:
    """Reads the stand-in's call log as it grows and follows each answer by channel + thread."""

    def __init__(self, mentions: Sequence[Mention], answer: str, first_words: str) -> None:
        self.answer = answer
        self.first_words = first_words
        self.traces = {(m.channel, m.ts): Trace(m) for m in mentions}
        self._by_message: dict[tuple[str, str], Trace] = {}
        self._streamed: dict[tuple[str, str], str] = {}  # a streamed message's text so far
        self._seen = 0
        self.finals = 0
        self.last_call_at = -math.inf

    def feed(self, calls: Sequence[SlackCall]) -> None:
        for call in calls[self._seen :]:
            self.last_call_at = max(self.last_call_at, call.at)
            self._note(call)
        self._seen = len(calls)

    def _note(self, call: SlackCall) -> None:
        if call.status != 200 or not call.ok:
            return
        channel = str(call.params.get("channel") or "")
        method = call.method
        final = method in ("chat.postMessage", "chat.update", "chat.stopStream")
        if method == "assistant.threads.setStatus":  # the native path's first visible sign
            where = (str(call.params.get("channel_id") or ""), str(call.params.get("thread_ts")))
            status_of = self.traces.get(where)
            if status_of is not None and call.params.get("status"):
                status_of.placeholder_at = min(status_of.placeholder_at, call.at)
            return
        if method in ("chat.postMessage", "chat.startStream"):
            trace = self.traces.get((channel, str(call.params.get("thread_ts") or "")))
            if trace is None:
                return
            message = (channel, str(call.response.get("ts") or ""))
            self._by_message[message] = trace
            trace.streamed = trace.streamed or method == "chat.startStream"
            trace.placeholder_at = min(trace.placeholder_at, call.at)
        elif method in ("chat.update", "chat.appendStream", "chat.stopStream"):
            message = (channel, str(call.params.get("ts") or ""))
            found = self._by_message.get(message)
            if found is None:
                return
            trace = found
        else:
            return
        if method in STREAM_METHODS:
            streamed = self._streamed.get(message, "") + str(call.params.get("markdown_text") or "")
            self._streamed[message] = streamed
            texts = [streamed]
        else:
            texts = shown_texts(call.params)
        shown = max((_common_prefix(t, self.answer) for t in texts), default=0)
        trace.shown.append((call.at, shown))
        if any(t.startswith(self.first_words) for t in texts):
            trace.first_text_at = min(trace.first_text_at, call.at)
        # Final: a message that shows the whole answer and is no longer streaming.
        if final and self.answer in texts and trace.final_at == math.inf:
            trace.final_at = call.at
            self.finals += 1

    def settle(self, slack: SlackStandIn) -> None:
        """Completeness as the thread reads at the end, not as the calls went."""
        for (channel, ts), trace in self.traces.items():
            thread = slack.messages(channel, ts)
            trace.complete = any(
                self.answer in shown_texts(m) for m in thread if m.get("bot_id") == slack.bot_id
            )


# -- one round -----------------------------------------------------------------------------------


@dataclass
class RoundResult:
    side: str
    n: int
    channels: int
    complete: int
    connection_errors: int
    error_kinds: dict[str, int]
    bad_acks: int  # answered, but not with a 2xx
    slow_acks: int  # over 3 s: Slack would have retried
    ack_s: list[float]
    slack_calls: int
    posts: int
    updates: int
    streams: int  # chat.startStream + chat.appendStream + chat.stopStream
    statuses: int  # assistant.threads.setStatus
    rate_limited: int  # calls answered 429
    rate_limited_by_method: dict[str, int]
    first_visible_s: list[float]  # ack -> first accepted post, stream start or status in the thread
    text_visible_s: list[float]  # model's first delta -> first accepted call showing text
    final_s: list[float]  # burst -> the whole answer shown, for answers that got there
    final_after_model_s: list[float]  # the model's last event -> the whole answer shown
    shown_at_model_end: list[float]  # share of the answer on screen when the model finished
    memory_kb: dict[str, int]
    duration_s: float
    ended_by: str
    answered_logged: int
    answered_incomplete: int
    model_streams: int
    host_warnings: dict[str, int] = field(default_factory=dict)
    host_other_lines: dict[str, int] = field(default_factory=dict)
    host_exceptions: dict[str, int] = field(default_factory=dict)
    host_settings: dict[str, Any] = field(default_factory=dict)
    streamed_natively: int = 0  # answers with an accepted chat.startStream; the rest went paced

    @property
    def calls_per_answer(self) -> float:
        return self.slack_calls / self.n if self.n else math.nan

    @property
    def rate_limited_pct(self) -> float:
        return 100.0 * self.rate_limited / self.slack_calls if self.slack_calls else 0.0

    @property
    def last_final_s(self) -> float:
        """Burst to the last answer final; infinite unless every answer got there."""
        return max(self.final_s) if len(self.final_s) == self.n and self.final_s else math.inf


def run_round(
    side: str,
    n: int,
    *,
    pace: ModelPace | None = None,
    tiers: SlackTiers | None = None,
    cap_s: float | None = None,
    slack_latency_s: float = SLACK_LATENCY_S,
) -> RoundResult:
    """One burst of ``n`` mentions against a fresh ``side`` host and fresh stand-ins."""
    pace = pace or ModelPace()
    tiers = tiers or SlackTiers()
    cap_s = cap_s if cap_s is not None else (CAP_S if n >= TARGET_N else SMALL_CAP_S)
    round_id = secrets.token_hex(3)
    with (
        SlackStandIn(bot_token=BOT_TOKEN) as slack,
        PacedBedrock(pace) as model,
        tempfile.TemporaryDirectory(prefix="bench-peak-") as tmp,
    ):
        for method in REPLY_METHODS:
            slack.set_latency(method, slack_latency_s)
        slack.enforce_rate_limits(
            tiers.update_per_minute,
            tiers.post_per_second,
            tiers.post_burst,
            tiers.append_per_minute,
            tiers.stop_per_minute,
            tiers.start_per_minute,
        )
        port = free_port()
        env = host_env(
            slack_api_url=slack.api_url,
            model_url=model.url,
            data_dir=Path(tmp),
            port=port,
            streaming=STREAMING[side],
        )
        host = Host(side, env, port)
        host.start()
        try:
            mentions = make_mentions(n, round_id, slack)
            slack.clear_calls()
            host.forget_start_up()
            tracker = Tracker(mentions, pace.answer, pace.chunks()[0])
            burst_at = fire(mentions, port)
            ended_by = _wait(tracker, slack, host, model, n, burst_at, cap_s)
            duration = clock() - burst_at
            memory = host.memory_kb()
            calls = slack.calls  # the round's calls, not those of the host's shutdown
            refused = dict(slack.rate_limited)  # the stand-in's own count, to cross-check
            tracker.feed(calls)
            tracker.settle(slack)
        finally:
            host.stop()
        return _result(
            side,
            mentions,
            tracker,
            calls=calls,
            refused=refused,
            model=model,
            host=host,
            burst_at=burst_at,
            memory=memory,
            duration=duration,
            ended_by=ended_by,
        )


def _wait(
    tracker: Tracker,
    slack: SlackStandIn,
    host: Host,
    model: PacedBedrock,
    n: int,
    burst_at: float,
    cap_s: float,
) -> str:
    while True:
        tracker.feed(slack.calls)
        now = clock()
        if tracker.finals >= n:
            return "every answer final"
        if host.jobs_ended >= n:
            return "every job ended (host log)"
        if not host.alive:
            return "the host exited"
        if now - burst_at >= cap_s:
            return f"the cap ({cap_s:.0f} s)"
        last_activity = max(tracker.last_call_at, model.last_end())
        if model.streams_ended() >= n and now - last_activity >= QUIET_S:
            return f"quiet for {QUIET_S:.0f} s"
        time.sleep(0.1)


def _result(
    side: str,
    mentions: Sequence[Mention],
    tracker: Tracker,
    *,
    calls: Sequence[SlackCall],
    refused: dict[str, int],
    model: PacedBedrock,
    host: Host,
    burst_at: float,
    memory: dict[str, int],
    duration: float,
    ended_by: str,
) -> RoundResult:
    traces = list(tracker.traces.values())
    acked = [m for m in mentions if not m.error]
    return RoundResult(
        side=side,
        n=len(mentions),
        channels=len({m.channel for m in mentions}),
        complete=sum(t.complete for t in traces),
        connection_errors=sum(bool(m.error) for m in mentions),
        error_kinds=dict(Counter(m.error for m in mentions if m.error)),
        bad_acks=sum(not 200 <= m.status < 300 for m in acked),
        slow_acks=sum(m.ack_s > ACK_LIMIT_S for m in acked),
        ack_s=[m.ack_s for m in acked],
        slack_calls=len(calls),
        posts=sum(c.method == "chat.postMessage" for c in calls),
        updates=sum(c.method == "chat.update" for c in calls),
        streams=sum(c.method in STREAM_METHODS for c in calls),
        statuses=sum(c.method == "assistant.threads.setStatus" for c in calls),
        rate_limited=sum(c.status == 429 for c in calls),
        rate_limited_by_method=refused,
        first_visible_s=[
            t.placeholder_at - t.mention.ack_at
            for t in traces
            if t.placeholder_at < math.inf and not math.isnan(t.mention.ack_at)
        ],
        text_visible_s=[
            t.first_text_at - model.first_delta[t.mention.marker]
            for t in traces
            if t.first_text_at < math.inf and t.mention.marker in model.first_delta
        ],
        final_s=[t.final_at - burst_at for t in traces if t.final_at < math.inf],
        final_after_model_s=[
            t.final_at - model.ended[t.mention.marker]
            for t in traces
            if t.final_at < math.inf and t.mention.marker in model.ended
        ],
        shown_at_model_end=[
            max((chars for at, chars in t.shown if at <= model.ended[t.mention.marker]), default=0)
            / len(tracker.answer)
            for t in traces
            if t.mention.marker in model.ended
        ],
        memory_kb=memory,
        duration_s=duration,
        ended_by=ended_by,
        answered_logged=host.answered,
        answered_incomplete=host.answered_incomplete,
        model_streams=model.requests,
        host_warnings=dict(host.warnings),
        host_other_lines=dict(host.other_lines),
        host_exceptions=dict(host.exceptions),
        host_settings=dict(host.settings),
        streamed_natively=sum(t.streamed for t in traces),
    )


# -- report --------------------------------------------------------------------------------------


def secs(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "—"
    return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"


def mib(kb: int | None) -> str:
    return "—" if not kb else f"{kb / 1024:.0f} MiB"


def _pct(result: RoundResult) -> str:
    return f"{result.rate_limited} / {result.slack_calls} ({result.rate_limited_pct:.1f}%)"


def _last_final(result: RoundResult) -> str:
    if result.last_final_s < math.inf:
        return secs(result.last_final_s)
    return f"not all final ({len(result.final_s)}/{result.n})"


def _ratio(ours: float, base: float) -> str:
    if any(math.isnan(v) or math.isinf(v) for v in (ours, base)):
        return "—"
    return ratio(ours, base)


def round_table(native: RoundResult, paced: RoundResult, base: RoundResult) -> str:
    """One round's measures per side, with native against paced and paced against baseline."""

    def row(name: str, fn: Any, key: Any = None) -> list[str]:
        ratios = ["", ""]
        if key is not None:
            ratios = [_ratio(key(native), key(paced)), _ratio(key(paced), key(base))]
        return [name, fn(native), fn(paced), fn(base), *ratios]

    def spread(values: Any) -> Any:
        return lambda r: f"{secs(p50(values(r)))} / {secs(p95(values(r)))}"

    rows = [
        row("answers complete", lambda r: f"{r.complete}/{r.n}"),
        row("answers streamed natively / paced", _paths),
        row(
            "ingress connection errors",
            lambda r: str(r.connection_errors) + _kinds(r.error_kinds),
        ),
        row("acks not 2xx / over 3 s", lambda r: f"{r.bad_acks} / {r.slow_acks}"),
        row("ack p50 / p95", spread(lambda r: r.ack_s), lambda r: p95(r.ack_s)),
        row(
            "Slack API calls per answer",
            lambda r: f"{r.calls_per_answer:.1f}",
            lambda r: r.calls_per_answer,
        ),
        row(
            "Slack calls: postMessage + update + stream (start, append, stop) + status",
            lambda r: f"{r.posts} + {r.updates} + {r.streams} + {r.statuses}",
        ),
        row("429s / Slack calls", _pct),
        row(
            "first visible sign p50 / p95 (from ack)",
            spread(lambda r: r.first_visible_s),
            lambda r: p95(r.first_visible_s),
        ),
        row(
            "first token → visible text p50 / p95",
            spread(lambda r: r.text_visible_s),
            lambda r: p95(r.text_visible_s),
        ),
        row(
            "share of the answer shown when the model finished, p50 / min",
            lambda r: (
                f"{_share(p50(r.shown_at_model_end))} / "
                f"{_share(min(r.shown_at_model_end, default=math.nan))}"
            ),
        ),
        row(
            "model done → answer final p50 / p95",
            spread(lambda r: r.final_after_model_s),
            lambda r: p95(r.final_after_model_s),
        ),
        row("burst → last answer final", _last_final, lambda r: r.last_final_s),
        row(
            "host peak resident memory (VmHWM)",
            lambda r: mib(r.memory_kb.get("VmHWM")),
            lambda r: r.memory_kb.get("VmHWM", math.nan),
        ),
        row("round ended by", lambda r: f"{r.ended_by} after {r.duration_s:.0f} s"),
    ]
    return markdown_table(
        ["measure", "native", "paced", "baseline", "native/paced", "paced/baseline"], rows
    )


def _paths(r: RoundResult) -> str:
    return f"{r.streamed_natively} / {r.n - r.streamed_natively}"


def _share(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0%}"


def _kinds(kinds: Mapping[str, int]) -> str:
    return " (" + ", ".join(f"{k} ×{v}" for k, v in kinds.items()) + ")" if kinds else ""


def _checks(r: RoundResult) -> list[tuple[str, str, str, bool]]:
    """(target name, figure, target, met) for one of our sides."""
    return [
        ("answers complete", f"{r.complete}/{r.n}", f"{r.n}/{r.n}", r.complete == r.n),
        (
            "ingress connection errors",
            str(r.connection_errors),
            "0",
            r.connection_errors == 0,
        ),
        (
            "429s / Slack calls",
            _pct(r),
            f"≤ {TARGET_429_PCT:.0f}%",
            r.rate_limited_pct <= TARGET_429_PCT,
        ),
        (
            "first visible sign p95, from the ack",
            secs(p95(r.first_visible_s)),
            f"≤ {TARGET_FIRST_VISIBLE_P95_S:.1f} s",
            len(r.first_visible_s) == r.n and p95(r.first_visible_s) <= TARGET_FIRST_VISIBLE_P95_S,
        ),
        (
            "first token → visible text p95",
            secs(p95(r.text_visible_s)),
            f"≤ {TARGET_TEXT_P95_S:.1f} s",
            len(r.text_visible_s) == r.n and p95(r.text_visible_s) <= TARGET_TEXT_P95_S,
        ),
        (
            "burst → last answer final",
            _last_final(r),
            f"≤ {TARGET_LAST_FINAL_S:.0f} s",
            r.last_final_s <= TARGET_LAST_FINAL_S,
        ),
    ]


def targets(native: RoundResult, paced: RoundResult, base: RoundResult) -> tuple[str, list[str]]:
    """The summary at :data:`TARGET_N`: each target with its verdict for native and for paced,
    and the misses (named with the side)."""
    ours = {"native": _checks(native), "paced": _checks(paced)}
    rows = []
    for i, (name, _, target, _) in enumerate(ours["native"]):
        n_fig, n_ok = ours["native"][i][1], ours["native"][i][3]
        p_fig, p_ok = ours["paced"][i][1], ours["paced"][i][3]
        b_fig = _checks(base)[i][1]
        rows.append([name, n_fig, p_fig, b_fig, target, verdict(n_ok), verdict(p_ok)])
    rows.append(
        [
            "Slack API calls per answer",
            f"{native.calls_per_answer:.1f}",
            f"{paced.calls_per_answer:.1f}",
            f"{base.calls_per_answer:.1f}",
            "(reported; native/paced "
            + _ratio(native.calls_per_answer, paced.calls_per_answer)
            + ")",
            "",
            "",
        ]
    )
    rows.append(
        [
            "answers streamed natively / paced",
            _paths(native),
            _paths(paced),
            _paths(base),
            "(reported; native: as many as Slack's stop tier admits)",
            "",
            "",
        ]
    )
    rows.append(
        [
            "host peak resident memory (VmHWM)",
            mib(native.memory_kb.get("VmHWM")),
            mib(paced.memory_kb.get("VmHWM")),
            mib(base.memory_kb.get("VmHWM")),
            "(reported)",
            "",
            "",
        ]
    )
    table = markdown_table(
        [
            f"at N={native.n}",
            "native",
            "paced",
            "baseline",
            "target",
            "native result",
            "paced result",
        ],
        rows,
    )
    misses = [
        f"{name} ({side})" for side, checks in ours.items() for name, _, _, ok in checks if not ok
    ]
    return table, misses


def host_notes(results: Sequence[RoundResult]) -> str:
    lines = []
    for r in results:
        logged = dict(r.host_warnings)
        other = dict(list(r.host_other_lines.items())[:4])
        if logged or other or r.answered_incomplete:
            lines.append(
                f"- {r.side}, N={r.n}: `answered` lines {r.answered_logged} "
                f"({r.answered_incomplete} incomplete); warnings/errors {logged or 'none'}"
                + (f"; other stderr {other}" if other else "")
                + (f"; exceptions {r.host_exceptions}" if r.host_exceptions else "")
            )
    return "\n".join(lines) or "- none"


def report(results: Sequence[RoundResult], took: float, *, pace: ModelPace) -> tuple[str, str]:
    by = {(r.side, r.n): r for r in results}
    rounds = sorted({r.n for r in results})
    tables = []
    for n in rounds:
        native, paced, base = (by[(side, n)] for side in SIDES)
        tables.append(
            f"### N = {n} ({native.channels} channel{'s' if native.channels > 1 else ''})\n\n"
            + round_table(native, paced, base)
        )
    misses: list[str] = []
    if all((side, TARGET_N) in by for side in SIDES):
        summary, misses = targets(*(by[(side, TARGET_N)] for side in SIDES))
    else:
        summary = f"(no N={TARGET_N} round in this run: targets not evaluated)"
    workers = next(
        (r.host_settings.get("CHATBOT_LOCAL_WORKERS") for r in results if r.host_settings), None
    )
    answer = pace.answer
    tiers = SlackTiers()
    section = f"""
## Peak load: concurrent answers through the local host (`bench.peak`)

Measured {machine_info()}.
Reproduce: `.venv/bin/python -m bench.peak` (this run took {took:.0f} s; `--quick` runs N=1 and
10 only and writes nothing).

{summary}

{chr(10).join(tables)}

**What runs.** Per round and per side a fresh host subprocess on a free 127.0.0.1 port:
**native** is `chatbot serve` as shipped (`CHATBOT_SLACK_STREAMING=auto`: a loading status with
`assistant.threads.setStatus`, then `chat.startStream`, `chat.appendStream` and `chat.stopStream`
with the sources and feedback buttons, for each reply whose stream is admitted: its stop fits
now in Slack's Tier 2 beside every open stream's stop, and a start is free; any other reply
goes the paced way at once, from the same status); **paced** is the same with
`CHATBOT_SLACK_STREAMING=off` (a placeholder, then paced `chat.update` edits under the rate
budget: the path replies take where Slack will not stream); the **baseline** is
`python -m bench.peak_baseline serve`, the same host (ingress, in-process queue, worker, history,
prompt, Bedrock client) whose Slack replies take the path popular Slack GPT bots take: post a
placeholder, `chat.update` the whole text every 8 deltas and at the end, no rate budget, a
`WebClient` with no retry handlers, and give up at the first error (the bench patches the host's
wiring before `bots.cli.main`; production code has no switch for it). Host environment:
`SLACK_SIGNING_SECRET` and `SLACK_BOT_TOKEN` (dummies), `SLACK_API_URL` at the Slack stand-in,
`CHATBOT_LLM=bedrock` with `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` at the model stand-in and dummy AWS
credentials,
`CHATBOT_DATA_DIR` a fresh temporary directory, `CHATBOT_PORT`; everything else at its default
(the host reported `CHATBOT_LOCAL_WORKERS` = {workers if workers is not None else "not reported"}).

**The burst.** N `app_mention` events, each a new top-level message (its own ts, so its own
thread and conversation), v0-signed with the real algorithm, all in one workspace, sent at the
same moment (a barrier) from N threads, each on a new HTTP connection to `POST /slack/events`.
At most {PER_CHANNEL} mentions share a channel (25 channels at N=50), because Slack limits
`chat.postMessage` per channel. The round ends when every answer is final, when the host has
logged the end of every job, when the model is done and Slack has heard nothing for {QUIET_S:.0f} s,
or at a cap ({CAP_S:.0f} s at N={TARGET_N}, {SMALL_CAP_S:.0f} s below); then the host is stopped.

**Slack** is `tests/standins/slack.py` with its rate tiers on: `chat.update` at most
{tiers.update_per_minute} accepted calls in any sliding 60 s window for the workspace (Tier 3);
`chat.postMessage` a token bucket per channel, {tiers.post_burst} deep, refilling at
{tiers.post_per_second:g} a second, shared with `chat.startStream` (it posts a message);
`chat.appendStream` at most {tiers.append_per_minute} in any 60 s for the workspace (Tier 4);
`chat.stopStream` at most {tiers.stop_per_minute} and `chat.startStream` at most
{tiers.start_per_minute} in any 60 s for the workspace (Tier 2; Slack publishes no tier for
`chat.startStream`, so Tier 2 is assumed). Over a limit: HTTP 429, `ratelimited`,
`Retry-After` in whole seconds; a refused call does not count toward the limit. Every reply
method (posts, edits, the three streaming methods and `assistant.threads.setStatus`) answers
after {SLACK_LATENCY_S * 1000:.0f} ms. **The model**
streams the same answer to every request:
`messageStart` at once, the first of {pace.deltas} text deltas after {pace.ttft:.1f} s, then one
every {pace.gap * 1000:.0f} ms (about {pace.ttft + (pace.deltas - 1) * pace.gap:.1f} s per answer,
{len(answer)} characters), then `messageStop` and `metadata` with usage. It streams each answer on
its own thread, so fifty streams run side by side.

**Measures.** All timestamps are the bench process's monotonic clock. *Answers complete*: at the
end, a bot message in the mention's thread whose text (or markdown block) is exactly the whole
answer. *Ingress connection errors*: bursts that got no HTTP response (refused, reset, timed
out after 30 s). *429s / Slack calls*: every call the stand-in recorded in the round.
*Slack API calls per answer*: every call of the round over N. *First visible sign*: from the
mention's ack (its HTTP response read) to the arrival of the first accepted call that shows
something in its thread: the placeholder's `chat.postMessage` (paced, baseline), the loading
status or the stream's start (native); negative when it arrives before the client has read the
ack. *First token → visible text*: from the model stand-in sending that
answer's first delta (answers matched by a marker in the question) to the arrival of the first
accepted call in the thread whose text begins with the answer's first word. *Share of the
answer shown when the model finished*: the longest prefix of the answer that an accepted call in
the thread had put on screen by the time the model stand-in sent that answer's last event (none
for an answer whose stream was abandoned: the baseline closes it when it gives up).
*Model done → answer final*: from the model stand-in's last event of that answer to the arrival
of the call that made the answer whole and final in Slack (for native, the `chat.stopStream`
that ends a stream whose text is the whole answer): how long a finished answer waits for Slack's
budget. *Burst → last answer final*: from the barrier to the arrival of the last such call.
*Peak resident memory*: `VmHWM` of the host process at the end of the round.
The paced 50-answer round cannot end much before a minute: Tier 3 allows 50 `chat.update` a
minute for the whole workspace, and 50 answers each need a visible first edit and a final one.
Native streaming is bound by Tier 2 instead: about 20 `chat.stopStream` a minute per workspace,
so at most that many streams are admitted in a minute, and the other answers of a burst take the
paced path (*answers streamed natively / paced*). Both budgets are spent side by side: the
streams' stops and appends do not touch `chat.update`'s Tier 3, which the paced answers use.

**Host log** (warnings and errors the hosts wrote, per round):

{host_notes(results)}
"""
    compact = summary + "\n\n" + "\n\n".join(tables)
    if misses:
        compact += "\n\nMISSED TARGETS: " + ", ".join(misses) + " (see docs/benchmarks.md)"
    return compact, section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="N=1 and 10 only; write nothing")
    args = parser.parse_args(argv)
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    pace = ModelPace()
    started = clock()
    results = []
    for n in rounds:
        for side in SIDES:
            print(f"  N={n:>2} {side:<8} …", end=" ", flush=True)
            result = run_round(side, n, pace=pace)
            results.append(result)
            print(
                f"{result.complete}/{n} complete, {_pct(result)} 429s, last final "
                f"{_last_final(result)}, ended by {result.ended_by} after "
                f"{result.duration_s:.0f} s",
                flush=True,
            )
    took = clock() - started
    compact, section = report(results, took, pace=pace)
    print(compact)
    if args.quick:
        print(f"\n{took:.1f} s; quick mode: docs/benchmarks.md not written")
        return
    path = write_section(SECTION, section)
    print(f"\n{took:.1f} s; written to {path}")


if __name__ == "__main__":
    main()
