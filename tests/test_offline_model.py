"""The offline extractive responder: honest, labelled, and never a canned answer."""

from __future__ import annotations

from core.domain import ConversationKey, Passage, Role, SourceCitation, Turn
from core.models.base import InferenceSettings, StreamEnd, TextDelta
from core.models.offline import NOTHING_FOUND, OFFLINE_BANNER, OfflineExtractiveModel
from core.prompt import build_prompt

KEY = ConversationKey("cli", "local", "terminal", "t")


def prompt(question: str, history: tuple[str, ...] = (), passages: tuple[Passage, ...] = ()):
    turns = [
        Turn(KEY, str(i), Role.USER, "ada", text, created_at=i) for i, text in enumerate(history)
    ]
    return build_prompt(
        system_prompt="s",
        question=Turn(KEY, "q", Role.USER, "ada", question),
        history=turns,
        passages=passages,
        token_budget=10_000,
        inference=InferenceSettings(),
    )


def run(p) -> str:  # type: ignore[no-untyped-def]
    events = list(OfflineExtractiveModel().stream(p))
    assert isinstance(events[-1], StreamEnd)
    assert all(isinstance(e, TextDelta) for e in events[:-1]) and len(events) > 2  # it streams
    return "".join(e.text for e in events[:-1])


def test_answers_from_the_conversation_with_a_label() -> None:
    history = ["We moved billing to Postgres last year.", "Lunch is at noon."]
    answer = run(prompt("Where did billing move to?", history))
    assert answer.startswith(OFFLINE_BANNER)
    assert (
        "> We moved billing to Postgres last year.\n— earlier in this conversation (ada)" in answer
    )
    assert "Lunch" not in answer


def test_ranks_file_passages_and_cites_them() -> None:
    passages = [
        Passage(
            SourceCitation("S1", "runbook.md", "section Deploys"),
            "Deploys happen on Tuesdays. Rollbacks use the blue pipeline.",
        ),
        Passage(SourceCitation("S2", "menu.csv", "rows 1-5"), "Soup is served on Fridays."),
    ]
    answer = run(prompt("When do deploys happen?", passages=passages))
    assert "> Deploys happen on Tuesdays." in answer
    assert "[S1] runbook.md, section Deploys" in answer
    assert "Soup" not in answer


def test_says_plainly_when_nothing_matches() -> None:
    assert run(prompt("What is the capital of Peru?", ["We ship on Fridays."])) == NOTHING_FOUND


def test_earlier_questions_are_not_quoted_as_evidence() -> None:
    answer = run(
        prompt("What service do I own?", ["What service do I own?", "I own the billing service."])
    )
    assert "> I own the billing service." in answer
    assert "> What service do I own?" not in answer
