"""The architecture's import rules, checked on the source and in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_CORE = ("bots", "slack_bolt", "slack_sdk", "botbuilder", "botframework")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_imports_no_platform_code() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN_IN_CORE
        )
        for path in (ROOT / "core").rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_REGION": "us-east-1",
        "CHATBOT_QUEUE_URL": "x",
        "PYTHONDONTWRITEBYTECODE": "1",  # leave no __pycache__ in the checkout
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return list(json.loads(out.stdout))


def test_slack_ingress_loads_neither_botbuilder_nor_pypdf() -> None:
    modules = loaded_after_import("bots.aws.ingress")
    modules += loaded_after_import("bots.slack.ingress")
    modules += loaded_after_import("bots.slack.ingress, slack_bolt, slack_sdk.web")  # a command's
    heavy = [m for m in modules if m.split(".")[0] in ("botbuilder", "botframework", "pypdf")]
    assert heavy == []
    assert "slack_bolt" in modules  # the check is real: it does see what was imported


def test_the_core_runtime_loads_no_chat_platform_library() -> None:
    modules = loaded_after_import("core.runtime")
    assert [m for m in modules if m.split(".")[0] in FORBIDDEN_IN_CORE] == []
