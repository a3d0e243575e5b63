"""Which sub-networks of the supernet one distillation step trains.

``uniform``: one configuration drawn uniformly per position. ``sandwich``: the largest,
the smallest and one uniform configuration every step. The draw depends only on
(seed, step), so every data-parallel worker trains the same sub-networks at a step and
a resumed run continues the same sequence.
"""
from __future__ import annotations

import random

from ..errors import ConfigError
from ..space import ChannelConfig, SearchSpace

SAMPLERS = ("uniform", "sandwich")


class ConfigSampler:
    def __init__(self, space: SearchSpace, rule: str = "uniform", seed: int = 0):
        if rule not in SAMPLERS:
            raise ConfigError(f"distill.sampler {rule!r} is not one of: {', '.join(SAMPLERS)}")
        self.space, self.rule, self.seed = space, rule, int(seed)

    def configs(self, step: int) -> list[ChannelConfig]:
        rng = random.Random(self.seed * 1_000_003 + int(step))
        drawn = self.space.sample(rng)
        if self.rule == "uniform":
            return [drawn]
        return [self.space.largest(), self.space.smallest(), drawn]
