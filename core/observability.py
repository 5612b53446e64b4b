"""Structured logging for every module of ``core`` and ``bots``.

Modules log through the standard library (``logging.getLogger(__name__)``); this attaches
Powertools' JSON formatter to the ``core`` and ``bots`` loggers so that every line is one JSON
object, with the keys bound by :func:`bind` (conversation id, request id) on every line the
current thread writes. Message text is never logged at info level: log ids, sizes and causes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from aws_lambda_powertools import Logger

SERVICE = "chatbot"
_logger: Logger | None = None


def configure_logging(level: str | int = "INFO", stream: IO[str] | None = None) -> Logger:
    """Route ``core.*`` and ``bots.*`` logs through one Powertools JSON handler.

    Safe to call again (two hosts in one process, tests): the logger is built once, and later
    calls only change its level and, if given, its stream."""
    global _logger
    if _logger is None:
        _logger = Logger(
            service=SERVICE, level=level, logger_handler=logging.StreamHandler(stream or sys.stderr)
        )
    handler = _logger.registered_handler
    if stream is not None and isinstance(handler, logging.StreamHandler):
        handler.setStream(stream)
    _logger.setLevel(level)
    for name in ("core", "bots"):
        target = logging.getLogger(name)
        target.handlers = [handler]
        target.setLevel(level)
        target.propagate = False
    return _logger


def logger() -> Logger:
    return _logger if _logger is not None else configure_logging()


@contextmanager
def bind(**keys: str) -> Iterator[None]:
    """Add ``keys`` to every log line this thread writes inside the block."""
    current = logger()
    current.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        current.thread_safe_remove_keys(list(keys))
