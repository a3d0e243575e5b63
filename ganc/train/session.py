"""Where a per-worker loop meets its runner: rank, device, resume state, reports.

:class:`RaySession` is the only place a loop touches Ray Train (``get_context``,
``get_checkpoint``, ``report`` with a checkpoint directory). :class:`LocalSession` runs the
same loop in one plain process (benchmarks, debugging) and writes its checkpoints straight
to the store. Both keep the stage's bookkeeping in the run folder of the store:

    runs/<run_id>/<stage>/ray/step-<n>/state.pt   Ray Train checkpoints (Ray's storage)
    runs/<run_id>/<stage>/latest.json              {"step", "key"} of the newest checkpoint
    runs/<run_id>/<stage>/metrics.jsonl            losses, eval scores and start events
    runs/<run_id>/<stage>/tb/                      TensorBoard events
    runs/<run_id>/<stage>/final.pt                 the exported result of the stage
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from typing import Optional

import torch

from ..store import open_store
from . import common

CKPT_FILE = "state.pt"


def ckpt_dir_name(step: int) -> str:
    return f"step-{int(step):08d}"


class Session:
    """Base: everything except how checkpoints travel."""

    runner = "none"

    def __init__(self, spec: dict, rank: int, world: int, device: torch.device):
        self.spec, self.rank, self.world, self.device = spec, rank, world, device
        self.stage = spec["stage"]
        self.store = open_store(spec["store_url"], endpoint_url=spec.get("endpoint_url") or None)
        self.hooks = spec.get("hooks") or {}
        self.log: Optional[common.ScalarLog] = None
        self._tb_local = None

    # -------------------------------------------------------------- bookkeeping
    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def key(self, name: str) -> str:
        return f"{self.stage}/{name}"

    def open_log(self, resumed_step: int) -> None:
        """Rank 0: the metrics log, cut back to the resumed step, and a TB writer."""
        if not self.is_chief:
            return
        lines = []
        if self.store.exists(self.key("metrics.jsonl")):
            lines = common.parse_lines(self.store.read_bytes(self.key("metrics.jsonl")),
                                       upto_step=resumed_step)
        if self.store.protocol == "file":
            tb = os.path.join(self.store.root, self.stage, "tb")
        else:
            tb = os.path.join(common.cache_dir(), "tb", self.store.root.replace("/", "_"),
                              self.stage)
            self._tb_local = tb
        self.log = common.ScalarLog(lines, tb)
        self.log.event(event="start", step=int(resumed_step), world=self.world,
                       runner=self.runner, pid=os.getpid())

    def flush_log(self) -> None:
        if not self.is_chief or self.log is None:
            return
        self.log.flush()
        self.store.write_bytes(self.key("metrics.jsonl"), self.log.dumps())
        if self._tb_local and os.path.isdir(self._tb_local):
            for name in os.listdir(self._tb_local):
                self.store.put_file(self.key(f"tb/{name}"), os.path.join(self._tb_local, name))

    def write_final(self, payload: dict) -> str:
        """Rank 0: the stage's exported artifact at ``<stage>/final.pt``."""
        url = self.store.put_torch(self.key("final.pt"), payload)
        self.flush_log()
        if self.log is not None:
            self.log.close()
        return url

    # -------------------------------------------------------------- test hooks
    def tick(self, step: int, batch=None) -> None:
        """Test hook: publish this worker's pid and step (and append the images of its
        batch to ``rank<r>-batches.jsonl``), optionally slow each step."""
        folder = self.hooks.get("dir")
        if folder:
            path = os.path.join(folder, f"rank{self.rank}.json")
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"pid": os.getpid(), "step": int(step), "rank": self.rank}, f)
            os.replace(tmp, path)
            if isinstance(batch, dict) and "path" in batch:
                with open(os.path.join(folder, f"rank{self.rank}-batches.jsonl"), "a") as f:
                    f.write(json.dumps({"step": int(step), "world": self.world,
                                        "paths": [os.path.basename(p) for p in batch["path"]]})
                            + "\n")
        if self.hooks.get("sleep"):
            time.sleep(float(self.hooks["sleep"]))

    # -------------------------------------------------------------- resume
    def _load_store_state(self) -> Optional[dict]:
        latest = self.spec.get("resume")
        if not latest:
            return None
        return self.store.get_torch(latest["key"])

    def resume_state(self) -> Optional[dict]:
        raise NotImplementedError

    def report(self, step: int, metrics: dict, checkpoint: bool = False,
               state: Optional[dict] = None) -> None:
        """Report metrics (every rank); with ``checkpoint`` rank 0 passes ``state``."""
        raise NotImplementedError


