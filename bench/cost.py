"""What a question costs, with and without prompt caching: writes docs/cost.md.

**Tokens.** A 10-turn conversation (a system prompt of about 2,000 estimated tokens: the
built-in rules plus a team handbook, as operators write them; questions of 20-70 tokens;
answers of about 300) runs through the real :class:`~core.assistant.Assistant` and
:class:`~core.models.bedrock.BedrockChatModel` (real boto3, real event-stream parsing) against
the Bedrock stand-in of ``tests/standins/bedrock.py`` with its prompt cache on
(:class:`~tests.standins.bedrock.PromptCache`): a prefix up to a cache point that matches an
earlier request's within five minutes is read, else written, and usage is reported the way
Bedrock reports it (``inputTokens`` besides ``cacheReadInputTokens`` and
``cacheWriteInputTokens``), every text block counted with :func:`core.text.estimate_tokens`
in every run. The same conversation runs four times in this process: Claude Sonnet 4.6 and
Claude Haiku 4.5, each with ``CHATBOT_PROMPT_CACHE=off`` (the baseline) and ``auto``; a fifth
run adds retrieved passages (a conversation with files) on Sonnet with caching. The tokens are
the ones the answers' usage reports (:class:`core.usage.AnswerUsage`), i.e. what the metrics
and the usage log line would show in production.

**AWS.** The same 10 questions go through the real Lambda handlers in this process: API
Gateway event -> ``bots.aws.ingress.handler`` -> SQS FIFO -> ``bots.aws.worker.handler``,
on a moto server (SQS, DynamoDB, Secrets Manager), the Slack stand-in (100 ms per post or
edit) and the Bedrock stand-in streaming at an assumed pace (first token after 0.8 s, then 60
tokens a second), with the production edit interval (1 s). Every AWS API call is counted
(botocore's ``_make_api_call``), DynamoDB request units are computed from the items' sizes,
and each handler's wall time is measured (a first, cold question in another thread is left
out). Lambda, SQS, DynamoDB, API Gateway and S3 Vectors are priced from those counts.

The bench imports the stand-ins from ``tests/`` (like ``bench.peak``). Run with
``python -m bench.cost`` (about a minute and a half) or as part of ``python -m bench.run_all``;
it writes docs/cost.md and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import math
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import machine_info, markdown_table, p50, p95, ratio, verdict, write_section
from bench.core_overhead import production_logging
from core.config import DEFAULT_SYSTEM_PROMPT, Settings
from core.domain import ConversationKey, Passage, Reply, Role, SourceCitation, Turn
from core.pacer import ProcessLocalSink
from core.runtime import build_assistant
from core.text import estimate_tokens
from core.usage import AnswerUsage, TokenUsage

SECTION = "cost"
COST_DOC = Path(__file__).resolve().parent.parent / "docs" / "cost.md"
clock = time.perf_counter

TURNS = 10
SEED = 2026
SONNET = "global.anthropic.claude-sonnet-4-6"
HAIKU = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
# Assumed generation pace of the stand-in in the AWS run (the worker's duration follows it).
FIRST_TOKEN_S = 0.8
OUTPUT_TOKENS_PER_S = 60.0
CHUNK_CHARS = 16  # about 4 tokens per streamed delta
SLACK_LATENCY_S = 0.1
PASSAGES = 4  # per question, in the run with files
PASSAGE_CHARS = 1_000
QUESTIONS = 1_000  # the volume every dollar figure is for


# -- prices -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    item: str
    usd: float
    unit: str
    source: str

    @property
    def shown(self) -> str:
        if self.unit.startswith("×"):
            return f"{self.usd:g}"
        return "$" + f"{self.usd:.10f}".rstrip("0").rstrip(".")


PLATFORM_FACTS = "docs platform-facts (Bedrock list prices 2026)"
ASSUMED = "assumption: AWS list price as of 2026, us-east-1"
PRICES: dict[str, Price] = {
    p.item: p
    for p in (
        Price("Claude Sonnet 4.6 input", 3.00, "per million tokens", PLATFORM_FACTS),
        Price("Claude Sonnet 4.6 output", 15.00, "per million tokens", PLATFORM_FACTS),
        Price("Claude Haiku 4.5 input", 1.00, "per million tokens", PLATFORM_FACTS),
        Price("Claude Haiku 4.5 output", 5.00, "per million tokens", PLATFORM_FACTS),
        Price("cache read", 0.10, "× the model's input price", PLATFORM_FACTS),
        Price("cache write", 1.25, "× the model's input price", PLATFORM_FACTS),
        Price("Titan Text Embeddings V2", 0.02, "per million tokens", ASSUMED),
        Price("Lambda arm64 duration", 0.0000133334, "per GB-second", ASSUMED),
        Price("Lambda requests", 0.20, "per million invocations", ASSUMED),
        Price("SQS FIFO requests", 0.50, "per million requests (64 KB each)", ASSUMED),
        Price("DynamoDB on-demand writes", 0.625, "per million write request units", ASSUMED),
        Price("DynamoDB on-demand reads", 0.125, "per million read request units", ASSUMED),
        Price("API Gateway HTTP API", 1.00, "per million requests", ASSUMED),
        Price("S3 Vectors queries", 2.50, "per million QueryVectors calls", ASSUMED),
        Price("S3 Vectors data processed", 0.004, "per TB (first 100,000 vectors)", ASSUMED),
    )
}
MODELS = {
    SONNET: ("Claude Sonnet 4.6", "Claude Sonnet 4.6 input", "Claude Sonnet 4.6 output"),
    HAIKU: ("Claude Haiku 4.5", "Claude Haiku 4.5 input", "Claude Haiku 4.5 output"),
}
WORKER_GB = 1.0  # 1024 MB, as infra/template.yaml
INGRESS_GB = 0.5  # 512 MB
# A conversation with files: an index of this many chunk vectors (1,024 float32 dimensions
# plus key and filterable metadata, about 4.2 KB each) is what each query processes.
INDEX_VECTORS = 10_000
VECTOR_BYTES = 4 * 1024 + 100


def token_dollars(model_id: str, tokens: TokenUsage) -> float:
    _, input_name, output_name = MODELS[model_id]
    per_input = PRICES[input_name].usd / 1e6
    return (
        tokens.input * per_input
        + tokens.cache_read * per_input * PRICES["cache read"].usd
        + tokens.cache_write * per_input * PRICES["cache write"].usd
        + tokens.output * PRICES[output_name].usd / 1e6
    )


# -- the conversation -----------------------------------------------------------------------------

_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "the billing service migration review budget staging release customer outage incident "
    "team decision question owner deadline quarter metric latency gateway certificate refund "
    "workflow audit dashboard pipeline approval rollout schedule risk estimate contract vendor "
    "capacity forecast backlog priority design proposal feedback milestone dependency on-call "
    "runbook escalation policy expense travel laptop security training holiday payroll access"
).split()


def prose(rng: random.Random, chars: int) -> str:
    sentences: list[str] = []
    length = 0
    while length < chars:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 18))]
        sentence = " ".join(words).capitalize() + "."
        sentences.append(sentence)
        length += len(sentence) + 1
    return " ".join(sentences)


def system_prompt() -> str:
    """The built-in rules plus a handbook, about 2,000 estimated tokens in all."""
    rng = random.Random(SEED)
    handbook = [DEFAULT_SYSTEM_PROMPT, "\nTeam handbook (answer from it when it applies):"]
    while estimate_tokens("\n".join(handbook)) < 2_000:
        handbook.append(f"- {prose(rng, 300)}")
    return "\n".join(handbook)


@dataclass(frozen=True)
class Conversation:
    system: str
    questions: tuple[str, ...]
    answers: tuple[str, ...]


def conversation() -> Conversation:
    rng = random.Random(SEED + 1)
    questions = tuple(
        f"Question {n}: {prose(rng, rng.randint(80, 280)).rstrip('.')}?" for n in range(TURNS)
    )
    answers = tuple(prose(rng, rng.randint(1_100, 1_400)) for _ in range(TURNS))
    return Conversation(system_prompt(), questions, answers)


def chunks(text: str) -> list[str]:
    return [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]


# -- environment -------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment names for the block and put everything back after it."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Dummy credentials and no instance metadata: nothing here may reach AWS.
OFFLINE_AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # any service not pointed elsewhere: refused
}


# -- tokens: the conversation through the Assistant ----------------------------------------------


class QuietSink(ProcessLocalSink):
    max_chars = 12_000

    def __init__(self) -> None:
        self.posts = 0

    def post(self, text: str) -> str:
        self.posts += 1
        return f"m{self.posts}"

    def update(self, ref: str, text: str) -> None:
        """Shown nowhere: only the tokens matter here."""

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        """As update."""


class Usages:
    def __init__(self) -> None:
        self.items: list[AnswerUsage] = []

    def record(self, usage: AnswerUsage) -> None:
        self.items.append(usage)


class HandbookFiles:
    """A retriever for the run with files: each question gets its own passages."""

    def __init__(self) -> None:
        rng = random.Random(SEED + 2)
        self._texts = [prose(rng, PASSAGE_CHARS) for _ in range(TURNS * PASSAGES)]
        self.queries = 0

    def has_files(self, key: ConversationKey) -> bool:
        return True

    def retrieve(self, key: ConversationKey, query: str) -> Sequence[Passage]:
        start = self.queries * PASSAGES
        self.queries += 1
        return [
            Passage(SourceCitation(f"S{i + 1}", "handbook.pdf", f"p. {start + i}"), text)
            for i, text in enumerate(self._texts[start : start + PASSAGES])
        ]


@dataclass
class TokenRun:
    label: str
    model_id: str
    cache: str
    files: bool
    usages: list[AnswerUsage]
    cache_points: list[int]  # per request, as the stand-in received them

    @property
    def tokens(self) -> TokenUsage:
        total = TokenUsage()
        for usage in self.usages:
            total = total + usage.tokens
        return total

    def dollars_per_question(self) -> float:
        return token_dollars(self.model_id, self.tokens) / len(self.usages)


def run_tokens(
    talk: Conversation, model_id: str, cache: str, *, files: bool, label: str
) -> TokenRun:
    from tests.standins.bedrock import BedrockStandIn, PromptCache, Stream

    with (
        tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp,
        BedrockStandIn() as standin,
        environment({**OFFLINE_AWS, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": standin.url}),
        production_logging(),
    ):
        standin.prompt_cache = PromptCache()
        standin.script(*(Stream(chunks(answer)) for answer in talk.answers))
        usages = Usages()
        settings = Settings(
            llm="bedrock",
            data_dir=Path(tmp),
            bedrock_model_id=model_id,
            prompt_cache=cache,
            system_prompt=talk.system,
            edit_interval_seconds=0.01,
        )
        assistant = build_assistant(
            settings, retriever=HandbookFiles() if files else None, usage_observer=usages
        )
        now = time.time()  # history older than the retention period is not read back
        key = ConversationKey("slack", "TBENCH", "CCOST", f"{now:.6f}")
        for n, question in enumerate(talk.questions):
            turn = Turn(key, f"q{n}", Role.USER, "U1", question, created_at=now + n)
            reply = assistant.answer(turn, QuietSink())
            if not reply.complete:
                raise RuntimeError(f"{label}: turn {n + 1} failed: {reply.error}")
        points = [
            sum(
                1
                for block in [
                    *r.body["system"],
                    *(b for m in r.body["messages"] for b in m["content"]),
                ]
                if "cachePoint" in block
            )
            for r in standin.requests
        ]
    return TokenRun(label, model_id, cache, files, usages.items, points)


# -- AWS: the same questions through the Lambda handlers -------------------------------------------


@dataclass
class ApiCall:
    phase: str
    service: str
    operation: str
    params: dict[str, Any]
    response: dict[str, Any]


@dataclass
class AwsRun:
    worker_seconds: list[float] = field(default_factory=list)
    ingress_seconds: list[float] = field(default_factory=list)
    calls: list[ApiCall] = field(default_factory=list)
    time_to_first_token_ms: list[float] = field(default_factory=list)
    questions: int = 0

    def per_question(self, phase: str) -> Counter[tuple[str, str]]:
        counted = Counter((c.service, c.operation) for c in self.calls if c.phase == phase)
        return Counter({k: v / self.questions for k, v in counted.items()})


@contextlib.contextmanager
def counting_api_calls(run: AwsRun, phase: list[str]) -> Iterator[None]:
    """Record every botocore API call made while the block runs, labelled with ``phase[0]``."""
    import botocore.client

    original = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        response = original(self, operation_name, api_params)
        if phase[0]:
            service = self.meta.service_model.service_name
            run.calls.append(ApiCall(phase[0], service, operation_name, api_params, response))
        return response

    botocore.client.BaseClient._make_api_call = counted
    try:
        yield
    finally:
        botocore.client.BaseClient._make_api_call = original


def api_event(body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": "/slack/events",
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": "POST", "path": "/slack/events"}},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def run_aws(talk: Conversation) -> AwsRun:
    import boto3
    import pytest
    from moto.server import ThreadedMotoServer

    import bots.aws.ingress as ingress
    import bots.aws.worker as worker
    from core.knowledge.dynamodb_records import records_table_definition
    from tests import slack_requests as sr
    from tests.lambda_harness import LambdaContext, drain, provision_aws, sqs_event
    from tests.standins.bedrock import BedrockStandIn, PromptCache, Stream
    from tests.standins.slack import SlackStandIn

    run = AwsRun()
    phase = [""]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    patch = pytest.MonkeyPatch()
    try:
        host, port = server.get_host_and_port()
        moto_url = f"http://{host}:{port}"
        with (
            SlackStandIn() as slack,
            BedrockStandIn() as bedrock,
            environment({**OFFLINE_AWS, "AWS_ENDPOINT_URL": moto_url}),
            production_logging(),
            counting_api_calls(run, phase),
        ):
            for method in ("chat.postMessage", "chat.update"):
                slack.set_latency(method, SLACK_LATENCY_S)
            bedrock.prompt_cache = PromptCache()
            patch.setenv("SLACK_API_URL", slack.api_url)
            patch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.url)
            secret = {
                "SLACK_SIGNING_SECRET": sr.DEFAULT_SIGNING_SECRET,
                "SLACK_BOT_TOKEN": slack.bot_token,
            }
            for name in ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"):
                patch.delenv(name, raising=False)
            aws = provision_aws(patch, moto_url, secret, llm="bedrock")
            boto3.client("dynamodb").create_table(**records_table_definition("knowledge"))
            for name, value in {
                # What infra/template.yaml gives the worker, where it matters here.
                "CHATBOT_EDIT_INTERVAL_SECONDS": "1.0",
                "CHATBOT_FINAL_WAIT_SECONDS": "150",
                "CHATBOT_KNOWLEDGE_TABLE": "knowledge",
                "CHATBOT_VECTOR_BUCKET": "vectors",
                "CHATBOT_VECTOR_INDEX": "chatbot-chunks",
                "BEDROCK_EMBEDDING_MODEL_ID": "amazon.titan-embed-text-v2:0",
                "CHATBOT_SYSTEM_PROMPT": talk.system,
            }.items():
                patch.setenv(name, value)

            def stream(answer: str) -> Stream:
                return Stream(
                    chunks(answer),
                    first_delay=FIRST_TOKEN_S,
                    delay=(CHUNK_CHARS / 4) / OUTPUT_TOKENS_PER_S,
                )

            def ask(text: str, thread: str | None, *, measured: bool) -> dict[str, Any]:
                mention = sr.app_mention(f"<@UBOT> {text}", thread_ts=thread)
                phase[0] = "ingress" if measured else "cold"
                started = clock()
                response = ingress.handler(api_event(*sr.event_callback(mention)), LambdaContext())
                ingress_s = clock() - started
                assert response["statusCode"] == 200, response
                phase[0] = "poller" if measured else "cold"
                messages = drain(aws)  # what Lambda's SQS poller does
                phase[0] = "worker" if measured else "cold"
                started = clock()
                with contextlib.redirect_stdout(io.StringIO()):  # the EMF line, as in Lambda
                    result = worker.handler(sqs_event(messages), LambdaContext())
                worker_s = clock() - started
                assert result == {"batchItemFailures": []}, result
                phase[0] = "poller" if measured else "cold"
                for message in messages:  # done: the poller deletes it (FIFO: the group goes on)
                    aws["sqs"].delete_message(
                        QueueUrl=aws["queue_url"], ReceiptHandle=message["ReceiptHandle"]
                    )
                phase[0] = ""
                if measured:
                    run.ingress_seconds.append(ingress_s)
                    run.worker_seconds.append(worker_s)
                    run.questions += 1
                return mention

            # A cold start (secrets, clients, imports) in another thread: left out.
            bedrock.script(stream(talk.answers[0]))
            ask("hello", None, measured=False)
            root = None
            for n, question in enumerate(talk.questions):
                bedrock.script(stream(talk.answers[n]))
                mention = ask(question, root, measured=True)
                root = root or mention["ts"]
            replies = [m for m in slack.messages("C1", root) if m.get("bot_id")]
            if len(replies) != TURNS:
                raise RuntimeError(f"expected {TURNS} answers in the thread, got {len(replies)}")
    finally:
        patch.undo()
        server.stop()
    return run


# -- DynamoDB request units, from the items' sizes -------------------------------------------------


def attribute_size(value: Mapping[str, Any]) -> int:
    """DynamoDB's size of one typed attribute value (its documented rules, closely)."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(str(v).encode("utf-8"))
    if kind == "N":
        digits = len(str(v).lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(len(x.encode("utf-8") if isinstance(x, str) else x) for x in v)
    if kind == "NS":
        return sum(attribute_size({"N": x}) for x in v)
    if kind == "L":
        return 3 + sum(attribute_size(x) + 1 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + attribute_size(x) + 1 for k, x in v.items())
    return 0


def item_size(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode("utf-8")) + attribute_size(v) for name, v in item.items())


