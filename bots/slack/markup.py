"""Slack's message markup as plain text people can read, for excerpts handed to a model.

Messages arrive as ``<@U1> see <https://x|the doc> &amp; <!here>``; a summary should read
"@Ada see the doc (https://x) & @here". Pure functions: the names come from a callback, so this
module neither calls Slack nor caches anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

_ANGLE = re.compile(r"<([^<>\n]+)>")
_BROADCASTS: Final = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def readable_text(text: str, name_of: Callable[[str], str]) -> str:
    """Slack's message markup as people see it: ``<@U1>`` -> ``@Ada``, ``<#C1|general>`` ->
    ``#general``, ``<!here>`` -> ``@here``, ``<url|label>`` -> ``label (url)``, ``<url>`` ->
    ``url``, and ``&amp; &lt; &gt;`` unescaped."""

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            user_id = target[1:]
            name = name_of(user_id)
            if name == user_id and label:
                name = label.lstrip("@")
            return f"@{name}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            keyword = target[1:].split("^", 1)[0]
            if keyword in _BROADCASTS:
                return _BROADCASTS[keyword]
            if label:
                return label  # <!subteam^S1|@eng>, <!date^...|fallback>
            return f"@{keyword}"
        if target.startswith("mailto:"):
            return label or target.removeprefix("mailto:")
        if not label or label == target or target.split("://", 1)[-1] == label:
            return target
        return f"{label} ({target})"

    rewritten = _ANGLE.sub(replace, text)
    return rewritten.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def message_body(msg: Mapping[str, Any]) -> str:
    """What a message says, still in Slack markup: its text, else its attachments' titles and
    text (some bots post only attachments), then the names of the files it shares."""
    text = str(msg.get("text") or "")
    if not text.strip():
        parts = []
        for attachment in msg.get("attachments") or ():
            if isinstance(attachment, Mapping):
                piece = attachment.get("text") or attachment.get("fallback") or ""
                title = attachment.get("title") or attachment.get("pretext") or ""
                parts.append("\n".join(p for p in (str(title), str(piece)) if p))
        text = "\n".join(p for p in parts if p)
    names = [
        str(f.get("name") or f.get("title"))
        for f in msg.get("files") or ()
        if isinstance(f, Mapping) and (f.get("name") or f.get("title"))
    ]
    if names:
        text = (text + "\n" if text.strip() else "") + f"[shared {', '.join(names)}]"
    return text.strip()
