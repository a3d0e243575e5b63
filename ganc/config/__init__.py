"""Run configuration: one dataclass per stage, composed into ``RunConfig``.

Loaded from YAML (``configs/*.yaml``) with overrides such as ``--set distill.steps=200``.
Unknown fields and ill-typed values fail with one line naming the file and field.
The resolved config is saved beside every artifact of a run.

A light leaf: imports nothing of ganc but errors, criteria, stages and space (no torch, no
Ray).

- :mod:`.ranges`: :class:`Range` and the ranged field types (``PosInt``, ``Ratio``...)
- :mod:`.inputs`: ``data`` and ``model``
- :mod:`.stage_sections`: ``teacher``, ``distill``, ``search``, ``finetune``, ``prune``
- :mod:`.run`: ``fid``, ``scale``, ``store``, ``pipeline`` and :class:`RunConfig`
- :mod:`.checks`: ranges and the criterion checked (:func:`validate`, :func:`check_value`,
  :func:`check_criterion`), and the fields checked against each other or a registry
  (``data.direction``, ``data.crop_size``, the training crops ``data.train_crop_size`` and
  ``prune.crop_size``, ``model.search_space``)
- :mod:`.load`: :func:`load_config`, :func:`from_dict`, ``--set`` (:func:`apply_override`)
  and flags (:func:`set_field`)
"""
from __future__ import annotations

from .checks import (LABEL_MAP_KINDS, _declared, check_criterion, check_crops, check_prune_crop,
                     check_train_crop, check_value, show, validate)
from .inputs import DIRECTIONS, DataConfig, ModelConfig, split_seed, train_crop
from .load import RESERVED_RESOURCES, apply_override, from_dict, load_config, set_field
from .ranges import (MAX_SEED, Beta, Budgets, Count, PosInt, Positive, Prob, Range, Ratio,
                     Ratios, Seed, Weight, Widths)
from .run import (PIPELINE_STAGES, FidConfig, PipelineConfig, RunConfig, ScaleConfig,
                  StoreConfig)
from .stage_sections import (DistillConfig, FinetuneConfig, PruneConfig, SearchConfig,
                             TeacherConfig)

__all__ = [
    "Range", "MAX_SEED", "PosInt", "Count", "Seed", "Positive", "Weight", "Prob", "Ratio",
    "Beta", "Ratios", "Widths", "Budgets",
    "DataConfig", "ModelConfig", "DIRECTIONS", "TeacherConfig", "DistillConfig", "SearchConfig",
    "FinetuneConfig", "PruneConfig", "FidConfig", "ScaleConfig", "StoreConfig",
    "PipelineConfig", "RunConfig", "PIPELINE_STAGES",
    "from_dict", "load_config", "apply_override", "set_field", "RESERVED_RESOURCES",
    "validate", "check_value", "show", "check_criterion", "check_prune_crop",
    "check_train_crop", "check_crops", "train_crop", "split_seed",
    "LABEL_MAP_KINDS",
]
