"""The person's words as a safe SQLite FTS5 query, limited to one scope.

Every term is quoted, every operator and punctuation mark dropped, and terms are OR-ed so
partial matches count. English stop words are dropped; text with nothing else (``what is it?``)
makes no query at all, since every chunk would match and none would match better. The scope
is a second FTS column holding one token per chunk, the scope's tag (:func:`scope_tag`), so
FTS5 ranks and limits only that scope's chunks.
"""

from __future__ import annotations

import hashlib
import re

_MAX_QUERY_TERMS = 24

_TERM = re.compile(r"\w+", re.UNICODE)
_STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves please tell""".split()  # noqa: SIM905 - a word list reads better as text
)


def fts_query(scope: str, text: str) -> str:
    """A safe FTS5 query for ``text`` within ``scope``; ``""`` when there is no word to search.

    Words are runs of letters and digits; each is quoted (``"word"``), so FTS5 operators
    (``AND OR NOT NEAR``), column filters (``:``), prefixes (``*``), signs and unbalanced quotes
    in the person's text are only ever words or nothing. Nothing but words and the scope tag
    (hex digits) ever reaches the query.
    """
    terms = query_terms(text)
    if not terms:
        return ""
    words = " OR ".join(f'"{term}"' for term in terms)
    return f'scope_tag : "{scope_tag(scope)}" AND text : ({words})'


def query_terms(text: str) -> list[str]:
    """The distinct lower-cased words of ``text`` worth searching for, in order of appearance:
    no stop words, at most 24."""
    seen: dict[str, None] = {}
    for match in _TERM.finditer(text.lower()):
        # Underscore is a word character for ``re`` but a separator for FTS5's tokenizer.
        for word in match.group().split("_"):
            if word and word not in _STOP_WORDS:
                seen.setdefault(word, None)
    return list(seen)[:_MAX_QUERY_TERMS]


def scope_tag(scope: str) -> str:
    """The one-token stand-in for ``scope`` in the FTS index: ``k`` + 24 hex digits of its
    SHA-256. For speed, not safety: the store still compares each hit's scope exactly."""
    return "k" + hashlib.sha256(scope.encode("utf-8")).hexdigest()[:24]
