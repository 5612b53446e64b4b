"""What a summary can be made of, independent of any chat platform: shared files, and the
error that says nothing can be summarized (its ``message`` is for the person who asked)."""

from __future__ import annotations

from collections.abc import Sequence

from core.knowledge.base import FileRecord, KnowledgeStore
from core.summarize import Excerpt, SummaryRequest

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