# What each table is for, by the name the harness gives it (its prefix).
TABLES = {
    "history": "history: turns and the reply record",
    "idempotency": "idempotency record (Powertools)",
    "budgets": "Slack rate budget, shared by containers",
    "knowledge": "file records: has the channel files?",
}


@dataclass
class TableUnits:
    calls: Counter[str] = field(default_factory=Counter)  # per operation
    reads: float = 0.0
    writes: float = 0.0


def request_units(calls: Sequence[ApiCall]) -> dict[str, TableUnits]:
    """Read and write request units, and calls, per table, of DynamoDB calls: reads 4 KB a
    unit (half for eventually consistent), writes 1 KB a unit, each call at least one unit; an
    update or delete weighs the larger of the item before (as last seen) and after."""
    known: dict[tuple[str, str], int] = {}
    tables: dict[str, TableUnits] = {}

    def read(size: int, consistent: bool) -> float:
        return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)

    def write(size: int) -> float:
        return float(max(1, math.ceil(size / 1024)))

    def key_of(table: str, key: Mapping[str, Any]) -> tuple[str, str]:
        return table, json.dumps(key, sort_keys=True, default=str)

    for call in calls:
        if call.service != "dynamodb":
            continue
        params, response = call.params, call.response
        table = str(params.get("TableName") or next(iter(params.get("RequestItems") or {"?": 0})))
        units = tables.setdefault(table.split("-")[0], TableUnits())
        units.calls[call.operation] += 1
        reads = writes = 0.0  # this call's
        consistent = bool(params.get("ConsistentRead"))
        if call.operation == "GetItem":
            reads += read(item_size(response.get("Item") or {}), consistent)
        elif call.operation == "Query":
            reads += read(sum(item_size(i) for i in response.get("Items") or []), consistent)
        elif call.operation == "BatchGetItem":
            for name, request in params.get("RequestItems", {}).items():
                for item in response.get("Responses", {}).get(name, []):
                    reads += read(item_size(item), bool(request.get("ConsistentRead")))
        elif call.operation == "PutItem":
            item = params["Item"]
            key = {k: v for k, v in item.items() if k in ("pk", "sk", "id", "scope")}
            size = item_size(item)
            writes += write(max(size, known.get(key_of(table, key), 0)))
            known[key_of(table, key)] = size
        elif call.operation == "UpdateItem":
            after = item_size(params["Key"]) + sum(
                attribute_size(v) for v in (params.get("ExpressionAttributeValues") or {}).values()
            )
            before = known.get(key_of(table, params["Key"]), 0)
            writes += write(max(before, after))
            known[key_of(table, params["Key"])] = max(before, after)
        elif call.operation == "DeleteItem":
            writes += write(known.pop(key_of(table, params["Key"]), 0))
        elif call.operation == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    put = request.get("PutRequest")
                    writes += write(item_size(put["Item"]) if put else 0)
        else:
            raise RuntimeError(f"no request-unit rule for DynamoDB {call.operation}")
        units.reads += reads
        units.writes += writes
    return tables


