"""SQS → the worker: each job deduplicated, answered, and counted.

Powertools' FIFO batch processor reports partial failures; after a failure it holds back the
rest of that conversation's messages (they come back with the failed one, so order holds) while
other conversations in the batch are answered. Metrics (EMF) count answers and failures for alarms.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from bots.aws.settings import load_aws_settings
from bots.workers import install_workers
from core.dedupe import DedupedHandler, build_persistence
from core.domain import Reply, Turn
from core.jobs import JobRouter, job_from_json
from core.observability import configure_logging
from core.runtime import build_assistant, build_knowledge, build_summarizer

log = logging.getLogger(__name__)
metrics = Metrics()
_handler: DedupedHandler | None = None


def count_reply(turn: Turn, reply: Reply) -> None:
    if reply.error and reply.error != "input_rejected":
        metrics.add_metric(name="AnswersFailed", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="AnswersCompleted", unit=MetricUnit.Count, value=1)


def build_handler() -> DedupedHandler:
    settings = load_aws_settings()
    knowledge = build_knowledge(settings)
    assistant = build_assistant(settings, retriever=knowledge.retriever, on_reply=count_reply)
    summarizer = build_summarizer(settings)
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
        metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
        log.exception("job failed; SQS will redeliver it", extra={"message_id": record.message_id})
        raise


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler
    if _handler is None:
        configure_logging()
        _handler = build_handler()
    _handler.config.register_lambda_context(context)
    # After a failure, later messages of the same conversation come back with it (order holds);
    # other conversations in the batch go on. When every record fails, report them all rather
    # than raise: the same redelivery, one code path.
    processor = SqsFifoPartialProcessor(skip_group_on_error=True)
    processor.raise_on_entire_batch_failure = False
    return process_partial_response(
        event=event, record_handler=_record, processor=processor, context=context
    )
