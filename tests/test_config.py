"""Configuration: the contract names, conversions, validation and secret redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ENVIRONMENT_NAMES, ConfigError, Settings, load_settings

CONTRACT = {
    "SLACK_SIGNING_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "MICROSOFT_APP_ID",
    "MICROSOFT_APP_PASSWORD",
    "MICROSOFT_APP_TENANT_ID",
    "MICROSOFT_APP_TYPE",
    "CHATBOT_LLM",
    "BEDROCK_MODEL_ID",
    "BEDROCK_EMBEDDING_MODEL_ID",
    "AWS_REGION",
    "CHATBOT_STORE",
    "CHATBOT_DATA_DIR",
}


def test_every_contract_name_is_read() -> None:
    assert set(ENVIRONMENT_NAMES) >= CONTRACT


def test_defaults_are_the_embedded_runtime() -> None:
    s = Settings.from_env({})
    assert (s.llm, s.store) == ("offline", "sqlite")
    assert s.temperature <= 0.3  # factual answers
    assert s.slack_api_url == "https://slack.com/api/"


def test_values_are_converted_and_validated() -> None:
    s = Settings.from_env(
        {
            "CHATBOT_LLM": "bedrock",
            "BEDROCK_MODEL_ID": "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            "CHATBOT_TEMPERATURE": "0",
            "CHATBOT_PORT": "8080",
            "CHATBOT_DATA_DIR": "/tmp/x",
            "SLACK_API_URL": "http://127.0.0.1:9/api",
        }
    )
    assert s.llm == "bedrock" and s.temperature == 0.0 and s.port == 8080
    assert s.data_dir == Path("/tmp/x") and s.slack_api_url == "http://127.0.0.1:9/api/"
    assert s.bedrock_model_id.endswith("v1:0")


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CHATBOT_LLM": "gpt"}, "CHATBOT_LLM"),
        ({"CHATBOT_STORE": "postgres"}, "CHATBOT_STORE"),
        ({"CHATBOT_TEMPERATURE": "hot"}, "CHATBOT_TEMPERATURE"),
        ({"CHATBOT_TEMPERATURE": "1.5"}, "CHATBOT_TEMPERATURE"),
        ({"CHATBOT_PORT": "80a"}, "CHATBOT_PORT"),
        ({"CHATBOT_EDIT_INTERVAL_SECONDS": "0"}, "CHATBOT_EDIT_INTERVAL_SECONDS"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_secrets_are_redacted() -> None:
    s = Settings.from_env(
        {"SLACK_BOT_TOKEN": "xoxb-dummy-not-real", "MICROSOFT_APP_PASSWORD": "dummy-pw"}
    )
    shown = repr(s.redacted())
    assert "xoxb-dummy-not-real" not in shown and "dummy-pw" not in shown
    assert s.redacted()["SLACK_BOT_TOKEN"] == "***"


def test_dotenv_fills_in_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CHATBOT_PORT=4001\nCHATBOT_LLM=bedrock\n# comment\n")
    monkeypatch.setenv("CHATBOT_LLM", "offline")
    s = load_settings(env_file)
    assert s.port == 4001 and s.llm == "offline"
