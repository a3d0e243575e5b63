"""``ganc compress``: the whole pipeline as one job.

teacher (train, or load ``model.teacher_weights``) -> supernet distillation -> search
(evolution by default, or nsga2) -> pruning agents (optional) -> fine-tune -> export ->
report. Every stage writes into the run folder of the store, and a finished stage leaves
``pipeline/<stage>.json``; a re-submitted job skips those stages and resumes the one that
was interrupted (training from its latest checkpoint, the search through
``Tuner.restore``).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

from .config import PIPELINE_STAGES, RunConfig
from .errors import ConfigError
from .train.common import say

MARKER = "pipeline/{}.json"
INPUTS = "pipeline/{}.inputs.json"   # the config fields a stage ran with, written at its start

# The config a stage's result depends on: its own sections plus its upstream stages'.
# Fields that change how, not what, a stage computes are left out (IGNORED).
STAGE_SECTIONS = {"teacher": ("seed", "data", "model", "teacher"), "supernet": ("distill",),
                  "search": ("search", "fid"), "prune": ("prune", "fid"),
                  "finetune": ("finetune",), "export": (), "report": ("pipeline",)}
UPSTREAM = {"teacher": (), "supernet": ("teacher",), "search": ("supernet",),
            "prune": ("teacher",), "finetune": ("search",), "export": ("finetune",),
            "report": ("search", "prune", "export")}
IGNORED = {"data.on_every_node", "fid.num_actors", "fid.batch_size", "search.max_concurrent",
           "pipeline.stages"}
STAGE_OUTPUTS = {"teacher": ("teacher",), "supernet": ("supernet",),
                 "search": ("search", "best.json"), "prune": ("prune",),
                 "finetune": ("finetune",), "export": ("export",), "report": ("report",)}


def _flat(obj, prefix: str) -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


# Config fields added after runs began recording fingerprints: a field here is left out of
# a fingerprint while it has its default value, so that a run made before the field existed
# (its recorded fingerprint lacks it) resumes under the same config, while setting the field
# still counts as a change. A field added later that changes what a stage computes belongs
# here too.
ADDED_FIELDS = ("data.val_split", "data.split_targets", "model.teacher_config")


def _defaults() -> dict:
    return {k: v for k, v in _flat(RunConfig().to_dict(), "").items() if k in ADDED_FIELDS}


def _fields(cfg: RunConfig, sections) -> dict:
    """``{field: value}`` of the config fields of ``sections`` that change what a stage
    computes (not how: IGNORED, logging and checkpoint periods); an ADDED_FIELDS field at
    its default is left out."""
    full = _flat(cfg.to_dict(), "")
    defaults = _defaults()
    return {k: v for k, v in sorted(full.items())
            if k.split(".")[0] in sections and k not in IGNORED
            and not k.endswith((".log_every", ".checkpoint_every"))
            and not (k in defaults and v == defaults[k])}


def stage_inputs(cfg: RunConfig, stage: str) -> dict:
    """``{field: value}`` of every config field ``stage``'s result depends on."""
    sections, todo = set(), [stage]
    while todo:
        s = todo.pop()
        sections.update(STAGE_SECTIONS[s])
        todo.extend(UPSTREAM[s])
    return _fields(cfg, sections)


# A stage run on its own (``ganc search``, ``ganc finetune``) resumes its own interrupted
# work (the Tune experiment, the fine-tune's checkpoints); what it must match: its own
# config sections and the data, plus what it ran on and with (the upstream artifact's
# hash, the method, budgets and sub-network: see resume_inputs' callers).
RESUME_SECTIONS = {"search": ("seed", "data", "search", "fid"),
                   "finetune": ("seed", "data", "finetune")}
RESUME_RECORD = "{}/inputs.json"


def resume_inputs(cfg: RunConfig, stage: str, **more) -> dict:
    """The fingerprint a stage's resumable work is checked against on resume."""
    return {**_fields(cfg, RESUME_SECTIONS[stage]), **more}


def changed_fields(recorded: dict, now: dict) -> list[str]:
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


