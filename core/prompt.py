"""Prompt assembly: a system prompt, history trimmed to a budget, retrieved passages, and every
piece of text from people or files fenced as data.

The fences are tags that the system prompt explains. Text inside them cannot close a fence or
open another: every fenced field, body or attribute, goes through one sanitizer (:func:`defang`,
:func:`attribute`) that first removes what could disguise a tag (format and default-ignorable
characters: soft hyphens, zero-width and bidi controls, variation selectors, fillers, tag
characters) and folds look-alikes to their plain form (NFKC: full-width and small-form angle
brackets become ``<`` and ``>``), and only then makes any tag of ours inert.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from core.domain import Passage, Role, Turn
from core.models.base import InferenceSettings
from core.text import estimate_tokens

_FENCE_TAGS = re.compile(
    r"<\s*(/?)\s*(user_message|documents|document|excerpts|excerpt|system|instructions)\b",
    re.I,
)
# Unicode's format characters (category Cf) and default-ignorable code points: invisible, so a
# tag split by one still reads as a tag to a model while no pattern matches it.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160"
    "\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164"
    "\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
_ATTR_UNSAFE = re.compile(r'["<>]')
_ATTR_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class PromptMessage:
    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """Everything a model needs. ``messages`` alternate user/assistant, start and end with a
    user message, and are already fenced; ``question``, ``history`` and ``passages`` are the
    same content in structured form for models that work on it directly (the offline one)."""

    system: str
    messages: tuple[PromptMessage, ...]
    question: str
    history: tuple[Turn, ...]
    passages: tuple[Passage, ...]
    inference: InferenceSettings
    task: str = "answer"  # or "summarize": models that work on structure (offline) need to know
    # True when older turns were left out (budget or turn limit): the history then slides, and
    # the next turn's prompt will not start with this one's messages (prompt caching cares).
    history_trimmed: bool = False


def _plain(text: str) -> str:
    """What a reader (or a model) sees: no invisible characters, look-alikes folded."""
    return unicodedata.normalize("NFKC", _INVISIBLE.sub("", text))


def defang(text: str) -> str:
    """Untrusted text fit to go inside a fence: in its plain form (see the module docstring),
    with our fence tags made inert (``<document`` becomes ``‹document``)."""
    return _FENCE_TAGS.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", _plain(text))


def attribute(value: str) -> str:
    """Untrusted text fit for a fence tag's attribute: one line, no quote or angle bracket."""
    return " ".join(_ATTR_UNSAFE.sub("", _plain(value)).split())[:_ATTR_MAX_CHARS]


def fence_user_text(text: str, author: str) -> str:
    return f'<user_message author="{attribute(author)}">\n{defang(text)}\n</user_message>'


def fence_passages(passages: Sequence[Passage]) -> str:
    parts = []
    for p in passages:
        src = p.source
        attrs = f'id="{attribute(src.source_id)}" title="{attribute(src.title)}"'
        if src.location:
            attrs += f' location="{attribute(src.location)}"'
        parts.append(f"<document {attrs}>\n{defang(p.text)}\n</document>")
    return "<documents>\n" + "\n".join(parts) + "\n</documents>"


def _author(turn: Turn) -> str:
    return turn.user_name or turn.user_id


def build_prompt(
    *,
    system_prompt: str,
    question: Turn,
    history: Sequence[Turn],
    passages: Sequence[Passage],
    token_budget: int,
    inference: InferenceSettings,
    notes: Sequence[str] = (),
    history_truncated: bool = False,
) -> Prompt:
    """Assemble the prompt within ``token_budget`` (estimated tokens, system prompt included).

    The question always goes in (callers reject questions that cannot fit). Passages come next,
    in rank order, up to half of what is left; history fills the rest, newest first, so the
    oldest turns are the ones that drop out. ``history_truncated`` says the caller's history is
    already cut at its oldest end (a turn limit); the prompt's ``history_trimmed`` says so too.
    """
    remaining = token_budget - estimate_tokens(system_prompt) - estimate_tokens(question.text) - 50

    kept_passages: list[Passage] = []
    passage_budget = max(0, remaining // 2)
    for passage in passages:
        cost = estimate_tokens(passage.text) + 30
        if cost > passage_budget:
            break
        kept_passages.append(passage)
        passage_budget -= cost
        remaining -= cost

    kept_history: list[Turn] = []
    for turn in reversed(history):
        cost = estimate_tokens(turn.text) + 15
        if cost > remaining:
            break
        kept_history.append(turn)
        remaining -= cost
    kept_history.reverse()
    trimmed = history_truncated or len(kept_history) < len(history)

    final_text = fence_user_text(question.text, _author(question))
    if kept_passages:
        final_text = fence_passages(kept_passages) + "\n\n" + final_text
    if notes:  # our own words, not a person's: outside the fences
        final_text = "\n".join(f"<note>{note}</note>" for note in notes) + "\n\n" + final_text

    messages = _alternate(
        [_history_message(t) for t in kept_history] + [PromptMessage(Role.USER, final_text)]
    )
    return Prompt(
        system=system_prompt,
        messages=tuple(messages),
        question=question.text,
        history=tuple(kept_history),
        passages=tuple(kept_passages),
        inference=inference,
        history_trimmed=trimmed,
    )


def _history_message(turn: Turn) -> PromptMessage:
    if turn.role is Role.ASSISTANT:
        return PromptMessage(Role.ASSISTANT, turn.text)
    return PromptMessage(Role.USER, fence_user_text(turn.text, _author(turn)))


def _alternate(messages: list[PromptMessage]) -> list[PromptMessage]:
    """Merge neighbours with the same role (a channel thread has many people talking) and drop
    leading assistant turns: Converse wants user, assistant, user, ... ending with user."""
    merged: list[PromptMessage] = []
    for message in messages:
        if merged and merged[-1].role is message.role:
            merged[-1] = PromptMessage(message.role, merged[-1].text + "\n\n" + message.text)
        elif merged or message.role is Role.USER:
            merged.append(message)
    return merged
