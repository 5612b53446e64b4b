"""The SAM template: lint-clean, and keeping the promises docs/deploy.md makes about it."""

from __future__ import annotations

import importlib
import io
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

import bots.aws.metrics as worker_metrics
from core.budget.dynamodb import table_definition as rate_budget_table_definition
from core.config import ENVIRONMENT_NAMES, Settings
from core.errors import ModelError
from core.files.raw import S3RawFileStore, raw_key
from core.history.dynamodb import TTL_ATTRIBUTE, USER_INDEX, table_definition
from core.knowledge.base import FileRecord, StoredChunk
from core.knowledge.dynamodb_records import (
    FILE_INDEX,
    DynamoDbFileRecords,
    records_table_definition,
)
from core.knowledge.embeddings import TITAN_V2_DIMENSIONS, TitanEmbedder
from core.knowledge.records import FileRecords, IndexedFile
from core.knowledge.s3vectors import S3VectorsKnowledgeStore, index_definition
from core.quota.base import QuotaLimits
from core.quota.dynamodb import DynamoDbQuotaStore
from core.quota.dynamodb import table_definition as quota_table_definition
from core.usage import AnswerUsage, ReplyStats, TokenUsage

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "infra" / "template.yaml"
MAKEFILE = ROOT / "infra" / "Makefile"

CREDENTIAL_NAMES = {
    "SLACK_SIGNING_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "MICROSOFT_APP_ID",
    "MICROSOFT_APP_PASSWORD",
    "MICROSOFT_APP_TENANT_ID",
    "MICROSOFT_APP_TYPE",
}
READ_ONLY_VERBS = ("Get", "List", "Describe")
QUOTA_LIMITS = (
    "CHATBOT_QUOTA_QUESTIONS_PER_USER",
    "CHATBOT_QUOTA_QUESTIONS_PER_WORKSPACE",
    "CHATBOT_QUOTA_TOKENS_PER_USER",
    "CHATBOT_QUOTA_TOKENS_PER_WORKSPACE",
)
FILE_SETTINGS = {
    "CHATBOT_FILES_BUCKET",
    "CHATBOT_VECTOR_BUCKET",
    "CHATBOT_VECTOR_INDEX",
    "CHATBOT_KNOWLEDGE_TABLE",
    "BEDROCK_EMBEDDING_MODEL_ID",
    "CHATBOT_MAX_FILE_MB",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, matches = decode(str(TEMPLATE))
    assert not matches, [str(m) for m in matches]
    assert decoded is not None
    return decoded


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]


def statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role["Properties"].get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resolve(node: Any, params: dict[str, Any]) -> Any:
    """Just enough of CloudFormation's intrinsic functions to read the IAM ARNs back."""
    if isinstance(node, list):
        return [resolve(n, params) for n in node]
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((name, arg),) = node.items()
    if name == "Ref":
        return params[arg]
    if name == "Fn::GetAtt":
        return params[".".join(arg)]
    if name == "Fn::Join":
        return arg[0].join(resolve(part, params) for part in arg[1])
    if name == "Fn::Select":
        return resolve(arg[1], params)[int(arg[0])]
    if name == "Fn::Split":
        return resolve(arg[1], params).split(arg[0])
    if name == "Fn::Sub":
        text, local = (arg, {}) if isinstance(arg, str) else arg
        names = {**params, **{k: resolve(v, params) for k, v in local.items()}}
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], text)
    return node


PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
}


def defaults(template: dict[str, Any]) -> dict[str, Any]:
    return {name: p["Default"] for name, p in template["Parameters"].items()}


class RecordingClient:
    """A boto3 client stand-in: records the API of every call, answers with canned responses."""

    def __init__(self, responses: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._responses = responses or {}

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(**request: Any) -> Any:
            self.calls.append((method, request))
            response = self._responses.get(method, {})
            return response() if callable(response) else response

        return call

    def apis(self, prefix: str) -> set[str]:
        """IAM action names of the calls made, e.g. ``s3vectors:PutVectors``."""
        return {f"{prefix}:" + "".join(w.capitalize() for w in m.split("_")) for m, _ in self.calls}


class MemoryRecords(FileRecords):
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], IndexedFile] = {}

    def get(self, scope: str, file_id: str) -> IndexedFile | None:
        return self.entries.get((scope, file_id))

    def in_scope(self, scope: str) -> list[IndexedFile]:
        return [e for (s, _), e in self.entries.items() if s == scope]

    def find(self, platform_workspace: str, file_id: str) -> list[IndexedFile]:
        return [
            e
            for (s, f), e in self.entries.items()
            if f == file_id and s.startswith(platform_workspace + "#")
        ]

    def versions(self, scope: str, file_ids: Sequence[str]) -> dict[str, str]:
        return {f: e.version for (s, f), e in self.entries.items() if s == scope and f in file_ids}

    def commit(self, entry: IndexedFile, *, replacing: str | None) -> None:
        self.entries[(entry.record.scope, entry.record.file_id)] = entry

    def delete(self, scope: str, file_id: str, version: str) -> bool:
        return self.entries.pop((scope, file_id), None) is not None


