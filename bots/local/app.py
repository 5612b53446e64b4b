"""Wires the local host: one assistant, one job router, one in-process queue, the routes."""

from __future__ import annotations

from dataclasses import dataclass

from bots.http import HttpRequest, HttpResponse, Routes
from bots.local import devchat
from bots.local.queue import InProcessQueue
from core.assistant import Assistant
from core.config import Settings
from core.jobs import JobRouter
from core.runtime import build_assistant


@dataclass
class LocalApp:
    settings: Settings
    assistant: Assistant
    routes: Routes
    jobs: JobRouter
    queue: InProcessQueue
    transcripts: devchat.Transcripts

    def close(self) -> None:
        self.queue.close()


def build_local_app(settings: Settings, *, assistant: Assistant | None = None) -> LocalApp:
    assistant = assistant or build_assistant(settings)
    routes = Routes()
    jobs = JobRouter()
    queue = InProcessQueue(jobs.handle)

    def healthz(_: HttpRequest) -> HttpResponse:
        return HttpResponse.json(
            200,
            {
                "status": "ok",
                "llm": settings.llm,
                "store": settings.store,
                "jobs": sorted(jobs.kinds),
            },
        )

    routes.add("GET", "/healthz", healthz)
    transcripts = devchat.install(routes, jobs, queue, assistant)
    return LocalApp(settings, assistant, routes, jobs, queue, transcripts)
