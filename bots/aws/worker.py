"""SQS → the worker: each job deduplicated, answered, and counted.

Powertools' FIFO batch processor reports partial failures; after a failure it holds back the
rest of that conversation's messages (they come back with the failed one, so order holds) while
other conversations in the batch are answered. Metrics (EMF, :mod:`bots.aws.metrics`) count
answers, failures, tokens and timings for the dashboard and the alarms.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from bots.aws.metrics import WorkerMetrics
from bots.aws.settings import load_aws_settings
from bots.workers import install_workers
from core.dedupe import DedupedHandler, build_persistence
from core.jobs import JobRouter, job_from_json
from core.observability import configure_logging
from core.runtime import build_assistant, build_knowledge, build_summarizer

log = logging.getLogger(__name__)
metrics = Metrics()
worker_metrics = WorkerMetrics(metrics)
_handler: DedupedHandler | None = None


def build_handler() -> DedupedHandler:
    settings = load_aws_settings()
    knowledge = build_knowledge(settings)
    assistant = build_assistant(
        settings,
        retriever=knowledge.retriever,
        on_reply=worker_metrics.count_reply,
        usage_observer=worker_metrics,
    )
    summarizer = build_summarizer(settings, usage_observer=worker_metrics)
    router = JobRouter()
    install_workers(
        router,
        assistant,
        settings,
        knowledge,
        summarizer,
        slack=bool(settings.slack_bot_token),
        teams=bool(settings.microsoft_app_id),
        teams_authenticated=True,  # never reply unauthenticated from AWS
    )
    return DedupedHandler(router.handle, build_persistence(settings))


def _record(record: SQSRecord) -> None:
    assert _handler is not None
    try:
        _handler(job_from_json(record.body))
    except Exception:
        worker_metrics.count_failed_job()
        log.exception("job failed; SQS will redeliver it", extra={"message_id": record.message_id})
        raise


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler
    try:
        if _handler is None:
            configure_logging()
            _handler = build_handler()
        _handler.config.register_lambda_context(context)
        # After a failure, later messages of the same conversation come back with it (order
        # holds); other conversations in the batch go on. When every record fails, report them
        # all rather than raise: the same redelivery, one code path.
        processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        processor.raise_on_entire_batch_failure = False
        return process_partial_response(
            event=event, record_handler=_record, processor=processor, context=context
        )
    finally:
        # What Powertools' log_metrics decorator does, except that a failed write is logged,
        # not raised: it must not turn answered jobs into a failed batch.
        worker_metrics.flush()
