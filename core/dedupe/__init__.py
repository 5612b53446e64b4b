"""Durable deduplication of jobs, with Powertools' idempotency utility.

A platform may deliver the same event again (Slack retries up to three times, the last after
minutes; Bot Framework redelivers). SQS FIFO drops duplicates for five minutes; the worker keeps an
idempotency record per job for much longer, so a late redelivery never yields a second answer,
while a job that failed (raised) leaves no record and is answered when it comes again.

Persistence follows Powertools' own layout: its DynamoDB layer in AWS, and
:class:`core.dedupe.sqlite.SqlitePersistenceLayer` for the embedded runtime.
"""

from core.dedupe.runner import DedupedHandler, build_persistence

__all__ = ["DedupedHandler", "build_persistence"]
