"""Slack ingress on Lambda: ack latency and cold start, against Bolt's own Lambda adapter.

Both sides receive the same signed ``event_callback`` (an ``app_mention``, with the bot user in
``authorizations`` as Slack sends it) wrapped in an API Gateway HTTP API v2 event:

- **ours**: ``bots.aws.ingress.handler`` (signature check, Bolt app, translate, enqueue on SQS).
- **baseline**: ``slack_bolt.adapter.aws_lambda.SlackRequestHandler`` over
  ``App(process_before_response=True)`` with a lazy listener (ack, then re-invoke the function
  asynchronously through ``lambda:InvokeFunction``): Bolt's documented way to ack fast on Lambda.

Each side's one AWS call is stubbed at the same level, the boto3 client: our ``SqsJobQueue`` gets
a client whose ``send_message`` records its arguments, Bolt's ``LambdaLazyListenerRunner`` gets a
client whose ``invoke`` records its arguments. Everything above the client (our job JSON and SQS
ids; Bolt's request copy and event JSON) runs as in production. Bolt's single-workspace
authorization calls ``auth.test``; the baseline's ``WebClient`` points at a tiny HTTP server on
127.0.0.1 started here, so it runs as designed without the internet.

Measured: warm ack latency (handler calls interleaved in one process), cold start (a fresh
``python`` per sample, up to its first ack), and the import graph (``python -X importtime``:
no botbuilder, no pypdf; where the import time goes), and the Lambda packages infra/Makefile
builds (with this machine's wheels: their size, and ours cold from the ingress package alone,
with and without its bytecode; needs ``make`` and the package index or pip's cache). Run with
``python -m bench.slack_ingress`` or as part of ``python -m bench.run_all``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import (
    machine_info,
    markdown_table,
    p50,
    p95,
    p99,
    verdict,
    write_section,
)

SECTION = "slack_ingress"
REPO = Path(__file__).resolve().parent.parent
clock = time.monotonic_ns  # CLOCK_MONOTONIC: system-wide on Linux, so parent and child agree

WARMUP = 50
REQUESTS = 2000
COLD_WARMUP = 2  # per side, discarded (fills the page cache, writes .pyc files)
COLD_SAMPLES = 20  # per side
CLIENT_SAMPLES = 3
ACK_RATIO_TARGET = 1.0
COLD_RATIO_TARGET = 0.8
PACKAGE_COLD_SAMPLES = 8  # per mode, from the built ingress package
PACKAGE_RATIO_TARGET = 0.5  # the ingress package against the worker's (the full lock)
COLD_TARGET_S = 0.400
FORBIDDEN = ("botbuilder", "pypdf")

SIGNING_SECRET = "bench-signing-secret-dummy"
BOT_TOKEN = "xoxb-bench-dummy"
REGION = "us-east-1"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/123456789012/bench-chatbot-jobs.fifo"
TEAM, BOT_USER, BOT_ID, USER, CHANNEL = "TBENCH", "UBENCHBOT", "BBENCHBOT", "UBENCH1", "CBENCH"

# -- the code under test, as it is set up in every process (warm and cold) -------------------------
# One source per side, run in the warm process and in every cold-start child, so both
# measurements use identical stubs. Each defines ``handle(event, context)`` and ``SENT``.

SETUP_OURS = """
import bots.aws.ingress as ingress
from bots.aws.sqs import SqsJobQueue

SENT = []


class NoopSqsClient:
    # boto3's SQS client minus the HTTPS call: send_message records its arguments.
    def send_message(self, **kwargs):
        SENT.append(kwargs)
        return {"MessageId": "bench", "SequenceNumber": "1"}


class StubbedSqsJobQueue(SqsJobQueue):
    # The real queue (job JSON, SQS group and dedupe ids) on the no-op client.
    def __init__(self, queue_url, *, region, client=None):
        super().__init__(queue_url, region=region, client=NoopSqsClient())


ingress.SqsJobQueue = StubbedSqsJobQueue
handle = ingress.handler
"""

SETUP_BASELINE = """
import os
from slack_bolt import App
from slack_bolt.adapter.aws_lambda import SlackRequestHandler
from slack_sdk import WebClient

SENT = []


class NoopLambdaClient:
    # boto3's Lambda client minus the HTTPS call: invoke records its arguments.
    def invoke(self, **kwargs):
        SENT.append(kwargs)
        return {"StatusCode": 202}


def answer_later(body):  # runs in the re-invoked function, never inside the ack
    pass


app = App(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    client=WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]),
    process_before_response=True,
)
app.event("app_mention")(ack=lambda ack: ack(), lazy=[answer_later])
slack_handler = SlackRequestHandler(app)
slack_handler.app.listener_runner.lazy_listener_runner.lambda_client = NoopLambdaClient()
handle = slack_handler.handle
"""

SETUPS = {"ours": SETUP_OURS, "baseline": SETUP_BASELINE}

CONTEXT_CLASS = """
class LambdaContext:
    function_name = "bench-slack-ingress"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-slack-ingress"
    aws_request_id = "0b4c3f9e-0000-4000-8000-000000000000"
    memory_limit_in_mb = 512
