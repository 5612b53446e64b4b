"""``chatbot``: run the service locally (``serve``) or one turn in the terminal (``ask``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import stat
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from core.config import ConfigError, Settings, load_settings
from core.domain import ConversationKey, Role, Turn
from core.observability import configure_logging

if TYPE_CHECKING:
    from bots.local.app import LocalApp

log = logging.getLogger("bots.cli")  # not __name__: under "python -m" that is __main__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatbot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service locally on embedded defaults")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 3000)")

    ask = commands.add_parser("ask", help="ask one question and stream the answer here")
    ask.add_argument("question", help="the question; quote it")
    ask.add_argument(
        "--thread", default="default", help="conversation to continue (default: default)"
    )
    ask.add_argument("--new", action="store_true", help="start a new conversation")
    ask.add_argument("--user", default="you", help="who is asking (default: you)")
    ask.add_argument("-v", "--verbose", action="store_true", help="show log lines on stderr")

    package = commands.add_parser("teams-package", help="build the Teams app package (zip)")
    from bots.teams_package import add_arguments

    add_arguments(package)

    args = parser.parse_args(argv)
    if args.command == "teams-package":
        from bots.teams_package import run

        return run(args)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"chatbot: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(settings, args.host, args.port)
    return _ask(settings, args)


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    from bots.local.app import start_local

    configure_logging("INFO")
    settings = replace(settings, host=host or settings.host, port=port or settings.port)
    try:
        # The key to the playground (always) and to /local/* off loopback.
        server, app = start_local(settings, token=local_token(settings.data_dir))
    except OSError as exc:
        # Nothing was built: jobs left by the last run wait in the queue file.
        print(
            f"chatbot: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    socket_mode = None
    # The app's settings: with the playground, Slack may run against its emulator instead.
    if app.settings.slack_app_token and app.slack_app is not None:
        from bots.slack.socket_mode import start_socket_mode

        socket_mode = start_socket_mode(app.slack_app, app.settings.slack_app_token)
    log.info(
        "chatbot serving",
        extra={
            "url": server.url,
            "routes": app.routes.paths,
            "settings": app.settings.redacted(),
        },
    )
    # One line, and the one URL a newcomer needs: the playground with this run's token
    # (printed, never logged). Reached from elsewhere, /local/* takes the same token.
    token = server.guard.token
    remote = f"; from other machines /local/* needs Authorization: Bearer {token}"
    print(
        f"chatbot: serving on {server.self_url}/?token={token} "
        f"(llm={settings.llm}, store={settings.store})"
        + (remote if server.guard.needs_token else ""),
        file=sys.stderr,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if socket_mode is not None:
            socket_mode.close()
        server.server_close()  # no new connections from here on
        _drain(app, settings.drain_seconds)
    return 0


def _drain(app: LocalApp, seconds: float) -> None:
    """Running jobs get ``seconds`` to finish; queued ones do not start. Whatever did not finish
    stays in the durable queue and runs at the next start. A second signal stops at once."""
    print(f"chatbot: stopping (running jobs get up to {seconds:g}s)", file=sys.stderr)
    try:
        finished = app.close(drain_seconds=seconds)
    except KeyboardInterrupt:
        finished = False
    if not finished:
        print(
            "chatbot: jobs still running were stopped; they run at the next start", file=sys.stderr
        )


def _ask(settings: Settings, args: argparse.Namespace) -> int:
    from bots.terminal import TerminalSink
    from core.runtime import build_assistant

    configure_logging("INFO" if args.verbose else "WARNING")
    # A terminal has no edit limits: show text as soon as it arrives.
    settings = replace(settings, edit_interval_seconds=0.05)
    assistant = build_assistant(settings)
    thread = uuid.uuid4().hex[:12] if args.new else args.thread
    turn = Turn(
        key=ConversationKey("cli", "local", "terminal", thread),
        turn_id=uuid.uuid4().hex,
        role=Role.USER,
        user_id=args.user,
        user_name=args.user,
        text=args.question,
        created_at=time.time(),
    )
    reply = assistant.answer(turn, TerminalSink())
    return 0 if reply.complete else 1


TOKEN_FILE = "local-token"  # noqa: S105 - a file name in CHATBOT_DATA_DIR, not a secret


def local_token(data_dir: Path) -> str:
    """The local host's token, kept in the data directory (readable by its owner only) so that
    a playground page left open across a restart of ``chatbot serve`` reconnects with the URL it
    already has. Deleting the file gives the next run a new token. A data directory that cannot
    be written gives this run a token of its own.

    The file is trusted only if it is a regular file (not a symlink: opened with
    ``O_NOFOLLOW``), owned by us and readable by nobody else; otherwise someone else could know
    or choose the token, and a new one replaces it (written to a private temporary file, then
    renamed over the old name, so nobody ever reads a half-written or wider-open token)."""
    path = data_dir / TOKEN_FILE
    token = _trusted_token(path)
    if token is not None:
        return token
    token = secrets.token_urlsafe(32)
    temporary = data_dir / f".{TOKEN_FILE}.{secrets.token_hex(8)}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(temporary, flags, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(token)
        os.replace(temporary, path)
    except OSError:
        log.warning("could not keep the local token; it lasts this run only")
        with contextlib.suppress(OSError):
            temporary.unlink()
    return token


def _trusted_token(path: Path) -> str | None:
    """The token in ``path`` if the file is ours alone (see :func:`local_token`), else None."""
    try:
        # O_NONBLOCK: a FIFO put there must not hang the start (it is then refused below).
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        descriptor = os.open(path, flags)
    except OSError:
        return None  # missing, unreadable, or a symlink
    with os.fdopen(descriptor, "rb") as file:
        try:
            found = os.fstat(file.fileno())
            mine = not hasattr(os, "getuid") or found.st_uid == os.getuid()
            if not stat.S_ISREG(found.st_mode) or not mine or found.st_mode & 0o077:
                log.warning("the local token file is not private to this user: a new token")
                return None
            token = file.read(1024).decode("ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
    return token if len(token) >= 32 else None


if __name__ == "__main__":
    sys.exit(main())
