"""The MACs budgets a recipe asks for, read by the search and by the prune stage (which
matches the search's budgets): below both, so neither imports the other."""
from __future__ import annotations

from typing import Optional

from .errors import ConfigError


def recipe_budgets(sc, budget_macs: Optional[float] = None) -> list[float]:
    """The budgets asked for, at the recipe's size: ``--budget-macs``, else
    ``search.budgets``, else ``[search.budget_macs]`` (0: a tenth of the teacher's MACs)."""
    if budget_macs:
        return [float(budget_macs)]
    if sc.budgets:
        out = []
        for b in sc.budgets:
            try:
                v = float(b)
            except (TypeError, ValueError):
                raise ConfigError(f"search.budgets: {b!r} is not a number of MACs") from None
            if not v > 0:
                raise ConfigError(f"search.budgets: {b!r} must be positive")
            out.append(v)
        if len(set(out)) != len(out):
            raise ConfigError(f"search.budgets {list(sc.budgets)} repeats a budget")
        return out
    return [float(sc.budget_macs or 0)]


__all__ = ["recipe_budgets"]