# ---------------------------------------------------------------------------------- lint


def test_template_passes_cfn_lint_without_errors_or_warnings() -> None:
    matches = lint_file(TEMPLATE)
    assert not matches, "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


# ---------------------------------------------------------------------------------- data


def test_history_table_is_exactly_the_one_the_code_creates(template: dict[str, Any]) -> None:
    table = template["Resources"]["HistoryTable"]
    p = table["Properties"]
    described = {
        "BillingMode": p["BillingMode"],
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "GlobalSecondaryIndexes": p["GlobalSecondaryIndexes"],
        "SSESpecification": {"Enabled": p["SSESpecification"]["SSEEnabled"]},
    }
    expected = table_definition("x")
    del expected["TableName"]
    assert json.loads(json.dumps(described)) == expected
    assert p["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert p["GlobalSecondaryIndexes"][0]["IndexName"] == USER_INDEX
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_idempotency_table_has_the_powertools_default_schema(template: dict[str, Any]) -> None:
    p = props(template, "IdempotencyTable")
    assert p["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert p["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert p["BillingMode"] == "PAY_PER_REQUEST"


def test_rate_budget_table_is_exactly_the_one_the_code_uses(template: dict[str, Any]) -> None:
    p = props(template, "RateBudgetTable")
    expected = rate_budget_table_definition("x")
    assert p["KeySchema"] == expected["KeySchema"]
    assert p["AttributeDefinitions"] == expected["AttributeDefinitions"]
    assert p["BillingMode"] == expected["BillingMode"]
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    worker = template["Resources"]["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert worker["CHATBOT_BUDGET_TABLE"] == {"Ref": "RateBudgetTable"}
    timeout = template["Resources"]["WorkerFunction"]["Properties"]["Timeout"]
    assert 0 < int(worker["CHATBOT_FINAL_WAIT_SECONDS"]) < timeout - 60  # room for the answer


def test_quota_table_is_exactly_the_one_the_code_creates(template: dict[str, Any]) -> None:
    table = template["Resources"]["QuotaTable"]
    p = table["Properties"]
    described = {
        "BillingMode": p["BillingMode"],
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "SSESpecification": {"Enabled": p["SSESpecification"]["SSEEnabled"]},
    }
    expected = quota_table_definition("x")
    del expected["TableName"]
    assert json.loads(json.dumps(described)) == expected
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert set(p) - set(described) == {"TimeToLiveSpecification"}  # nothing else
    worker = template["Resources"]["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert worker["CHATBOT_QUOTA_TABLE"] == {"Ref": "QuotaTable"}
    for name in QUOTA_LIMITS:
        parameter = template["Parameters"][worker[name]["Ref"]]
        assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 0, 0)


def test_every_table_and_queue_is_encrypted(template: dict[str, Any]) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    queues = resources(template, "AWS::SQS::Queue")
    assert set(tables) == {
        "HistoryTable",
        "IdempotencyTable",
        "KnowledgeTable",
        "RateBudgetTable",
        "QuotaTable",
    }
    assert all(t["Properties"]["SSESpecification"]["SSEEnabled"] is True for t in tables.values())
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())


def test_knowledge_table_is_exactly_the_one_the_code_creates(template: dict[str, Any]) -> None:
    table = template["Resources"]["KnowledgeTable"]
    p = table["Properties"]
    described = {
        "BillingMode": p["BillingMode"],
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "GlobalSecondaryIndexes": p["GlobalSecondaryIndexes"],
        "SSESpecification": {"Enabled": p["SSESpecification"]["SSEEnabled"]},
    }
    expected = records_table_definition("x")
    del expected["TableName"]
    assert json.loads(json.dumps(described)) == expected
    assert set(p) - set(described) == {"PointInTimeRecoverySpecification"}  # nothing else
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_vector_index_is_exactly_the_one_the_code_creates(template: dict[str, Any]) -> None:
    index = template["Resources"]["VectorIndex"]
    p = index["Properties"]
    dimension = resolve(p["Dimension"], defaults(template))
    expected = index_definition("bucket", p["IndexName"], dimension)
    described = {
        "vectorBucketName": "bucket",
        "indexName": p["IndexName"],
        "dataType": p["DataType"],
        "dimension": dimension,
        "distanceMetric": p["DistanceMetric"],
        "metadataConfiguration": {
            "nonFilterableMetadataKeys": p["MetadataConfiguration"]["NonFilterableMetadataKeys"]
        },
    }
    assert described == expected
    assert "scope" not in p["MetadataConfiguration"]["NonFilterableMetadataKeys"]
    assert p["VectorBucketArn"] == {"Fn::GetAtt": ["VectorBucket", "VectorBucketArn"]}
    assert p["IndexName"] == Settings().vector_index
    assert "EncryptionConfiguration" not in p  # the vector bucket's, below
    bucket = template["Resources"]["VectorBucket"]
    assert bucket["Properties"]["EncryptionConfiguration"]["SseType"] in {"AES256", "aws:kms"}
    for resource in (index, bucket):
        assert resource["DeletionPolicy"] == "Retain"
        assert resource["UpdateReplacePolicy"] == "Retain"


def test_index_dimension_is_the_size_the_worker_embeds_in(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["EmbeddingDimensions"]
    assert template["Resources"]["VectorIndex"]["Properties"]["Dimension"] == {
        "Ref": "EmbeddingDimensions"
    }
    model_id = template["Parameters"]["EmbeddingModelId"]["Default"]
    assert model_id == "amazon.titan-embed-text-v2:0"
    assert re.fullmatch(template["Parameters"]["EmbeddingModelId"]["AllowedPattern"], model_id)
    # As core/runtime.py builds it: no dimension passed, so every allowed value must be the
    # one the embedder asks Bedrock for (widen AllowedValues when a setting carries it).
    client = RecordingClient(
        {"invoke_model": lambda: {"body": io.BytesIO(json.dumps({"embedding": [0.0]}).encode())}}
    )
    embedder = TitanEmbedder(model_id=model_id, region="eu-west-1", client=client, max_attempts=1)
    with pytest.raises(ModelError, match="dimensions"):  # the canned answer is too short
        embedder.embed(["x"])
    ((method, request),) = client.calls
    assert (method, request["modelId"]) == ("invoke_model", model_id)
    asked = json.loads(request["body"])["dimensions"]
    assert parameter["Default"] == asked
    assert parameter["AllowedValues"] == [asked]
    assert asked in TITAN_V2_DIMENSIONS


def test_files_bucket_is_versioned_encrypted_private_and_tls_only(
    template: dict[str, Any],
) -> None:
    bucket = template["Resources"]["FilesBucket"]
    p = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert p["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert p["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (lifecycle,) = p["LifecycleConfiguration"]["Rules"]
    assert lifecycle["Status"] == "Enabled"
    assert lifecycle["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert "ExpirationInDays" not in lifecycle  # current copies live until the file is deleted

    (policy,) = resources(template, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": "FilesBucket"}
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "s3:*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [
        {"Fn::GetAtt": ["FilesBucket", "Arn"]},
        {"Fn::Sub": "${FilesBucket.Arn}/*"},
    ]


def test_job_queue_is_fifo_with_a_fifo_dead_letter_queue(template: dict[str, Any]) -> None:
    queue = props(template, "JobQueue")
    dlq = props(template, "DeadLetterQueue")
    worker_timeout = props(template, "WorkerFunction")["Timeout"]
    assert queue["FifoQueue"] is True
    assert queue["ContentBasedDeduplication"] is False  # ingress sets the platform event id
    assert queue["VisibilityTimeout"] >= 6 * worker_timeout
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
        "maxReceiveCount": 3,
    }
    assert dlq["FifoQueue"] is True
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


def test_secret_holds_only_placeholders(template: dict[str, Any]) -> None:
    placeholder = json.loads(props(template, "PlatformSecret")["SecretString"])
    assert set(placeholder) == CREDENTIAL_NAMES - {"SLACK_APP_TOKEN"}
    assert {k: v for k, v in placeholder.items() if v} == {"MICROSOFT_APP_TYPE": "SingleTenant"}


# ---------------------------------------------------------------------------------- IAM


def test_no_wildcard_actions_and_no_write_on_every_resource(template: dict[str, Any]) -> None:
    for name, role in resources(template, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        for statement in statements(role):
            assert statement["Effect"] == "Allow"
            actions = as_list(statement["Action"])
            assert all("*" not in action for action in actions), (name, actions)
            if "*" in as_list(statement["Resource"]):
                verbs = [action.split(":", 1)[1] for action in actions]
                assert all(v.startswith(READ_ONLY_VERBS) for v in verbs), (name, actions)


def test_functions_run_as_their_own_roles(template: dict[str, Any]) -> None:
    functions = resources(template, "AWS::Serverless::Function")
    assert set(functions) == {"IngressFunction", "WorkerFunction"}
    for name, function in functions.items():
        p = function["Properties"]
        assert "Policies" not in p, name  # SAM would add managed policies with "*" resources
        role = p["Role"]["Fn::GetAtt"][0]
        assert template["Resources"][role]["Type"] == "AWS::IAM::Role"
        log_group = p["LoggingConfig"]["LogGroup"]["Ref"]
        logs = [s for s in statements(template["Resources"][role]) if s["Sid"] == "WriteOwnLogs"]
        assert logs and logs[0]["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}


def test_ingress_can_only_enqueue_and_read_the_secret(template: dict[str, Any]) -> None:
    granted = {
        (action, json.dumps(statement["Resource"], sort_keys=True))
        for statement in statements(template["Resources"]["IngressRole"])
        if statement["Sid"] != "WriteOwnLogs"
        for action in as_list(statement["Action"])
    }
    assert granted == {
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["JobQueue", "Arn"]})),
        ("secretsmanager:GetSecretValue", json.dumps({"Ref": "PlatformSecret"})),
    }


def test_worker_grants_name_exact_resources(template: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["WorkerRole"])}
    assert set(by_sid["History"]["Action"]) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteItem",
    }
    assert by_sid["History"]["Resource"] == {"Fn::GetAtt": ["HistoryTable", "Arn"]}
    assert by_sid["HistoryByUser"]["Resource"] == {
        "Fn::Sub": "${HistoryTable.Arn}/index/" + USER_INDEX
    }
    assert by_sid["IdempotencyRecords"]["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    assert set(by_sid["RateBudgets"]["Action"]) == {"dynamodb:GetItem", "dynamodb:PutItem"}
    assert by_sid["RateBudgets"]["Resource"] == {"Fn::GetAtt": ["RateBudgetTable", "Arn"]}
    assert by_sid["ConsumeJobs"]["Resource"] == {"Fn::GetAtt": ["JobQueue", "Arn"]}
    assert "sqs:SendMessage" not in by_sid["ConsumeJobs"]["Action"]
    assert by_sid["Quotas"]["Resource"] == {"Fn::GetAtt": ["QuotaTable", "Arn"]}


def test_quota_grants_are_exactly_the_apis_the_code_calls(template: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["WorkerRole"])}
    client = RecordingClient(
        {"query": {"Items": [{"pk": {"S": "user#slack#T1#U1"}, "sk": {"S": "2026-11-30"}}]}}
    )
    limits = QuotaLimits(1, 1, 1, 1)
    quota = DynamoDbQuotaStore("table", limits, region="eu-west-1", client=client)
    quota.admit("slack", "T1", "U1")
    quota.add_tokens("slack", "T1", "U1", 10)
    assert quota.erase_user("slack", "T1", "U1") == 1
    assert client.apis("dynamodb") == set(by_sid["Quotas"]["Action"])
    assert {
        request["TableName"] for method, request in client.calls if method != "batch_write_item"
    } == {"table"}


FILE_GRANTS = {
    "InvokeEmbeddingModel",
    "RawFiles",
    "KnowledgeVectors",
    "KnowledgeRecords",
    "KnowledgeRecordsByFile",
}


def test_worker_file_grants_name_exact_resources(template: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["WorkerRole"])}
    assert set(by_sid) >= FILE_GRANTS
    granted = {
        sid: (sorted(as_list(by_sid[sid]["Action"])), by_sid[sid]["Resource"])
        for sid in FILE_GRANTS
    }
    assert granted == {
        "InvokeEmbeddingModel": (
            ["bedrock:InvokeModel"],
            {
                "Fn::Sub": "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/"
                "${EmbeddingModelId}"
            },
        ),
        "RawFiles": (
            ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            {"Fn::Sub": "${FilesBucket.Arn}/files/*"},
        ),
        "KnowledgeVectors": (
            [
                "s3vectors:DeleteVectors",
                "s3vectors:GetVectors",
                "s3vectors:PutVectors",
                "s3vectors:QueryVectors",
            ],
            {"Fn::GetAtt": ["VectorIndex", "IndexArn"]},
        ),
        "KnowledgeRecords": (
            [
                "dynamodb:BatchGetItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
            ],
            {"Fn::GetAtt": ["KnowledgeTable", "Arn"]},
        ),
        "KnowledgeRecordsByFile": (
            ["dynamodb:Query"],
            {"Fn::Sub": "${KnowledgeTable.Arn}/index/" + FILE_INDEX},
        ),
    }
    assert all("Condition" not in by_sid[sid] for sid in FILE_GRANTS)
    params = {**PSEUDO, **defaults(template)}
    assert resolve(by_sid["InvokeEmbeddingModel"]["Resource"], params) == (
        "arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-embed-text-v2:0"
    )
    # raw.py's keys all sit under the granted prefix.
    assert raw_key("slack#T1", "F1").startswith("files/")