# -- the report ----------------------------------------------------------------------------------


@dataclass
class Infra:
    """Per question, in dollars, and the counts they come from."""

    lines: list[tuple[str, str, float]]  # (item, how it is counted, dollars per question)

    @property
    def dollars(self) -> float:
        return sum(d for _, _, d in self.lines)


def infra_costs(aws: AwsRun) -> tuple[Infra, Infra, dict[str, Any]]:
    """AWS costs per question without files, and what a conversation with files adds."""
    measured = [c for c in aws.calls if c.phase in ("ingress", "poller", "worker")]
    tables = request_units([c for c in measured if c.phase == "worker"])
    reads = sum(t.reads for t in tables.values()) / aws.questions
    writes = sum(t.writes for t in tables.values()) / aws.questions
    worker_s = sum(aws.worker_seconds) / len(aws.worker_seconds)
    ingress_s = sum(aws.ingress_seconds) / len(aws.ingress_seconds)
    sends = sum(1 for c in measured if c.phase == "ingress" and c.operation == "SendMessage")
    polls = sum(1 for c in measured if c.phase == "poller" and c.service == "sqs")
    sqs_requests = (sends + polls) / aws.questions
    unexpected = {
        (c.service, c.operation)
        for c in measured
        if c.service not in ("dynamodb", "sqs", "bedrock-runtime")  # the model: by its tokens
    }
    if unexpected:
        raise RuntimeError(f"AWS calls this bench does not price: {sorted(unexpected)}")
    gb_s = PRICES["Lambda arm64 duration"].usd
    base = Infra(
        [
            (
                "Lambda worker",
                f"1 invocation, {worker_s:.2f} s at 1,024 MB (measured)",
                PRICES["Lambda requests"].usd / 1e6 + worker_s * WORKER_GB * gb_s,
            ),
            (
                "Lambda ingress",
                f"1 invocation, {ingress_s * 1000:.0f} ms at 512 MB (measured, warm)",
                PRICES["Lambda requests"].usd / 1e6 + ingress_s * INGRESS_GB * gb_s,
            ),
            ("API Gateway", "1 request", PRICES["API Gateway HTTP API"].usd / 1e6),
            (
                "SQS FIFO",
                f"{sqs_requests:.0f} requests (ingress's send; the poller's receive, delete)",
                sqs_requests * PRICES["SQS FIFO requests"].usd / 1e6,
            ),
            (
                "DynamoDB",
                f"{reads:.1f} read and {writes:.1f} write request units (counted)",
                reads * PRICES["DynamoDB on-demand reads"].usd / 1e6
                + writes * PRICES["DynamoDB on-demand writes"].usd / 1e6,
            ),
        ]
    )
    query_tb = INDEX_VECTORS * VECTOR_BYTES / 1e12
    files = Infra(
        [
            (
                "S3 Vectors",
                f"1 QueryVectors over {INDEX_VECTORS:,} vectors (≈{query_tb * 1e3:.3f} GB)",
                PRICES["S3 Vectors queries"].usd / 1e6
                + query_tb * PRICES["S3 Vectors data processed"].usd,
            ),
            (
                "Titan embeddings",
                "1 call: the question's tokens",
                0.0,  # filled in from the question sizes below
            ),
            (
                "DynamoDB",
                "1 strongly consistent BatchGetItem of the hits' file records (1 RRU)",
                PRICES["DynamoDB on-demand reads"].usd / 1e6,
            ),
        ]
    )
    details = {
        "worker_seconds": aws.worker_seconds,
        "ingress_seconds": aws.ingress_seconds,
        "reads": reads,
        "writes": writes,
        "dynamodb_tables": tables,
        "sqs_sends": sends / aws.questions,
    }
    return base, files, details


