"""The Ray edge of training: run a per-worker loop with ``TorchTrainer`` and the store.

``run_stage(stage, loop, ctx, cfg)`` (``ctx``: the run's :class:`ganc.context.RunContext`):

1. computes the stage's schedule (:mod:`ganc.train.schedule`: the dataset size counted
   here, the global batch over ``scale.workers``, epochs or ``steps``) and records it in
   ``<stage>/schedule.json``;
2. returns at once when ``<stage>/final.pt`` already holds that many steps (a finished
   job re-run does no new training);
3. writes the resolved config beside the checkpoints (``<stage>/config.yaml``) and finds
   the newest checkpoint of an earlier, interrupted job (``<stage>/latest.json``) so the
   new job continues from it;
4. reserves the workers' resources (CPUs, a GPU each on a GPU placement,
   ``scale.resources``) and waits at most ``scale.wait_s`` for the cluster to grant them;
5. runs ``TorchTrainer(loop, ScalingConfig(num_workers, use_gpu, resources_per_worker),
   RunConfig(storage_path=<stage folder of the store>, storage_filesystem=<s3fs through
   pyarrow for s3://, without credentials: every process uses its node's credential
   chain>, failure_config=FailureConfig(max_failures)))``; Ray Train restarts dead
   workers from the latest checkpoint;
6. returns a summary: final artifact URL, step, the last metrics, start events.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

from ..config import RunConfig
from ..context import ray_storage
from ..data.splits import split_size, train_crop_line
from ..errors import GancError, one_line
from ..resources import reserve, worker_bundle
from ..store import Store
from . import common
from .schedule import Schedule, make_schedule

HOOK_ENV = "GANC_TRAIN_HOOK_DIR"        # tests: workers publish pid/step files here
HOOK_SLEEP_ENV = "GANC_TRAIN_HOOK_SLEEP"  # tests: seconds to sleep per step
# Non-secret settings a worker's s3fs may need; credentials never travel (each process
# uses its node's default AWS credential chain).
S3_LOCATION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                   "AWS_ENDPOINT_URL_S3")
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


class TrainingError(GancError):
    """A training job that failed (after its allowed restarts)."""


def section_of(cfg: RunConfig, stage: str):
    """The config section holding a stage's length: the teacher, or the distillation loop
    (supernet and fine-tune)."""
    return cfg.teacher if stage == "teacher" else cfg.distill


def schedule_of(ctx, cfg: RunConfig, stage: str, workers: int,
                section: Optional[str] = None) -> Schedule:
    # the teacher trains on the whole training split, the supernet and the fine-tune
    # without the search split (ganc.data.splits)
    size = split_size(cfg.data, ctx.data, cfg.data.train_split, holdout=stage != "teacher")
    return make_schedule(section or ("teacher" if stage == "teacher" else "distill"),
                         section_of(cfg, stage), size, cfg.data.batch_size, workers)


def finished(run: Store, stage: str, steps: int) -> Optional[dict]:
    """The final artifact's metadata when the stage already ran ``steps`` steps."""
    key = f"{stage}/final.pt"
    if not run.exists(key):
        return None
    final = run.get_torch(key)
    if int(final.get("step", -1)) >= int(steps):
        return final
    return None


def _summary(run: Store, stage: str, final: dict, skipped: bool, **more) -> dict:
    lines = []
    if run.exists(f"{stage}/metrics.jsonl"):
        lines = common.parse_lines(run.read_bytes(f"{stage}/metrics.jsonl"))
    starts = [r for r in lines if r.get("event") == "start"]
    scalars = [r for r in lines if "event" not in r]
    return {"stage": stage, "skipped": skipped, "run": run.url(), "final": run.url(
        f"{stage}/final.pt"), "step": int(final.get("step", 0)), "starts": starts,
        "metrics": scalars[-1] if scalars else {}, "history": scalars, **more}


def worker_env() -> dict:
    """The runtime_env variables of training workers: no credentials."""
    env = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    env.update({k: os.environ[k] for k in S3_LOCATION_ENV if os.environ.get(k)})
    return env


def _fid_weights(ctx, cfg: RunConfig, stage: str) -> Optional[dict]:
    """The Inception weights for FID during training, checked here and shipped (None when
    the stage scores no FID, or with one warning line when there are none)."""
    scores = cfg.teacher.eval_every >= 0 if stage == "teacher" else cfg.distill.eval_every > 0
    if not scores:
        return None
    from ..metrics.inception_weights import ship_weights  # deferred: torch_fidelity
    try:
        return ship_weights(cfg.fid.extractor, cfg.fid.weights,
                            ctx.root if ctx.cluster.multi_node else None)
    except GancError as e:
        common.say(f"[{stage}] warning: FID disabled: {str(e).splitlines()[0][:200]}")
        return None


