"""The worker's CloudWatch metrics, written as EMF log lines through Powertools Metrics.

The metric names below are the one list: ``infra/template.yaml`` (its dashboard and alarms)
spells the same strings, and ``tests/test_infra.py`` checks that the template names only
metrics this module emits and that the dashboard shows each of them. Every metric carries the
one dimension Powertools adds, ``service`` (``POWERTOOLS_SERVICE_NAME``), in the
``POWERTOOLS_METRICS_NAMESPACE`` namespace; the model id is in the usage log line, not a
dimension, so that one alarm covers every model. The feedback counts are the one exception:
each is also written with a ``model_id`` dimension (one EMF line per click), since comparing
models is what they are for.

A metric that cannot be written is logged and dropped: the answer has already been given, and
a metrics problem must never fail the job (which SQS would then deliver again).
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from core.domain import Reply, Turn
from core.feedback import Rating
from core.usage import AnswerUsage

log = logging.getLogger(__name__)

NAMESPACE = "Chatbot"  # the template's POWERTOOLS_METRICS_NAMESPACE
SERVICE = "chatbot"  # the template's POWERTOOLS_SERVICE_NAME

# Per answer (and per summary), from core.assistant's on_reply hook.
ANSWERS_COMPLETED = "AnswersCompleted"
ANSWERS_FAILED = "AnswersFailed"
# Per job that raised (SQS redelivers it).
JOBS_FAILED = "JobsFailed"
# Per answer and per summary, from its usage (core.usage.AnswerUsage).
INPUT_TOKENS = "InputTokens"  # uncached input, as Bedrock bills it
OUTPUT_TOKENS = "OutputTokens"
CACHE_READ_TOKENS = "CacheReadInputTokens"
CACHE_WRITE_TOKENS = "CacheWriteInputTokens"
MODEL_CALLS = "ModelCalls"
REPLY_EDITS = "ReplyEdits"
PLATFORM_429S = "Platform429s"  # the chat platform refused a call (not our own rate budget)
SUMMARIES = "Summaries"
# Per answer only: a summary's wait includes its map rounds, which would blur these.
TIME_TO_FIRST_TOKEN = "TimeToFirstToken"  # noqa: S105 - a metric name
TIME_TO_FINAL = "TimeToFinal"
# Per effective feedback click (a new or changed rating), from Assistant.record_feedback. Each is
# written twice: with ``service`` only (the dashboard's row, one series for every model) and with
# ``service`` and ``model_id`` (to compare models; these are not on the dashboard).
FEEDBACK_POSITIVE = "FeedbackPositive"
FEEDBACK_NEGATIVE = "FeedbackNegative"
MODEL_DIMENSION = "model_id"

EMITTED: frozenset[str] = frozenset(
    {
        ANSWERS_COMPLETED,
        ANSWERS_FAILED,
        JOBS_FAILED,
        INPUT_TOKENS,
        OUTPUT_TOKENS,
        CACHE_READ_TOKENS,
        CACHE_WRITE_TOKENS,
        MODEL_CALLS,
        REPLY_EDITS,
        PLATFORM_429S,
        SUMMARIES,
        TIME_TO_FIRST_TOKEN,
        TIME_TO_FINAL,
        FEEDBACK_POSITIVE,
        FEEDBACK_NEGATIVE,
    }
)


class WorkerMetrics:
    """The worker's metrics on one Powertools :class:`Metrics` (flushed once per invocation).

    Its :meth:`record` is a :class:`core.usage.UsageObserver`; :meth:`count_reply` is the
    assistant's ``on_reply`` hook."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def count_reply(self, turn: Turn, reply: Reply) -> None:
        failed = bool(reply.error) and reply.error not in ("input_rejected", "quota_exceeded")
        self._add(ANSWERS_FAILED if failed else ANSWERS_COMPLETED, MetricUnit.Count, 1)

    def count_failed_job(self) -> None:
        self._add(JOBS_FAILED, MetricUnit.Count, 1)

    def record(self, usage: AnswerUsage) -> None:
        tokens = usage.tokens
        self._add(INPUT_TOKENS, MetricUnit.Count, tokens.input)
        self._add(OUTPUT_TOKENS, MetricUnit.Count, tokens.output)
        self._add(CACHE_READ_TOKENS, MetricUnit.Count, tokens.cache_read)
        self._add(CACHE_WRITE_TOKENS, MetricUnit.Count, tokens.cache_write)
        self._add(MODEL_CALLS, MetricUnit.Count, usage.model_calls)
        self._add(REPLY_EDITS, MetricUnit.Count, usage.delivery.edits)
        self._add(PLATFORM_429S, MetricUnit.Count, usage.delivery.platform_throttles)
        if usage.kind == "summary":
            self._add(SUMMARIES, MetricUnit.Count, 1)
            return
        if usage.time_to_first_token is not None:
            self._add(
                TIME_TO_FIRST_TOKEN, MetricUnit.Milliseconds, usage.time_to_first_token * 1000
            )
        self._add(TIME_TO_FINAL, MetricUnit.Milliseconds, usage.time_to_final * 1000)

    def feedback(self, rating: Rating, model_id: str, platform: str) -> None:
        """A :class:`core.usage.FeedbackObserver`: one click counted, overall and per model."""
        name = FEEDBACK_POSITIVE if rating is Rating.GOOD else FEEDBACK_NEGATIVE
        self._add(name, MetricUnit.Count, 1)
        if not model_id:
            return
        try:
            dimensions = {"service": self._metrics.service or SERVICE}
            with single_metric(
                name=name,
                unit=MetricUnit.Count,
                value=1,
                namespace=self._metrics.namespace,
                default_dimensions=dimensions,
            ) as metric:
                metric.add_dimension(name=MODEL_DIMENSION, value=model_id)
        except Exception:  # as in _add: a metric is not worth the click
            log.exception("metric could not be recorded", extra={"metric": name})

    def flush(self) -> None:
        """Write the invocation's metrics (one EMF line); on failure, log and drop them. An
        invocation that counted nothing (a file removal, a repeated click) writes nothing."""
        if not self._metrics.metric_set:
            return
        try:
            self._metrics.flush_metrics()
        except Exception:  # whatever Powertools raises: the jobs are done either way
            log.exception("metrics could not be written; dropped")
            self._metrics.clear_metrics()

    def _add(self, name: str, unit: MetricUnit, value: float) -> None:
        try:
            self._metrics.add_metric(name=name, unit=unit, value=value)
        except Exception:  # a metric is not worth an answer: log it, go on
            log.exception("metric could not be recorded", extra={"metric": name})
