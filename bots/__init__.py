"""Platform adapters (Slack, Teams, the terminal) and the hosts that run them (local, Lambda).

Adapters translate platform payloads into :mod:`core` types and core replies into platform
messages; hosts turn a transport's request into an :class:`bots.http.HttpRequest` and back.
"""
