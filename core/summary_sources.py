"""What a summary can be made of, independent of any chat platform: shared files, the turns
the bot has stored of a conversation, and the error that says nothing can be summarized (its
``message`` is for the person who asked).

An adapter that can read its platform's channel history turns that into excerpts itself; one
that cannot summarizes the turns the bot stored, with :func:`stored_conversation_request`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from core.domain import Role, Turn
from core.knowledge.base import FileRecord, KnowledgeStore
from core.summarize import Excerpt, SummaryRequest
from core.summary_request import ChannelCount, ChannelWindow

_QUOTES = "\"'`“”‘’"


class SummaryUnavailable(Exception):
    """Nothing can be summarized; ``message`` is for the person (ephemeral), ``cause`` for
    logs (e.g. ``slack_not_in_channel``, ``rate_limited``, ``empty``)."""

    def __init__(self, message: str, *, cause: str = "summary_unavailable") -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


# --- shared files ------------------------------------------------------------------------

_MAX_LISTED = 10
_MIN_OVERLAP = 30  # a shorter match between chunk ends could be chance, not overlap


def latest_file(store: KnowledgeStore, scope: str) -> FileRecord:
    files = store.list_files(scope)
    if not files:
        raise SummaryUnavailable(
            "No file has been shared here yet: share one (PDF, Word, text, Markdown, CSV or "
            "HTML) and try again.",
            cause="no_file",
        )
    return files[0]


def file_by_name(store: KnowledgeStore, scope: str, name: str) -> FileRecord:
    """The newest file here named ``name`` (case-insensitive), else the only file whose name
    starts with it; several different names starting with it is an ambiguity, said as such."""
    files = store.list_files(scope)
    wanted = name.strip().strip(_QUOTES).strip().casefold()
    exact = [f for f in files if f.file_name.casefold() == wanted]
    if exact:
        return exact[0]
    prefixed = [f for f in files if wanted and f.file_name.casefold().startswith(wanted)]
    distinct = _distinct_names(prefixed)
    if len(distinct) == 1:
        return prefixed[0]
    if len(distinct) > 1:
        raise SummaryUnavailable(
            f"Several files here start with “{name}”: {_listing(distinct)}. "
            "Which one? Use its full name.",
            cause="file_ambiguous",
        )
    if not files:
        raise SummaryUnavailable(
            f"No file named {name} has been shared here; no files have been shared here yet.",
            cause="no_file",
        )
    return _raise_unknown(name, files)


def _raise_unknown(name: str, files: Sequence[FileRecord]) -> FileRecord:
    raise SummaryUnavailable(
        f"No file named {name} has been shared here; files I know here: "
        f"{_listing(_distinct_names(files))}.",
        cause="file_not_found",
    )


def _distinct_names(files: Sequence[FileRecord]) -> list[str]:
    names: dict[str, str] = {}
    for f in files:
        names.setdefault(f.file_name.casefold(), f.file_name)
    return list(names.values())


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f" and {len(names) - _MAX_LISTED} more"
    return shown


def file_excerpts(store: KnowledgeStore, record: FileRecord) -> tuple[Excerpt, ...]:
    """The whole file as excerpts in order, labelled with each chunk's location ("page 3").

    Chunks of one section overlap (about 200 characters, for retrieval); the overlap is cut from
    the later chunk when the end of one chunk and the start of the next match exactly over at
    least 30 characters, so the summary reads each passage once. Anything else is kept as is:
    a little repetition is harmless, dropped text is not.
    """
    chunks = store.file_chunks(record.scope, record.file_id)
    excerpts: list[Excerpt] = []
    previous = None
    for chunk in chunks:
        text = chunk.text
        if previous is not None and previous.location == chunk.location:
            text = text[_overlap(previous.text, text) :].lstrip()
        label = chunk.location or f"part {chunk.index + 1}"
        if text.strip():
            excerpts.append(Excerpt(text, label))
        previous = chunk
    if not excerpts:
        raise SummaryUnavailable(
            f"I have no readable text from {record.file_name} to summarize.", cause="empty"
        )
    return tuple(excerpts)


def _overlap(before: str, after: str, longest: int = 1000) -> int:
    """Length of the longest start of ``after`` that ``before`` ends with (0 below the
    minimum)."""
    for size in range(min(len(before), len(after) - 1, longest), _MIN_OVERLAP - 1, -1):
        if before.endswith(after[:size]):
            return size
    return 0


def file_summary_request(store: KnowledgeStore, scope: str, name: str | None) -> SummaryRequest:
    """What to summarize for "summarize file [name]": the named file, or the latest one."""
    record = file_by_name(store, scope, name) if name else latest_file(store, scope)
    return SummaryRequest(record.file_name, "document", file_excerpts(store, record))


# --- stored conversations ----------------------------------------------------------------


def conversation_excerpts(turns: Iterable[Turn]) -> tuple[Excerpt, ...]:
    """Stored turns as excerpts in their order, each labelled with who wrote it and when
    ("Ada Lovelace, 2026-11-18 09:30 UTC"; the bot's own turns as "assistant")."""
    return tuple(Excerpt(turn.text, _turn_label(turn)) for turn in turns if turn.text.strip())


def _turn_label(turn: Turn) -> str:
    who = turn.user_name or ("assistant" if turn.role is Role.ASSISTANT else turn.user_id)
    return f"{who}, {_utc(turn.created_at)}"


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def stored_conversation_request(
    recent_turns: Callable[[int], Sequence[Turn]],
    target: ChannelWindow | ChannelCount,
    *,
    max_turns: int,
    title: str,
) -> SummaryRequest:
    """What to summarize of a conversation from the turns the bot stored of it.

    ``recent_turns(n)`` answers the newest ``n`` turns, oldest first. A count covers that many
    of the newest turns; a window covers the turns written since its start. Either way at most
    ``max_turns`` (the newest) are read, and the summary's note says when older ones were left
    out. ``title`` names the conversation; the target's label ("last 7 days") is appended.
    """
    wanted = min(target.count, max_turns) if isinstance(target, ChannelCount) else max_turns
    turns = list(recent_turns(wanted + 1))  # one more, to know whether older ones exist
    if isinstance(target, ChannelWindow):
        turns = [t for t in turns if t.created_at >= target.oldest]
    notes = [target.note] if isinstance(target, ChannelWindow) and target.note else []
    if len(turns) > wanted:
        turns = turns[-wanted:]
        # A count within the limit got what it asked for; anything else was cut by the limit.
        if isinstance(target, ChannelWindow) or not target.label or target.count > wanted:
            notes.append(
                f"Covers the latest {wanted:,} messages (from {_utc(turns[0].created_at)}); "
                f"older ones are not included (limit: {max_turns:,} messages)."
            )
    excerpts = conversation_excerpts(turns)
    if not excerpts:
        if isinstance(target, ChannelWindow):
            message = f"There is nothing in this conversation from the {target.label} to summarize."
        else:
            message = "There is nothing in this conversation to summarize yet."
        raise SummaryUnavailable(message, cause="empty")
    full_title = f"{title}, {target.label}" if target.label else title
    return SummaryRequest(full_title, "conversation", excerpts, " ".join(notes))