"""

CHILD_HEAD = f"""
import time
T_TOP = time.monotonic_ns()
import json, os, sys
EVENT = json.loads(os.environ["BENCH_EVENT"])
{CONTEXT_CLASS}
T_INIT = time.monotonic_ns()
"""

CHILD_TAIL = f"""
T_READY = time.monotonic_ns()
response = handle(EVENT, LambdaContext())
T_ACK = time.monotonic_ns()
found = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
print(json.dumps({{
    "status": response["statusCode"], "sent": len(SENT), "top": T_TOP, "init": T_INIT,
    "ready": T_READY, "ack": T_ACK, "forbidden": found, "modules": len(sys.modules),
}}), flush=True)
"""


def child_script(side: str) -> str:
    return CHILD_HEAD + SETUPS[side] + CHILD_TAIL


# -- the request -----------------------------------------------------------------------------------


def slack_signature(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """Slack's v0 request signature: hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = b"v0:" + str(timestamp).encode("ascii") + b":" + body
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": str(timestamp), "x-slack-signature": "v0=" + digest}


def mention_body() -> bytes:
    """An ``event_callback`` carrying an ``app_mention``, shaped as Slack sends it."""
    ts = "1763900000.000100"
    payload = {
        "token": "bench-verification-token",
        "team_id": TEAM,
        "context_team_id": TEAM,
        "context_enterprise_id": None,
        "api_app_id": "ABENCH",
        "event": {
            "type": "app_mention",
            "user": USER,
            "text": f"<@{BOT_USER}> what does the deploy pipeline do after staging?",
            "ts": ts,
            "team": TEAM,
            "channel": CHANNEL,
            "event_ts": ts,
            "client_msg_id": "6f1c2a4e-8d1b-4c59-9a2e-3b7f0c1d2e3f",
        },
        "type": "event_callback",
        "event_id": "Ev0BENCH0001",
        "event_time": 1763900000,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM,
                "user_id": BOT_USER,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-eyJldCI6ImFwcF9tZW50aW9uIiwidGlkIjoiVEJFTkNIIn0",
    }
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def api_gateway_event(body: bytes, timestamp: int) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event for ``POST /slack/events``."""
    now_ms = timestamp * 1000
    return {
        "version": "2.0",
        "routeKey": "POST /slack/events",
        "rawPath": "/slack/events",
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "accept-encoding": "gzip,deflate",
            "content-length": str(len(body)),
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "x-amzn-trace-id": "Root=1-6540f1a2-0123456789abcdef01234567",
            "x-forwarded-for": "52.0.0.1",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **slack_signature(body, SIGNING_SECRET, timestamp),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": "/slack/events",
                "protocol": "HTTP/1.1",
                "sourceIp": "52.0.0.1",
                "userAgent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            },
            "requestId": "bench-request",
            "routeKey": "POST /slack/events",
            "stage": "$default",
            "time": "24/Nov/2026:21:00:00 +0000",
            "timeEpoch": now_ms,
        },
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }


def fresh(event: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to hand to a handler: Bolt's adapter writes into ``event["headers"]``."""
    return {**event, "headers": dict(event["headers"])}


# -- environment and the auth.test stand-in --------------------------------------------------------


class AuthTestServer:
    """Answers Slack's ``auth.test`` on 127.0.0.1 (what Bolt's single-workspace authorization
    calls); anything else gets ``unknown_method``. Counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                method = self.path.rsplit("/", 1)[-1]
                calls.append(method)
                if method == "auth.test":
                    answer = {
                        "ok": True,
                        "url": "https://bench.slack.com/",
                        "team": "Bench",
                        "user": "benchbot",
                        "team_id": TEAM,
                        "user_id": BOT_USER,
                        "bot_id": BOT_ID,
                        "is_enterprise_install": False,
                    }
                else:
                    answer = {"ok": False, "error": "unknown_method"}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AuthTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


_OWNED = re.compile(r"^(CHATBOT_|SLACK_|AWS_|MICROSOFT_|BEDROCK_|POWERTOOLS_)")
# Bytecode settings of the calling shell are not the benchmark's: with PYTHONDONTWRITEBYTECODE
# our modules would be compiled from source in every child while the installed packages (both
# sides' Bolt, botocore...) load their bytecode. Both sides load bytecode, as both Lambda
# packages have it (infra/Makefile); the package section measures what a package without it costs.
_BYTECODE_VARIABLES = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")


def bench_env(api_url: str) -> dict[str, str]:
    """The process environment both sides run with: dummy credentials, no Secrets Manager."""
    env = {
        k: v for k, v in os.environ.items() if not _OWNED.match(k) and k not in _BYTECODE_VARIABLES
    }
    env.update(
        {
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_API_URL": api_url,
            "CHATBOT_QUEUE_URL": QUEUE_URL,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "AKIABENCHDUMMY",
            "AWS_SECRET_ACCESS_KEY": "bench-secret-access-key-dummy",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    return env


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class Discard:
    """A text stream that drops what it is given: formatting log lines is part of a request,
    shipping them is the host's."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


