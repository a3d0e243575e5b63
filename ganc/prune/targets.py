"""What a prune aims at: its MACs-ratio targets (the search's budgets when
``prune.targets`` is empty) and the length of the exported generator's fine-tune."""
from __future__ import annotations

import copy
import math
from typing import Optional

from ..budgets import recipe_budgets
from ..config import RunConfig
from ..errors import ConfigError
from ..placement import search_budgets as at_eval_size
from .gated import gated_generator


def search_budgets(cfg: RunConfig, run=None, placement: Optional[dict] = None) -> list:
    """The search's MACs budgets the prune matches, one trial each: ``search.budgets`` (or
    ``search.budget_macs``), converted to the eval size by the run's ``placement`` record
    as the search converts them, else the budgets the run's search recorded
    (``best.json``, at the eval size); empty when neither is known. The one place that
    reads the search's budgets."""
    asked = [b for b in recipe_budgets(cfg.search) if b > 0]
    if asked:
        if placement is not None:
            return at_eval_size(placement, asked, None)
        return asked
    if run is not None and run.exists("best.json"):
        best = run.get_json("best.json")
        entries = [e.get("budget_macs") for e in best.get("budgets") or []]
        recorded = [float(b) for b in entries if b] or [
            float(b) for b in [(best.get("search") or {}).get("budget_macs")] if b]
        return recorded
    return []


def resolve_targets(cfg: RunConfig, run, teacher, base, placement: Optional[dict] = None
                    ) -> list:
    """G's MACs-ratio targets: ``prune.targets`` when given, else each search budget as a
    ratio of the pruned network's MACs (without a recorded budget, the search's own rule:
    a tenth of the teacher's MACs)."""
    if cfg.prune.targets:
        return [float(t) for t in cfg.prune.targets]
    size = cfg.data.crop_size
    full = gated_generator(copy.deepcopy(base)).full_macs(size)
    budgets = search_budgets(cfg, run, placement) or [
        0.1 * gated_generator(copy.deepcopy(teacher)).full_macs(size)]
    out = []
    for b in budgets:
        t = float(b) / float(full)
        if not 0 < t <= 1:
            raise ConfigError(f"search budget {b:.4g} MACs is not below the pruned network's "
                              f"{full:.4g} MACs ({cfg.prune.base_model})")
        out.append(round(t, 6))
    return out


def finetune_length(cfg: RunConfig, n_train: int) -> int:
    """Fine-tune steps of the exported generator: ``prune.finetune_steps``, or with -1
    the search winner's (``finetune.steps``, else ``finetune.epochs + epochs_decay``
    epochs of the training split)."""
    if int(cfg.prune.finetune_steps) >= 0:
        return int(cfg.prune.finetune_steps)
    f = cfg.finetune
    if f.steps > 0:
        return int(f.steps)
    return int((f.epochs + f.epochs_decay) * math.ceil(n_train / max(1, cfg.data.batch_size)))


__all__ = ["search_budgets", "resolve_targets", "finetune_length"]