def run_stage(stage: str, loop: Callable[[dict], None], ctx, cfg: Optional[RunConfig] = None,
              *, runner: Optional[str] = None, extra_spec: Optional[dict] = None,
              section: Optional[str] = None) -> dict:
    """Run (or resume, or skip when finished) a training stage; ``cfg``: the config the
    workers run with (default ``ctx.cfg``), ``section``: the config section its length
    comes from, for messages."""
    cfg = cfg or ctx.cfg
    run = ctx.run
    local = (runner or "ray") == "local"
    workers = 1 if local else int(cfg.scale.workers)
    schedule = schedule_of(ctx, cfg, stage, workers, section)
    done = finished(run, stage, schedule.total_steps)
    if done is not None:
        common.say(f"[{stage}] {run.url(stage + '/final.pt')} already holds "
                   f"{done.get('step')} steps: nothing to train")
        return _summary(run, stage, done, skipped=True)

    run.put_json(f"{stage}/schedule.json", schedule.to_dict())
    run.write_bytes(f"{stage}/config.yaml", cfg.to_yaml().encode())
    latest = run.get_json(f"{stage}/latest.json") if run.exists(f"{stage}/latest.json") else None
    spec = {"config": cfg.to_dict(), "stage": stage, **ctx.worker_spec(), "resume": latest,
            "schedule": schedule.to_dict(), "fid_weights": _fid_weights(ctx, cfg, stage),
            "hooks": {"dir": os.environ.get(HOOK_ENV, ""),
                      "sleep": float(os.environ.get(HOOK_SLEEP_ENV, "0") or 0)},
            **(extra_spec or {})}
    common.say(f"[{stage}] {schedule.total_steps} steps: {schedule.dataset_size} images, "
               f"global batch {schedule.global_batch} over {workers} worker"
               f"{'s' if workers != 1 else ''}, {schedule.steps_per_epoch} steps per epoch"
               + (f", {schedule.epochs} + {schedule.epochs_decay} epochs"
                  if schedule.length_from == "epochs" else " (steps set explicitly)"))
    crops = train_crop_line(cfg.data, stage)       # training on crops of another size
    if crops:
        common.say(crops)
    if latest:
        common.say(f"[{stage}] continuing from step {latest['step']} ({run.url(latest['key'])})")
    t0 = time.perf_counter()
    if local:
        spec["runner"] = "local"
        loop(spec)
    else:
        _fit(stage, loop, spec, cfg, ctx)
    final = run.get_torch(f"{stage}/final.pt")
    return _summary(run, stage, final, skipped=False, seconds=time.perf_counter() - t0)


def train_cpus(cfg: RunConfig) -> int:
    """CPUs a private Ray needs so that the stage's workers fit."""
    return max(os.cpu_count() or 1, int(cfg.scale.workers) * int(cfg.scale.cpus_per_worker))


def _fit(stage, loop, spec, cfg: RunConfig, ctx) -> None:
    import ray.train  # deferred: ray
    from ray.train.torch import TorchConfig, TorchTrainer  # deferred: ray

    sc = cfg.scale
    common.check_section(cfg, "scale")
    gpu = ctx.use_gpu
    bundle = worker_bundle(sc.cpus_per_worker, gpu, ctx.resources)
    reserve([bundle] * int(sc.workers), sc.wait_s, f"{stage}: {sc.workers} Ray Train workers",
            ctx.cluster)
    # Ray Train waits for its own placement group at most this long (read by its controller).
    os.environ[START_TIMEOUT_ENV] = str(max(60.0, float(sc.wait_s)))
    storage_path, fs = ray_storage(ctx.run, stage)
    drop_unreadable_snapshot(ctx.run, stage)
    trainer = TorchTrainer(
        loop, train_loop_config=spec,
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=sc.workers, use_gpu=gpu,
                                               resources_per_worker=bundle),
        run_config=ray.train.RunConfig(
            name="ray", storage_path=storage_path, storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=sc.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            worker_runtime_env={"env_vars": worker_env()}))
    try:
        result = trainer.fit()
    except Exception as e:  # Ray raises TrainingFailedError after max_failures
        raise TrainingError(f"{stage} training failed: {one_line(root_cause(e))}") from None
    if getattr(result, "error", None):
        raise TrainingError(f"{stage} training failed: "
                            f"{one_line(root_cause(result.error))}")


# Ray Train's record of a run's checkpoints, in the stage's storage folder ("ray"). Ray
# writes it in place, so a write cut short (a full disk, a crash) leaves a truncated file
# on which every later job's TrainController fails to start.
RAY_SNAPSHOT = "ray/checkpoint_manager_snapshot.json"


def drop_unreadable_snapshot(run: Store, stage: str) -> bool:
    """Remove Ray Train's checkpoint record of ``stage`` when it is not readable JSON (one
    line says so); the stage then continues from ``<stage>/latest.json``, which ganc
    writes atomically after each checkpoint. Returns whether it was removed."""
    key = f"{stage}/{RAY_SNAPSHOT}"
    if not run.exists(key):
        return False
    try:
        json.loads(run.read_bytes(key).decode("utf-8"))
        return False
    except (UnicodeDecodeError, ValueError):
        pass
    run.rm(key)
    common.say(f"[{stage}] {run.url(key)} was cut short by an interrupted write: removed; "
               "continuing from the latest checkpoint ganc recorded")
    return True


def root_cause(e: BaseException) -> BaseException:
    """What a user can act on inside Ray Train's wrapping of a failure (a controller or
    worker-group error around a task error around the error raised): the first OS error
    found (a full disk, a missing file), else the innermost error reached."""
    seen, todo, last = set(), [e], e
    while todo:
        err = todo.pop(0)
        if err is None or id(err) in seen or not isinstance(err, BaseException):
            continue
        seen.add(id(err))
        inner = getattr(err, "cause", None)                  # ray.exceptions.RayTaskError
        if isinstance(err, OSError) and not (isinstance(inner, BaseException)
                                             and inner is not err):
            return err
        last = err
        todo += [getattr(err, "controller_failure", None), inner,
                 *(getattr(err, "worker_failures", None) or {}).values(),
                 err.__cause__, err.__context__]
    return last
