"""The feedback buttons at the end of a Slack answer.

Slack's AI-app Block Kit has a ``context_actions`` block holding a ``feedback_buttons`` element
(a thumbs up and a thumbs down). Each button's ``value`` names the answer and the rating
(:func:`core.feedback.encode_answer`), so a click carries everything needed to record it; the
click comes back as a ``block_actions`` payload with :data:`FEEDBACK_ACTION_ID`, which ingress
decodes with :func:`core.feedback.decode_answer`.

Only a complete answer gets the buttons: a refusal, an error or an answer cut short by a failure
is not something to rate. Both reply paths (native streaming's ``chat.stopStream`` and the paced
path's final ``chat.update``) add the same block, built here with slack_sdk's Block Kit models.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    ContextActionsBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
)

from core.domain import Reply
from core.feedback import AnswerRef, Rating, encode_answer

FEEDBACK_ACTION_ID = "answer_feedback"  # bots/slack/ingress.py handles clicks by this id
GOOD_LABEL = "Good answer"
BAD_LABEL = "Bad answer"
GOOD_ACCESSIBLE = "Rate this answer as helpful"
BAD_ACCESSIBLE = "Rate this answer as not helpful"


def feedback_block(answer: AnswerRef) -> dict[str, Any]:
    """A ``context_actions`` block with thumbs up and down for ``answer``."""
    buttons = FeedbackButtonsElement(
        action_id=FEEDBACK_ACTION_ID,
        positive_button=FeedbackButtonObject(
            text=GOOD_LABEL,
            accessibility_label=GOOD_ACCESSIBLE,
            value=encode_answer(answer, Rating.GOOD),
        ),
        negative_button=FeedbackButtonObject(
            text=BAD_LABEL,
            accessibility_label=BAD_ACCESSIBLE,
            value=encode_answer(answer, Rating.BAD),
        ),
    )
    block: dict[str, Any] = ContextActionsBlock(elements=[buttons]).to_dict()
    return block


def rates(reply: Reply) -> bool:
    """Whether ``reply`` is an answer worth rating: complete, and not an error."""
    return reply.complete and not reply.error


def feedback_blocks(answer: AnswerRef | None, reply: Reply) -> list[dict[str, Any]]:
    """The blocks a final message ends with: the buttons for a complete answer, else none."""
    if answer is None or not rates(reply):
        return []
    return [feedback_block(answer)]
