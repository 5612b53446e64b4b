"""Daily quotas per person and per workspace: one interface (:class:`QuotaStore`), one module
per backend."""

from core.quota.base import QuotaLimits, QuotaReached, QuotaStore

__all__ = ["QuotaLimits", "QuotaReached", "QuotaStore"]
