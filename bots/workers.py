"""The worker side of every host, wired in one place: each platform's job handlers over the one
assistant, file knowledge and summarizer the host built.

The local host and the Lambda worker differ in transport only, so they call this with what they
have: ``teams_authenticated=True`` on AWS makes sure a Teams reply never goes out without the
bot's credentials.
"""

from __future__ import annotations

from core.assistant import Assistant
from core.config import Settings
from core.jobs import JobRouter
from core.runtime import Knowledge
from core.summarize import Summarizer


def install_workers(
    router: JobRouter,
    assistant: Assistant,
    settings: Settings,
    knowledge: Knowledge,
    summarizer: Summarizer,
    *,
    slack: bool,
    teams: bool,
    teams_authenticated: bool = False,
) -> None:
    """Register the job handlers of each platform asked for (imports stay lazy: a Slack-only
    container never loads botbuilder)."""
    if slack:
        from bots.slack.worker import install_worker

        install_worker(
            router,
            assistant,
            settings,
            knowledge.indexer,
            summarizer=summarizer,
            knowledge=knowledge.store,
        )
    if teams:
        from bots.teams.worker import install_worker as install_teams_worker

        if teams_authenticated:
            from bots.teams.auth import require_credentials

            require_credentials(settings)
        install_teams_worker(
            router,
            assistant,
            settings,
            knowledge.indexer,
            summarizer=summarizer,
            knowledge=knowledge.store,
        )
