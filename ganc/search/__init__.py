"""Search over the supernet's sub-networks (GAN Compression "Fast").

Plain modules (no Ray): ``cost`` (closed-form MACs / params, budget check), ``evolution``
(the published evolutionary recipe), ``pareto``. Ray Tune at the edges: ``searcher``
(``EvolutionSearcher``), ``nsga2`` (``NSGA2Searcher`` on ``OptunaSearch``), ``driver``
(``run_search``: one Tune trial per search budget, each scoring a batch per call to the FID
actor pool; results in the store through ``report``) with its parts: ``inputs`` (the
checks before anything starts), ``trial`` (``search_trial``, one search) and
``experiment`` (the Tune experiment: made, resumed from its JSON checkpoints, its rows
collected).
"""
from .cost import BudgetError, CostModel, check_budget
from .evolution import DONE, Evolution
from .pareto import dominates, pareto_front

__all__ = ["BudgetError", "CostModel", "check_budget", "Evolution", "DONE", "dominates",
           "pareto_front"]