def money(value: float) -> str:
    if value >= 10:
        return f"${value:,.2f}"
    if value >= 0.1:
        return f"${value:.3f}"
    return f"${value:.4f}"


def per_turn_table(run: TokenRun) -> str:
    rows = []
    for n, usage in enumerate(run.usages, 1):
        t = usage.tokens
        rows.append(
            [
                n,
                f"{t.input:,}",
                f"{t.cache_read:,}",
                f"{t.cache_write:,}",
                f"{t.output:,}",
                run.cache_points[n - 1],
                money(token_dollars(run.model_id, t) * QUESTIONS),
            ]
        )
    return markdown_table(
        [
            "turn",
            "input",
            "cache read",
            "cache write",
            "output",
            "cache points",
            "$ at 1,000 such questions",
        ],
        rows,
    )


def write_docs(
    talk: Conversation,
    runs: dict[tuple[str, str, bool], TokenRun],
    aws: AwsRun,
    elapsed: float,
) -> None:
    base, files_extra, details = infra_costs(aws)
    with_files = runs[(SONNET, "auto", True)]
    question_tokens = sum(estimate_tokens(q) for q in talk.questions) / len(talk.questions)
    embed = question_tokens * PRICES["Titan Text Embeddings V2"].usd / 1e6
    files_extra.lines[1] = (
        "Titan embeddings",
        f"1 call, {question_tokens:.0f} tokens",
        embed,
    )
    infra_k = base.dollars * QUESTIONS
    files_k = files_extra.dollars * QUESTIONS

    summary_rows = []
    for model_id in (SONNET, HAIKU):
        name = MODELS[model_id][0]
        plain = runs[(model_id, "off", False)].dollars_per_question() * QUESTIONS
        cached = runs[(model_id, "auto", False)].dollars_per_question() * QUESTIONS
        for label, model_k in (("no caching", plain), ("caching (`auto`)", cached)):
            summary_rows.append(
                [
                    name,
                    label,
                    money(model_k),
                    money(infra_k),
                    f"**{money(model_k + infra_k)}**",
                    ratio(model_k + infra_k, plain + infra_k),
                ]
            )
    files_plain_k = runs[(SONNET, "off", True)].dollars_per_question() * QUESTIONS
    files_model_k = with_files.dollars_per_question() * QUESTIONS
    for label, model_k in (
        ("no caching, conversation with files", files_plain_k),
        ("caching, conversation with files", files_model_k),
    ):
        summary_rows.append(
            [
                MODELS[SONNET][0],
                label,
                money(model_k),
                money(infra_k + files_k),
                f"**{money(model_k + infra_k + files_k)}**",
                ratio(model_k + infra_k + files_k, files_plain_k + infra_k + files_k),
            ]
        )

    token_rows = []
    for run in runs.values():
        t = run.tokens
        n = len(run.usages)
        token_rows.append(
            [
                run.label,
                f"{t.input / n:,.0f}",
                f"{t.cache_read / n:,.0f}",
                f"{t.cache_write / n:,.0f}",
                f"{t.output / n:,.0f}",
                f"{t.total_input / n:,.0f}",
                money(run.dollars_per_question() * QUESTIONS),
            ]
        )

    infra_rows = [[item, how, money(d * QUESTIONS)] for item, how, d in base.lines] + [
        [f"{item} (with files)", how, money(d * QUESTIONS)] for item, how, d in files_extra.lines
    ]
    dynamo_rows = [
        [
            TABLES.get(name, name),
            ", ".join(f"{op} {n / aws.questions:.1f}" for op, n in sorted(units.calls.items())),
            f"{units.reads / aws.questions:.1f}",
            f"{units.writes / aws.questions:.1f}",
        ]
        for name, units in sorted(details["dynamodb_tables"].items())
    ]
    price_rows = [[p.item, p.shown, p.unit, p.source] for p in PRICES.values()]
    summary_table = markdown_table(
        [
            "model",
            "prompt cache",
            "Bedrock",
            "AWS (Lambda, SQS, DynamoDB, ...)",
            "total",
            "vs. no caching",
        ],
        summary_rows,
    )
    token_table = markdown_table(
        [
            "run",
            "input (uncached)",
            "cache read",
            "cache write",
            "output",
            "all input",
            "Bedrock $ per 1,000",
        ],
        token_rows,
    )
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sonnet_cached = runs[(SONNET, "auto", False)]
    haiku_cached = runs[(HAIKU, "auto", False)]
    doc = f"""# Cost per question

<!-- Generated by `python -m bench.cost` ({when}); do not edit by hand: run it again. -->

What 1,000 questions cost on AWS, measured by `bench/cost.py` on {machine_info()}; the run took
{elapsed:.0f} s. Questions come from a {TURNS}-turn conversation with a system prompt of
{estimate_tokens(talk.system):,} estimated tokens (the built-in rules plus a team handbook), so
each answer also carries the history before it. Dollar figures are list prices (table at the
end); tokens and AWS calls are counted, not assumed.

## Per 1,000 questions

{summary_table}

Prompt caching (`CHATBOT_PROMPT_CACHE=auto`, the default) puts a cache point after the system
prompt when it alone reaches the model's minimum, and after the history at the end of each turn
(read by the next turn; see `core/models/prompt_cache.py`). On Claude Haiku 4.5 the minimum is
4,096 tokens: this system prompt alone is under it, so its cache points start only once the
history has grown past it. The conversation with files adds {PASSAGES} retrieved passages
(about {estimate_tokens("x" * PASSAGE_CHARS) * PASSAGES:,} tokens) to each question; they are
new to every question and never cached.

## Tokens per question (average over the {TURNS} turns)

{token_table}

"All input" is the same with and without caching for one model: caching changes the price of
the tokens, not their number. Turn by turn, {MODELS[SONNET][0]} with caching:

{per_turn_table(sonnet_cached)}

{MODELS[HAIKU][0]} with caching:

{per_turn_table(haiku_cached)}

## AWS per 1,000 questions

{markdown_table(["item", "per question", "per 1,000 questions"], infra_rows)}

The worker's duration is its measured wall time per question (p50
{p50(aws.worker_seconds):.2f} s, p95 {p95(aws.worker_seconds):.2f} s) with the model streaming
at an assumed {OUTPUT_TOKENS_PER_S:.0f} tokens a second after {FIRST_TOKEN_S} s, Slack taking
{SLACK_LATENCY_S * 1000:.0f} ms per post or edit, and the production edit interval of 1 s: most
of it is waiting for the model, so a faster model shortens it (the same duration is used for
both models here). A cold start (about a second more, once per container) is left out.

DynamoDB per question, as counted in the worker:

{markdown_table(["table", "calls per question", "read units", "write units"], dynamo_rows)}

Request units are computed from the sizes of the items written and read (DynamoDB's rules:
1 KB a write unit, 4 KB a read unit, half for eventually consistent reads, at least one unit a
call). With `CHATBOT_QUOTA_*` limits set, each question adds two quota updates (two write units).

Not per question, so not above: storage (history, files, vectors), CloudWatch logs and metrics
(one EMF document and a few log lines per answer), Secrets Manager, the SQS poller's empty
receives while the queue is idle (a few hundred thousand requests a month, well under a
dollar), and Slack's second event for a thread mention (`message` beside `app_mention`: one
more API Gateway request and ingress invocation).

## Prices used

{markdown_table(["item", "price", "unit", "source"], price_rows)}

Bedrock prices from the project's platform facts (list prices 2026; the global endpoint is
about 10% cheaper than regional ones, not applied here). Every other price is an assumption:
an AWS list price in us-east-1 as of 2026, to be checked against the pricing pages before
relying on it. S3 Vectors data processed per query = index size × (vector + key + filterable
metadata), assumed here for an index of {INDEX_VECTORS:,} chunks.
"""
    COST_DOC.write_text(doc, encoding="utf-8")

    sonnet_saving = ratio(
        sonnet_cached.dollars_per_question(), runs[(SONNET, "off", False)].dollars_per_question()
    )
    haiku_saving = ratio(
        haiku_cached.dollars_per_question(), runs[(HAIKU, "off", False)].dollars_per_question()
    )
    bench_rows = []
    for model_id in (SONNET, HAIKU):
        baseline = runs[(model_id, "off", False)].dollars_per_question()
        cached_run = runs[(model_id, "auto", False)]
        cached_cost = cached_run.dollars_per_question()
        read_share = cached_run.tokens.cache_read / max(1, cached_run.tokens.total_input)
        bench_rows.append(
            [
                MODELS[model_id][0],
                money(baseline * QUESTIONS),
                money(cached_cost * QUESTIONS),
                ratio(cached_cost, baseline),
                f"{read_share:.0%}",
                money((cached_cost + base.dollars) * QUESTIONS),
                verdict(cached_cost <= baseline),
            ]
        )
    bench_table = markdown_table(
        [
            "model",
            "Bedrock $/1,000 questions, no cache (baseline)",
            "with caching",
            "ratio",
            "input read from cache",
            "total with AWS, cached",
            "target: ≤ 1.0×",
        ],
        bench_rows,
    )
    body = f"""## Cost per question and prompt caching (`bench.cost`)

Measured {machine_info()}.
Reproduce: `.venv/bin/python -m bench.cost` (this run took {elapsed:.0f} s). Full figures,
AWS counts and prices: [cost.md](cost.md).

A {TURNS}-turn conversation ({estimate_tokens(talk.system):,}-token system prompt, history
growing) through the real `Assistant` and `BedrockChatModel` against the Bedrock stand-in with
Bedrock's cache accounting; baseline: the same conversation with `CHATBOT_PROMPT_CACHE=off`,
in the same run.

{bench_table}

Caching cuts the model bill to {sonnet_saving} of the baseline on {MODELS[SONNET][0]} and
{haiku_saving} on {MODELS[HAIKU][0]} (whose 4,096-token minimum leaves the system prompt
uncached: its cache points start once the history passes the minimum). Target: over a
conversation, caching never costs more than no caching (a write costs 1.25× and must be read
again to pay). The worker's measured duration per question: p50 {p50(aws.worker_seconds):.2f} s
(model streaming at an assumed pace included).
"""
    write_section(SECTION, body)


