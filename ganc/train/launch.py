"""The Ray edge of training: run a per-worker loop with ``TorchTrainer`` and the store.

``run_stage(stage, loop, cfg, store)``:

1. opens the run folder ``runs/<run_id>/`` in the store (``store.run_id`` or ``name``);
2. returns at once when ``<stage>/final.pt`` already holds ``steps`` steps (a finished job
   re-run does no new training);
3. resolves the data (generated demo data when ``data.root`` is empty), writes the
   resolved config beside the checkpoints (``<stage>/config.yaml``);
4. finds the newest checkpoint of an earlier, interrupted job (``<stage>/latest.json``)
   so the new job continues from it;
5. runs ``TorchTrainer(loop, ScalingConfig(num_workers, use_gpu), RunConfig(storage_path=
   <stage folder of the store>, storage_filesystem=<fsspec S3 via pyarrow for s3://>,
   failure_config=FailureConfig(max_failures)))``; Ray Train restarts dead workers from
   the latest checkpoint;
6. returns a summary: final artifact URL, step, the last metrics, start events.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Optional

from ..config import RunConfig
from ..errors import GancError
from ..store import Store, open_store, store_from_config
from . import common

HOOK_ENV = "GANC_TRAIN_HOOK_DIR"        # tests: workers publish pid/step files here
HOOK_SLEEP_ENV = "GANC_TRAIN_HOOK_SLEEP"  # tests: seconds to sleep per step


class TrainingError(GancError):
    """A training job that failed (after its allowed restarts)."""


def run_id_of(cfg: RunConfig) -> str:
    return cfg.store.run_id or cfg.name


def open_run(cfg: RunConfig, store=None) -> tuple[Store, Store]:
    """(root store, run store) for a config; ``store`` may be a Store or a URL."""
    if store is None:
        root = store_from_config(cfg.store)
    elif isinstance(store, Store):
        root = store
    else:
        root = open_store(store, endpoint_url=cfg.store.endpoint_url or None)
    return root, root.run(run_id_of(cfg))


def want_gpu(cfg: RunConfig) -> bool:
    v = str(cfg.scale.use_gpu).lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    if v != "auto":
        raise common.ConfigError(f"scale.use_gpu {cfg.scale.use_gpu!r} is not one of: auto, "
                                 "true, false")
    try:
        import ray
        if ray.is_initialized():
            return ray.cluster_resources().get("GPU", 0) > 0
    except Exception:  # pragma: no cover
        pass
    import torch
    return torch.cuda.is_available()


def apply_cpu_size(cfg: RunConfig, gpu: bool) -> None:
    """``scale.cpu_crop_size``: on CPU train at a smaller size, load_size scaled alike."""
    small = int(cfg.scale.cpu_crop_size)
    if gpu or small <= 0 or small == cfg.data.crop_size:
        return
    if small % 4:
        raise common.ConfigError(f"scale.cpu_crop_size must be a multiple of 4, got {small}")
    ratio = cfg.data.load_size / float(cfg.data.crop_size)
    cfg.data.crop_size = small
    cfg.data.load_size = int(round(small * ratio))


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


def ray_storage(run: Store, stage: str):
    """(storage_path, storage_filesystem) for Ray Train's checkpoints of a stage."""
    if run.protocol == "file":
        path = os.path.join(run.root, stage)
        os.makedirs(path, exist_ok=True)
        return path, None
    import pyarrow.fs as pafs
    fs = run.fs
    creds = {k: os.environ[v] for k, v in (("key", "AWS_ACCESS_KEY_ID"),
                                           ("secret", "AWS_SECRET_ACCESS_KEY"),
                                           ("token", "AWS_SESSION_TOKEN")) if os.environ.get(v)}
    if creds:
        # Ray Train's controller and workers get this filesystem pickled; they may run in
        # processes started before the driver's credentials were set, so carry them along.
        import s3fs
        fs = s3fs.S3FileSystem(**{**fs.storage_options, **creds})
    return f"{run.root}/{stage}", pafs.PyFileSystem(pafs.FSSpecHandler(fs))


