"""The offline model: an honest extractive responder for running with no cloud account.

It does not generate language. It ranks the sentences of the conversation's earlier messages
and of the retrieved file passages against the question (BM25 over word terms) and answers
with the best few, each labelled with where it came from. When nothing matches it says so.
It never produces a canned answer, so every reply shows what the core actually retrieved.

Asked to summarize (``prompt.task == "summarize"``, the excerpts in ``prompt.passages``), it
quotes the most central sentences instead: those sharing the most weighted terms with the rest
of the input, near-duplicates skipped, picked across the whole input so that its beginning,
middle and end are all represented. Its own earlier extracts (a part summarized in a map round)
are read back with their original labels, so map-reduce keeps the labels to the end.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.domain import Passage, Role
from core.models.base import ChatModel, ModelEvent, StreamEnd, TextDelta

if TYPE_CHECKING:
    from core.prompt import Prompt

OFFLINE_BANNER = (
    "*Offline mode*: no language model is configured, so I answer with the most relevant "
    "passages I found."
)
SUMMARY_BANNER = (
    "*Offline mode*: no language model is configured, so this is an extractive summary: the "
    "most central sentences."
)
NOTHING_TO_EXTRACT = (
    "*Offline mode*: no language model is configured, and the text to summarize has no "
    "sentences to quote."
)
NOTHING_FOUND = (
    "*Offline mode*: no language model is configured (set `CHATBOT_LLM=bedrock` to use Amazon "
    "Bedrock), and nothing in this conversation or its shared files matches your question."
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_STOPWORDS = frozenset(
    (  # noqa: SIM905 - a word list reads better as text
        "a an and are as at be but by can could did do does for from had has have how i if in "
        "is it its me my no not of on or our so that the their them then there these they this "
        "to us was we were what when where which who whom why will with would you your yours "
        "about please tell know just any some"
    ).split()
)
_K1, _B = 1.2, 0.75
# One extract as this model writes it: a quoted sentence, then its label on the next line.
_EXTRACT = re.compile(r"^> (?P<text>.+)\n— (?P<label>.+)$", re.MULTILINE)
_MAX_QUOTE_CHARS = 300
_NEAR_DUPLICATE = 0.6  # Jaccard similarity of term sets at which two sentences say the same
_MIN_TERMS = 3  # shorter sentences ("Thanks!", "OK.") are quoted only if nothing else is left


@dataclass(frozen=True, slots=True)
class _Candidate:
    text: str
    label: str
    terms: Counter[str]


def terms(text: str) -> list[str]:
    """Lower-case, lightly stemmed word terms without stop words: what the ranking compares."""
    return [_stem(w) for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS]


def _stem(word: str) -> str:
    """A deliberately small suffix stripper, so "deploys", "deployed" and "deploy" meet."""
    if len(word) <= 4:
        return word
    for suffix in ("ing", "ed", "es"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    else:
        if word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


class OfflineExtractiveModel(ChatModel):
    name = "offline"

    def __init__(
        self,
        *,
        max_passages: int = 3,
        summary_sentences: int = 8,
        words_per_delta: int = 4,
        delay: float = 0.0,
    ):
        self._max_passages = max_passages
        self._summary_sentences = summary_sentences
        self._words_per_delta = words_per_delta
        self._delay = delay

    def stream(self, prompt: Prompt) -> Iterator[ModelEvent]:
        answer = self.compose(prompt)
        words = answer.split(" ")
        step = self._words_per_delta
        for i in range(0, len(words), step):
            chunk = " ".join(words[i : i + step])
            yield TextDelta(chunk if i + step >= len(words) else chunk + " ")
            if self._delay:
                time.sleep(self._delay)
        yield StreamEnd(stop_reason="end_turn", usage={"outputTokens": len(words)})

    def compose(self, prompt: Prompt) -> str:
        """The whole answer for ``prompt``: the best-matching sentences, or a plain 'nothing'
        (for a summary: the most central sentences of the whole input)."""
        if prompt.task == "summarize":
            return self._summarize(prompt)
        query = set(terms(prompt.question))
        candidates = list(self._candidates(prompt))
        ranked = _rank(query, candidates)[: self._max_passages]
        if not ranked:
            return NOTHING_FOUND
        lines = [OFFLINE_BANNER, ""]
        for candidate in ranked:
            quoted = candidate.text.replace("\n", " ")
            lines.append(f"> {quoted}\n— {candidate.label}")
            lines.append("")
        return "\n".join(lines).strip()

    def _candidates(self, prompt: Prompt) -> Iterator[_Candidate]:
        for passage in prompt.passages:
            src = passage.source
            where = f"{src.title}, {src.location}" if src.location else src.title
            label = f"[{src.source_id}] {where}"
            for sentence in _sentences(passage.text):
                yield _Candidate(sentence, label, Counter(terms(sentence)))
        for turn in prompt.history:
            if turn.role is not Role.USER:
                continue  # our own earlier answers are quotes already: never quote a quote
            label = f"earlier in this conversation ({turn.user_name or turn.user_id})"
            for sentence in _sentences(turn.text):
                if not sentence.endswith("?"):  # an earlier question is not evidence
                    yield _Candidate(sentence, label, Counter(terms(sentence)))

    def _summarize(self, prompt: Prompt) -> str:
        groups = [_summary_candidates(p) for p in prompt.passages]
        groups = [g for g in groups if g]
        if not groups:
            return NOTHING_TO_EXTRACT
        chosen = _central(groups, self._summary_sentences)
        lines = [SUMMARY_BANNER, ""]
        for candidate in chosen:
            lines.append(f"> {_quote(candidate.text)}\n— {candidate.label}")
            lines.append("")
        return "\n".join(lines).strip()


def _summary_candidates(passage: Passage) -> list[_Candidate]:
    """The sentences of one excerpt, labelled with it; or, for an excerpt that is this model's
    own earlier extract (a partial summary), the quoted sentences with their original labels."""
    extracts = list(_EXTRACT.finditer(passage.text))
    if extracts:
        pairs = [(m["text"].strip(), m["label"].strip()) for m in extracts]
    else:
        pairs = [(s, passage.source.title) for s in _sentences(passage.text)]
    return [_Candidate(text, label, Counter(terms(text))) for text, label in pairs if terms(text)]


def _central(groups: list[list[_Candidate]], limit: int) -> list[_Candidate]:
    """Up to ``limit`` central sentences, in input order, spread over the whole input.

    Centrality: the sum, over a sentence's distinct terms, of the term's weight (idf) times how
    many other sentences share it, damped by the square root of the sentence's length so long
    sentences do not win on length alone. Spread: the groups (one per excerpt, in order) are
    split into at most ``limit`` consecutive runs, and each run gives its most central sentence;
    the slots left over are spread the same way over the sentences themselves, so a long excerpt
    is represented along its length; any slot still free goes to the most central sentence
    anywhere. A near-duplicate of a chosen sentence is skipped.
    """
    flat = [(gi, ci, c) for gi, group in enumerate(groups) for ci, c in enumerate(group)]
    n = len(flat)
    df = Counter(t for _, _, c in flat for t in c.terms)
    score: dict[tuple[int, int], float] = {}
    for gi, ci, c in flat:
        shared = sum((df[t] - 1) * math.log(1 + n / df[t]) for t in c.terms)
        score[(gi, ci)] = shared / math.sqrt(len(c.terms))
    substantial = [o for o in flat if len(o[2].terms) >= _MIN_TERMS]
    flat = substantial or flat  # "Thanks!" is quoted only when nothing else was said
    n = len(flat)

    picked: dict[tuple[int, int], _Candidate] = {}

    def take(options: list[tuple[int, int, _Candidate]]) -> bool:
        for gi, ci, c in sorted(options, key=lambda o: (-score[(o[0], o[1])], o[0], o[1])):
            if (gi, ci) in picked or any(_similar(c, p) for p in picked.values()):
                continue
            picked[(gi, ci)] = c
            return True
        return False

    for lo, hi in _runs(len(groups), min(limit, len(groups))):
        take([o for o in flat if lo <= o[0] < hi])
    for lo, hi in _runs(n, limit - len(picked)):
        take(flat[lo:hi])
    while len(picked) < limit and take(flat):
        pass
    return [picked[k] for k in sorted(picked)]


def _runs(length: int, count: int) -> list[tuple[int, int]]:
    """``count`` consecutive, nearly equal ranges covering ``range(length)``."""
    return [(r * length // count, (r + 1) * length // count) for r in range(max(0, count))]


def _similar(a: _Candidate, b: _Candidate) -> bool:
    left, right = a.terms.keys(), b.terms.keys()
    union = len(left | right)
    return union > 0 and len(left & right) / union >= _NEAR_DUPLICATE


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= _MAX_QUOTE_CHARS:
        return flat
    cut = flat[:_MAX_QUOTE_CHARS]
    space = cut.rfind(" ")
    return (cut[:space] if space > _MAX_QUOTE_CHARS // 2 else cut) + "…"


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) > 1]


def _rank(query: set[str], candidates: list[_Candidate]) -> list[_Candidate]:
    """BM25 over the candidate sentences; only candidates sharing a query term are kept."""
    if not query or not candidates:
        return []
    n = len(candidates)
    avg_len = sum(sum(c.terms.values()) for c in candidates) / n or 1.0
    df = Counter(t for c in candidates for t in set(c.terms) if t in query)
    scored: list[tuple[float, int, _Candidate]] = []
    seen: set[str] = set()
    for index, c in enumerate(candidates):
        length = sum(c.terms.values())
        score = 0.0
        for term in query & c.terms.keys():
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            tf = c.terms[term]
            score += idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / avg_len))
        key = c.text.lower()
        if score > 0 and key not in seen:
            seen.add(key)
            scored.append((score, -index, c))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [c for _, _, c in scored]
