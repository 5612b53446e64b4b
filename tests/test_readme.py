"""The README's promises stay true: CI runs its test command, and the docs list every setting."""

from __future__ import annotations

import re
from pathlib import Path

from core.config import ENVIRONMENT_NAMES

ROOT = Path(__file__).resolve().parent.parent


def fenced_commands(markdown: str, heading: str) -> list[str]:
    section = markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    (command,) = fenced_commands(readme, "Run the tests")[:1]
    ci_lines = [
        ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln and not ln.startswith("#")
    ]
    assert command in ci_lines


def test_readme_run_command_starts_the_service() -> None:
    readme = (ROOT / "README.md").read_text()
    first = fenced_commands(readme, "Run it locally (no AWS, Slack or Teams account needed)")[0]
    assert first.startswith("python3 -m venv .venv") and first.endswith("chatbot serve")


def test_every_setting_is_documented() -> None:
    page = (ROOT / "docs/configuration.md").read_text()
    missing = [name for name in ENVIRONMENT_NAMES if f"`{name}`" not in page]
    assert not missing, f"docs/configuration.md does not list {missing}"
