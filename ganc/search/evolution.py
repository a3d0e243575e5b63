"""The evolutionary search of GAN Compression (GUIDE §3), as a plain class without Ray.

Generations:

- generation 0: ``population`` random configs of the search space, each within the MACs
  budget (distinct where the space allows). With ``weighted_sample`` w > 1 each position
  is drawn with weights rising linearly from its widest to its narrowest width, the
  narrowest w times as likely as the widest (GAN Compression's ``--weighted_sample``,
  2 for horse2zebra), so a tight budget rejects fewer draws; later generations are not
  affected;
- generation g+1: the best ``round(parent_ratio * population)`` (at least 1) members of
  generation g are kept as parents, and ``population`` children are made from them:
  ``round(mutation_ratio * population)`` by mutation (each position resampled uniformly
  with probability ``mutation_prob``) of a random parent, the rest by uniform crossover of
  two random parents (drawn independently, as in the reference). Generation g+1 is the
  parents plus the children, so each generation scores up to ``population`` new configs
  (the reference's ``evolution_search.py`` arithmetic: 25 parents, 50 + 50 children);
- a child over the budget, or equal to a member already in the generation, is redrawn
  (at most ``max_attempts`` times; then it is shrunk: a random position that is not at
  its smallest width steps down one width until the child fits, so a search always moves
  on when the smallest sub-network fits, which :func:`ganc.search.cost.check_budget`
  verifies before the search starts);
- a config that was scored before is never scored again: its score comes from the cache
  (keyed by the config string) and it joins the generation at once.

One deliberate deviation from the reference: its next parents are ranked among the parents
and the mutated children only (the crossover children are scored but never appended to the
population, which looks like an oversight); here every scored child of the generation
competes, as the best config overall is reported from all scores anyway.

``ask()`` hands out the configs of the current generation that still need a score, one
at a time; it returns ``None`` while the generation waits for scores and :data:`DONE`
after the last generation. ``tell(config, score)`` records a score (``None`` for a failed
evaluation: ranked last, never retried). The next generation is formed when every member
of the current one has a score. :meth:`state_dict` / :meth:`load_state_dict` round-trip
everything (random state included) through JSON-able values.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Optional

from ..errors import ConfigError
from ..space import ChannelConfig, SearchSpace

DONE = "__done__"


def _check_settings(population, parent_ratio, mutation_prob, mutation_ratio, generations,
                    max_attempts, weighted_sample):
    if int(population) < 2:
        raise ConfigError(f"search.population must be at least 2, got {population}")
    if not 0.0 < float(parent_ratio) < 1.0:
        raise ConfigError(f"search.parent_ratio must lie in (0, 1), got {parent_ratio}")
    if not 0.0 <= float(mutation_prob) <= 1.0:
        raise ConfigError(f"search.mutation_prob must lie in [0, 1], got {mutation_prob}")
    if not 0.0 <= float(mutation_ratio) <= 1.0:
        raise ConfigError(f"search.mutation_ratio must lie in [0, 1], got {mutation_ratio}")
    if int(generations) < 1:
        raise ConfigError(f"search.generations must be at least 1, got {generations}")
    if int(max_attempts) < 1:
        raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
    if not float(weighted_sample) >= 1.0:
        raise ConfigError(f"search.weighted_sample must be at least 1 (1: uniform), got "
                          f"{weighted_sample}")


def width_weights(n_choices: int, weighted_sample: float) -> list[float] | None:
    """Sampling weights of one position's widths (widest first) for the first generation:
    rising by the same step from widest to narrowest, the narrowest ``weighted_sample``
    times as likely as the widest; None (uniform) for ``weighted_sample`` 1."""
    if weighted_sample <= 1.0 or n_choices < 2:
        return None
    first = (n_choices - 1) / (weighted_sample - 1.0)
    return [first + k for k in range(n_choices)]


class Evolution:
    """Population, parents, mutation / crossover, budget redraw and the score cache."""

    def __init__(self, space: SearchSpace, budget_macs: float, macs: Callable[[str], int], *,
                 population: int = 100, parent_ratio: float = 0.25, mutation_prob: float = 0.2,
                 mutation_ratio: float = 0.5, generations: int = 500, seed: int = 0,
                 mode: str = "min", max_attempts: int = 100, weighted_sample: float = 1.0,
                 constraint: Optional[Callable[[str], bool]] = None):
        _check_settings(population, parent_ratio, mutation_prob, mutation_ratio, generations,
                        max_attempts, weighted_sample)
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        self.space = space
        self.budget = float(budget_macs)
        self.macs = macs
        self.constraint = constraint                  # further budget (e.g. latency), or None
        self.population = int(population)
        self.parent_ratio = float(parent_ratio)
        self.mutation_prob = float(mutation_prob)
        self.mutation_ratio = float(mutation_ratio)
        self.generations = int(generations)
        self.seed = int(seed)
        self.mode = mode
        self.max_attempts = int(max_attempts)
        self.weighted_sample = float(weighted_sample)
        self.rng = random.Random(self.seed)
        self.cache: dict[str, Optional[float]] = {}   # config -> score (None: failed)
        self.scored_in: dict[str, int] = {}           # config -> generation that scored it
        self.generation = -1
        self.members: list[str] = []                  # configs of the current generation
        self.queue: list[str] = []                    # members still to hand out
        self.out: set[str] = set()                    # handed out, waiting for a score
        self.history: list[dict] = []                 # per finished generation: best
        self.redraws = 0                              # children redrawn (budget / duplicate)
        self.shrunk = 0                               # children shrunk after max_attempts
        self._start_generation(self._initial())

    # ------------------------------------------------------------------ public
    @property
    def n_parents(self) -> int:
        return max(1, min(self.population, int(round(self.parent_ratio * self.population))))

    @property
    def n_mutations(self) -> int:
        """Children made by mutation per generation (the rest of ``population`` by crossover)."""
        return int(round(self.mutation_ratio * self.population))

    @property
    def done(self) -> bool:
        return self.generation >= self.generations

    def ask(self) -> Optional[str]:
        """The next config to score, ``None`` to wait for scores, or :data:`DONE`."""
        while True:
            if self.done:
                return DONE
            if self.queue:
                cfg = self.queue.pop(0)
                self.out.add(cfg)
                return cfg
            if self.out:
                return None
            self._finish_generation()

    def tell(self, config: str, score: Optional[float]) -> None:
        """Record the score of a handed-out config (``None``: the evaluation failed)."""
        config = str(ChannelConfig.parse(config))
        if config not in self.out:
            raise ConfigError(f"config {config} was not handed out by this search "
                              f"(generation {self.generation})")
        self.out.discard(config)
        if score is not None and not math.isfinite(float(score)):
            score = None
        self.cache[config] = None if score is None else float(score)
        self.scored_in[config] = self.generation

    def best(self, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` best scored configs so far, best first."""
        ranked = self._rank(c for c, s in self.cache.items() if s is not None)
        return [(c, self.cache[c]) for c in ranked[:k]]

    def score_of(self, config: str) -> Optional[float]:
        return self.cache.get(str(config))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        rs = self.rng.getstate()
        return {"version": 1, "seed": self.seed, "generation": self.generation,
                "members": list(self.members), "queue": list(self.queue),
                "out": sorted(self.out), "cache": dict(self.cache),
                "scored_in": dict(self.scored_in), "history": list(self.history),
                "redraws": self.redraws, "shrunk": self.shrunk,
                "rng": [rs[0], list(rs[1]), rs[2]], "settings": self.settings()}

    def load_state_dict(self, state: dict) -> None:
        self.generation = int(state["generation"])
        self.members = list(state["members"])
        self.queue = list(state["queue"])
        self.out = set(state["out"])
        self.cache = {k: (None if v is None else float(v)) for k, v in state["cache"].items()}
        self.scored_in = {k: int(v) for k, v in state["scored_in"].items()}
        self.history = list(state["history"])
        self.redraws = int(state.get("redraws", 0))
        self.shrunk = int(state.get("shrunk", 0))
        v, internal, gauss = state["rng"]
        self.rng.setstate((v, tuple(internal), gauss))

    def requeue_outstanding(self) -> None:
        """Put configs handed out but never scored back at the front of the queue."""
        self.queue = sorted(self.out) + self.queue
        self.out = set()

    def settings(self) -> dict:
        return {"population": self.population, "parent_ratio": self.parent_ratio,
                "mutation_prob": self.mutation_prob, "mutation_ratio": self.mutation_ratio,
                "generations": self.generations, "seed": self.seed,
                "budget_macs": self.budget, "mode": self.mode,
                "max_attempts": self.max_attempts, "weighted_sample": self.weighted_sample,
                "space": self.space.to_dict()}

    # ------------------------------------------------------------------ internals
    def _key(self, config: str):
        s = self.cache.get(config)
        if s is None:
            return (1, 0.0, config)
        return (0, s if self.mode == "min" else -s, config)

    def _rank(self, configs) -> list[str]:
        return sorted(set(configs), key=self._key)

    def _fits(self, cfg: ChannelConfig) -> bool:
        return self.macs(str(cfg)) <= self.budget and (
            self.constraint is None or bool(self.constraint(str(cfg))))

    def _shrink(self, cfg: ChannelConfig) -> ChannelConfig:
        ch = list(cfg)
        while not self._fits(ChannelConfig(tuple(ch))):
            movable = [i for i, w in enumerate(ch) if w != self.space.choices[i][-1]]
            i = self.rng.choice(movable)
            choices = self.space.choices[i]            # widest first
            ch[i] = choices[choices.index(ch[i]) + 1]
        self.shrunk += 1
        return ChannelConfig(tuple(ch))

    def _draw(self, make: Callable[[], ChannelConfig], taken: set) -> str:
        """A config from ``make`` that fits the budget and is not in ``taken``."""
        cand = None
        for _ in range(self.max_attempts):
            cand = make()
            if self._fits(cand) and str(cand) not in taken:
                return str(cand)
            self.redraws += 1
        # Out of attempts: make the last candidate fit (a duplicate is then accepted;
        # its score comes from the cache).
        return str(cand if self._fits(cand) else self._shrink(cand))

    def _first_sample(self) -> ChannelConfig:
        """A random config of the first generation (weighted by ``weighted_sample``)."""
        return ChannelConfig(tuple(
            self.rng.choices(widths, weights=width_weights(len(widths), self.weighted_sample))[0]
            for widths in self.space.choices))

    def _initial(self) -> list[str]:
        members: list[str] = []
        taken: set = set()
        for _ in range(self.population):
            cfg = self._draw(self._first_sample, taken)
            members.append(cfg)
            taken.add(cfg)
        return members

    def _mutate(self, parent: str) -> ChannelConfig:
        p = ChannelConfig.parse(parent)
        return ChannelConfig(tuple(
            self.rng.choice(self.space.choices[i]) if self.rng.random() < self.mutation_prob
            else w for i, w in enumerate(p)))

    def _crossover(self, a: str, b: str) -> ChannelConfig:
        pa, pb = ChannelConfig.parse(a), ChannelConfig.parse(b)
        return ChannelConfig(tuple(x if self.rng.random() < 0.5 else y for x, y in zip(pa, pb)))

    def _start_generation(self, members: list[str]) -> None:
        self.generation += 1
        self.members = members
        seen: set = set()
        self.queue = []
        for m in members:
            if m not in self.cache and m not in seen:
                self.queue.append(m)
                seen.add(m)

    def _finish_generation(self) -> None:
        ranked = self._rank(self.members)
        best = ranked[0]
        self.history.append({"generation": self.generation, "best": best,
                             "score": self.cache.get(best),
                             "scored": sum(1 for g in self.scored_in.values()
                                           if g == self.generation)})
        if self.generation + 1 >= self.generations:
            self.generation += 1                       # done
            self.members, self.queue = [], []
            return
        parents = ranked[:self.n_parents]
        members = list(parents)
        taken = set(parents)
        made = {"mutation": 0, "crossover": 0}
        for j in range(self.population):
            if j < self.n_mutations or len(parents) == 1:   # one parent: nothing to cross
                kind, make = "mutation", lambda: self._mutate(self.rng.choice(parents))
            else:
                kind, make = "crossover", lambda: self._crossover(self.rng.choice(parents),
                                                                  self.rng.choice(parents))
            child = self._draw(make, taken)
            members.append(child)
            taken.add(child)
            made[kind] += 1
        self.history[-1]["children"] = made        # how the next generation was made
        self._start_generation(members)


__all__ = ["Evolution", "DONE"]
