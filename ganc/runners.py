"""How ``ganc compress`` runs each stage: ``runner(cfg, ctx, method) -> summary``.

A runner calls its stage's entry point with the run's context (opened once by
:func:`ganc.pipeline.compress`) and returns what the stage's marker keeps. The stages
declare their runner by name (:mod:`ganc.stages`), which imports this module, and with it
every stage's code, when a stage runs.
"""
from __future__ import annotations

from typing import Optional

from .config import RunConfig
from .export import export_best
from .prune.driver import run_prune
from .report import write_report
from .search.driver import run_search
from .search.finetune import finetune as run_finetune
from .train.supernet import train_supernet
from .train.teacher import given_teacher, train_teacher


def teacher(cfg: RunConfig, ctx, method: Optional[str]) -> dict:
    if cfg.model.teacher_weights:
        s = given_teacher(cfg, ctx.root, ctx=ctx)  # fails now, with one line, if it won't load
        return {"source": s["source"], "trained": False, "netG": s["netG"],
                "config_str": s["config_str"]}
    s = train_teacher(cfg, ctx.root, ctx=ctx)
    return {"trained": True, "step": s.get("step"), "final": s.get("final")}


def supernet(cfg: RunConfig, ctx, method: Optional[str]) -> dict:
    s = train_supernet(cfg, ctx.root, ctx=ctx)
    return {"step": s.get("step"), "final": s.get("final")}


def search(cfg: RunConfig, ctx, method: Optional[str]) -> dict:
    best = run_search(cfg, ctx.root, method=method, ctx=ctx)
    return {"config": best.get("config"), "macs": best.get("macs"), "fid": best.get("fid"),
            "miou": best.get("miou"), "criterion": best.get("criterion"),
            "method": (best.get("search") or {}).get("method", method)}


def prune(cfg: RunConfig, ctx, method: Optional[str]) -> dict:
    # without prune.targets the prune matches the search's budget (run_prune reads it
    # from the run's best.json: ganc.prune.targets.search_budgets)
    s = run_prune(cfg, ctx.root, ctx=ctx)
    return {"targets": ",".join(f"{r.get('target')}" for r in s.get("rows", [])),
            "seconds_pruning": s.get("seconds")}


def finetune(cfg: RunConfig, ctx, method: Optional[str]) -> dict:
    r = run_finetune(cfg, ctx.root, ctx=ctx)
    return {"config": r.get("config"), "steps": r.get("steps"),
            "fid_before": r.get("fid_before"), "fid_after": r.get("fid_after"),
            "export": r.get("export"), "why": r.get("why")}


def export(cfg: RunConfig, ctx, method: Optional[str]) -> dict:
    card = export_best(cfg, ctx.root, ctx=ctx)
    return {"config": card["config_str"], "macs": card["macs"], "params": card["params"],
            "latency_ms_cpu": card["latency_ms_cpu"]}


def report(cfg: RunConfig, ctx, method: Optional[str]) -> dict:
    rep = write_report(cfg, ctx.root, ctx=ctx)
    return {"rows": len(rep["rows"]), "folder": ctx.run.url("report")}


__all__ = ["teacher", "supernet", "search", "prune", "finetune", "export", "report"]