def changed_error(run, stage: str, changed: list[str], remedy: str) -> ConfigError:
    """The one line that stops a stage whose recorded inputs differ from this job's."""
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return ConfigError(f"run {run.url()}: stage {stage} ran with another config "
                       f"({', '.join(changed[:4])}{more} changed); {remedy}")


def check_inputs(cfg: RunConfig, run, stages: list[str]) -> None:
    """One line when a stage already started in ``run`` with other inputs than ``cfg``'s
    (the first such stage in pipeline order), naming the stage and the changed fields."""
    for stage in stages:
        key = INPUTS.format(stage)
        if not run.exists(key):
            continue
        changed = changed_fields(run.get_json(key).get("fields", {}), stage_inputs(cfg, stage))
        if changed:
            raise changed_error(run, stage, changed, f"rerun it with --restart-from {stage} "
                                                     "or use a new --run-id")


def check_resume(run, stage: str, fields: dict, resuming: bool, remedy: str) -> None:
    """Before ``stage`` continues earlier work in ``run`` (``resuming``): one line naming
    the stage and the changed fields when its recorded fingerprint differs from
    ``fields``. Starting afresh (or resuming work from before fingerprints were recorded)
    records ``fields``."""
    key = RESUME_RECORD.format(stage)
    if resuming and run.exists(key):
        changed = changed_fields(run.get_json(key).get("fields", {}), fields)
        if changed:
            raise changed_error(run, stage, changed, remedy)
        return
    run.put_json(key, {"stage": stage, "fields": fields})


def restart_from(run, stages: list[str], first: str) -> list[str]:
    """Forget ``first`` and every later stage of ``stages``: markers, input records and
    outputs are removed. Returns the stages reset."""
    if first not in stages:
        raise ConfigError(f"--restart-from {first!r} is not one of this job's stages: "
                          + ", ".join(stages))
    reset = stages[stages.index(first):]
    for stage in reset:
        for key in (MARKER.format(stage), INPUTS.format(stage)):
            if run.exists(key):
                run.rm(key)
        for out in STAGE_OUTPUTS[stage]:
            if run.exists(out):
                run.rm(out, recursive=not out.endswith(".json"))
    return reset


def _stages(cfg: RunConfig) -> list[str]:
    stages = [str(s) for s in cfg.pipeline.stages]
    unknown = [s for s in stages if s not in PIPELINE_STAGES]
    if unknown:
        raise ConfigError(f"pipeline.stages: unknown stage {unknown[0]!r}; stages: "
                          + ", ".join(PIPELINE_STAGES))
    return [s for s in PIPELINE_STAGES if s in stages]  # always in pipeline order


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
    import tempfile
    for d in (home, tempfile.gettempdir()):
        if d and os.path.isdir(d):
            os.chdir(d)
            return


def _import_stages(stages) -> None:
    """Import every stage's code up front, so a job whose working_dir package is swapped
    under it (see ``_return_to``) still has all of it in memory."""
    import importlib
    mods = {"teacher": ["ganc.train.teacher", "ganc.train.supernet"],
            "supernet": ["ganc.train.supernet"],
            "search": ["ganc.search.driver", "ganc.search.searcher", "ganc.search.nsga2",
                       "ganc.search.report", "ganc.metrics.pool"],
            "prune": ["ganc.prune.driver"], "finetune": ["ganc.search.finetune"],
            "export": ["ganc.export"], "report": ["ganc.report"]}
    for stage in stages:
        for m in mods[stage]:
            importlib.import_module(m)


