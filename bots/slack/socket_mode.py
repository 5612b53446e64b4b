"""Socket Mode: Slack events over a WebSocket the app opens, so a laptop needs no public URL.

Used by ``chatbot serve`` when ``SLACK_APP_TOKEN`` is set. Events reach the same Bolt app, and
so the same listeners, queue and worker, as events over HTTP.
"""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)


def start_socket_mode(app: App, app_token: str) -> SocketModeHandler:
    """Open the connection (``apps.connections.open`` through the app's client, so
    ``SLACK_API_URL`` applies) and return the handler; ``close()`` it on shutdown."""
    handler = SocketModeHandler(app, app_token, web_client=app.client)
    try:
        handler.connect()
    except Exception:
        handler.close()  # the client's threads start with it: never leave them running
        raise
    if handler.client.is_connected():
        log.info("slack socket mode connected")
    else:
        # The client logs the handshake failure itself and retries on its own schedule.
        log.warning("slack socket mode not connected yet; the client keeps retrying")
    return handler
