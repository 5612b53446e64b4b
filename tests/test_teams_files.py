"""Files uploaded in a personal Teams chat: read from Teams' pre-authorised download link,
announced in one line, answered from with citations, and private to that chat."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.models.base import ModelEvent
from core.prompt import Prompt
from tests import files_factory as ff
from tests.fakes import timed_stream
from tests.standins import teams as tm
from tests.standins.teams import ConnectorStandIn
from tests.test_teams import Harness, build_harness

CANARY = "The launch code word is tangerine-owl."


class FileHost:
    """Stands in for the SharePoint/OneDrive host behind Teams' downloadUrl."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict[str, str]] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append({k.lower(): v for k, v in self.headers.items()})
                data = host.files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def teams(teams_connector: ConnectorStandIn, tmp_path: Path) -> Iterator[tuple[Harness, FileHost]]:
    harness = build_harness(teams_connector, tmp_path)
    harness.answer = cite_first
    host = FileHost()
    yield harness, host
    host.server.shutdown()
    harness.close()


def cite_first(prompt: Prompt) -> Iterator[ModelEvent]:
    if prompt.passages:
        return timed_stream([f"{prompt.passages[0].text[:60]} [S1]"])
    return timed_stream(["Nothing relevant in the shared files."])


def upload(name: str, url: str, text: str = "", **kw: Any) -> dict[str, Any]:
    attachment = {
        "contentType": "application/vnd.microsoft.teams.file.download.info",
        "name": name,
        "contentUrl": f"https://contoso.sharepoint.com/personal/ada/Documents/{name}",
        "content": {
            "downloadUrl": url,
            "uniqueId": f"uid-{name}",
            "fileType": name.rsplit(".", 1)[-1],
        },
    }
    return tm.personal_message(
        text, service_url=kw.pop("service_url"), attachments=[attachment], **kw
    )


def texts(harness: Harness, conversation: str = tm.PERSONAL_CONVERSATION) -> list[str]:
    return [m.get("text", "") for m in harness.connector.messages(conversation)]


def test_an_uploaded_pdf_is_read_announced_and_answers_with_a_citation(
    teams: tuple[Harness, FileHost],
) -> None:
    harness, host = teams
    url = host.url("/dl/plan.pdf", ff.make_pdf(["Intro.", "Details. " + CANARY]))
    harness.send(upload("plan.pdf", url, service_url=harness.service_url))
    harness.settle()
    assert texts(harness) == ["📄 I've read plan.pdf (2 pages): ask me about it here."]
    assert "authorization" not in host.requests[0]  # a pre-authorised link: no bot credentials

    harness.send(
        tm.personal_message("What is the launch code word?", service_url=harness.service_url)
    )
    harness.settle()
    prompt = harness.model.prompts[-1]
    assert (
        "tangerine-owl" in prompt.passages[0].text
        and prompt.passages[0].source.location == "page 2"
    )
    final = texts(harness)[-1]
    assert "[S1]" in final and "plan.pdf" in final and "page 2" in final


def test_a_file_in_one_chat_never_answers_in_another(teams: tuple[Harness, FileHost]) -> None:
    harness, host = teams
    url = host.url("/dl/secret.txt", CANARY.encode())
    harness.send(upload("secret.txt", url, service_url=harness.service_url))
    harness.settle()
    other = tm.personal_message(
        "What is the launch code word?",
        service_url=harness.service_url,
        conversation_id="a:1another-personal-chat",
        sender=tm.OTHER_USER,
    )
    harness.send(other)
    harness.settle()
    prompt = harness.model.prompts[-1]
    assert prompt.passages == ()
    assert "tangerine" not in "".join(m.text for m in prompt.messages)


def test_an_unreadable_upload_gets_one_clear_line(teams: tuple[Harness, FileHost]) -> None:
    harness, host = teams
    url = host.url("/dl/locked.pdf", ff.make_encrypted_pdf())
    harness.send(upload("locked.pdf", url, service_url=harness.service_url))
    harness.settle()
    (line,) = texts(harness)
    assert line.startswith("I can't read locked.pdf") and "password" in line


def test_a_broken_download_link_is_reported(teams: tuple[Harness, FileHost]) -> None:
    harness, host = teams
    missing = f"http://127.0.0.1:{host.server.server_address[1]}/dl/gone.pdf"
    harness.send(upload("gone.pdf", missing, service_url=harness.service_url))
    harness.settle()
    (line,) = texts(harness)
    assert line.startswith("I can't read gone.pdf") and "404" in line
