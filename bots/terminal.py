"""The terminal as a chat platform: a :class:`core.pacer.ReplySink` that streams to a stream.

Used by ``chatbot ask``. Edits arrive as whole texts; the sink prints only what is new, so the
answer appears to type itself out. The placeholder goes to the status stream (stderr) on a
terminal and is wiped when the first words arrive.
"""

from __future__ import annotations

import sys
from typing import TextIO

from core.domain import Reply
from core.pacer import ProcessLocalSink


class TerminalSink(ProcessLocalSink):
    max_chars = 1_000_000

    def __init__(self, out: TextIO | None = None, status: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._status = status or sys.stderr
        self._printed: dict[str, str] = {}
        self._placeholder_shown = False
        self._count = 0

    def post(self, text: str) -> str:
        ref = str(self._count)
        self._count += 1
        self._printed[ref] = ""
        if self._count == 1:
            # The first post is a placeholder or a message that ``finish`` repeats: print it
            # once, at ``finish`` or the first edit; on a terminal show it as a status meanwhile.
            if self._status.isatty():
                self._status.write(text)
                self._status.flush()
                self._placeholder_shown = True
            return ref
        self._show(ref, text)
        return ref

    def update(self, ref: str, text: str) -> None:
        self._show(ref, text)

    def finish(self, ref: str, text: str, reply: Reply) -> None:
        self._show(ref, text)
        if reply.sources:
            self._out.write("\n\nSources:")
            for source in reply.sources:
                where = f", {source.location}" if source.location else ""
                self._out.write(f"\n  [{source.source_id}] {source.title}{where}")
        self._out.write("\n")
        self._out.flush()

    def _show(self, ref: str, text: str) -> None:
        if self._placeholder_shown:
            self._status.write("\r\033[K")
            self._status.flush()
            self._placeholder_shown = False
        printed = self._printed.get(ref, "")
        if text.startswith(printed):
            self._out.write(text[len(printed) :])
        else:  # the text was rewritten, not extended: show the new version on its own
            self._out.write("\n" + text)
        self._printed[ref] = text
        self._out.flush()
