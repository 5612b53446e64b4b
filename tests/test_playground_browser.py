"""The playground page end to end, in a real headless Chromium (Debian's, driven by Playwright).

The server is the real local host with the playground (emulated Slack Web API and Bot Framework
connector, the real adapters, queue, workers and core) and the offline model. Only the pace of
the model is the test's: :class:`Gate` lets its text deltas out one by one when asked, so the
page's intermediate states are reached by waiting for them, never by timing.

``UPDATE_PLAYGROUND_SCREENSHOT=1`` writes the mid-answer screenshot to docs/img/playground.png (the
README shows it); otherwise it goes to the test's tmp dir, so the suite leaves the checkout as it
found it. Skipped where /usr/bin/chromium or Playwright is missing, except in CI (the ``CI``
environment variable set, as ``.ci/run`` does, after installing chromium): there it fails.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bots.local.app import LocalApp, start_local
from bots.local.server import LocalServer
from core import runtime
from core.config import Settings
from core.models.base import ModelEvent, TextDelta
from core.models.offline import OfflineExtractiveModel
from core.prompt import Prompt

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs/img/playground.png"
TOKEN = "playground-test-token"  # a dummy for this test's server
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000  # how long an expectation waits for the page before the test fails

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - the dev lock installs it
    sync_api = None  # type: ignore[assignment]

MISSING = (
    "Debian's chromium is not installed (/usr/bin/chromium)"
    if not CHROMIUM.exists()
    else "Playwright is not installed"
    if sync_api is None
    else ""
)
IN_CI = bool(os.environ.get("CI"))
# Skipped on a machine without the browser; in CI the page fixture fails instead.
pytestmark = pytest.mark.skipif(bool(MISSING) and not IN_CI, reason=MISSING or "-")


class Gate:
    """Lets the model's text deltas out: freely when open, one per credit when held."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._credits = 0
        self.released: list[str] = []  # the deltas let out while held, in order

    def hold(self) -> None:
        with self._cond:
            self._held, self._credits, self.released = True, 0, []

    def let_out(self, deltas: int) -> str:
        """Let ``deltas`` more deltas out and wait until the model has sent them; returns the
        text let out so far."""
        with self._cond:
            self._credits += deltas
            target = len(self.released) + deltas
            self._cond.notify_all()
            assert self._cond.wait_for(lambda: len(self.released) >= target, timeout=30)
            return "".join(self.released)

    def open(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def pass_delta(self, text: str) -> None:
        with self._cond:
            # Bounded: a test that forgets the gate fails on its expectations, not by hanging.
            self._cond.wait_for(lambda: not self._held or self._credits > 0, timeout=60)
            if self._held and self._credits > 0:
                self._credits -= 1
                self.released.append(text)
                self._cond.notify_all()


class GatedOfflineModel(OfflineExtractiveModel):
    """The real offline model; only when its deltas leave is the gate's."""

    def __init__(self, gate: Gate) -> None:
        super().__init__(words_per_delta=3)
        self._gate = gate

    def stream(self, prompt: Prompt) -> Iterator[ModelEvent]:
        for event in super().stream(prompt):
            if isinstance(event, TextDelta):
                self._gate.pass_delta(event.text)
            yield event


@dataclass
class Playground:
    url: str
    gate: Gate
    app: LocalApp
    server: LocalServer
    settings: Settings


def start_server(settings: Settings) -> tuple[LocalServer, LocalApp]:
    """The local host as ``chatbot serve`` runs it, with the playground."""
    server, app = start_local(settings, token=TOKEN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, app


def stop_server(server: LocalServer, app: LocalApp) -> None:
    app.close(5)
    server.shutdown()
    server.server_close()


@pytest.fixture
def playground(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Playground]:
    gate = Gate()
    monkeypatch.setattr(runtime, "build_model", lambda *_a, **_k: GatedOfflineModel(gate))
    settings = Settings(
        data_dir=tmp_path / "data", port=0, edit_interval_seconds=0.05, max_file_mb=1
    )
    server, app = start_server(settings)
    state = Playground(f"{server.url}/?token={TOKEN}", gate, app, server, settings)
    yield state
    gate.open()
    stop_server(state.server, state.app)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    if MISSING:
        pytest.fail(f"{MISSING}: CI is set, so the browser test must run (.ci/run installs it)")
    assert sync_api is not None
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile for each test
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)
        sync_api.expect.set_options(timeout=WAIT_MS)
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        yield tab
        context.close()
        assert errors == [], f"the page threw: {errors}"


def normalized(text: str) -> str:
    """Text without Markdown's marks and with single spaces: a streamed prefix is drawn as
    Markdown, and a half-written mark (an open backtick) as itself."""
    text = re.sub(r"(?m)^\s*(?:>|[-*•]|\d+[.)]|#+)\s", "", text)  # quotes, list items, headings
    return re.sub(r"\s+", " ", re.sub(r"[*`_▍]", "", text)).strip()


def wait_for_text(page: Any, selector: str, text: str) -> None:
    """Wait until the element at ``selector`` shows ``text`` (normalized)."""
    page.wait_for_function(
        """([selector, wanted]) => {
            const el = document.querySelector(selector);
            const shown = el ? el.innerText.replace(/[*`_▍]/g, "").replace(/\\s+/g, " ") : "";
            return shown.includes(wanted);
        }""",
        arg=[selector, normalized(text)],
    )


def open_page(page: Any, url: str) -> None:
    """Load the page and wait until it drew the server's snapshot (a channel is selected): the
    composer exists before that, and a message sent sooner would name no channel."""
    page.goto(url)
    sync_api.expect(page.locator("#slack-channels [aria-current=page]")).to_be_visible()


def send(page: Any, label: str, text: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Enter")
    sync_api.expect(box).to_have_value("")  # accepted by the server (errors keep the text)


RUNBOOK = (
    "# Release runbook\n\n"
    "We deploy to production every Tuesday after the 10:00 stand-up.\n\n"
    "Priya Raman approves every production deploy.\n\n"
    "Rollbacks use the previous image tag and take about five minutes.\n"
)


@pytest.mark.timeout(240)
def test_a_newcomer_tries_everything_in_the_browser(
    playground: Playground, page: Any, tmp_path: Path
) -> None:
    expect = sync_api.expect
    open_page(page, playground.url)
    expect(page.get_by_role("heading", name="#general")).to_be_visible()
    slack_messages = page.locator("#slack-messages")

    # A file shared in #general is read and announced.
    runbook = tmp_path / "runbook.md"
    runbook.write_text(RUNBOOK)
    page.get_by_label("Message #general", exact=True).fill("Our release runbook")
    page.locator("#file-input").set_input_files(str(runbook))
    shared = slack_messages.locator("li[data-author=user]", has_text="Our release runbook")
    expect(shared.locator(".files")).to_contain_text("runbook.md")
    shared.get_by_role("button", name="1 reply: open the thread").click()  # the announcement
    expect(page.locator("#thread-messages li[data-author=bot]")).to_contain_text("runbook.md")
    page.keyboard.press("Escape")

    # A mention: the answer streams into the thread, state by state, then cites the file.
    playground.gate.hold()
    send(page, "Message #general", "@assistant Which day do we deploy to production?")
    question = slack_messages.locator("li[data-author=user]", has_text="Which day do we deploy")
    question.get_by_role("button", name="Reply in thread").click()
    thread = page.locator("#thread-messages")
    expect(thread.locator("li[data-author=user]")).to_contain_text("Which day do we deploy")
    expect(page.locator("#thread-status")).to_contain_text("thinking")
    answer = "#thread-messages li[data-author=bot]:last-child .body"
    states = []
    for deltas in (3, 3):
        released = playground.gate.let_out(deltas)
        wait_for_text(page, answer, released)
        states.append(page.locator(answer).inner_text())
    playground.gate.open()
    final = thread.locator("li[data-author=bot]").last
    expect(final.get_by_role("button", name="Rate this answer as helpful")).to_be_visible()
    expect(final).to_contain_text("Tuesday")
    expect(final.locator(".block-context")).to_contain_text("runbook.md")  # the sources
    final_text = final.locator(".body").inner_text()
    assert states[0] != states[1] and final_text not in states
    assert len(states[0]) < len(states[1]) < len(final_text)
    assert normalized(states[1]) in normalized(final_text)

    # Feedback: the buttons the final message carries send Slack's block_actions.
    final.get_by_role("button", name="Rate this answer as helpful").click()
    expect(final.get_by_role("button", name="Rate this answer as helpful")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator("#thread-error")).to_be_hidden()

    # A follow-up in the thread keeps the thread's context; mid-answer, the README's picture.
    playground.gate.hold()
    send(page, "Reply in the thread", "Who approves it?")
    expect(thread.locator("li[data-author=bot]")).to_have_count(1)
    released = playground.gate.let_out(8)
    wait_for_text(page, answer, released)
    expect(page.locator("#usage-rows li")).to_have_count(1)
    shot = (
        SCREENSHOT
        if os.environ.get("UPDATE_PLAYGROUND_SCREENSHOT") == "1"
        else tmp_path / "shot.png"
    )
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    playground.gate.open()
    expect(thread.locator("li[data-author=bot]")).to_have_count(2)
    expect(thread.locator("li[data-author=bot]").last).to_contain_text("Priya Raman")
    # Final (the buttons come with the last edit): nothing re-renders under the next click.
    expect(
        thread.locator("li[data-author=bot]").last.get_by_role(
            "button", name="Rate this answer as helpful"
        )
    ).to_be_visible()

    # The "Summarize thread" message shortcut, on the question.
    thread.locator("li[data-author=user]").first.get_by_role(
        "button", name=re.compile("Summarize thread")
    ).click()
    expect(
        page.locator(
            "#thread-messages li[data-author=bot], #slack-messages li[data-author=bot]"
        ).last
    ).to_contain_text("extractive summary")
    page.keyboard.press("Escape")
    expect(page.locator("#thread-pane")).to_be_hidden()

    # /summarize in the channel: the summary comes back to the person.
    send(page, "Message #general", "/summarize")
    expect(slack_messages.locator("li[data-author=bot]").last).to_contain_text("Offline mode")

    # A DM with the bot remembers the conversation.
    page.get_by_role("button", name="assistant", exact=True).click()
    expect(page.get_by_role("heading", name="assistant", exact=True)).to_be_visible()
    send(page, "Message assistant", "The staging database lives in eu-west-1.")
    send(page, "Message assistant", "Where does the staging database live?")
    dm_answers = page.locator(
        "#slack-messages li[data-author=bot], #thread-messages li[data-author=bot]"
    )
    expect(dm_answers.last).to_contain_text("eu-west-1")

    # The assistant panel: a new DM thread with suggested prompts; a prompt is sent as asked.
    page.get_by_role("button", name="Open the assistant panel").click()
    prompts = page.locator("#thread-prompts button")
    expect(prompts.first).to_be_visible()
    asked = prompts.first.inner_text()
    prompts.first.click()
    panel = page.locator("#thread-messages")
    expect(panel.locator("li[data-author=user]")).to_contain_text(asked)
    expect(panel.locator("li[data-author=user] ~ li[data-author=bot]")).to_be_visible()
    page.get_by_role("button", name="Close the thread").click()

    # Teams: a personal chat with the bot.
    page.get_by_role("button", name="Microsoft Teams").click()
    teams = page.locator("#teams-messages")
    send(page, "Message Assistant", "The office wifi is called Nimbus.")
    send(page, "Message Assistant", "What is the office wifi called?")
    expect(teams.locator("li[data-author=bot]").last).to_contain_text("Nimbus")
    expect(teams.get_by_role("button", name="Like this answer").last).to_be_visible()

    # And a Teams channel, where the bot answers an @mention in the post's reply chain.
    page.get_by_role("button", name="General", exact=True).click()
    send(page, "Message General", "@assistant Where is the release runbook?")
    expect(teams.locator("li.reply[data-author=bot]")).to_contain_text("Offline mode")

    # The usage panel has one card per answer, each naming the model.
    cards = page.locator("#usage-rows li")
    expect(cards.first).to_contain_text("offline")
    assert cards.count() >= 4


@pytest.mark.timeout(120)
def test_bad_input_shows_the_servers_message_and_keeps_the_text(
    playground: Playground, page: Any, tmp_path: Path
) -> None:
    expect = sync_api.expect
    open_page(page, playground.url)
    box = page.get_by_label("Message #general", exact=True)
    error = page.locator("#composer-error")

    box.fill("/deploy now")
    box.press("Enter")
    expect(error).to_contain_text("/deploy is not a valid command here")
    expect(box).to_have_value("/deploy now")  # nothing typed is lost

    # Slack's own client refuses slash commands in threads; the page says it the same way.
    send(page, "Message #general", "A message to start a thread")
    page.get_by_role("button", name="Reply in thread").click()
    thread_box = page.get_by_label("Reply in the thread", exact=True)
    thread_box.fill("/summarize")
    thread_box.press("Enter")
    expect(page.locator("#thread-error")).to_contain_text("/summarize is not supported in threads")
    page.keyboard.press("Escape")

    # A file over the bot's limit is shared, as Slack shares it, and the bot refuses it in the
    # chat with production's message.
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (playground.settings.max_file_mb * 1024 * 1024 + 1))
    page.locator("#file-input").set_input_files(str(big))
    shared = page.locator("#slack-messages li[data-author=user]", has_text="big.txt")
    shared.get_by_role("button", name="1 reply: open the thread").click()
    expect(page.locator("#thread-messages li[data-author=bot]")).to_contain_text(
        "I can't read big.txt: it is 2 MB and the limit is 1 MB."
    )
    expect(error).to_be_empty()


@pytest.mark.timeout(120)
def test_the_page_reconnects_when_the_server_restarts(playground: Playground, page: Any) -> None:
    expect = sync_api.expect
    open_page(page, playground.url)
    send(page, "Message #general", "Before the restart")
    messages = page.locator("#slack-messages li")
    expect(messages).to_have_count(1)
    banner = page.locator("#connection")
    expect(banner).to_be_hidden()
    # The token left the address bar; the tab kept it, so a reload still works.
    assert "token" not in page.url and page.url.endswith("/")
    page.reload()
    expect(messages).to_have_count(1)
    expect(banner).to_be_hidden()

    port = playground.server.server_address[1]
    stop_server(playground.server, playground.app)
    expect(banner).to_contain_text("Reconnecting")

    # The same address and token (a restarted `chatbot serve` on the same data directory).
    settings = replace(playground.settings, port=port)
    playground.server, playground.app = start_server(settings)
    expect(banner).to_be_hidden()
    # The page drew the new run's workspace (the emulated Slack keeps messages in memory) ...
    expect(messages).to_have_count(0)
    # ... and its live feed works: a new question is answered.
    send(page, "Message #general", "@assistant are you back?")
    question = page.locator("#slack-messages li[data-author=user]")
    expect(question.get_by_role("button", name="1 reply: open the thread")).to_be_visible()


@pytest.mark.timeout(120)
def test_a_tab_evicted_by_another_says_so_and_does_not_reconnect(
    playground: Playground, page: Any
) -> None:
    expect = sync_api.expect
    assert playground.app.playground is not None
    playground.app.playground.hub._max_clients = 1  # as if this were the ninth tab
    open_page(page, playground.url)
    banner = page.locator("#connection")
    expect(page.get_by_role("heading", name="#general")).to_be_visible()
    expect(banner).to_be_hidden()

    other = page.context.new_page()
    open_page(other, playground.url)
    expect(banner).to_contain_text(
        "This tab was disconnected because another tab opened the playground; reload to reconnect"
    )
    # The newer tab keeps its live feed: a reconnecting old tab would have evicted it.
    send(other, "Message #general", "@assistant still live?")
    question = other.locator("#slack-messages li[data-author=user]")
    expect(question.get_by_role("button", name="1 reply: open the thread")).to_be_visible()
    expect(other.locator("#connection")).to_be_hidden()
    expect(banner).to_contain_text("reload to reconnect")
    other.close()