def compress(cfg: RunConfig, store=None, *, method: Optional[str] = None,
             on_stage: Optional[Callable[[str, dict], None]] = None,
             restart: Optional[str] = None) -> dict:
    """Run every stage of ``cfg.pipeline.stages`` that has not finished; returns a summary
    with each stage's marker and the report."""
    from .context import open_context, ray_connection
    from .train.launch import train_cpus

    stages = _stages(cfg)
    home = _cwd_or_none()
    _import_stages(stages)
    # a given teacher that does not fit its architecture, or a budget at or above the
    # teacher's MACs: one line, before Ray starts or anything is written
    if cfg.model.teacher_weights:
        from .train.teacher import check_given_teacher
        check_given_teacher(cfg)
    from .context import check_budgets
    check_budgets(cfg)
    done = {}
    t_all = time.perf_counter()
    with ray_connection(num_cpus=train_cpus(cfg)):
        _return_to(home)
        # Checks what the run needs against the cluster (one line, before any stage runs)
        # and records the run's placement at its first submission.
        ctx = open_context(cfg, store)
        root, run = ctx.root, ctx.run
        if restart:
            reset = restart_from(run, stages, restart)
            say(f"[compress] restarting from {restart}: {', '.join(reset)} reset")
        check_inputs(cfg, run, stages)       # before anything is written
        run.write_bytes("config.yaml", cfg.to_yaml().encode())
        say(f"[compress] run {run.url()}: stages {' -> '.join(stages)}")
        for i, stage in enumerate(stages, 1):
            key = MARKER.format(stage)
            if run.exists(key):
                missing = missing_artifacts(cfg, run, stage)
                if not missing:
                    done[stage] = {**run.get_json(key), "skipped": True}
                    say(f"[compress] {i}/{len(stages)} {stage}: finished earlier, skipped")
                    continue
                say(f"[compress] {i}/{len(stages)} {stage}: marked finished but "
                    f"{run.url(missing[0])} is missing; running it again")
            say(f"[compress] {i}/{len(stages)} {stage}: running")
            run.put_json(INPUTS.format(stage), {"stage": stage,
                                                "fields": stage_inputs(cfg, stage)})
            t0 = time.perf_counter()
            _return_to(home)
            summary = _RUNNERS[stage](cfg, root, run, method)
            _return_to(home)
            marker = {"stage": stage, "seconds": round(time.perf_counter() - t0, 1),
                      "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      **_small(summary)}
            run.put_json(key, marker)
            done[stage] = marker
            say(f"[compress] {i}/{len(stages)} {stage}: done in {marker['seconds']:.0f}s")
            if on_stage:
                on_stage(stage, marker)
    result = {"run": run.url(), "stages": done,
              "seconds": round(time.perf_counter() - t_all, 1)}
    if run.exists("report/summary.json"):
        result["report"] = run.get_json("report/summary.json")
    return result


# ---------------------------------------------------------------- stage runners
def _teacher(cfg, root, run, method):
    if cfg.model.teacher_weights:
        from .train.teacher import given_teacher
        s = given_teacher(cfg, root)        # fails now, with one line, if it won't load
        return {"source": s["source"], "trained": False, "netG": s["netG"],
                "config_str": s["config_str"]}
    from .train.teacher import train_teacher
    s = train_teacher(cfg, root)
    return {"trained": True, "step": s.get("step"), "final": s.get("final")}


def _supernet(cfg, root, run, method):
    from .train.supernet import train_supernet
    s = train_supernet(cfg, root)
    return {"step": s.get("step"), "final": s.get("final")}


def _search(cfg, root, run, method):
    from .search.driver import run_search
    best = run_search(cfg, root, method=method)
    return {"config": best.get("config"), "macs": best.get("macs"), "fid": best.get("fid"),
            "miou": best.get("miou"), "criterion": best.get("criterion"),
            "method": (best.get("search") or {}).get("method", method)}


def _prune(cfg, root, run, method):
    from .prune.driver import run_prune
    # without prune.targets the prune matches the search's budget (run_prune reads it
    # from the run's best.json: ganc.prune.driver.search_budgets)
    s = run_prune(cfg, root)
    return {"targets": ",".join(f"{r.get('target')}" for r in s.get("rows", [])),
            "seconds_pruning": s.get("seconds")}


def _finetune(cfg, root, run, method):
    from .search.finetune import finetune
    r = finetune(cfg, root)
    return {"config": r.get("config"), "steps": r.get("steps"),
            "fid_before": r.get("fid_before"), "fid_after": r.get("fid_after"),
            "export": r.get("export"), "why": r.get("why")}


def _export(cfg, root, run, method):
    from .export import export_best
    card = export_best(cfg, root)
    return {"config": card["config_str"], "macs": card["macs"], "params": card["params"],
            "latency_ms_cpu": card["latency_ms_cpu"]}


def _report(cfg, root, run, method):
    from .report import write_report
    rep = write_report(cfg, root)
    return {"rows": len(rep["rows"]), "folder": run.url("report")}


def _kid(mean, std) -> str:
    """``0.0123+-0.0021`` (KID mean +- its std over subsets), ``-`` when not scored."""
    if not isinstance(mean, (int, float)) or mean != mean:
        return "-"
    return f"{mean:.4f}+-{std:.4f}" if isinstance(std, (int, float)) and std == std \
        else f"{mean:.4f}"


# What a finished stage leaves: a marker alone never counts (a unit counts by its manifest).
def missing_artifacts(cfg: RunConfig, run, stage: str) -> list[str]:
    """Keys a finished ``stage`` must have left in ``run`` that are not there."""
    from .store import MANIFEST
    units = {"export": ["export"],
             "teacher": [] if cfg.model.teacher_weights else ["teacher"]}.get(stage, [])
    keys = {"teacher": [] if cfg.model.teacher_weights else ["teacher/final.pt"],
            "supernet": ["supernet/final.pt"], "search": ["best.json", "search/results.parquet"],
            "prune": ["prune/summary.json"], "finetune": ["finetune/result.json"],
            "report": ["report/summary.json"]}.get(stage, [])
    missing = [f"{u}/{MANIFEST}" for u in units if run.read_unit(u) is None]
    return missing + [k for k in keys if not run.exists(k)]


_RUNNERS = {"teacher": _teacher, "supernet": _supernet, "search": _search, "prune": _prune,
            "finetune": _finetune, "export": _export, "report": _report}


def format_table(rows: list[dict]) -> str:
    """The summary table: teacher vs the best of each method, with the FID on the eval
    split (``fid``) and on the split it was chosen by (``fid_search``)."""
    split = next((r["fid_split"] for r in rows if r.get("fid_split")), "")
    chosen = next((r["fid_search_split"] for r in rows if r.get("fid_search_split")), "search")
    fid_head = f"FID {split}"[:8] if split else "FID"
    miou = any(r.get("miou") is not None for r in rows)   # label-map data
    # KID (mean +- std over subsets) of each split, where the report scored it
    kids = [(k, f"KID {name}"[:15]) for k, name in (("kid", split), ("kid_search", chosen))
            if any(r.get(k) is not None for r in rows)]
    head = (f"{'model':34s} {'method':10s} {'GMACs':>8s} {'MACs x':>7s} {'params M':>9s} "
            f"{fid_head:>8s} {('FID ' + chosen)[:10]:>10s} {'CPU ms':>8s}"
            + (f" {'mIoU ' + split:>10s}" if miou else "")
            + "".join(f" {title:>15s}" for _, title in kids))
    lines = [head, "-" * len(head)]
    t_macs = next((r["macs"] for r in rows if r["method"] == "teacher" and r.get("macs")), None)

    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) and v == v else "-"
    for r in rows:
        ratio = (t_macs / r["macs"]) if t_macs and r.get("macs") else None
        lines.append(f"{r['model'][:34]:34s} {r['method']:10s} "
                     f"{num(r.get('macs') and r['macs'] / 1e9, '8.3f'):>8s} "
                     f"{num(ratio, '6.1f'):>6s}x "
                     f"{num(r.get('params') and r['params'] / 1e6, '9.3f'):>9s} "
                     f"{num(r.get('fid'), '8.2f'):>8s} {num(r.get('fid_search'), '10.2f'):>10s} "
                     f"{num(r.get('latency_ms_cpu'), '8.1f'):>8s}"
                     + (f" {num(r.get('miou'), '10.2f'):>10s}" if miou else "")
                     + "".join(f" {_kid(r.get(k), r.get(k + '_std')):>15s}" for k, _ in kids))
    if miou:
        lines.append("mIoU: ESPNet-CamVid mIoU (ganc's stand-in for the paper's DRN-D-105 "
                     "Cityscapes mIoU)")
    return "\n".join(lines)


__all__ = ["compress", "format_table", "missing_artifacts", "stage_inputs", "check_inputs",
           "restart_from", "resume_inputs", "check_resume", "MARKER", "INPUTS"]
