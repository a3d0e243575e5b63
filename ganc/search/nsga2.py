"""Multi-objective search through Ray Tune's ``OptunaSearch`` with Optuna's NSGA-II.

Objectives (all minimized): ``fid`` and ``macs``, and ``latency_ms`` (the latency table's
prediction, reported by the trial) when asked for. The
sampler proposes one width per position (``c0`` ... ``c7``) from the search space. Two
rules of the evolutionary search hold here too:

- a proposal over the MACs budget (or failing ``constraint``, e.g. a latency budget) is
  told to Optuna as failed (it never reaches a trial) and the sampler is asked again;
- a proposal already scored is told to Optuna with its cached objectives and never
  scored again.

After ``max_attempts`` rejected proposals in a row, an in-budget config not yet scored is
enqueued (a random one, shrunk to fit); when none can be found the search is finished.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Dict, Optional, Sequence

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ..criteria import minimised
from ..errors import ConfigError
from ..space import ChannelConfig, SearchSpace
from .cost import CostModel, check_budget

OBJECTIVES = ("fid", "macs")
COSTS = ("macs", "params", "latency_ms")     # objectives besides the minimised criteria


def _params_of(cfg: str) -> dict:
    return {f"c{i}": int(w) for i, w in enumerate(ChannelConfig.parse(cfg))}


class _DefineSpace:
    """Define-by-run search space (picklable): one categorical width per position."""

    def __init__(self, space: SearchSpace):
        self.choices = [list(c) for c in space.choices]

    def __call__(self, trial):
        widths = [trial.suggest_categorical(f"c{i}", ch) for i, ch in enumerate(self.choices)]
        return {"config": "_".join(str(int(w)) for w in widths)}


class NSGA2Searcher(OptunaSearch):
    """Pareto search over (FID, MACs[, latency]) with the budget and the score cache."""

    def __init__(self, space: SearchSpace, budget_macs: float, cost: CostModel, *,
                 objectives: Sequence[str] = OBJECTIVES, population: int = 100,
                 generations: int = 500, mutation_prob: Optional[float] = 0.2,
                 mutation_ratio: float = 0.5, seed: int = 0, max_attempts: int = 200,
                 constraint: Optional[Callable[[str], bool]] = None):
        check_budget(space, budget_macs, cost)
        if int(population) < 2:
            raise ConfigError(f"search.population must be at least 2, got {population}")
        objectives = list(objectives)
        known = minimised() + list(COSTS)
        unknown = [o for o in objectives if o not in known]
        if unknown:
            raise ConfigError(f"unknown search objective {unknown[0]!r}; use "
                              f"{', '.join(known)}")
        sampler = optuna.samplers.NSGAIISampler(
            population_size=int(population), mutation_prob=mutation_prob,
            crossover_prob=max(0.0, min(1.0, 1.0 - float(mutation_ratio))), seed=int(seed))
        super().__init__(space=_DefineSpace(space), metric=objectives,
                         mode=["min"] * len(objectives), sampler=sampler)
        self.space = space
        self.budget = float(budget_macs)
        self.cost = cost
        self.constraint = constraint
        self.objectives = objectives
        self.max_trials = int(population) * int(generations)
        self.max_attempts = int(max_attempts)
        self.rng = random.Random(int(seed) + 7919)
        self.cache: Dict[str, Optional[list]] = {}   # config -> objective values (None: failed)
        self.live: Dict[str, str] = {}               # trial id -> config
        self.suggested = 0
        self.rejected_budget = 0
        self.cache_hits = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def _ask(self, trial_id: str) -> str:
        self._ot_trials.pop(trial_id, None)
        return super().suggest(trial_id)["config"]

    def _drop(self, trial_id: str, values=None) -> None:
        ot_trial = self._ot_trials.pop(trial_id)
        state = optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL
        self._ot_study.tell(ot_trial, values if values else None, state=state)

    def _fits(self, cfg) -> bool:
        return self.cost.macs(cfg) <= self.budget and (
            self.constraint is None or bool(self.constraint(str(cfg))))

    def _fresh_in_budget(self) -> Optional[str]:
        for _ in range(self.max_attempts):
            cfg = self.space.sample(self.rng)
            ch = list(cfg)
            while not self._fits(ChannelConfig(tuple(ch))):
                movable = [i for i, w in enumerate(ch) if w != self.space.choices[i][-1]]
                i = self.rng.choice(movable)
                ch[i] = self.space.choices[i][self.space.choices[i].index(ch[i]) + 1]
            s = str(ChannelConfig(tuple(ch)))
            if s not in self.cache and s not in self.live.values():
                return s
        return None

    def suggest(self, trial_id: str) -> Optional[Dict]:
        if self.suggested >= self.max_trials:
            return Searcher.FINISHED
        pending = set(self.live.values())
        for attempt in range(self.max_attempts + 1):
            if attempt == self.max_attempts:
                fresh = self._fresh_in_budget()
                if fresh is None:
                    return Searcher.FINISHED
                self._ot_study.enqueue_trial(_params_of(fresh))
            cfg = self._ask(trial_id)
            if not self._fits(cfg):
                self.rejected_budget += 1
                self._drop(trial_id)
                continue
            if cfg in self.cache:
                self.cache_hits += 1
                self._drop(trial_id, self.cache[cfg])
                continue
            if cfg in pending:        # being scored by another trial right now
                self._drop(trial_id)
                continue
            self.live[trial_id] = cfg
            self.suggested += 1
            return {"config": cfg, "generation": self._generation_of(trial_id),
                    "macs": self.cost.macs(cfg)}
        return Searcher.FINISHED

    def _generation_of(self, trial_id: str) -> int:
        trial = self._ot_trials[trial_id]
        try:
            attrs = self._ot_study._storage.get_trial_system_attrs(trial._trial_id)
        except Exception:
            return -1
        for k, v in attrs.items():
            if k.endswith(":generation"):
                return int(v)
        return -1

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None,
                          error: bool = False) -> None:
        cfg = self.live.pop(trial_id, None)
        if cfg is None:
            return
        values = None
        if result and not error:
            try:
                values = [float(result[o]) for o in self.objectives]
            except (KeyError, TypeError, ValueError):
                values = None
            if values is not None and not all(math.isfinite(v) for v in values):
                values = None
        self.cache[cfg] = values
        super().on_trial_complete(trial_id, result if values else None, error=values is None)


__all__ = ["NSGA2Searcher", "OBJECTIVES"]
