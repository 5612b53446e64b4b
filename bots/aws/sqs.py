"""The SQS FIFO queue between ingress and worker (the AWS twin of the in-process queue)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import botocore.session
from botocore.config import Config

from core.jobs import Job, job_to_json

# SQS accepts 1-128 characters of letters, digits and punctuation in group and dedupe ids.
_SQS_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")


def sqs_id(value: str) -> str:
    """``value`` if SQS accepts it as is, else its SHA-256 (same value, same id)."""
    return value if _SQS_ID.match(value) else hashlib.sha256(value.encode()).hexdigest()


class SqsJobQueue:
    def __init__(self, queue_url: str, *, region: str, client: Any | None = None) -> None:
        if not queue_url:
            raise ValueError("CHATBOT_QUEUE_URL is not set")
        self._url = queue_url
        # botocore directly, not boto3: the same client without boto3's s3transfer import,
        # about 20 ms of every ingress cold start (docs/benchmarks.md). Endpoint variables
        # (AWS_ENDPOINT_URL_SQS) are botocore's, so they still apply.
        self._client = client or botocore.session.get_session().create_client(
            "sqs",
            region_name=region,
            config=Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard"}),
        )

    def enqueue(self, job: Job) -> None:
        """Group = conversation (answered in order); dedupe id = the platform's event id."""
        self._client.send_message(
            QueueUrl=self._url,
            MessageBody=job_to_json(job),
            MessageGroupId=sqs_id(job.group),
            MessageDeduplicationId=sqs_id(job.dedupe_id),
        )
