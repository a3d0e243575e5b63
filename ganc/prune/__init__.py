"""Local-density pruning (Ganjdanesh et al., AAAI 2024; our design, GUIDE §3).

- :mod:`ganc.prune.plan`: the channel groups of a network and the modules that read them.
- :mod:`ganc.prune.gated`: gated generators / discriminators, differentiable MACs in the
  profiler's convention.
- :mod:`ganc.prune.slicing`: kept channels, slicing into plain networks
  (:class:`~ganc.nn.pruned.PrunedResnetGenerator`), projection to a MACs budget.
- :mod:`ganc.prune.agents`: the agents genG / genD, Gumbel-sigmoid gates, resource loss.
- :mod:`ganc.prune.lds`: the local-density-structure loss.
- :mod:`ganc.prune.pruner`: one target's training in plain PyTorch (:class:`Pruner`).
- :mod:`ganc.prune.finetuning`: fine-tuning a sliced generator with the search winner's recipe.
- :mod:`ganc.prune.trial`: one target's steps (agents, choice, fine-tune, export).
- :mod:`ganc.prune.checkpoints`: a target's resume checkpoints.
- :mod:`ganc.prune.driver`: the Ray Tune driver, FID sampling, fine-tuning, export.
"""
from ..nn.pruned import PrunedResnetGenerator
from .agents import Agent, expected_gates, gumbel_sigmoid, kept_ratios, resource_loss
from .gated import Gated, gated_discriminator, gated_generator
from .plan import discriminator_plan, generator_plan
from .slicing import hard_keep, slice_network
from .lds import FixedFeatures, LocalDensityLoss, kernel_terms, neighbourhood
from .finetuning import finetune
from .pruner import Pruner, check_prune_config

__all__ = ["Agent", "expected_gates", "gumbel_sigmoid", "kept_ratios", "resource_loss",
           "Gated", "PrunedResnetGenerator", "discriminator_plan", "gated_discriminator",
           "gated_generator", "generator_plan", "hard_keep", "slice_network",
           "FixedFeatures", "LocalDensityLoss", "kernel_terms", "neighbourhood", "Pruner",
           "check_prune_config", "finetune"]