# S3 settings the driver passes on to its training workers (which may run in processes
# started before they were set).
S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
          "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE")


def worker_env() -> dict:
    env = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    env.update({k: os.environ[k] for k in S3_ENV if os.environ.get(k)})
    return env


def ensure_ray(num_cpus: int) -> bool:
    """Start a local Ray bound to 127.0.0.1 unless one is running (or join RAY_ADDRESS);
    True if started here."""
    from ..raylocal import init_local
    return init_local(num_cpus=num_cpus)


def run_stage(stage: str, loop: Callable[[dict], None], cfg: RunConfig, store=None, *,
              runner: Optional[str] = None, extra_spec: Optional[dict] = None) -> dict:
    root, run = open_run(cfg, store)
    done = finished(run, stage, _steps(cfg, stage))
    if done is not None:
        common.say(f"[{stage}] {run.url(stage + '/final.pt')} already holds "
                   f"{done.get('step')} steps: nothing to train")
        return _summary(run, stage, done, skipped=True)

    gpu = want_gpu(cfg)
    apply_cpu_size(cfg, gpu)
    data_root = common.resolve_data_root(cfg.data)
    run.write_bytes(f"{stage}/config.yaml", cfg.to_yaml().encode())
    latest = run.get_json(f"{stage}/latest.json") if run.exists(f"{stage}/latest.json") else None
    spec = {"config": cfg.to_dict(), "stage": stage, "store_url": run.url(),
            "root_url": root.url(),
            "endpoint_url": run.endpoint_url or cfg.store.endpoint_url or "",
            "data_root": data_root, "resume": latest, "use_gpu": gpu,
            "hooks": {"dir": os.environ.get(HOOK_ENV, ""),
                      "sleep": float(os.environ.get(HOOK_SLEEP_ENV, "0") or 0)},
            **(extra_spec or {})}
    if latest:
        common.say(f"[{stage}] continuing from step {latest['step']} ({run.url(latest['key'])})")
    t0 = time.perf_counter()
    if (runner or "ray") == "local":
        spec["runner"] = "local"
        loop(spec)
    else:
        _fit(stage, loop, spec, cfg, run, gpu)
    final = run.get_torch(f"{stage}/final.pt")
    return _summary(run, stage, final, skipped=False, seconds=time.perf_counter() - t0)


def _steps(cfg: RunConfig, stage: str) -> int:
    # every stage but the teacher runs the supernet loop, which counts distill.steps
    return cfg.teacher.steps if stage == "teacher" else cfg.distill.steps


def _fit(stage, loop, spec, cfg: RunConfig, run: Store, gpu: bool) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    sc = cfg.scale
    common.check_positive("scale", workers=sc.workers, cpus_per_worker=sc.cpus_per_worker)
    if sc.max_failures < 0:
        raise common.ConfigError(f"scale.max_failures must be >= 0, got {sc.max_failures}")
    started = ensure_ray(max(os.cpu_count() or 1, sc.workers * sc.cpus_per_worker))
    try:
        storage_path, fs = ray_storage(run, stage)
        resources = {"CPU": sc.cpus_per_worker}
        if gpu:
            resources["GPU"] = 1
        trainer = TorchTrainer(
            loop, train_loop_config=spec,
            torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(num_workers=sc.workers, use_gpu=gpu,
                                                   resources_per_worker=resources),
            run_config=ray.train.RunConfig(
                name="ray", storage_path=storage_path, storage_filesystem=fs,
                failure_config=ray.train.FailureConfig(max_failures=sc.max_failures),
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                logging_config=ray.train.LoggingConfig(log_level="WARNING"),
                worker_runtime_env={"env_vars": worker_env()}))
        try:
            result = trainer.fit()
        except Exception as e:  # Ray raises TrainingFailedError after max_failures
            raise TrainingError(f"{stage} training failed: {_first_line(e)}") from None
        if getattr(result, "error", None):
            raise TrainingError(f"{stage} training failed: {_first_line(result.error)}")
    finally:
        if started:
            import ray
            ray.shutdown()


def _first_line(e) -> str:
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]
