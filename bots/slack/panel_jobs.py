"""The assistant panel's and the feedback buttons' requests, as jobs: pure, fast, for the ingress.

Slack's Agents & AI Apps surface (the assistant panel) sends three things the ingress turns into
jobs here, without Bolt and without a network call (the worker does the rest,
:mod:`bots.slack.panel`):

- ``assistant_thread_started``: a person opened a new panel thread. Job
  :data:`SLACK_PANEL_THREAD` greets them with the suggested prompts and keeps the thread's
  context (the channel they are viewing).
- ``assistant_thread_context_changed``: they moved to another channel with the panel open; the
  same job kind, which only updates the kept context.
- Their messages in a panel thread are ``message`` events in the DM, in a thread: answered as
  any DM thread is (:mod:`bots.slack.events`), after a :data:`SLACK_PANEL_TITLE` job that titles
  the thread from its first question. A message that asks to summarize the channel
  ("Summarize this channel", "summarize 7d", "summarise the last 200") is a
  :data:`SLACK_PANEL_SUMMARIZE` job instead: the channel is the thread's context, with the same
  checks as ``/summarize``. What follows the word is read by the ``/summarize`` grammar
  (:func:`bots.slack.summary_args.parse_summarize_args`); anything it does not read
  ("summarize our chat so far") is an ordinary question for the model.

All of a panel thread's jobs share the thread's conversation group, so a context change, the
title and the answer run in the order they came.

A click on an answer's feedback buttons (``block_actions`` with action id
:data:`~bots.slack.feedback_blocks.FEEDBACK_ACTION_ID`) is :func:`feedback_job`: acknowledged at
once, recorded by the worker (:data:`SLACK_FEEDBACK`). A click whose value this service did not
write, or that comes from another workspace or another channel than the answer's, is
acknowledged and dropped here: it names nothing that is the clicker's to rate.

Every function here is total over JSON, like :mod:`bots.slack.events`: a payload of an
unexpected shape yields no job, never an exception.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

from bots.slack.events import PLATFORM, SlackTurn, bot_user_id, id_of, is_slack_ts, text_of
from bots.slack.summary_args import SlackSummaryTarget, parse_summarize_args
from core.domain import ConversationKey
from core.feedback import decode_answer
from core.jobs import Job, turn_to_payload
from core.summary_request import ArgumentError

if TYPE_CHECKING:  # Bolt is imported where an app is built: events never need it
    from slack_bolt import Ack, App

log = logging.getLogger(__name__)

SLACK_PANEL_THREAD = "slack.panel_thread"
SLACK_PANEL_TITLE = "slack.panel_title"
SLACK_PANEL_SUMMARIZE = "slack.panel_summarize"
SLACK_FEEDBACK = "slack.feedback"
FEEDBACK_ACTION_ID = "answer_feedback"  # = bots.slack.feedback_blocks (which imports slack_sdk)
PANEL_EVENTS: Final = frozenset({"assistant_thread_started", "assistant_thread_context_changed"})
TITLE_CHARS: Final = 60

# "summarize", "please summarise this channel", "Summarize the channel, last 7 days": the rest
# (here "last 7 days" less its "last") goes to the /summarize grammar.
_SUMMARIZE: Final = re.compile(
    r"(?:please\s+)?(?:can you\s+|could you\s+)?summari[sz]e"
    r"(?:\s+(?:this|the)\s+channel|\s+this)?(?P<rest>(?:[\s,:;-].*)?)",
    re.IGNORECASE | re.DOTALL,
)
_SPAN_WORDS: Final = re.compile(
    r"(?:(?:for|over|from|in)\s+)?(?:the\s+)?(?:last|past)\s+", re.IGNORECASE
)
_TRAILING: Final = ".!?…"


def add_listeners(app: App, enqueue: Callable[[Job], None]) -> None:
    """The Bolt app's listeners for the panel's events (Socket Mode, or a request Bolt
    dispatches) and for feedback clicks (always through Bolt): each acks, then enqueues."""

    def on_panel_event(body: dict[str, Any], ack: Ack) -> None:
        ack()
        enqueue_panel_event(body, enqueue)

    def on_feedback(body: dict[str, Any], ack: Ack) -> None:
        ack()  # at once, and silently: Slack's buttons show the click themselves
        enqueue_feedback(body, enqueue)

    for kind in sorted(PANEL_EVENTS):
        app.event(kind)(on_panel_event)
    app.action(FEEDBACK_ACTION_ID)(on_feedback)


def enqueue_panel_event(body: Mapping[str, Any], enqueue: Callable[[Job], None]) -> None:
    job = assistant_thread_job(body)
    if job is None:
        log.warning("assistant thread event without team, user, channel or thread ignored")
        return
    enqueue(job)


def enqueue_thread_jobs(
    body: Mapping[str, Any], slack_turn: SlackTurn, enqueue: Callable[[Job], None]
) -> bool:
    """A question in a DM thread (the panel's threads are these): first the title job, then,
    if it asks for a summary, the summary job. True when it did (the question is not one for
    the model then); False: the caller enqueues the question."""
    enqueue(title_job(slack_turn))
    summary = panel_summary_job(slack_turn, bot_user_id(body), now=time.time())
    if summary is None:
        return False
    enqueue(summary)
    return True


def enqueue_feedback(body: Mapping[str, Any], enqueue: Callable[[Job], None]) -> None:
    job = feedback_job(body)
    if job is None:
        # Not ours to record: a value this service did not write, another workspace's or
        # another channel's click. Acknowledged; nobody is told (ids only in the log).
        team = body.get("team")
        log.info(
            "feedback click ignored",
            extra={"team": id_of(team) or text_of(body.get("team_id")), "cause": "not_ours"},
        )
        return
    enqueue(job)
    log.info("feedback click enqueued", extra={"job_id": job.dedupe_id})


def assistant_thread_job(body: Mapping[str, Any]) -> Job | None:
    """The job for an ``assistant_thread_started`` or ``assistant_thread_context_changed``
    callback; None for a payload that lacks what the panel needs."""
    event = body.get("event")
    event = event if isinstance(event, Mapping) else {}
    kind = event.get("type")
    thread = event.get("assistant_thread")
    if kind not in PANEL_EVENTS or not isinstance(thread, Mapping):
        return None
    team = text_of(body.get("team_id")) or text_of(body.get("context_team_id"))
    user, channel = text_of(thread.get("user_id")), text_of(thread.get("channel_id"))
    thread_ts = thread.get("thread_ts")
    if not (team and user and channel and is_slack_ts(thread_ts)):
        return None
    context = thread.get("context")
    context = context if isinstance(context, Mapping) else {}
    payload = {
        "started": kind == "assistant_thread_started",
        "team": team,
        "user": user,
        "channel": channel,
        "thread_ts": thread_ts,
        "bot_user": bot_user_id(body),
        # The channel the person is viewing (absent in the app's own DM, for instance).
        "context": {
            name: value
            for name in ("channel_id", "team_id", "enterprise_id")
            if (value := text_of(context.get(name)))
        },
    }
    key = _key(team, channel, str(thread_ts))
    if key is None:
        return None
    event_id = text_of(body.get("event_id")) or f"{kind}:{text_of(event.get('event_ts'))}"
    return Job(SLACK_PANEL_THREAD, key.id, f"slack-panel:{team}:{event_id}", payload)


def title_job(slack_turn: SlackTurn) -> Job:
    """Title a panel thread from its question; the worker does so only for the first one
    (``question_ts`` lets it look for earlier ones), and the dedupe id (one per thread) keeps
    a thread from being retitled by later ones while its record lasts."""
    key = slack_turn.turn.key
    text = " ".join(slack_turn.turn.text.split())
    title = text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"
    payload = {
        "key": [key.platform, key.workspace, key.channel, key.thread],
        "channel": slack_turn.channel,
        "thread_ts": slack_turn.thread_ts,
        "question_ts": slack_turn.turn.turn_id,
        "title": title,
    }
    return Job(
        SLACK_PANEL_TITLE,
        key.id,
        f"slack-title:{key.workspace}:{key.channel}:{key.thread}",
        payload,
    )


def panel_summary_job(slack_turn: SlackTurn, bot_user: str, *, now: float) -> Job | None:
    """A panel thread's "summarize this channel" (or a thread link, a period, a count, a
    file) as a summary job; None when the message is not such a request."""
    target = summary_target(slack_turn.turn.text, now=now)
    if target is None:
        return None
    payload = {
        "turn": turn_to_payload(slack_turn.turn),
        "channel": slack_turn.channel,
        "thread_ts": slack_turn.thread_ts,
        "needs_history": False,
        "bot_user": bot_user,
        "target_type": type(target).__name__,
        "target": asdict(target),
    }
    return Job(SLACK_PANEL_SUMMARIZE, slack_turn.turn.key.id, slack_turn.dedupe_id, payload)


def summary_target(text: str, *, now: float) -> SlackSummaryTarget | None:
    """What a panel message asks to summarize, or None if it is not a summary request the
    ``/summarize`` grammar reads."""
    said = " ".join(text.split()).rstrip(_TRAILING)
    match = _SUMMARIZE.fullmatch(said)
    if match is None:
        return None
    rest = match.group("rest").strip().lstrip(",:;-").strip()
    rest = _SPAN_WORDS.sub("", rest, count=1) if _SPAN_WORDS.match(rest) else rest
    target = parse_summarize_args(rest, now=now)
    return None if isinstance(target, ArgumentError) else target


def feedback_job(body: Mapping[str, Any]) -> Job | None:
    """A click on an answer's feedback buttons, to record; None for a click that names no
    answer of this service in the clicker's workspace and channel (dropped, nothing shown)."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    if not isinstance(action, Mapping) or action.get("action_id") != FEEDBACK_ACTION_ID:
        return None
    decoded = decode_answer(action.get("value"))
    if decoded is None:
        return None
    answer, rating = decoded
    team = id_of(body.get("team")) or text_of(body.get("team_id"))
    user = body.get("user")
    voter = id_of(user)
    if not team and isinstance(user, Mapping):
        team = text_of(user.get("team_id"))
    container = body.get("container")
    channel = id_of(body.get("channel")) or (
        text_of(container.get("channel_id")) if isinstance(container, Mapping) else ""
    )
    key = answer.key
    if key.platform != PLATFORM or team != key.workspace or channel != key.channel or not voter:
        return None
    clicked = text_of(action.get("action_ts")) or text_of(body.get("trigger_id"))
    payload = {
        "key": [key.platform, key.workspace, key.channel, key.thread],
        "answer_id": answer.answer_id,
        "model_id": answer.model_id,
        "voter": voter,
        "rating": rating.value,
        "at": time.time(),
    }
    return Job(
        SLACK_FEEDBACK,
        f"{key.id}#feedback",
        f"slack-feedback:{team}:{voter}:{clicked or answer.answer_id + rating.value}",
        payload,
    )


def _key(team: str, channel: str, thread: str) -> ConversationKey | None:
    try:
        return ConversationKey(PLATFORM, team, channel, thread)
    except ValueError:  # an id a key cannot hold ('#')
        return None
