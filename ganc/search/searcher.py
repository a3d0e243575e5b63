"""A Ray Tune ``Searcher`` around :class:`ganc.search.evolution.Evolution`.

Each suggestion is ``{"config": "<channel config>", "generation": g, "macs": m}``; the
trial reports ``metric`` (``fid`` by default). The searcher's state (population, score
cache, random state, which trial holds which config) is saved with every Tune
trial checkpoint as JSON, so a resumed search continues at the same generation and
never hands out a config that was already scored.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, Optional

from ray.tune.search import Searcher

from ..space import SearchSpace
from .cost import CostModel, check_budget
from .evolution import DONE, Evolution



def save_state_json(state: dict, path: str) -> None:
    """A searcher's ``state`` as JSON at ``path``, written to a temporary file and renamed
    (never Ray's pickle of the searcher: a store's files are not trusted, issue 28)."""
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)

class EvolutionSearcher(Searcher):
    """GAN Compression's evolutionary search as a Tune searcher."""

    def __init__(self, space: SearchSpace, budget_macs: float, cost: CostModel, *,
                 metric: str = "fid", mode: str = "min", population: int = 100,
                 parent_ratio: float = 0.25, mutation_prob: float = 0.2,
                 mutation_ratio: float = 0.5, generations: int = 500, seed: int = 0,
                 max_attempts: int = 100, weighted_sample: float = 1.0,
                 constraint: Optional[Callable[[str], bool]] = None):
        check_budget(space, budget_macs, cost)
        super().__init__(metric=metric, mode=mode)
        self.cost = cost
        self.evo = Evolution(space, budget_macs, cost.macs, population=population,
                             parent_ratio=parent_ratio, mutation_prob=mutation_prob,
                             mutation_ratio=mutation_ratio, generations=generations,
                             seed=seed, mode=mode, max_attempts=max_attempts,
                             weighted_sample=weighted_sample, constraint=constraint)
        self.live: Dict[str, str] = {}          # trial id -> config string
        self.trial_generation: Dict[str, int] = {}

    @classmethod
    def from_settings(cls, space, budget_macs, cost, settings, metric="fid", mode="min",
                      constraint=None):
        """Build from a ``SearchConfig``-like object (population, parent_ratio, ...);
        ``constraint(config) -> bool`` is a further budget (e.g. a latency budget)."""
        return cls(space, budget_macs, cost, metric=metric, mode=mode, constraint=constraint,
                   population=settings.population, parent_ratio=settings.parent_ratio,
                   mutation_prob=settings.mutation_prob, mutation_ratio=settings.mutation_ratio,
                   generations=settings.generations, seed=settings.seed,
                   weighted_sample=settings.weighted_sample)

    # ------------------------------------------------------------------ Tune API
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> Optional[Dict]:
        cfg = self.evo.ask()
        if cfg == DONE:
            return Searcher.FINISHED
        if cfg is None:
            return None
        self.live[trial_id] = cfg
        self.trial_generation[trial_id] = self.evo.generation
        return {"config": cfg, "generation": self.evo.generation,
                "macs": self.cost.macs(cfg)}

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None,
                          error: bool = False) -> None:
        cfg = self.live.pop(trial_id, None)
        self.trial_generation.pop(trial_id, None)
        if cfg is None:
            return
        score = None
        if result and not error and result.get(self.metric) is not None:
            score = float(result[self.metric])
        self.evo.tell(cfg, score)

    # ------------------------------------------------------------------ state
    @property
    def generation(self) -> int:
        return self.evo.generation

    @property
    def cache(self) -> dict:
        return dict(self.evo.cache)

    def get_state(self) -> Dict:
        return {"evolution": self.evo.state_dict(), "live": dict(self.live),
                "trial_generation": dict(self.trial_generation),
                "metric": self._metric, "mode": self._mode}

    def set_state(self, state: Dict) -> None:
        self.evo.load_state_dict(state["evolution"])
        self.live = dict(state["live"])
        self.trial_generation = {k: int(v) for k, v in state["trial_generation"].items()}
        self._metric, self._mode = state["metric"], state["mode"]

    def save(self, checkpoint_path: str) -> None:
        save_state_json(self.get_state(), checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.set_state(json.load(f))


__all__ = ["EvolutionSearcher"]
