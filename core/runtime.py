"""The composition root: builds stores and models from settings, once per process.

Hosts (the local server, the Lambda handlers, the CLI) call :func:`build_assistant` once at
start-up and reuse the result for every message: clients are built per container, never per
message. Backends are imported lazily so the offline path never pays for boto3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.assistant import Assistant, Retriever
from core.budget import LocalRateBudget, RateBudget
from core.config import Settings
from core.domain import Reply, Turn
from core.files.ingest import FileIndexer
from core.files.raw import RawFileStore
from core.history.base import HistoryStore
from core.knowledge.base import KnowledgeStore
from core.knowledge.retriever import KnowledgeRetriever
from core.models.base import ChatModel
from core.quota.base import QuotaLimits, QuotaStore
from core.summarize import Summarizer
from core.usage import UsageObserver


def build_history(settings: Settings) -> HistoryStore:
    if settings.store == "dynamodb":
        from core.history.dynamodb import DynamoDbHistoryStore

        return DynamoDbHistoryStore(
            settings.history_table,
            region=settings.aws_region,
            retention_days=settings.history_retention_days,
        )
    from core.history.sqlite import SqliteHistoryStore

    return SqliteHistoryStore(
        settings.data_dir / "history.sqlite3", retention_days=settings.history_retention_days
    )


def build_quota(settings: Settings) -> QuotaStore | None:
    """Daily quotas, or None when no ``CHATBOT_QUOTA_*`` limit is set (nothing is counted).
    Counted where history lives: DynamoDB's ``CHATBOT_QUOTA_TABLE`` or SQLite."""
    limits = QuotaLimits(
        questions_per_user=settings.quota_questions_per_user,
        questions_per_workspace=settings.quota_questions_per_workspace,
        tokens_per_user=settings.quota_tokens_per_user,
        tokens_per_workspace=settings.quota_tokens_per_workspace,
    )
    if not limits.enabled:
        return None
    if settings.store == "dynamodb":
        from core.quota.dynamodb import DynamoDbQuotaStore

        return DynamoDbQuotaStore(settings.quota_table, limits, region=settings.aws_region)
    from core.quota.sqlite import SqliteQuotaStore

    return SqliteQuotaStore(settings.data_dir / "quota.sqlite3", limits)


def build_rate_budget(settings: Settings) -> RateBudget:
    """Chat platforms' rate limits, counted across every container through DynamoDB when
    ``CHATBOT_BUDGET_TABLE`` is set, else in this process."""
    if settings.budget_table:
        from core.budget.dynamodb import DynamoDbRateBudget

        return DynamoDbRateBudget(settings.budget_table, region=settings.aws_region)
    return LocalRateBudget()


def build_model(settings: Settings, *, model_id: str = "") -> ChatModel:
    """The answering model, or with ``model_id`` another Bedrock model (for summaries)."""
    if settings.llm == "bedrock":
        from core.models.bedrock import BedrockChatModel

        return BedrockChatModel(
            model_id=model_id or settings.bedrock_model_id,
            region=settings.aws_region,
            max_attempts=settings.model_max_attempts,
            prompt_cache=settings.prompt_cache,
        )
    from core.models.offline import OfflineExtractiveModel

    return OfflineExtractiveModel()


def build_summarizer(
    settings: Settings, *, usage_observer: UsageObserver | None = None
) -> Summarizer:
    """Summaries on ``CHATBOT_SUMMARY_MODEL_ID`` (a cheaper model, say), else on the answering
    model's ``BEDROCK_MODEL_ID``; offline, the extractive model. Call once per process: the
    summarizer holds its own model client and is shared by every summary."""
    model = build_model(settings, model_id=settings.summary_model_id)
    return Summarizer.from_settings(model, settings, usage_observer=usage_observer)


@dataclass(frozen=True)
class Knowledge:
    """Shared-file knowledge for one process: the store, what indexes into it, what reads it."""

    store: KnowledgeStore
    indexer: FileIndexer
    retriever: KnowledgeRetriever


def build_knowledge(settings: Settings) -> Knowledge:
    embedder = None
    if settings.bedrock_embedding_model_id:
        from core.knowledge.embeddings import TitanEmbedder

        embedder = TitanEmbedder(
            model_id=settings.bedrock_embedding_model_id, region=settings.aws_region
        )
    store: KnowledgeStore
    raw: RawFileStore
    if settings.store == "dynamodb":
        from core.files.raw import S3RawFileStore
        from core.knowledge.s3vectors import build_s3vectors_store

        store = build_s3vectors_store(settings)
        raw = S3RawFileStore(settings.files_bucket, region=settings.aws_region)
    else:
        from core.files.raw import LocalRawFileStore
        from core.knowledge.sqlite import SqliteKnowledgeStore

        store = SqliteKnowledgeStore(settings.data_dir / "knowledge.sqlite3")
        raw = LocalRawFileStore(settings.data_dir)
    indexer = FileIndexer(
        store, raw=raw, embedder=embedder, max_bytes=settings.max_file_mb * 1024 * 1024
    )
    return Knowledge(store, indexer, KnowledgeRetriever(store, embedder=embedder))


def build_assistant(
    settings: Settings,
    *,
    retriever: Retriever | None = None,
    on_reply: Callable[[Turn, Reply], None] | None = None,
    usage_observer: UsageObserver | None = None,
) -> Assistant:
    return Assistant(
        settings=settings,
        history=build_history(settings),
        model=build_model(settings),
        retriever=retriever,
        on_reply=on_reply,
        quota=build_quota(settings),
        usage_observer=usage_observer,
    )
