"""Where a prompt gets Bedrock cache points, and whether it gets any.

A cache point makes Bedrock keep the prompt's prefix up to it for five minutes (the clock resets
on each hit); a later request whose prefix up to one of its own cache points is the same reads
it at a tenth of the input price, and the first one writes it at 1.25 times. A prefix shorter
than the model's minimum is not cached at all. So a cache point pays only on a prefix that the
next request repeats, soon, and that is long enough.

What repeats in a conversation:

- **The system prompt**, in every request of every conversation: a cache point right after it,
  when it alone reaches the minimum (the built-in one does not; a long custom one does).
- **The history.** Turn *n* sends system, history, then the new message; turn *n+1* sends the
  same system and history, then turn *n*'s question and answer, then its own message. So the
  prefix that the next turn shares is everything *before the new message*: the cache point goes
  at the end of the last history message (``messages[-2]``), and is written there. A second one
  goes where the previous turn put its own (``messages[-4]``, one question and one answer
  earlier): there the prefix is read. Bedrock bills what lies between the read prefix and the
  last cache point as written, and what follows the last one as plain input, so each turn reads
  what the turn before it wrote and writes only its newest exchange.
- **Not the retrieved documents.** They sit in the new message, chosen for this question, and
  are not stored in the history (only the question is), so no later prefix contains them: a
  cache point after them would write tokens that are never read. The same holds for the notes.

When the history slides (older turns left out for the token budget or the turn limit), the
next prompt starts differently and no history prefix is ever read again; then only the system
prompt gets a cache point. Three cache points at most, within Bedrock's four.

Which models: Anthropic Claude (3.5 Haiku, 3.7 Sonnet and the Claude 4 families) and Amazon
Nova on Bedrock. ``CHATBOT_PROMPT_CACHE`` is ``auto`` (those models only), ``on`` (any model
id, with the minimum of a known one or 1,024 tokens) or ``off``. Tokens are estimated with
:func:`core.text.estimate_tokens`, as the prompt budget is.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.prompt import Prompt
from core.text import estimate_tokens

CACHE_MODES = ("auto", "on", "off")
DEFAULT_MINIMUM = 1024
MAX_CACHE_POINTS = 4  # Bedrock refuses more in one request

# Minimum prefix, in tokens, per cache point (Bedrock user guide, "Prompt caching"). Matched as
# ``.<prefix>`` inside ``.<model id>`` so region prefixes (us., eu., global.) and ARNs work;
# first match wins, so the more specific names come first.
_MINIMUMS: tuple[tuple[str, int], ...] = (
    ("anthropic.claude-haiku-4-5", 4096),
    ("anthropic.claude-opus-4-5", 4096),
    ("anthropic.claude-opus-4-6", 4096),
    ("anthropic.claude-3-5-haiku", 2048),
    ("anthropic.claude-sonnet-4", 1024),  # Sonnet 4, 4.5, 4.6
    ("anthropic.claude-opus-4", 1024),  # Opus 4, 4.1
    ("anthropic.claude-3-7-sonnet", 1024),
    ("amazon.nova-", 1000),
)


@dataclass(frozen=True, slots=True)
class CachePlan:
    """Where the cache points go: after the system prompt, and after which messages."""

    system: bool = False
    after_messages: tuple[int, ...] = ()

    @property
    def points(self) -> int:
        return int(self.system) + len(self.after_messages)


NO_CACHE = CachePlan()


def known_minimum(model_id: str) -> int | None:
    """The minimum cacheable prefix of a model id this code knows, else None."""
    name = "." + model_id.rsplit("/", 1)[-1].lower()  # an ARN ends in the model or profile id
    for prefix, minimum in _MINIMUMS:
        if "." + prefix in name:
            return minimum
    return None


def cache_minimum(model_id: str, mode: str) -> int | None:
    """The minimum prefix for cache points under ``mode``, or None for no cache points."""
    if mode not in CACHE_MODES:
        raise ValueError(f"prompt cache mode must be one of {CACHE_MODES}, not {mode!r}")
    if mode == "off":
        return None
    minimum = known_minimum(model_id)
    if minimum is None and mode == "on":
        return DEFAULT_MINIMUM
    return minimum


def plan_cache_points(prompt: Prompt, minimum: int | None) -> CachePlan:
    """The cache points for ``prompt`` (see the module docstring), each only where the prefix
    up to it reaches ``minimum`` estimated tokens; none when ``minimum`` is None."""
    if minimum is None:
        return NO_CACHE
    system_tokens = estimate_tokens(prompt.system)
    after: list[int] = []
    messages = prompt.messages
    if not prompt.history_trimmed and len(messages) >= 2:
        prefix = system_tokens
        candidates = {len(messages) - 2, len(messages) - 4}
        for index, message in enumerate(messages[:-1]):
            prefix += estimate_tokens(message.text)
            if index in candidates and prefix >= minimum:
                after.append(index)
    return CachePlan(system=system_tokens >= minimum, after_messages=tuple(after))
