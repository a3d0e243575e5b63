"""The search's budget checks on a cost model (MACs of a sub-network from its channel config
only). The cost models themselves belong to the families: ``CostModel``
(:mod:`ganc.families.resnet_cost`, re-exported here) and ``SpadeCostModel``
(:mod:`ganc.families.spade_cost`).
"""
from __future__ import annotations

from ..errors import GancError
from ..families.resnet_cost import CostModel
from ..space import SearchSpace


class BudgetError(GancError):
    """A MACs budget that no sub-network of the search space fits."""


def check_budget(space: SearchSpace, budget_macs: float, cost: CostModel) -> None:
    """Fail at once, in one line, when no sub-network of ``space`` fits ``budget_macs``."""
    smallest = cost.macs(space.smallest())
    if not budget_macs or budget_macs <= 0:
        raise BudgetError(f"search.budget_macs must be positive, got {budget_macs!r}")
    if smallest > budget_macs:
        raise BudgetError(
            f"search.budget_macs {budget_macs:.4g} is below the smallest sub-network of "
            f"search space {space.name!r}: {space.smallest()} needs {smallest:,} MACs "
            f"({smallest:.4g}) at {size_label(cost)}")


def size_label(cost) -> str:
    """``HxW`` of a cost model (square ResNet sizes, SPADE's height x width)."""
    if hasattr(cost, "height"):
        return f"{cost.height}x{cost.width}"
    return f"{cost.size}x{cost.size}"


__all__ = ["BudgetError", "CostModel", "check_budget", "size_label"]
