"""The platform-neutral conversation core.

Nothing in this package knows about Slack, Teams, API Gateway or Lambda: platform adapters in
``bots/`` translate their payloads into the types in :mod:`core.domain` and drive a
:class:`core.assistant.Assistant` with a :class:`core.pacer.ReplySink` of their own.
"""