def test_file_grants_are_exactly_the_apis_the_code_calls(template: dict[str, Any]) -> None:
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["WorkerRole"])}
    scope = "slack#T1#C1"
    record = FileRecord(scope, "F1", "a.txt", "hash", 1, "a.txt", 0.0)
    chunk = StoredChunk(scope, "F1", "a.txt", 0, "p. 1", "text")

    vectors = RecordingClient(
        {
            "query_vectors": {"vectors": []},
            "get_vectors": {"vectors": []},
        }
    )
    store = S3VectorsKnowledgeStore(
        "bucket", "index", region="eu-west-1", records=MemoryRecords(), client=vectors
    )
    store.put_file(record, [chunk], [[0.1, 0.2]])
    store.put_file(record, [chunk], [[0.1, 0.2]])  # replaces: discards the old vectors
    store.search(scope, "question", limit=3, query_embedding=[0.1, 0.2])
    store.file_chunks(scope, "F1")
    store.remove_file(scope, "F1")
    store.put_file(record, [chunk], [[0.1, 0.2]])
    store.remove_file_everywhere("slack#T1", "F1")
    assert vectors.apis("s3vectors") == set(by_sid["KnowledgeVectors"]["Action"])

    dynamodb = RecordingClient()
    records = DynamoDbFileRecords("table", region="eu-west-1", client=dynamodb)
    records.get(scope, "F1")
    records.in_scope(scope)
    records.find("slack#T1", "F1")
    records.versions(scope, ["F1"])
    records.commit(IndexedFile(record, "v1", 1), replacing=None)
    records.delete(scope, "F1", "v1")
    on_index = {m for m, request in dynamodb.calls if "IndexName" in request}
    assert on_index == {"query"}
    assert {r["IndexName"] for _, r in dynamodb.calls if "IndexName" in r} == {FILE_INDEX}
    assert dynamodb.apis("dynamodb") == set(by_sid["KnowledgeRecords"]["Action"])

    s3 = RecordingClient({"get_object": lambda: {"Body": io.BytesIO(b"bytes")}})
    raw = S3RawFileStore("bucket", region="eu-west-1", client=s3)
    raw.put("slack#T1", "F1", b"bytes")
    raw.get("slack#T1", "F1")
    raw.delete("slack#T1", "F1")
    assert s3.apis("s3") == set(by_sid["RawFiles"]["Action"])


