"""Microsoft Teams through the Bot Framework (botbuilder-core).

Every botbuilder / botframework import of the code base lives in this folder, so that a move to
the Microsoft 365 Agents SDK (same Activity protocol) is a change of one folder.

- :mod:`bots.teams.events`: Activity → core turn (pure): what to answer, where, what to ignore.
- :mod:`bots.teams.auth`: the inbound JWT check, and the credential rules of each host.
- :mod:`bots.teams.ingress`: ``POST /api/messages``: verify, translate, enqueue, ack.
- :mod:`bots.teams.connector`: the one Bot Framework adapter of a process (outbound calls).
- :mod:`bots.teams.sink`: the reply sink: typing, paced edits, a final message with sources.
- :mod:`bots.teams.worker`: the jobs the ingress enqueues.
"""
