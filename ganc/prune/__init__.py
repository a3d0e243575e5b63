"""Local-density pruning (Ganjdanesh et al., AAAI 2024; our design, GUIDE §3).

- :mod:`ganc.prune.gated`: gated generators / discriminators, differentiable MACs in the
  profiler's convention, slicing into plain networks (:class:`PrunedResnetGenerator`).
- :mod:`ganc.prune.agents`: the agents genG / genD, Gumbel-sigmoid gates, resource loss.
- :mod:`ganc.prune.lds`: the local-density-structure loss.
- :mod:`ganc.prune.pruner`: one target's training in plain PyTorch (:class:`Pruner`).
- :mod:`ganc.prune.driver`: the Ray Tune driver, FID sampling, fine-tuning, export.
"""
from .agents import Agent, expected_gates, gumbel_sigmoid, kept_ratios, resource_loss
from .gated import (Gated, PrunedResnetGenerator, discriminator_plan, gated_discriminator,
                    gated_generator, generator_plan, hard_keep, slice_network)
from .lds import FixedFeatures, LocalDensityLoss, kernel_terms, neighbourhood
from .pruner import Pruner, check_prune_config, finetune

__all__ = ["Agent", "expected_gates", "gumbel_sigmoid", "kept_ratios", "resource_loss",
           "Gated", "PrunedResnetGenerator", "discriminator_plan", "gated_discriminator",
           "gated_generator", "generator_plan", "hard_keep", "slice_network",
           "FixedFeatures", "LocalDensityLoss", "kernel_terms", "neighbourhood", "Pruner",
           "check_prune_config", "finetune"]