def test_worker_may_invoke_only_the_configured_model_through_its_profile(
    template: dict[str, Any],
) -> None:
    model_id = template["Parameters"]["ModelId"]["Default"]
    assert model_id == "global.anthropic.claude-sonnet-4-6"
    params = {**PSEUDO, "ModelId": model_id}
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["WorkerRole"])}
    profile_arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/" + model_id
    invoke = {"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}

    profile = by_sid["InvokeInferenceProfile"]
    assert set(profile["Action"]) == invoke
    assert resolve(profile["Resource"], params) == profile_arn

    model = by_sid["InvokeRoutedFoundationModel"]
    assert set(model["Action"]) == invoke
    assert resolve(model["Resource"], params) == [
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-6",
        "arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-6",
    ]
    condition = model["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"]
    assert resolve(condition, params) == profile_arn


@pytest.mark.parametrize(
    ("model_id", "accepted"),
    [
        ("global.anthropic.claude-sonnet-4-6", True),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", True),
        ("eu.amazon.nova-pro-v1:0", True),
        ("anthropic.claude-3-haiku-20240307-v1:0", False),  # not a profile: IAM would not match
        ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/x", False),
    ],
)
def test_model_id_must_be_an_inference_profile_id(
    template: dict[str, Any], model_id: str, accepted: bool
) -> None:
    pattern = template["Parameters"]["ModelId"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, model_id)) is accepted


