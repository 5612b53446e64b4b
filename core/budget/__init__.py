"""Rate budgets per platform scope: see :mod:`core.budget.base`."""

from core.budget.base import Limit, Priority, RateBudget, Scope
from core.budget.local import LocalRateBudget

__all__ = ["Limit", "LocalRateBudget", "Priority", "RateBudget", "Scope"]
