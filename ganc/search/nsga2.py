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

The searcher's state is JSON (:meth:`NSGA2Searcher.get_state`: the study's completed
trials, the samplers' random states, the score cache), never a pickle: Ray's
``OptunaSearch.save`` / ``restore`` pickle the whole searcher, and a checkpoint read back
from the store must not be able to run code (issue 28). A pickled state written by an
older ganc is never loaded: :meth:`NSGA2Searcher.replay` rebuilds the study from the
search's recorded rows instead.
"""
from __future__ import annotations

import json
import math
import random
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ..criteria import minimised
from ..errors import ConfigError
from ..space import ChannelConfig, SearchSpace
from .cost import CostModel, check_budget
from .searcher import save_state_json

OBJECTIVES = ("fid", "macs")
COSTS = ("macs", "params", "latency_ms")     # objectives besides the minimised criteria
STATE_FORMAT = "ganc-nsga2/1"
_COMPLETE = optuna.trial.TrialState.COMPLETE


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


    # ------------------------------------------------------------------ state (JSON)
    def _distributions(self) -> dict:
        return {f"c{i}": optuna.distributions.CategoricalDistribution([int(w) for w in ch])
                for i, ch in enumerate(self.space.choices)}

    def _completed(self, trials: list) -> list:
        """``[(params, values, system_attrs)]`` as completed Optuna trials."""
        dists = self._distributions()
        return [optuna.trial.create_trial(state=_COMPLETE, values=[float(v) for v in values],
                                          params={k: int(v) for k, v in params.items()},
                                          distributions=dists, system_attrs=dict(attrs))
                for params, values, attrs in trials]

    def get_state(self) -> Dict:
        """The searcher as JSON-able data: completed trials (params, values, system
        attributes: the generation), the samplers' random states, the score cache and the
        counters. Taken between batches, when no trial is live."""
        sampler = self._ot_study.sampler
        done = self._ot_study.get_trials(deepcopy=False, states=(_COMPLETE,))
        return {"format": STATE_FORMAT,
                "trials": [{"params": dict(t.params), "values": list(t.values),
                            "system_attrs": dict(t.system_attrs)} for t in done],
                "rng": [_np_state(sampler._rng.rng),
                        _np_state(sampler._random_sampler._rng.rng)],
                "py_rng": [self.rng.getstate()[0], list(self.rng.getstate()[1]),
                           self.rng.getstate()[2]],
                "cache": dict(self.cache), "suggested": self.suggested,
                "rejected_budget": self.rejected_budget, "cache_hits": self.cache_hits}

    def set_state(self, state: Dict) -> None:
        """Continue from :meth:`get_state`'s data (on a searcher built with the same
        settings, whose study is still empty)."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a {STATE_FORMAT} searcher state")
        # everything is parsed before anything changes: a bad state leaves the searcher as
        # it was (the trial then rebuilds it from the rows)
        trials = self._completed([(t["params"], t["values"], t.get("system_attrs") or {})
                                  for t in state["trials"]])
        rngs = [(str(r[0]), np.asarray(r[1], dtype=np.uint32), int(r[2]), int(r[3]),
                 float(r[4])) for r in state["rng"]]
        version, internal, gauss = state["py_rng"]
        py_rng = (int(version), tuple(int(x) for x in internal),
                  None if gauss is None else float(gauss))
        cache = {str(k): None if v is None else [float(x) for x in v]
                 for k, v in state["cache"].items()}
        counters = [int(state[k]) for k in ("suggested", "rejected_budget", "cache_hits")]
        sampler = self._ot_study.sampler
        for rs, saved in zip((sampler._rng.rng, sampler._random_sampler._rng.rng), rngs):
            rs.set_state(saved)
        self._ot_study.add_trials(trials)
        self.rng.setstate(py_rng)
        self.cache = cache
        self.suggested, self.rejected_budget, self.cache_hits = counters
        self.live, self._ot_trials = {}, {}

    def replay(self, rows: list) -> None:
        """Rebuild the study from a search's recorded rows (for a state this searcher
        cannot read, e.g. the pickle of an older ganc, which is never loaded): every
        scored config is a completed trial of its generation, every failed one cached as
        failed; the samplers' random states start afresh."""
        key = self._ot_study.sampler._get_generation_key()
        trials = []
        for r in rows:
            values = None
            if r.get("status") == "ok" and all(r.get(o) is not None for o in self.objectives):
                values = [float(r[o]) for o in self.objectives]
                gen = int(r.get("generation", -1))
                trials.append((_params_of(r["config"]), values, {key: gen} if gen >= 0 else {}))
            self.cache[r["config"]] = values
        self._ot_study.add_trials(self._completed(trials))
        self.suggested = len(rows)

    def save(self, checkpoint_path: str) -> None:
        """:meth:`get_state` as JSON (never Ray's pickle of the searcher)."""
        save_state_json(self.get_state(), checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """:meth:`set_state` of a JSON file :meth:`save` wrote; anything else (a pickle)
        is refused with ValueError, never unpickled."""
        with open(checkpoint_path, "rb") as f:
            self.set_state(json.loads(f.read().decode("utf-8")))


def _np_state(rs) -> list:
    """A numpy ``RandomState``'s state as JSON-able data."""
    name, keys, pos, has_gauss, cached = rs.get_state()
    return [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


__all__ = ["NSGA2Searcher", "OBJECTIVES", "STATE_FORMAT"]
