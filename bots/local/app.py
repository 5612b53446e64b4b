"""Wires the local host: one assistant, one job router, one in-process queue, the routes.

The same ingress routes and job handlers as in AWS, with the embedded twins of SQS (the
in-process queue) and of the idempotency table (SQLite). Given the URL it is reached at
(``base_url``; :func:`start_local` binds the server first to know it), it also runs the browser
playground (:mod:`bots.playground`): where the operator configured no Slack app, the Slack
adapter runs against the playground's Web API emulator with this run's own secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

from bots.http import HttpRequest, HttpResponse, Routes
from bots.local import devchat
from bots.local.queue import InProcessQueue
from bots.local.server import LocalServer
from bots.workers import install_workers
from core.assistant import Assistant
from core.config import Settings
from core.dedupe import DedupedHandler, build_persistence
from core.dedupe.sqlite import SqlitePersistenceLayer
from core.jobs import Job, JobRouter
from core.runtime import Knowledge, build_assistant, build_knowledge, build_summarizer
from core.summarize import Summarizer

TEAMS_NEEDS_AUTH = (
    "Teams without MICROSOFT_APP_ID is allowed only on 127.0.0.1: set the Bot Framework "
    "credentials to listen on another address"
)
SLACK_NOT_CONFIGURED = "Slack is not configured: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN"
QUEUE_FILE = "queue.sqlite3"  # in CHATBOT_DATA_DIR: jobs accepted and not yet done

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from bots.playground.routes import Playground


@dataclass
class LocalApp:
    settings: Settings
    assistant: Assistant
    routes: Routes
    jobs: JobRouter
    queue: InProcessQueue
    transcripts: devchat.Transcripts
    slack_app: Any = None  # the Bolt app, when Slack is configured
    playground: Playground | None = None
    dropped_jobs: int = 0  # jobs a previous run left for its playground (see below)

    def close(self, drain_seconds: float | None = None) -> bool:
        """See :meth:`InProcessQueue.close`: ``chatbot serve`` passes ``CHATBOT_DRAIN_SECONDS``.
        The playground's change streams end first."""
        if self.playground is not None:
            self.playground.close()
        return self.queue.close(drain_seconds)


def build_local_app(
    settings: Settings,
    *,
    assistant: Assistant | None = None,
    knowledge: Knowledge | None = None,
    summarizer: Summarizer | None = None,
    persistence: BasePersistenceLayer | None = None,
    base_url: str | None = None,
) -> LocalApp:
    """``base_url``: how this host reaches itself (``http://127.0.0.1:<port>``); with it, the
    playground runs (and reports each answer's usage: a host-built assistant is told)."""
    # With no MICROSOFT_APP_ID the local host (and only it) takes unauthenticated activities,
    # which is what the Bot Framework Emulator and local tests send, and only while it listens
    # on loopback: bound to another address, or reachable through a tunnel (an allowed host
    # name), nobody else may post activities.
    loopback = settings.host in ("127.0.0.1", "localhost", "::1") and not settings.allowed_hosts
    playground = None
    if base_url is not None:
        from bots.playground import prepare
        from bots.playground.routes import Playground

        setup = prepare(settings, base_url, teams_unauthenticated=loopback)
        settings = setup.settings
        playground = Playground(setup, max_file_bytes=settings.max_file_mb * 1024 * 1024)
    observer = playground.usage if playground is not None else None
    knowledge = knowledge or build_knowledge(settings)
    summarizer = summarizer or build_summarizer(settings, usage_observer=observer)
    assistant = assistant or build_assistant(
        settings, retriever=knowledge.retriever, usage_observer=observer
    )
    routes = Routes()
    jobs = JobRouter()
    persistence = persistence or build_persistence(settings)
    # This host owns its data dir, so none of its jobs can be in progress yet: a mark left by a
    # run that died mid-job would refuse that job's re-run for minutes.
    if isinstance(persistence, SqlitePersistenceLayer) and (
        cleared := persistence.clear_in_progress()
    ):
        log.info("stale in-progress marks cleared", extra={"records": cleared})
    handle: Callable[[Job], None] = jobs.handle
    if playground is not None:
        from bots.playground.usage import tracking

        handle = tracking(handle)  # the usage panel names the job each answer belongs to
    deduped = DedupedHandler(handle, persistence)
    # No redelivery locally: a job that fails ends with its kind's apology to the person. Jobs
    # a previous run left unfinished in the queue file start once every handler is registered.
    queue = InProcessQueue(
        deduped,
        workers=settings.local_workers,
        on_failure=jobs.report_failure,
        path=settings.data_dir / QUEUE_FILE,
        autostart=False,
    )
    slack_ready = bool(settings.slack_signing_secret and settings.slack_bot_token)

    def healthz(_: HttpRequest) -> HttpResponse:
        return HttpResponse.json(
            200,
            {
                "status": "ok",
                "llm": settings.llm,
                "store": settings.store,
                "slack": slack_ready,
                "playground": playground is not None,
                "jobs": sorted(jobs.kinds),
            },
        )

    routes.add("GET", "/healthz", healthz)
    transcripts = devchat.install(routes, jobs, queue, assistant)
    app = LocalApp(settings, assistant, routes, jobs, queue, transcripts, playground=playground)
    if playground is not None:
        playground.install(routes)
    if slack_ready:
        from bots.slack.ingress import build_bolt_app, slack_route

        app.slack_app = build_bolt_app(settings, queue.enqueue)
        route = slack_route(app.slack_app, settings.slack_signing_secret, enqueue=queue.enqueue)
        routes.add("POST", "/slack/events", route)
    else:
        routes.add("POST", "/slack/events", lambda _: HttpResponse.error(503, SLACK_NOT_CONFIGURED))

    from bots.teams.ingress import install_ingress as install_teams_ingress

    if loopback or settings.microsoft_app_id:
        install_teams_ingress(
            routes,
            queue.enqueue,
            settings,
            allow_unauthenticated=loopback,
            prewarm_keys=bool(settings.microsoft_app_id),  # in the background, at start
        )
    else:
        routes.add("POST", "/api/messages", lambda _: HttpResponse.error(503, TEAMS_NEEDS_AUTH))
    install_workers(jobs, assistant, settings, knowledge, summarizer, slack=slack_ready, teams=True)
    if playground is not None:
        # The previous run's playground workspaces died with it: its jobs left in the queue
        # file could only fail here (bots/playground/__init__.py).
        from bots.playground import left_for_playground

        app.dropped_jobs = queue.discard(left_for_playground)
        if app.dropped_jobs:
            log.info("playground jobs of the last run dropped", extra={"jobs": app.dropped_jobs})
    queue.start()
    return app


def start_local(
    settings: Settings, *, token: str | None = None, **build: Any
) -> tuple[LocalServer, LocalApp]:
    """Bind the server on ``settings.host:port``, then build the app knowing the URL it is
    reached at (the playground's emulators are called there). Raises OSError when the address
    cannot be bound (nothing is built then); the server is not serving yet."""
    server = LocalServer(
        (settings.host, settings.port),
        Routes(),
        allowed_hosts=settings.allowed_hosts,
        token=token,
    )
    try:
        app = build_local_app(settings, base_url=server.self_url, **build)
    except BaseException:
        server.server_close()
        raise
    server.routes = app.routes
    return server, app