# ---------------------------------------------------------------------------------- API


def test_api_has_no_cors_and_logs_and_throttles(template: dict[str, Any]) -> None:
    assert "Cors" not in template.get("Globals", {}).get("HttpApi", {})
    assert not resources(template, "AWS::ApiGatewayV2::Api")
    api = props(template, "HttpApi")
    assert "CorsConfiguration" not in api
    assert api["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]
    }
    assert api["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0


def test_ingress_serves_both_platform_routes(template: dict[str, Any]) -> None:
    events = props(template, "IngressFunction")["Events"].values()
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events}
    assert routes == {("POST", "/slack/events"), ("POST", "/api/messages")}
    assert all(e["Type"] == "HttpApi" for e in events)
    assert all(e["Properties"]["ApiId"] == {"Ref": "HttpApi"} for e in events)


def test_worker_reads_the_queue_in_batches_with_partial_failures(
    template: dict[str, Any],
) -> None:
    (event,) = props(template, "WorkerFunction")["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["JobQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == 1
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_outputs_give_the_platform_endpoints(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["SlackRequestUrl"]["Value"]["Fn::Sub"].endswith("/slack/events")
    assert outputs["TeamsMessagingEndpoint"]["Value"]["Fn::Sub"].endswith("/api/messages")
    assert outputs["SecretArn"]["Value"] == {"Ref": "PlatformSecret"}
    assert outputs["QueueUrl"]["Value"] == {"Ref": "JobQueue"}
    assert outputs["FilesBucketName"]["Value"] == {"Ref": "FilesBucket"}
    arn = "arn:aws:s3vectors:eu-west-1:123456789012:bucket/vectors-abc"
    params = {"VectorBucket.VectorBucketArn": arn}
    assert resolve(outputs["VectorBucketName"]["Value"], params) == "vectors-abc"


# ---------------------------------------------------------------------------------- functions


def function_environment(template: dict[str, Any]) -> dict[str, Any]:
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for function in resources(template, "AWS::Serverless::Function").values():
        variables.update(function["Properties"].get("Environment", {}).get("Variables", {}))
    return variables


def test_environment_names_are_the_configuration_contract(template: dict[str, Any]) -> None:
    names = set(function_environment(template))
    unknown = {n for n in names if n not in ENVIRONMENT_NAMES and not n.startswith("POWERTOOLS_")}
    assert not unknown
    assert not names & CREDENTIAL_NAMES  # credentials come from Secrets Manager only
    assert {
        "CHATBOT_HISTORY_TABLE",
        "CHATBOT_IDEMPOTENCY_TABLE",
        "CHATBOT_QUEUE_URL",
        "CHATBOT_SECRET_ID",
        "BEDROCK_MODEL_ID",
    } | FILE_SETTINGS <= names


def test_only_the_worker_gets_the_file_settings(template: dict[str, Any]) -> None:
    assert not FILE_SETTINGS & set(template["Globals"]["Function"]["Environment"]["Variables"])
    assert "Environment" not in props(template, "IngressFunction")
    env = dict(props(template, "WorkerFunction")["Environment"]["Variables"])
    reply_settings = {"CHATBOT_BUDGET_TABLE", "CHATBOT_FINAL_WAIT_SECONDS"}  # the worker's too
    quota_settings = {"CHATBOT_QUOTA_TABLE", *QUOTA_LIMITS}
    assert set(env) == FILE_SETTINGS | reply_settings | quota_settings
    quotas = {name: resolve(env.pop(name), defaults(template)) for name in QUOTA_LIMITS}
    assert Settings.from_env({k: str(v) for k, v in quotas.items()}).quota_questions_per_user == 0
    for name in reply_settings | {"CHATBOT_QUOTA_TABLE"}:
        del env[name]
    params = {
        **defaults(template),
        "FilesBucket": "files-bucket",
        "KnowledgeTable": "knowledge-table",
        "VectorBucket.VectorBucketArn": "arn:aws:s3vectors:eu-west-1:123456789012:bucket/vb",
        "VectorIndex.IndexArn": "arn:aws:s3vectors:eu-west-1:123456789012:bucket/vb/index/ix",
    }
    assert {name: resolve(value, params) for name, value in env.items()} == {
        "CHATBOT_FILES_BUCKET": "files-bucket",
        "CHATBOT_VECTOR_BUCKET": "vb",
        "CHATBOT_VECTOR_INDEX": "ix",
        "CHATBOT_KNOWLEDGE_TABLE": "knowledge-table",
        "BEDROCK_EMBEDDING_MODEL_ID": "amazon.titan-embed-text-v2:0",
        "CHATBOT_MAX_FILE_MB": 25,
    }
    # What the worker reads back from these values.
    settings = Settings.from_env({name: str(resolve(value, params)) for name, value in env.items()})
    assert (settings.vector_bucket, settings.vector_index) == ("vb", "ix")
    assert settings.max_file_mb == 25


def test_environment_selects_the_aws_backends(template: dict[str, Any]) -> None:
    env = function_environment(template)
    assert env["CHATBOT_LLM"] == "bedrock"
    assert env["CHATBOT_STORE"] == "dynamodb"
    assert env["POWERTOOLS_SERVICE_NAME"] == "chatbot"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Chatbot"


@pytest.mark.parametrize("logical_id", ["IngressFunction", "WorkerFunction"])
def test_handlers_exist_and_the_build_packages_only_runtime_code(
    template: dict[str, Any], logical_id: str
) -> None:
    function = template["Resources"][logical_id]
    module, _, attribute = function["Properties"]["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))
    assert function["Metadata"] == {"BuildMethod": "makefile", "ContextPath": "."}
    makefile = MAKEFILE.read_text()
    targets = re.findall(r"^([\w\- ]+):", makefile, re.MULTILINE)
    assert any(f"build-{logical_id}" in line.split() for line in targets)
    copied = re.findall(r"^\s*cp -R (.+) \"\$\(ARTIFACTS_DIR\)/\"$", makefile, re.MULTILINE)
    assert copied == ["core bots"]


SNAP_START_RUNTIMES = {"python3.12", "python3.13"}  # Lambda SnapStart: Python 3.12 and later


def test_snap_start_is_an_opt_in_for_the_ingress_on_published_versions(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"]["EnableSnapStart"]
    assert parameter["Default"] == "false" and set(parameter["AllowedValues"]) == {"true", "false"}
    assert template["Conditions"]["SnapStartEnabled"] == {
        "Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]
    }
    assert template["Globals"]["Function"]["Runtime"] in SNAP_START_RUNTIMES
    ingress = props(template, "IngressFunction")
    assert ingress["SnapStart"] == {
        "Fn::If": ["SnapStartEnabled", {"ApplyOn": "PublishedVersions"}, {"Ref": "AWS::NoValue"}]
    }
    # SnapStart runs only on published versions: API Gateway calls an alias SAM moves to a new
    # version on any change (toggling SnapStart included), and the version it leaves is deleted
    # (with SnapStart, every version that exists has a cached snapshot, and is billed for it).
    assert ingress["AutoPublishAlias"] == "live"
    assert ingress["AutoPublishAliasAllProperties"] is True
    assert ingress["VersionDeletionPolicy"] == "Delete"
    # What SnapStart does not support: provisioned concurrency, EFS, ephemeral storage > 512 MB.
    assert not {"ProvisionedConcurrencyConfig", "FileSystemConfigs"} & set(ingress)
    assert ingress.get("EphemeralStorage", {"Size": 512})["Size"] <= 512
    # The worker answers from a queue: no one waits on its cold start, no SnapStart cost.
    assert "SnapStart" not in props(template, "WorkerFunction")


# ---------------------------------------------------------------------------------- alarms


def test_alarms_watch_what_the_docs_say_and_notify_the_topic(template: dict[str, Any]) -> None:
    alarms = {
        (p["Namespace"], p["MetricName"]): p
        for p in (a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values())
    }
    assert set(alarms) == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("AWS/Lambda", "Errors"),
        ("Chatbot", "AnswersFailed"),
        ("AWS/ApiGateway", "5xx"),
        ("Chatbot", "TimeToFirstToken"),
        ("Chatbot", "Platform429s"),
    }
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    dimension = alarms[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]["Dimensions"][0]
    assert dimension["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    assert alarms[("AWS/Lambda", "Errors")]["Dimensions"][0]["Value"] == {"Ref": "WorkerFunction"}
    assert alarms[("AWS/ApiGateway", "5xx")]["Dimensions"][0]["Value"] == {"Ref": "HttpApi"}
    answers = alarms[("Chatbot", "AnswersFailed")]
    assert (answers["Statistic"], answers["Period"], answers["Threshold"]) == ("Sum", 300, 5)
    assert answers["Dimensions"] == [{"Name": "service", "Value": "chatbot"}]


def test_email_subscription_only_when_an_address_is_given(template: dict[str, Any]) -> None:
    (subscription,) = resources(template, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    assert template["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }


# ---------------------------------------------------------------------------------- dashboard


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    params = {**PSEUDO, "WorkerLogGroup": "/aws/lambda/stack-worker"}
    body: dict[str, Any] = json.loads(resolve(dashboard["Properties"]["DashboardBody"], params))
    return body


def dashboard_metrics(body: dict[str, Any]) -> list[list[Any]]:
    """Every metric row of the metric widgets, CloudWatch's "." shorthand expanded."""
    rows: list[list[Any]] = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        previous: list[Any] = []
        for row in widget["properties"]["metrics"]:
            plain = [r for r in row if not isinstance(r, dict)]
            plain = [previous[i] if v == "." else v for i, v in enumerate(plain)]
            rows.append(plain)
            previous = plain
    return rows


def test_dashboard_shows_exactly_the_metrics_the_worker_emits(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == worker_metrics.NAMESPACE
    assert env["POWERTOOLS_SERVICE_NAME"] == worker_metrics.SERVICE
    rows = dashboard_metrics(dashboard_body(template))
    assert rows
    for row in rows:
        # Powertools' only dimension: anything else would never match the emitted data.
        assert row[0] == worker_metrics.NAMESPACE and row[2:] == ["service", worker_metrics.SERVICE]
    shown = {row[1] for row in rows}
    assert shown == worker_metrics.EMITTED  # nothing the code emits is hidden, nothing invented


def test_alarms_on_our_metrics_name_what_the_worker_emits(template: dict[str, Any]) -> None:
    ours = {
        logical_id: alarm["Properties"]
        for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm").items()
        if alarm["Properties"]["Namespace"] == worker_metrics.NAMESPACE
    }
    assert {a["MetricName"] for a in ours.values()} <= worker_metrics.EMITTED
    for alarm in ours.values():
        assert alarm["Dimensions"] == [{"Name": "service", "Value": worker_metrics.SERVICE}]
    latency = ours["FirstTokenLatencyAlarm"]
    assert latency["MetricName"] == worker_metrics.TIME_TO_FIRST_TOKEN
    assert (latency["ExtendedStatistic"], latency["Threshold"]) == ("p95", 10000)
    assert "Statistic" not in latency  # one or the other, never both
    throttling = ours["PlatformThrottlingAlarm"]
    assert throttling["MetricName"] == worker_metrics.PLATFORM_429S
    assert (throttling["Statistic"], throttling["Period"]) == ("Sum", 300)


def test_dashboard_log_query_reads_fields_the_usage_line_has(template: dict[str, Any]) -> None:
    (query,) = [
        w["properties"]["query"] for w in dashboard_body(template)["widgets"] if w["type"] == "log"
    ]
    assert query.startswith("SOURCE '/aws/lambda/stack-worker'")
    params = {**PSEUDO, "AWS::StackName": "stack"}
    log_group = props(template, "WorkerLogGroup")["LogGroupName"]
    assert resolve(log_group, params) == "/aws/lambda/stack-worker"
    usage = AnswerUsage(
        kind="answer",
        model_id="m",
        tokens=TokenUsage(),
        model_calls=1,
        time_to_first_token=0.1,
        time_to_final=0.2,
        delivery=ReplyStats(),
        complete=True,
        cause="ok",
    )
    fields = set(usage.log_fields())
    used = set(re.findall(r"(?:sum|ispresent)\((\w+)\)", query)) | set(
        re.findall(r"\bby ([\w, ]+)$", query)[0].replace(" ", "").split(",")
    )
    assert used and used <= fields