def main() -> None:
    started = clock()
    talk = conversation()
    runs: dict[tuple[str, str, bool], TokenRun] = {}
    for model_id in (SONNET, HAIKU):
        for cache in ("off", "auto"):
            label = f"{MODELS[model_id][0]}, cache {cache}"
            runs[(model_id, cache, False)] = run_tokens(
                talk, model_id, cache, files=False, label=label
            )
    for cache in ("off", "auto"):
        label = f"{MODELS[SONNET][0]}, cache {cache}, with files"
        runs[(SONNET, cache, True)] = run_tokens(talk, SONNET, cache, files=True, label=label)
    for run in runs.values():
        print(
            f"{run.label:45s} per question: {run.tokens.input / TURNS:8,.0f} in "
            f"{run.tokens.cache_read / TURNS:8,.0f} read {run.tokens.cache_write / TURNS:8,.0f} "
            f"write {run.tokens.output / TURNS:6,.0f} out  "
            f"${run.dollars_per_question() * QUESTIONS:.2f}/1,000",
            flush=True,
        )
    aws = run_aws(talk)
    print(
        f"worker p50 {p50(aws.worker_seconds):.2f} s, ingress p50 "
        f"{p50(aws.ingress_seconds) * 1000:.0f} ms, {len(aws.calls)} AWS calls",
        flush=True,
    )
    write_docs(talk, runs, aws, clock() - started)
    print(f"wrote {COST_DOC} and the {SECTION} section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