class RaySession(Session):
    """Inside a Ray Train worker."""

    runner = "ray"

    def __init__(self, spec: dict):
        import ray.train  # deferred: ray
        import ray.train.torch  # deferred: ray
        _quiet_ray_train_reports()
        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
        device = ray.train.torch.get_device() if spec.get("use_gpu") else torch.device("cpu")
        if isinstance(device, list):
            device = device[0]
        super().__init__(spec, rank, world, device)

    def resume_state(self) -> Optional[dict]:
        import ray.train  # deferred: ray
        ckpt = ray.train.get_checkpoint()
        state = None
        if ckpt is not None:
            with ckpt.as_directory() as d:
                path = os.path.join(d, CKPT_FILE)
                if os.path.isfile(path):
                    state = torch.load(path, map_location="cpu", weights_only=True)
        # Ray registers a reported checkpoint asynchronously: after a crash shortly after a
        # report, get_checkpoint() may still name the one before. latest.json is written
        # by rank 0 once the upload returned, so the newer of the two wins.
        latest = self.spec.get("resume")
        if self.store.exists(self.key("latest.json")):
            latest = self.store.get_json(self.key("latest.json"))
        if latest and (state is None or int(state.get("step", 0)) < int(latest["step"])):
            state = self.store.get_torch(latest["key"])
        return state

    def report(self, step: int, metrics: dict, checkpoint: bool = False,
               state: Optional[dict] = None) -> None:
        import ray.train  # deferred: ray
        metrics = {"step": int(step), **metrics}
        if not checkpoint:
            # Metric-only reports are a round trip to the controller each; progress lines,
            # metrics.jsonl and TensorBoard already carry them, so Ray gets metrics with
            # each checkpoint only.
            return
        tmp = tempfile.mkdtemp(prefix="ganc-ckpt-")
        try:
            ckpt = None
            if self.is_chief and state is not None:
                torch.save(state, os.path.join(tmp, CKPT_FILE))
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=ckpt_dir_name(step))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if self.is_chief:
            self.store.put_json(self.key("latest.json"), {
                "step": int(step), "key": self.key(f"ray/{ckpt_dir_name(step)}/{CKPT_FILE}")})
            self.flush_log()


class LocalSession(Session):
    """One plain process, no Ray: checkpoints go straight to the store."""

    runner = "local"

    def __init__(self, spec: dict, device: Optional[torch.device] = None):
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() and spec.get("use_gpu")
                                  else "cpu")
        rank, world = common.distributed()
        super().__init__(spec, rank, world, device)

    def resume_state(self) -> Optional[dict]:
        return self._load_store_state()

    def report(self, step: int, metrics: dict, checkpoint: bool = False,
               state: Optional[dict] = None) -> None:
        if not checkpoint or state is None or not self.is_chief:
            return
        key = self.key(f"local/{ckpt_dir_name(step)}/{CKPT_FILE}")
        self.store.put_torch(key, state)
        self.store.put_json(self.key("latest.json"), {"step": int(step), "key": key})
        self.flush_log()


def _quiet_ray_train_reports() -> None:
    """Ray Train logs every ``report`` of a worker at INFO ("Reporting training result
    ...") from a logger named by its file path, which ``LoggingConfig`` does not reach;
    ganc's progress lines already say the same."""
    try:
        from ray.train.v2._internal.execution import context as train_context  # deferred: ray
        logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    except ImportError:  # pragma: no cover - other Ray versions
        pass


def open_session(spec: dict) -> Session:
    if spec.get("runner", "ray") == "local":
        return LocalSession(spec)
    return RaySession(spec)
