"""The search's inputs, checked before anything starts: the method and criterion, the
budgets (MACs at the eval size, latency), the supernet, the teacher and the latency table.

:func:`check_method` and :func:`plan_search` raise one line on a bad input, in the order
the stage always checked them; the :class:`SearchPlan` they give is what the stage runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from ..config import RunConfig, check_criterion as check_run_criterion
from ..data.splits import image_hw
from ..errors import ConfigError
from ..families import family_of
from ..placement import check_below_teacher, search_budgets
from ..profile import count_macs
from ..runtime import check_runtime, check_threads
from ..space import SearchSpace
from ..subnets import cost_model, input_shape, load_supernet
from ..train.supernet import load_teacher
from .cost import CostModel, check_budget, size_label
from .latency import check_budget_ms, check_latency_budget
from .latency_build import load_or_build
from .trial import METHODS, criterion_mode


def criterion_of(cfg: RunConfig, method: Optional[str] = None) -> tuple[str, str]:
    """(metric, mode) of ``search.criterion``, e.g. ``("fid", "min")`` or ``("miou",
    "max")``, checked against the data and, with ``method``, the search method."""
    check_run_criterion(cfg, method)
    return (cfg.search.criterion, criterion_mode(cfg.search.criterion))


def eval_split_of(cfg: RunConfig, ctx):
    """The FID pool's split: the search split held out of the training data
    (``data.search_split``), else the eval split, read from the run's dataset on this node
    (``ctx``: the run's :class:`ganc.context.RunContext`). Val / test are otherwise read
    only by the report."""
    from ..metrics.splits import scoring_split  # deferred: torchvision, torch_fidelity
    return scoring_split(cfg, ctx.data_root(), name=ctx.data.name)


def latency_table_for(cfg: RunConfig, root, space: SearchSpace, cost: CostModel):
    """(table, key) of ``search.latency_runtime`` / ``latency_threads`` at the eval size:
    from the store's ``latency/`` cache, else measured on this machine and cached."""
    sc = cfg.search
    check_runtime(sc.latency_runtime, "search.latency_runtime")
    check_threads(sc.latency_threads, "search.latency_threads")
    return load_or_build(root, space, cost.size, runtime=sc.latency_runtime,
                         threads=int(sc.latency_threads), input_nc=cost.input_nc,
                         output_nc=cost.output_nc, norm=cost.norm,
                         device=sc.latency_device or None, log=print)


def check_method(cfg: RunConfig, method: Optional[str],
                 budget_ms: Optional[float]) -> tuple[str, str, Optional[float]]:
    """(method, criterion, latency budget) of the search: the arguments, else the config's
    (``search.method``, ``search.budget_ms``), each checked."""
    method = method or cfg.search.method
    if method not in METHODS:
        raise ConfigError(f"search.method {method!r} is not one of: {', '.join(METHODS)}")
    criterion, _ = criterion_of(cfg, method)
    budget_ms = cfg.search.budget_ms if budget_ms is None else budget_ms
    if budget_ms is not None:
        budget_ms = check_budget_ms(budget_ms)
    return method, criterion, budget_ms


@dataclass
class SearchPlan:
    """What a search runs: its checked inputs, the supernet and the teacher."""

    method: str
    criterion: str
    budget_ms: Optional[float]
    asked: list               # MACs budgets at the recipe's size (0: a tenth of the teacher)
    budgets: list             # at the eval size; [inf]: a latency budget alone
    sup: dict                 # the loaded supernet (ganc.subnets.load_supernet)
    size: int                 # the eval size (data.crop_size)
    cost: Any
    teacher_ref: Optional[dict]
    teacher: Any
    teacher_macs: Optional[int]
    fam: Any = None
    latency: bool = False     # search.latency_objective
    table: Any = None         # the latency table, when a latency budget or objective asks
    table_key: Optional[str] = None

    @property
    def space(self) -> SearchSpace:
        return self.sup["space"]

    def fingerprint(self) -> dict:
        """The inputs an unfinished search is resumed under (:mod:`ganc.resume`)."""
        return {"search.method": self.method, "search.budget_ms": self.budget_ms,
                "search.budgets_macs": [b if math.isfinite(b) else None
                                        for b in self.budgets],
                "search.space": self.space.to_dict(), "supernet.sha256": self.sup["sha256"]}


def plan_search(ctx, method: str, criterion: str, budget_ms: Optional[float],
                asked: list[float], budget_macs: Optional[float] = None) -> SearchPlan:
    """The run's supernet and teacher loaded and every budget checked against them (one
    line, before anything starts); ``asked``: the MACs budgets at the recipe's size."""
    cfg = ctx.cfg
    sup = load_supernet(ctx.run)
    size = int(cfg.data.crop_size)              # the placement's eval size
    cost = cost_model(sup, size, image_hw(cfg.data)[0])
    teacher_ref = sup.get("teacher")
    teacher = load_teacher(teacher_ref, ctx.endpoint_url) if teacher_ref else None
    teacher_macs = count_macs(teacher, input_shape(cost)) if teacher is not None else None
    plan = SearchPlan(method, criterion, budget_ms, asked, [], sup, size, cost, teacher_ref,
                      teacher, teacher_macs)
    where = ("search.budgets" if cfg.search.budgets and not budget_macs
             else "search.budget_macs")
    plan.budgets = _eval_budgets(ctx.placement, plan, where)
    _plan_latency(cfg, ctx.root, plan)
    return plan


def _eval_budgets(placement: dict, plan: SearchPlan, where: str) -> list[float]:
    """The MACs budgets at the eval size, converted like the placement's, each below the
    teacher and above the space's smallest sub-network (``where``: the field named)."""
    if plan.asked == [0.0] and plan.budget_ms is not None:
        budgets = [math.inf]                   # a latency budget alone
    else:
        budgets = search_budgets(placement, plan.asked, plan.teacher_macs)
        # a compressed model must be smaller than its teacher (one line, at the eval size)
        check_below_teacher(list(zip(budgets, plan.asked)), plan.teacher_macs,
                            size_label(plan.cost), where)
    for b in budgets:
        if math.isfinite(b):
            check_budget(plan.space, b, plan.cost)   # one line, before anything starts
    return budgets


def _plan_latency(cfg: RunConfig, root, plan: SearchPlan) -> None:
    """The family and, when a latency budget or objective asks, the latency table (the
    budget checked against it) into ``plan``."""
    plan.latency = bool(cfg.search.latency_objective)
    plan.fam = family_of(plan.sup["netG"])
    if not plan.fam.supports_latency and (plan.budget_ms is not None or plan.latency):
        raise ConfigError("search.budget_ms and search.latency_objective are not available "
                          f"for the {plan.fam.title} family yet (no latency table for its "
                          "inputs)")
    if plan.budget_ms is not None or plan.latency:
        plan.table, plan.table_key = latency_table_for(cfg, root, plan.space, plan.cost)
    if plan.budget_ms is not None:
        check_latency_budget(plan.space, plan.budget_ms, plan.table)


__all__ = ["criterion_of", "criterion_mode", "eval_split_of", "latency_table_for",
           "check_method", "SearchPlan", "plan_search"]
