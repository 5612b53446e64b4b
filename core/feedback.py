"""Feedback on answers: what a thumbs-up or thumbs-down button points at, and what a click records.

Every answer ends with feedback buttons (Slack ``feedback_buttons`` in a ``context_actions``
block; Teams' built-in feedback loop). A click is recorded with the conversation key, the answer
id (the question's turn id) and the model id that wrote the answer: never the message text.

Slack carries the answer in the button's ``value`` (:func:`encode_answer` /
:func:`decode_answer`); Slack signs the click's payload and the value is what this service posted,
so nobody can alter it. Teams' click names only the message it was on (``replyToId``), so the
answer behind each final message is remembered when the answer ends
(``HistoryStore.remember_answer``) and looked up on the click.

A duplicate click (the same person, the same rating, on the same answer: a double click or a
redelivered request) changes nothing; a changed mind replaces the earlier rating.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum

from core.domain import ConversationKey

MAX_VALUE_CHARS = 2_000  # Slack's limit on a button's value


class Rating(StrEnum):
    GOOD = "good"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class AnswerRef:
    """One answer, as its feedback buttons name it."""

    key: ConversationKey
    answer_id: str  # the question's turn id (the stored answer is ``<answer_id>:reply``)
    model_id: str


@dataclass(frozen=True, slots=True)
class Feedback:
    """One person's rating of one answer."""

    answer: AnswerRef
    voter: str  # the platform user id of the person who clicked
    rating: Rating
    at: float = field(default_factory=time.time)


def encode_answer(answer: AnswerRef, rating: Rating) -> str:
    """A button value naming the answer and the rating (compact JSON, under Slack's limit)."""
    k = answer.key
    value = json.dumps(
        {
            "r": rating.value,
            "k": [k.platform, k.workspace, k.channel, k.thread],
            "a": answer.answer_id,
            "m": answer.model_id,
        },
        separators=(",", ":"),
    )
    if len(value) > MAX_VALUE_CHARS:  # ids are short; a model id is the only open-ended part
        return encode_answer(AnswerRef(answer.key, answer.answer_id, ""), rating)
    return value


def decode_answer(value: object) -> tuple[AnswerRef, Rating] | None:
    """The answer and rating a button value names; None for anything this service did not
    write (a value of another shape, another app's button, a damaged payload)."""
    if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
        return None
    try:
        data = json.loads(value)
        rating = Rating(data["r"])
        key = ConversationKey(*(str(part) for part in data["k"]))
        answer_id, model_id = data["a"], data["m"]
    except (ValueError, TypeError, KeyError):
        return None
    if len(data["k"]) != 4 or not isinstance(answer_id, str) or not answer_id:
        return None
    if not isinstance(model_id, str):
        return None
    return AnswerRef(key, answer_id, model_id), rating