# -- warm ack latency ------------------------------------------------------------------------------


@dataclass
class Warm:
    ours: list[float] = field(default_factory=list)  # seconds per handler call
    baseline: list[float] = field(default_factory=list)
    ours_sent: int = 0
    baseline_sent: int = 0
    auth_calls: int = 0


def measure_warm(body: bytes, server: AuthTestServer) -> Warm:
    import bots.aws.ingress as ingress  # after the environment is set, like a Lambda container
    from core.observability import configure_logging

    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ("core", "bots", "slack_bolt")
        for lg in (logging.getLogger(name),)
    }
    original_queue, original_routes = ingress.SqsJobQueue, ingress._routes
    ingress._routes = None
    # Both sides' log lines are formatted as usual and dropped: ours through the production
    # Powertools JSON formatter at INFO, Bolt's through its own loggers at their default level.
    configure_logging("INFO", stream=Discard())  # type: ignore[arg-type]
    bolt_logger = logging.getLogger("slack_bolt")
    bolt_logger.handlers = [logging.StreamHandler(Discard())]  # type: ignore[arg-type]
    bolt_logger.propagate = False
    spaces: dict[str, dict[str, Any]] = {}
    try:
        for side, source in SETUPS.items():
            spaces[side] = {"__name__": f"bench_{side}"}
            # The same source every cold-start child runs (see SETUP_OURS / SETUP_BASELINE).
            exec(compile(source, f"<bench setup: {side}>", "exec"), spaces[side])  # noqa: S102
        handlers = {side: space["handle"] for side, space in spaces.items()}
        event = api_gateway_event(body, int(time.time()))
        context = _lambda_context()
        result = Warm()
        samples = {"ours": result.ours, "baseline": result.baseline}
        gc.collect()
        for i in range(WARMUP + REQUESTS):
            order = ("ours", "baseline") if i % 2 == 0 else ("baseline", "ours")
            for side in order:
                request = fresh(event)
                handle = handlers[side]
                started = time.perf_counter_ns()
                response = handle(request, context)
                elapsed = time.perf_counter_ns() - started
                if response["statusCode"] != 200:
                    raise RuntimeError(f"benchmark invalid: {side} answered {response}")
                if i >= WARMUP:
                    samples[side].append(elapsed / 1e9)
        result.ours_sent = len(spaces["ours"]["SENT"])
        result.baseline_sent = len(spaces["baseline"]["SENT"])
        result.auth_calls = server.calls.count("auth.test")
        total = WARMUP + REQUESTS
        if result.ours_sent != total or result.baseline_sent != total:
            raise RuntimeError(
                f"benchmark invalid: {result.ours_sent} enqueues and {result.baseline_sent} "
                f"lazy invokes for {total} requests each"
            )
        return result
    finally:
        ingress.SqsJobQueue, ingress._routes = original_queue, original_routes
        for name, (handlers_, level, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.level, lg.propagate = handlers_, level, propagate


def _lambda_context() -> Any:
    space: dict[str, Any] = {}
    exec(CONTEXT_CLASS, space)  # noqa: S102 - the class the children use
    return space["LambdaContext"]()


# -- cold start ------------------------------------------------------------------------------------


@dataclass
class ColdSample:
    total: float  # parent: just before spawn -> response line read
    child: float  # spawn -> ack returned, from the child's own clock readings
    startup: float  # spawn -> first line of the child's script (exec + interpreter + site)
    init: float  # imports and module-level setup of the handler (Lambda's init phase)
    first_request: float  # the first handler call
    modules: int
    forbidden: list[str]


def spawn(side: str, env: dict[str, str], *extra_args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter, our own script
        [sys.executable, *extra_args, "-c", child_script(side)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if extra_args else subprocess.DEVNULL,
        text=True,
    )


def cold_once(side: str, env: dict[str, str]) -> ColdSample:
    started = clock()
    proc = spawn(side, env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    printed = clock()
    proc.stdout.close()
    proc.wait(timeout=30)
    try:
        out = json.loads(line)
    except ValueError as exc:
        raise RuntimeError(f"benchmark invalid: {side} child printed {line!r}") from exc
    if out["status"] != 200 or out["sent"] != 1:
        raise RuntimeError(f"benchmark invalid: {side} child answered {out}")
    return ColdSample(
        total=(printed - started) / 1e9,
        child=(out["ack"] - started) / 1e9,
        startup=(out["top"] - started) / 1e9,
        init=(out["ready"] - out["init"]) / 1e9,
        first_request=(out["ack"] - out["ready"]) / 1e9,
        modules=out["modules"],
        forbidden=out["forbidden"],
    )


def measure_cold(body: bytes, api_url: str) -> dict[str, list[ColdSample]]:
    env = bench_env(api_url)
    env["BENCH_EVENT"] = json.dumps(api_gateway_event(body, int(time.time())))
    samples: dict[str, list[ColdSample]] = {"ours": [], "baseline": []}
    for i in range(COLD_WARMUP + COLD_SAMPLES):
        order = ("ours", "baseline") if i % 2 == 0 else ("baseline", "ours")
        for side in order:
            sample = cold_once(side, env)
            if i >= COLD_WARMUP:
                samples[side].append(sample)
    return samples


def measure_client_creation(api_url: str) -> dict[str, list[float]]:
    """What the stubs also skip: building the boto3 client in a fresh process (boto3 already
    imported). Context for the cold-start figures, not part of either side's measurement."""
    env = bench_env(api_url)
    out: dict[str, list[float]] = {"sqs": [], "lambda": []}
    script = (
        "import time, boto3\nt = time.perf_counter()\n"
        "boto3.client({service!r}, region_name={region!r})\n"
        "print(time.perf_counter() - t)"
    )
    for _ in range(CLIENT_SAMPLES):
        for service in out:
            done = subprocess.run(  # noqa: S603
                [sys.executable, "-c", script.format(service=service, region=REGION)],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            out[service].append(float(done.stdout.strip()))
    return out


# -- the Lambda package ----------------------------------------------------------------------------


@dataclass
class Package:
    """One function's package as infra/Makefile builds it, for this machine's platform."""

    function: str
    files: int = 0
    total_bytes: int = 0
    bytecode_bytes: int = 0
    error: str = ""  # why it could not be built (pip could not reach the index, ...)

    @property
    def mb(self) -> float:
        return self.total_bytes / 1e6


def build_package(function: str, target: Path) -> Package:
    """``make build-<function>`` from infra/Makefile into ``target``, with this interpreter and
    this machine's wheels in place of Lambda's arm64 ones (same locks, same pruning, same copy
    of our code, bytecode for this interpreter as the Makefile writes it for Lambda's)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    make = shutil.which("make")
    if make is None:
        return Package(function, error="make is not installed")
    done = subprocess.run(  # noqa: S603 - make with our own Makefile
        [
            make,
            "--no-print-directory",
            "-f",
            "infra/Makefile",
            f"build-{function}",
            f"ARTIFACTS_DIR={target}",
            f"PYTHON={sys.executable}",
            f"LAMBDA_PYTHON={version}",
            "LAMBDA_WHEELS=",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        return Package(function, error=(lines[-1] if lines else "make failed")[:200])
    package = Package(function)
    for path in target.rglob("*"):
        if path.is_file():
            size = path.stat().st_size
            package.files += 1
            package.total_bytes += size
            package.bytecode_bytes += size if path.suffix == ".pyc" else 0
    return package


def measure_package_cold(package: Path, body: bytes, api_url: str) -> dict[str, list[float]]:
    """Ours from the ingress package alone (``python -S``: no site-packages, the package first
    on the path, nothing written, as in Lambda's read-only package folder): with the package's
    bytecode, and from a copy without it, compiled from source on every cold start as Lambda
    did before the Makefile wrote bytecode. The standard library has its bytecode either way."""
    source_only = package.parent / f"{package.name}-source-only"
    shutil.copytree(package, source_only, ignore=shutil.ignore_patterns("__pycache__"))
    env = bench_env(api_url)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    paths = {"bytecode": package, "source": source_only}
    out: dict[str, list[float]] = {mode: [] for mode in paths}
    for i in range(PACKAGE_COLD_SAMPLES + 1):
        env["BENCH_EVENT"] = json.dumps(api_gateway_event(body, int(time.time())))
        for mode, path in paths.items():
            run_env = {**env, "PYTHONPATH": str(path)}
            started = clock()
            done = subprocess.run(  # noqa: S603 - our own interpreter, our own script
                [sys.executable, "-S", "-c", child_script("ours")],
                cwd=package.parent,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            elapsed = (clock() - started) / 1e9
            try:
                result = json.loads(done.stdout)
            except ValueError as exc:
                raise RuntimeError(f"benchmark invalid: package run: {done.stderr[-800:]}") from exc
            if result["status"] != 200 or result["sent"] != 1:
                raise RuntimeError(f"benchmark invalid: package run answered {result}")
            if i:  # the first round is a warm-up (page cache)
                out[mode].append(elapsed)
    return out


# -- import graph ----------------------------------------------------------------------------------


@dataclass
class ImportEntry:
    name: str
    depth: int
    self_us: int
    cumulative_us: int


_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)\s*$")


def parse_importtime(stderr: str) -> list[ImportEntry]:
    entries = []
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            self_us, cumulative_us, indent, name = match.groups()
            entries.append(ImportEntry(name, len(indent) // 2, int(self_us), int(cumulative_us)))
    return entries


@dataclass
class ImportProfile:
    entries: list[ImportEntry]

    @property
    def modules(self) -> list[str]:
        return [e.name for e in self.entries]

    def forbidden(self) -> list[str]:
        return sorted({m for m in self.modules if m.split(".")[0] in FORBIDDEN})

    def top_cumulative(self, n: int = 10) -> list[ImportEntry]:
        return sorted(self.entries, key=lambda e: e.cumulative_us, reverse=True)[:n]

    def by_package(self, n: int = 10) -> list[tuple[str, int, int]]:
        """(top-level package, summed self time in µs, modules): no double counting."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for e in self.entries:
            bucket = totals[e.name.split(".")[0]]
            bucket[0] += e.self_us
            bucket[1] += 1
        ranked = sorted(totals.items(), key=lambda kv: kv[1][0], reverse=True)[:n]
        return [(name, us, count) for name, (us, count) in ranked]

    @property
    def total_us(self) -> int:
        return sum(e.self_us for e in self.entries)


def import_profile(args: list[str], env: dict[str, str]) -> ImportProfile:
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-X", "importtime", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark invalid: {args} failed:\n{done.stderr[-2000:]}")
    return ImportProfile(parse_importtime(done.stderr))


def measure_imports(body: bytes, api_url: str) -> dict[str, ImportProfile]:
    env = bench_env(api_url)
    env["BENCH_EVENT"] = json.dumps(api_gateway_event(body, int(time.time())))
    return {
        "ours (import only)": import_profile(["-c", "import bots.aws.ingress"], env),
        "ours": import_profile(["-c", child_script("ours")], env),
        "baseline": import_profile(["-c", child_script("baseline")], env),
    }


# -- report ----------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.3f} ms" if abs(value) < 1 else f"{value:.1f} ms"


def _warm_row(label: str, values: Sequence[float]) -> list[str]:
    return [label, ms(p50(values)), ms(p95(values)), ms(p99(values)), ms(max(values))]


def _cold_row(label: str, ours: Sequence[float], base: Sequence[float]) -> list[str]:
    return [
        label,
        ms(p50(ours)),
        ms(p95(ours)),
        ms(p50(base)),
        ms(p95(base)),
        _plain_ratio(p50(ours) / p50(base)),
    ]


def _plain_ratio(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.3f}"


def _top_table(profile: ImportProfile) -> str:
    rows = [
        [f"`{'· ' * e.depth}{e.name}`", ms(e.cumulative_us / 1e6), ms(e.self_us / 1e6)]
        for e in profile.top_cumulative()
    ]
    return markdown_table(["module (· = nesting depth)", "cumulative", "self"], rows)


def _difference(profile: ImportProfile, other: ImportProfile, label: str) -> str:
    """The modules ``profile`` loads that ``other`` does not, by top-level package."""
    theirs = set(other.modules)
    only = [e for e in profile.entries if e.name not in theirs]
    packages: dict[str, int] = defaultdict(int)
    for e in only:
        packages[e.name.split(".")[0]] += e.self_us
    ranked = sorted(packages.items(), key=lambda kv: kv[1], reverse=True)[:6]
    detail = ", ".join(f"`{name}` {ms(us / 1e6)}" for name, us in ranked)
    total = sum(e.self_us for e in only)
    return f"only {label}: {len(only)} modules, {ms(total / 1e6)} ({detail})"


def _package_table(profile: ImportProfile) -> str:
    rows = [[f"`{name}`", ms(us / 1e6), str(count)] for name, us, count in profile.by_package()]
    return markdown_table(["top-level package", "self time, summed", "modules"], rows)


def report(
    warm: Warm,
    cold: dict[str, list[ColdSample]],
    imports: dict[str, ImportProfile],
    clients: dict[str, list[float]],
    took: float,
    packages: dict[str, Package],
    package_cold: dict[str, list[float]],
) -> tuple[str, str]:
    ack_ratio = p99(warm.ours) / p99(warm.baseline)
    ack_ok = ack_ratio <= ACK_RATIO_TARGET
    ours_cold, base_cold = cold["ours"], cold["baseline"]
    o_total, b_total = [s.total for s in ours_cold], [s.total for s in base_cold]
    cold_ratio = p50(o_total) / p50(b_total)
    cold_ratio_ok = cold_ratio <= COLD_RATIO_TARGET
    cold_abs_ok = p95(o_total) < COLD_TARGET_S
    forbidden = {side: profile.forbidden() for side, profile in imports.items()}
    child_forbidden = sorted({m for s in ours_cold for m in s.forbidden})
    imports_ok = not forbidden["ours"] and not forbidden["ours (import only)"]
    imports_ok = imports_ok and not child_forbidden
    ingress, worker = packages["IngressFunction"], packages["WorkerFunction"]
    measured = not (ingress.error or worker.error)
    package_ratio = ingress.total_bytes / worker.total_bytes if measured else float("nan")
    package_ok = measured and package_ratio <= PACKAGE_RATIO_TARGET

    summary = markdown_table(
        ["measure", "ours", "baseline (Bolt Lambda adapter, lazy)", "ratio", "target", "result"],
        [
            [
                "warm ack latency, p99",
                ms(p99(warm.ours)),
                ms(p99(warm.baseline)),
                f"{ack_ratio:.3f}",
                f"ratio ≤ {ACK_RATIO_TARGET:.1f}",
                verdict(ack_ok),
            ],
            [
                "cold start to first ack, median",
                ms(p50(o_total)),
                ms(p50(b_total)),
                f"{cold_ratio:.3f}",
                f"ratio ≤ {COLD_RATIO_TARGET:.1f}",
                verdict(cold_ratio_ok),
            ],
            [
                "cold start to first ack, p95",
                ms(p95(o_total)),
                ms(p95(b_total)),
                f"{p95(o_total) / p95(b_total):.3f}",
                f"< {COLD_TARGET_S * 1000:.0f} ms",
                verdict(cold_abs_ok),
            ],
            [
                "ingress package, unzipped (infra/Makefile)",
                f"{ingress.mb:.1f} MB" if measured else f"not built: {ingress.error}",
                f"worker's (the full lock, the ingress's before): {worker.mb:.1f} MB"
                if measured
                else f"not built: {worker.error}",
                f"{package_ratio:.3f}",
                f"ratio ≤ {PACKAGE_RATIO_TARGET:.1f}",
                verdict(package_ok),
            ],
            [
                "modules named botbuilder* or pypdf* up to the first ack",
                ", ".join(forbidden["ours"] + child_forbidden) or "none",
                ", ".join(forbidden["baseline"]) or "none",
                "",
                "none",
                verdict(imports_ok),
            ],
        ],
    )

    warm_table = markdown_table(
        ["per handler call", "p50", "p95", "p99", "max"],
        [
            _warm_row("ours: `bots.aws.ingress.handler`", warm.ours),
            _warm_row("baseline: `SlackRequestHandler.handle`", warm.baseline),
        ],
    )
    cold_table = markdown_table(
        ["per fresh process", "ours p50", "ours p95", "baseline p50", "baseline p95", "ratio p50"],
        [
            _cold_row("**total** (parent: spawn → response line read)", o_total, b_total),
            _cold_row(
                "child: spawn → ack returned",
                [s.child for s in ours_cold],
                [s.child for s in base_cold],
            ),
            _cold_row(
                "– interpreter start (spawn → script's first line)",
                [s.startup for s in ours_cold],
                [s.startup for s in base_cold],
            ),
            _cold_row(
                "– init: imports + module-level setup",
                [s.init for s in ours_cold],
                [s.init for s in base_cold],
            ),
            _cold_row(
                "– first request (handler call)",
                [s.first_request for s in ours_cold],
                [s.first_request for s in base_cold],
            ),
            _cold_row(
                "– init + first request",
                [s.init + s.first_request for s in ours_cold],
                [s.init + s.first_request for s in base_cold],
            ),
        ],
    )
    ours_p, base_p, only_p = imports["ours"], imports["baseline"], imports["ours (import only)"]
    sqs_ms, lambda_ms = p50(clients["sqs"]), p50(clients["lambda"])

    section = f"""
## Slack ingress on Lambda: ack latency and cold start (`bench.slack_ingress`)

Measured {machine_info()}.
Reproduce: `.venv/bin/python -m bench.slack_ingress` (this run took {took:.0f} s).

{summary}

**What runs.** Both sides get the same signed request bytes: an `event_callback` with an
`app_mention` ({len(mention_body())} bytes, `authorizations` naming the bot user, as Slack sends
it), v0-signed with the benchmark's dummy signing secret, inside an API Gateway HTTP API v2 event
(`POST /slack/events`). Environment (both sides, warm and cold): `SLACK_SIGNING_SECRET`,
`SLACK_BOT_TOKEN`, `CHATBOT_QUEUE_URL` (a FIFO URL), `AWS_REGION` and AWS credentials, all
dummies; no `CHATBOT_SECRET_ID`, so no Secrets Manager call (a deployment that keeps the
credentials in Secrets Manager adds, to ours only, a `secretsmanager` client and a
`GetSecretValue` round trip on the first request; not measured here).

- **ours**: `bots.aws.ingress.handler` (API Gateway event → `Routes` → signature check → body
  read → an Events API callback goes straight to our event listener, `enqueue_event` →
  `from_event` → `Job` → `SqsJobQueue.enqueue`), logs through the production Powertools JSON
  formatter at INFO. Bolt (and with it slack_sdk) is imported and its `App` built only for a
  request that is not an event callback (a command, a shortcut, an interaction, Slack's URL
  check), so this request never loads them; a first request of those kinds pays for them.
- **baseline**: Bolt's own adapter, `slack_bolt.adapter.aws_lambda.SlackRequestHandler` over
  `App(signing_secret=…, client=WebClient(token=…, base_url=<local>), process_before_response=True)`
  with `app.event("app_mention")(ack=lambda ack: ack(), lazy=[answer_later])` — Bolt's documented
  way to ack at once on Lambda and do the work in an asynchronous re-invocation. (The token is
  given through the client, which is what `App(token=…)` builds, so that its `base_url` can point
  at the local stand-in.)

**What is stubbed, on each side, at the same level (the boto3 client; the network call only).**

- ours: `bots.aws.ingress.SqsJobQueue` is replaced by a subclass that passes the real
  `SqsJobQueue` a client whose `send_message(**kwargs)` appends its arguments to a list. The job
  JSON, SQS group id and dedupe id are still built inside the measured call.
- baseline: the `LambdaLazyListenerRunner` that `SlackRequestHandler` installs gets a
  `lambda_client` whose `invoke(**kwargs)` appends its arguments to a list (the runner calls
  `boto3.client("lambda").invoke(FunctionName=…, InvocationType="Event", Payload=…)`). Bolt's copy
  of the request for the lazy listener and its `json.dumps` of the event still run.
- Neither side builds a boto3 client (ours would on the first request, in `build_routes`; Bolt's
  runner on its first `start`). Measured here in a fresh process with boto3 already imported:
  `boto3.client("sqs")` {ms(sqs_ms)}, `boto3.client("lambda")` {ms(lambda_ms)} (median of
  {CLIENT_SAMPLES}) — add it to both sides' cold starts for a real deployment.
- The baseline's `auth.test` goes to a small HTTP server on 127.0.0.1 started by the benchmark
  (answers `ok`, `user_id`, `bot_id`, `team_id`). `App(...)` verifies the token eagerly, so Bolt
  calls `auth.test` once while the app is built (Lambda's init phase, inside the cold start), not
  on each request ({warm.auth_calls} `auth.test` call in the whole warm run). A real `auth.test`
  to slack.com from AWS costs a network round trip, so **the baseline's cold start here is
  cheaper than it would be against real Slack**; ours makes no Slack call before its ack.

### Warm ack latency

{REQUESTS} handler calls per side after {WARMUP} warm-up calls each, interleaved in one process
(alternating which side goes first), each timed around the handler call alone with
`perf_counter_ns` (a fresh copy of the event per call, made outside the timing, since Bolt's
adapter writes into its headers). {warm.ours_sent} enqueues and {warm.baseline_sent} lazy
invokes were recorded, one per call. Log lines are formatted and dropped on both sides: ours
writes one JSON line per request (Powertools formatter, INFO); Bolt's loggers, at their default
level, write nothing per request.

{warm_table}

p99 ratio ours/baseline: **{ack_ratio:.3f}** (target ≤ {ACK_RATIO_TARGET:.1f}):
{verdict(ack_ok)}; p50 ratio {p50(warm.ours) / p50(warm.baseline):.3f}.

### Cold start

{COLD_SAMPLES} fresh `{Path(sys.executable).name}` processes per side (after {COLD_WARMUP}
discarded each), alternating sides, each importing and setting up its handler (the setup source is
the one the warm process runs, stubs included) and handling **one** request, then printing the
status. Total: parent's clock from just before `Popen` to the response line read. The child stamps
`time.monotonic_ns()` (CLOCK_MONOTONIC, shared with the parent) at its script's first line, after
imports and setup, and after the handler returns; from those: interpreter start, init (imports and
module-level setup: for the baseline that includes building the `App`, with its `auth.test`), and
the first request (for ours that includes building the routes, which need the credentials).
Child stderr goes to `/dev/null`. Python files are byte-compiled (our own modules too: the
benchmark clears `PYTHONDONTWRITEBYTECODE` so the discarded runs write their bytecode) and in the
page cache (a warm disk), as in a Lambda package built by infra/Makefile with Python 3.12 (see
the package section below for one without bytecode).

{cold_table}

Median ratio ours/baseline: **{cold_ratio:.3f}** (target ≤ {COLD_RATIO_TARGET:.1f}):
{verdict(cold_ratio_ok)}. Absolute target: p95 under {COLD_TARGET_S * 1000:.0f} ms on this
machine: {verdict(cold_abs_ok)} (p95 {ms(p95(o_total))}, median {ms(p50(o_total))}).
Modules loaded at the first ack: ours {p50([s.modules for s in ours_cold]):.0f}, baseline
{p50([s.modules for s in base_cold]):.0f}.

### Imports

`python -X importtime -c "import bots.aws.ingress"` (same environment):
{len(only_p.entries)} modules, {ms(only_p.total_us / 1e6)} of import time;
botbuilder*/pypdf*: **{", ".join(forbidden["ours (import only)"]) or "none"}**. Ours imports
`bots.slack.ingress` on the first request, so the same check was run on the whole cold-start
child (import, set up, first request) under `-X importtime`: ours
{len(ours_p.entries)} modules, {ms(ours_p.total_us / 1e6)}, botbuilder*/pypdf*:
**{", ".join(forbidden["ours"]) or "none"}**; baseline {len(base_p.entries)} modules,
{ms(base_p.total_us / 1e6)}. Each cold-start child also listed `sys.modules` after its ack:
**{", ".join(child_forbidden) or "none"}** in ours. Result: {verdict(imports_ok)}.
(`-X importtime` adds its own overhead; read these as shares, not as cold-start times.)

What one side loads and the other does not (whole cold-start child, self times summed):
{_difference(ours_p, base_p, "ours")}; {_difference(base_p, ours_p, "the baseline")}.

Where the import time goes, by top-level package (self times summed, so nothing is counted
twice), whole cold-start child:

**ours**

{_package_table(ours_p)}

**baseline**

{_package_table(base_p)}

Top 10 cumulative import costs (nested entries are included in their parents):

**ours**

{_top_table(ours_p)}

**baseline**

{_top_table(base_p)}
"""
    section += _package_section(packages, package_cold)
    compact = summary
    misses = [
        name
        for name, ok in (
            ("warm ack p99 ratio", ack_ok),
            ("cold start ratio", cold_ratio_ok),
            ("cold start < 400 ms", cold_abs_ok),
            ("imports", imports_ok),
            ("ingress package size", package_ok),
        )
        if not ok
    ]
    if misses:
        compact += "\n\nMISSED TARGETS: " + ", ".join(misses) + " (see docs/benchmarks.md)"
    return compact, section


def _package_section(packages: dict[str, Package], cold: dict[str, list[float]]) -> str:
    rows = [
        [
            f"`{p.function}`",
            "not built" if p.error else str(p.files),
            p.error or f"{p.mb:.1f} MB",
            "" if p.error else f"{p.bytecode_bytes / 1e6:.1f} MB",
        ]
        for p in packages.values()
    ]
    table = markdown_table(["package", "files", "unzipped", "of which bytecode"], rows)
    if cold:
        b, src = p50(cold["bytecode"]), p50(cold["source"])
        cold_text = (
            f"Ours, cold, from the ingress package alone (`python -S`, the package as the only "
            f"path beyond the standard library, nothing written; {PACKAGE_COLD_SAMPLES} runs "
            f"each, medians): **{ms(b)}** with the package's bytecode, **{ms(src)}** from a copy "
            f"without it ({src / b:.1f}×), which is what every Lambda cold start paid before the "
            "Makefile wrote bytecode: Lambda's package folder is read-only, so nothing compiled "
            "at one cold start is kept for the next. That the package answers at all with no "
            "site-packages on the path shows it holds everything the Slack path imports."
        )
    else:
        cold_text = "Cold start from the package: not measured (the ingress package was not built)."
    cold_text = textwrap.fill(cold_text, width=100, break_on_hyphens=False)
    return f"""
### The Lambda packages

Each function's package as `infra/Makefile` builds it (`make build-<function>`: the function's
lock, botocore's models cut to the services the ingress calls, our code, bytecode), here with
this machine's wheels and interpreter in place of Lambda's arm64 CPython 3.12 (`LAMBDA_WHEELS=`,
`LAMBDA_PYTHON` this interpreter's version): the same files, built for another platform, so
sizes differ a little from `sam build`'s. The ingress installs `requirements-ingress.lock` (what
it imports: Bolt, slack_sdk, botocore, Powertools, botbuilder for Teams); the worker installs
`requirements.lock`, which is what the ingress carried before too.

{table}

{cold_text}
"""


def main() -> None:
    started = time.perf_counter()
    body = mention_body()
    with AuthTestServer() as server, tempfile.TemporaryDirectory() as scratch:
        with environment(bench_env(server.url)):
            warm = measure_warm(body, server)
        cold = measure_cold(body, server.url)
        imports = measure_imports(body, server.url)
        clients = measure_client_creation(server.url)
        packages = {
            function: build_package(function, Path(scratch) / function)
            for function in ("IngressFunction", "WorkerFunction")
        }
        package_cold: dict[str, list[float]] = {}
        if not packages["IngressFunction"].error:
            package_cold = measure_package_cold(Path(scratch) / "IngressFunction", body, server.url)
    took = time.perf_counter() - started
    compact, section = report(warm, cold, imports, clients, took, packages, package_cold)
    path = write_section(SECTION, section)
    print(compact)
    print(f"\n{took:.1f} s; written to {path}")


if __name__ == "__main__":
    main()
