"""The SAM template: lint-clean, and keeping the promises docs/deploy.md makes about it."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from core.config import ENVIRONMENT_NAMES
from core.history.dynamodb import TTL_ATTRIBUTE, USER_INDEX, table_definition

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


def resolve(node: Any, params: dict[str, str]) -> Any:
    """Just enough of CloudFormation's intrinsic functions to read the IAM ARNs back."""
    if isinstance(node, list):
        return [resolve(n, params) for n in node]
    if not isinstance(node, dict) or len(node) != 1:
        return node
    ((name, arg),) = node.items()
    if name == "Ref":
        return params[arg]
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


def test_every_table_and_queue_is_encrypted(template: dict[str, Any]) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    queues = resources(template, "AWS::SQS::Queue")
    assert set(tables) == {"HistoryTable", "IdempotencyTable"}
    assert all(t["Properties"]["SSESpecification"]["SSEEnabled"] is True for t in tables.values())
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())


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
    assert by_sid["ConsumeJobs"]["Resource"] == {"Fn::GetAtt": ["JobQueue", "Arn"]}
    assert "sqs:SendMessage" not in by_sid["ConsumeJobs"]["Action"]


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
    assert event["Properties"]["BatchSize"] == 10
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_outputs_give_the_platform_endpoints(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["SlackRequestUrl"]["Value"]["Fn::Sub"].endswith("/slack/events")
    assert outputs["TeamsMessagingEndpoint"]["Value"]["Fn::Sub"].endswith("/api/messages")
    assert outputs["SecretArn"]["Value"] == {"Ref": "PlatformSecret"}
    assert outputs["QueueUrl"]["Value"] == {"Ref": "JobQueue"}


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
    } <= names


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
