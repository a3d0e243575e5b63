"""``ganc compress``: the whole pipeline as one job.

teacher (train, or load ``model.teacher_weights``) -> supernet distillation -> search
(evolution by default, or nsga2) -> pruning agents (optional) -> fine-tune -> export ->
report: the stages :mod:`ganc.stages` declares, in that order. Every stage writes into the
run folder of the store, and a finished stage leaves ``pipeline/<stage>.json``; a
re-submitted job skips those stages and resumes the one that was interrupted (training
from its latest checkpoint, the search from its trials' checkpoints). Markers, fingerprints
and restarts: :mod:`ganc.resume`. The run's context is opened once and handed to every
stage.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import Callable, Optional

from .config import RunConfig
from .context import open_context, open_run, ray_connection, run_lease
from .errors import ConfigError
from .resume import MARKER, check_inputs, missing_artifacts, record_inputs, restart_from
from .stages import STAGE_NAMES, stage as declared
from .log import say
from .preflight import require
from .train.launch import train_cpus


def _stages(cfg: RunConfig) -> list[str]:
    stages = [str(s) for s in cfg.pipeline.stages]
    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown:
        raise ConfigError(f"pipeline.stages: unknown stage {unknown[0]!r}; stages: "
                          + ", ".join(STAGE_NAMES))
    return [s for s in STAGE_NAMES if s in stages]  # always in pipeline order


def _small(summary) -> dict:
    """What of a stage's summary goes into its marker (scalars and short strings)."""
    if not isinstance(summary, dict):
        return {}
    return {k: v for k, v in summary.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def _cwd_or_none() -> Optional[str]:
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def _return_to(home: Optional[str]) -> None:
    """Re-enter the job's working directory by path. Under ``ray job submit`` Ray may
    delete and unpack the job's working_dir package again while the job runs (another job
    with the same package ending, a stage's workers finishing), which leaves this process
    in a deleted directory (``os.getcwd()`` then fails deep inside torch)."""
    if _cwd_or_none() is not None:
        return
    for d in (home, tempfile.gettempdir()):
        if d and os.path.isdir(d):
            os.chdir(d)
            return


def _import_stages(stages) -> None:
    """Import every stage's code up front, so a job whose working_dir package is swapped
    under it (see ``_return_to``) still has all of it in memory."""
    for name in stages:
        declared(name).import_code()


def compress(cfg: RunConfig, store=None, *, method: Optional[str] = None,
             on_stage: Optional[Callable[[str, dict], None]] = None,
             restart: Optional[str] = None) -> dict:
    """Run every stage of ``cfg.pipeline.stages`` that has not finished; returns a summary
    with each stage's marker and the report."""
    stages = _stages(cfg)
    home = _cwd_or_none()
    # config, store, teacher checkpoint, budgets and data: one line, before Ray starts or
    # anything is written (a failed first submission leaves no run behind)
    require(cfg, store, method=method)
    if not restart:     # a stage already run with other inputs: one line before Ray starts
        check_inputs(cfg, open_run(cfg, store)[1], stages)
    _import_stages(stages)
    done = {}
    t_all = time.perf_counter()
    # one writer per run: the lease is taken before Ray starts (a second command is
    # refused at once) and held until the last stage ends
    with contextlib.closing(run_lease(cfg, store)), ray_connection(num_cpus=train_cpus(cfg)):
        _return_to(home)
        # Checks what the run needs against the cluster (one line, before any stage runs)
        # and records the run's placement at its first submission; the one context of the
        # run, handed to every stage.
        with contextlib.closing(open_context(cfg, store)) as ctx:
            run = ctx.run
            if restart:
                reset = restart_from(run, stages, restart)
                say(f"[compress] restarting from {restart}: {', '.join(reset)} reset")
            check_inputs(cfg, run, stages)       # before anything is written
            run.write_bytes("config.yaml", cfg.to_yaml().encode())
            say(f"[compress] run {run.url()}: stages {' -> '.join(stages)}")
            for i, stage in enumerate(stages, 1):
                tag = f"[compress] {i}/{len(stages)} {stage}"
                done[stage], ran = _run_stage(cfg, ctx, stage, method, home, tag)
                if on_stage and ran:
                    on_stage(stage, done[stage])
    result = {"run": run.url(), "stages": done,
              "seconds": round(time.perf_counter() - t_all, 1)}
    if run.exists("report/summary.json"):
        result["report"] = run.get_json("report/summary.json")
    return result


def _run_stage(cfg: RunConfig, ctx, stage: str, method: Optional[str],
               home: Optional[str], tag: str) -> tuple[dict, bool]:
    """(marker, ran): ``stage``'s marker from an earlier job (with ``skipped``) when it
    finished then, else it is run and its marker written."""
    run = ctx.run
    key = MARKER.format(stage)
    if run.exists(key):
        missing = missing_artifacts(cfg, run, stage)
        if not missing:
            say(f"{tag}: finished earlier, skipped")
            return {**run.get_json(key), "skipped": True}, False
        say(f"{tag}: marked finished but {run.url(missing[0])} is missing; running it again")
    say(f"{tag}: running")
    record_inputs(cfg, run, stage)
    t0 = time.perf_counter()
    _return_to(home)
    summary = declared(stage).load_runner()(cfg, ctx, method)
    _return_to(home)
    marker = {"stage": stage, "seconds": round(time.perf_counter() - t0, 1),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              **_small(summary)}
    run.put_json(key, marker)
    say(f"{tag}: done in {marker['seconds']:.0f}s")
    return marker, True


__all__ = ["compress"]
