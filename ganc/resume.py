"""Resume, below the stages: markers, fingerprints and what a finished stage must leave.

A finished stage leaves ``pipeline/<stage>.json`` (:data:`MARKER`); at its start it records
the config fields its result depends on (:data:`INPUTS`, :func:`stage_inputs`: its own
sections and its upstream stages', as :mod:`ganc.stages` declares them). A stage that
resumes its own interrupted work (the search's Tune experiment, the fine-tune's
checkpoints, each prune target's checkpoints) checks it against its fingerprint
(:func:`check_resume`, :func:`resume_inputs`). Stages import this module; nothing here
imports a stage.
"""
from __future__ import annotations

from typing import Optional

from .config import RunConfig
from .errors import ConfigError
from .stages import stage as declared
from .store import MANIFEST

MARKER = "pipeline/{}.json"
INPUTS = "pipeline/{}.inputs.json"   # the config fields a stage ran with, written at its start
RESUME_RECORD = "{}/inputs.json"

# Fields that change how, not what, a stage computes are left out of its fingerprint.
IGNORED = {"data.on_every_node", "fid.num_actors", "fid.batch_size", "search.max_concurrent",
           "pipeline.stages"}

# Config fields added after runs began recording fingerprints: a field here is left out of
# a fingerprint while it has its default value, so that a run made before the field existed
# (its recorded fingerprint lacks it) resumes under the same config, while setting the field
# still counts as a change. A field added later that changes what a stage computes belongs
# here too.
# tests/test_results.py fails on a field that is in neither this list, IGNORED nor the
# fields of 2026-12-07 (tests/data/config_fields.txt).
ADDED_FIELDS = ("data.val_split", "data.split_targets", "model.teacher_config",
                "model.student_norm", "data.unpaired", "teacher.lambda_rec_x",
                "teacher.lambda_rec_s", "teacher.lambda_rec_c", "prune.checkpoint_every",
                "prune.crop_size", "prune.tag", "data.train_crop_size",
                "data.split_seed")


def _flat(obj, prefix: str) -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


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
    sections, todo, seen = set(), [stage], set()
    while todo:
        s = declared(todo.pop())
        if s.name not in seen:
            seen.add(s.name)
            sections.update(s.sections)
            todo.extend(s.upstream)
    return _fields(cfg, sections)


# A stage run on its own (``ganc search``, ``ganc finetune``, ``ganc prune``) resumes its own
# interrupted work (the Tune experiment, the fine-tune's and each prune target's
# checkpoints); what it must match: its own
# config sections and the data (the stage's resume_sections), plus what it ran on and
# with (the upstream artifact's hash, the method, budgets and sub-network: see
# resume_inputs' callers).
def resume_inputs(cfg: RunConfig, stage: str, **more) -> dict:
    """The fingerprint a stage's resumable work is checked against on resume."""
    return {**_fields(cfg, declared(stage).resume_sections), **more}


def changed_fields(recorded: dict, now: dict) -> list[str]:
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


def _shown(field: str, value) -> str:
    """A recorded or current value as the one-line error shows it (short; never a secret)."""
    if any(w in field.lower() for w in ("secret", "token", "password", "credential", "key_id")):
        return "(hidden)"
    text = "unset" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def changed_error(run, stage: str, changed: list[str], remedy: str,
                  recorded: Optional[dict] = None, now: Optional[dict] = None) -> ConfigError:
    """The one line that stops a stage whose recorded inputs differ from this job's:
    each changed field (the first four) with its recorded and current value, so the
    command that made the run can be repeated (``--set`` the recorded value)."""
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    if recorded is None or now is None:
        what = f"{', '.join(changed[:4])}{more} changed"
    else:
        what = "; ".join(f"{k}: recorded {_shown(k, recorded.get(k))}, now {_shown(k, now.get(k))}"
                         for k in changed[:4]) + more
    return ConfigError(f"run {run.url()}: stage {stage} ran with another config "
                       f"({what}); {remedy}")


def check_inputs(cfg: RunConfig, run, stages: list[str]) -> None:
    """One line when a stage already started in ``run`` with other inputs than ``cfg``'s
    (the first such stage in pipeline order), naming the stage and the changed fields."""
    for stage in stages:
        key = INPUTS.format(stage)
        if not run.exists(key):
            continue
        recorded, now = run.get_json(key).get("fields", {}), stage_inputs(cfg, stage)
        changed = changed_fields(recorded, now)
        if changed:
            raise changed_error(run, stage, changed, f"rerun it with --restart-from {stage} "
                                                     "or use a new --run-id", recorded, now)


def record_inputs(cfg: RunConfig, run, stage: str) -> None:
    """Record the config fields ``stage`` runs with (at its start)."""
    run.put_json(INPUTS.format(stage), {"stage": stage, "fields": stage_inputs(cfg, stage)})


def check_resume(run, stage: str, fields: dict, resuming: bool, remedy: str,
                 record: str = "") -> None:
    """Before ``stage`` continues earlier work in ``run`` (``resuming``): one line naming
    the stage and the changed fields when its recorded fingerprint differs from
    ``fields``. Starting afresh (or resuming work from before fingerprints were recorded)
    records ``fields`` (at ``record``: a stage with several pieces of resumable work, such
    as the prune's targets, keeps one record each; default ``<stage>/inputs.json``)."""
    key = record or RESUME_RECORD.format(stage)
    if resuming and run.exists(key):
        recorded = run.get_json(key).get("fields", {})
        changed = changed_fields(recorded, fields)
        if changed:
            raise changed_error(run, stage, changed, remedy, recorded, fields)
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
        for out in declared(stage).outputs:
            if run.exists(out):
                run.rm(out, recursive=not out.endswith(".json"))
    return reset


def _value(cfg: RunConfig, dotted: str):
    """The value of config field ``dotted`` (``model.teacher_weights``)."""
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# What a finished stage leaves: a marker alone never counts (a unit counts by its manifest).
def missing_artifacts(cfg: RunConfig, run, stage: str) -> list[str]:
    """Keys a finished ``stage`` must have left in ``run`` that are not there."""
    s = declared(stage)
    if s.given_by and _value(cfg, s.given_by):
        return []                     # given, not made: nothing of it is in the run
    missing = [f"{u}/{MANIFEST}" for u in s.units if run.read_unit(u) is None]
    return missing + [k for k in s.artifacts if not run.exists(k)]


__all__ = ["MARKER", "INPUTS", "stage_inputs", "resume_inputs", "check_inputs",
           "record_inputs", "check_resume", "restart_from", "missing_artifacts",
           "changed_fields", "changed_error"]
