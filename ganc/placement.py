"""Where a run executes: device, resolution and MACs budget, decided once per run.

A run's placement is decided at its first submission and recorded in
``runs/<id>/placement.json`` (plain JSON); every later stage and every re-submission reads
the record instead of deciding again, so a run never changes device or image size half
way. The decision (:func:`decide`, no Ray here; the cluster is described by
:class:`ganc.cluster.ClusterInfo`):

- ``scale.use_gpu: true`` / ``false``: as asked (a GPU request that cannot be met within
  ``scale.wait_s`` fails when the stage asks for it, naming the missing resource);
- ``auto``: GPU when the cluster has GPUs now or its autoscaler has a node type with GPUs,
  else CPU. The record says which and why; nothing falls back silently later.
- ``scale.cpu_crop_size`` (> 0) applies only to a CPU placement: train and evaluate at
  that size, ``load_size`` scaled alike. The MACs budget is then converted to that size
  (MACs of these fully convolutional generators scale with the pixel count).
  The training crops (``data.train_crop_size``, ``prune.crop_size``) are not scaled: one
  wider than the scaled ``load_size`` is refused in one line (:func:`check_crops`).
- ``search.budget_macs`` is given at ``data.crop_size`` (the recipe's size); the record
  holds it at the eval size. 0 means a tenth of the teacher's MACs at the eval size.

A re-submission whose explicit choices differ from the recorded ones (``scale.use_gpu``,
``scale.resources``, ``scale.cpu_crop_size``, ``data.crop_size``, ``data.load_size``) is
refused with one line; the way on is another run id.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Optional

from .config import RunConfig, check_crops as check_config_crops
from .errors import ConfigError

KEY = "placement.json"
VERSION = 1
USE_GPU = ("auto", "true", "false")
# Fields whose values a placement was decided from; a re-submission must not change them.
REQUEST_FIELDS = ("scale.use_gpu", "scale.resources", "scale.cpu_crop_size", "data.crop_size",
                  "data.load_size")


def use_gpu_request(cfg: RunConfig) -> str:
    v = str(cfg.scale.use_gpu).strip().lower()
    v = {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false",
         "off": "false"}.get(v, v)
    if v not in USE_GPU:
        raise ConfigError(f"scale.use_gpu {cfg.scale.use_gpu!r} is not one of: "
                          + ", ".join(USE_GPU))
    return v


def request_of(cfg: RunConfig) -> dict:
    """The explicit choices a placement is decided from (compared on re-submission)."""
    return {"scale.use_gpu": use_gpu_request(cfg),
            "scale.resources": {k: float(v) for k, v in sorted(cfg.scale.resources.items())},
            "scale.cpu_crop_size": int(cfg.scale.cpu_crop_size),
            "data.crop_size": int(cfg.data.crop_size),
            "data.load_size": int(cfg.data.load_size)}


def convert_budget(macs: float, from_size: int, to_size: int) -> float:
    """A MACs budget at ``from_size`` pixels square expressed at ``to_size``."""
    return float(macs) * (float(to_size) / float(from_size)) ** 2


def gpu_share(num_actors: int, gpus: float) -> float:
    """GPU fraction per actor so that ``num_actors`` actors fit on ``gpus`` whole GPUs:
    ``1 / ceil(N / G)`` (never more than 1), rounded down to Ray's 1e-4 resource unit so
    that ``ceil(N / G)`` shares always fit on one GPU. 0 without GPUs."""
    g = int(math.floor(float(gpus) + 1e-9))
    if g < 1 or num_actors < 1:
        return 0.0
    per_gpu = math.ceil(num_actors / g)
    return math.floor(10000 / per_gpu) / 10000


def decide(cfg: RunConfig, cluster, teacher_macs: Optional[Callable[[int], float]] = None
           ) -> dict:
    """The placement of a run on ``cluster`` (a :class:`ganc.cluster.ClusterInfo`)."""
    want = use_gpu_request(cfg)
    gpus_now = float(cluster.resources.get("GPU", 0) or 0)
    gpus_addable = cluster.addable("GPU")
    if want == "true":
        use_gpu, why = True, "scale.use_gpu=true"
    elif want == "false":
        use_gpu, why = False, "scale.use_gpu=false"
    elif gpus_now > 0:
        use_gpu, why = True, f"scale.use_gpu=auto: the cluster has {gpus_now:g} GPU"
    elif gpus_addable > 0:
        use_gpu = True
        why = ("scale.use_gpu=auto: the autoscaler can start GPU nodes ("
               + ", ".join(cluster.types_with("GPU")) + f"; read from {cluster.autoscaler})")
    else:
        use_gpu = False
        why = ("scale.use_gpu=auto: no GPU on the cluster (" + cluster.describe() + ")"
               + (" and no autoscaler node type with GPUs" if cluster.node_types else
                  " and no autoscaler that could add one"))

    recipe_size, load = int(cfg.data.crop_size), int(cfg.data.load_size)
    crop, size_rule = recipe_size, "data.crop_size"
    small = int(cfg.scale.cpu_crop_size)
    if not use_gpu and small > 0 and small != recipe_size:
        if small % 4:
            raise ConfigError(f"scale.cpu_crop_size must be a multiple of 4, got {small}")
        load = int(round(small * load / float(recipe_size)))
        crop, size_rule = small, f"scale.cpu_crop_size={small} (CPU placement)"

    recipe_budget = float((cfg.search.budgets or [cfg.search.budget_macs])[0] or 0)
    if recipe_budget > 0:
        budget = convert_budget(recipe_budget, recipe_size, crop)
        budget_rule = (f"search.budget_macs {recipe_budget:.4g} at {recipe_size}px"
                       + (f", converted to {crop}px" if crop != recipe_size else ""))
    elif teacher_macs is not None:
        budget = float(teacher_macs(crop)) / 10.0
        budget_rule = f"a tenth of the teacher's MACs at {crop}px"
    else:
        budget, budget_rule = None, "a tenth of the teacher's MACs at the eval size"

    budgets = None
    if cfg.search.budgets:             # several budgets: each converted the same way
        budgets = [convert_budget(float(b), recipe_size, crop) for b in cfg.search.budgets]
    return {
        "version": VERSION,
        "device": "cuda" if use_gpu else "cpu",
        "use_gpu": use_gpu,
        "resources": {k: float(v) for k, v in sorted(cfg.scale.resources.items())},
        "gpus": cluster.capacity("GPU") if use_gpu else 0.0,
        "crop_size": crop, "load_size": load, "eval_size": crop,
        "recipe_size": recipe_size, "size_rule": size_rule,
        "budget_macs": budget if budgets is None else budgets[0], "budget_rule": budget_rule,
        "budgets_macs": budgets,
        "decided_by": why,
        "decided_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "requested": request_of(cfg),
        "cluster": cluster.to_dict(),
    }


def check_request(record: dict, cfg: RunConfig, where: str) -> None:
    """Refuse a config whose explicit placement choices differ from the recorded ones."""
    old = record.get("requested") or {}
    new = request_of(cfg)
    changed = [f for f in REQUEST_FIELDS if f in old and old[f] != new[f]]
    if changed:
        f = changed[0]
        raise ConfigError(
            f"{where} was placed with {f}={_show(old[f])} ({record.get('device')}, "
            f"{record.get('crop_size')}px); this config says {f}={_show(new[f])}: keep the "
            "recorded value or start another run (--run-id)")


def _show(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {x:g}" for k, x in v.items()) + "}"
    return str(v)


def apply(cfg: RunConfig, record: dict) -> RunConfig:
    """A copy of ``cfg`` with the recorded sizes (what stages and workers run with)."""
    out = copy.deepcopy(cfg)
    out.data.crop_size = int(record["crop_size"])
    out.data.load_size = int(record["load_size"])
    return out


def check_crops(cfg: RunConfig, record: dict) -> None:
    """The training crops (``data.train_crop_size``, ``prune.crop_size``) against the sizes
    ``record`` places the run at: they are not scaled, and a CPU placement's
    ``scale.cpu_crop_size`` scales ``data.load_size`` down, so a crop wider than the
    placed load size is refused in one line that says so (before the record is written)."""
    placed = apply(cfg, record)
    try:
        check_config_crops(placed)
    except ConfigError as e:
        if int(placed.data.load_size) == int(cfg.data.load_size):
            raise
        raise ConfigError(f"{e}; {record.get('size_rule')} scales data.load_size "
                          f"{int(cfg.data.load_size)} to {int(placed.data.load_size)}") from None


def search_budget(record: dict, recipe_budget: float, teacher_macs: Optional[float]) -> float:
    """The search's MACs budget at the eval size: ``recipe_budget`` (at the recipe's
    ``data.crop_size``) converted, or, when 0, a tenth of the teacher's MACs at the eval
    size."""
    if recipe_budget and recipe_budget > 0:
        return convert_budget(recipe_budget, record["recipe_size"], record["eval_size"])
    if teacher_macs is None:
        raise ConfigError("search.budget_macs is 0 and the supernet names no teacher; "
                          "set --budget-macs")
    return float(teacher_macs) / 10.0


def search_budgets(record: dict, recipe_budgets: list, teacher_macs: Optional[float]
                   ) -> list[float]:
    """Every budget of ``search.budgets`` (or the one ``search.budget_macs``) at the eval
    size, each through :func:`search_budget`; the first is the primary."""
    return [search_budget(record, float(b or 0), teacher_macs) for b in recipe_budgets]


def check_below_teacher(budgets: list, teacher_macs: Optional[float], size: str,
                        field: str = "search.budget_macs") -> None:
    """One line when a MACs budget is at or above the teacher's MACs (at the same size,
    ``size`` names it): a compressed model must be smaller than its teacher. ``budgets``:
    ``(budget, as the user gave it)`` pairs; 0 (a tenth of the teacher) always passes."""
    if teacher_macs is None:
        return
    for budget, given in budgets:
        if budget and budget > 0 and budget >= float(teacher_macs):
            shown = f"{float(given):.4g}" + (
                "" if math.isclose(budget, given) else f" ({float(budget):.4g} at {size})")
            raise ConfigError(
                f"{field} {shown} is at or above the teacher's "
                f"{float(teacher_macs):.4g} MACs at {size}: nothing to compress; set a "
                "budget below the teacher's MACs")


def check_budgets_below_teacher(cfg: RunConfig,
                                teacher_macs: Optional[Callable[[int], float]]) -> None:
    """:func:`check_below_teacher` for the config's ``search.budgets`` (or its
    ``search.budget_macs``) at ``data.crop_size``, the size they are given at, before any
    stage runs; the teacher's MACs are asked for only when a budget is set."""
    given = [float(b) for b in (cfg.search.budgets or [cfg.search.budget_macs]) if b]
    if not given or teacher_macs is None:
        return
    size = int(cfg.data.crop_size)
    check_below_teacher([(b, b) for b in given], teacher_macs(size), f"{size}px",
                        "search.budgets" if cfg.search.budgets else "search.budget_macs")


__all__ = ["KEY", "check_crops", "check_below_teacher", "check_budgets_below_teacher", "decide", "check_request", "apply", "request_of", "convert_budget",
           "gpu_share", "search_budget", "search_budgets", "use_gpu_request"]
