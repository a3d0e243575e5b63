"""The run context: the set-up every stage shares, below the stages.

    with stage_context(cfg, store) as ctx:     # connects Ray (joins or starts one) if needed
        ctx.cfg          # the config with the placement's sizes applied
        ctx.root, ctx.run            # the store and runs/<run_id>/ in it
        ctx.placement    # runs/<run_id>/placement.json (see ganc.placement)
        ctx.cluster      # what the Ray cluster has and can get (ganc.cluster)
        ctx.data         # where the dataset is (ganc.data.source.DataRef)
        ctx.data_root()  # a local folder holding it on this node
        ctx.worker_spec()  # what Ray workers need to set themselves up

:func:`open_context` checks, before any stage runs, that nothing the run depends on is a
path only this machine has while the cluster has (or can get) more than one node: a
``file://`` store without ``store.shared``, a local ``data.root`` without
``data.on_every_node`` fail with one line. Generated demo data and a local
``model.teacher_weights`` are uploaded to the store instead (so they reach every node).
Then it reads the run's placement, or decides and records it at the first submission.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from typing import Optional

from . import placement as placements
from .cluster import ClusterInfo, describe_now
from .config import RunConfig, validate
from .data.source import DataRef, demo_name, local_demo_data, local_path, upload_folder
from .errors import ConfigError
from .families import family_of
from .log import say
from .modelio import build_generator, teacher_spec
from .raylocal import init_local
from .store import Store, lease as leases, open_store, store_from_config

JOB_STARTED = time.time()      # this process's start: temporary keys older than it are
                               # leftovers of an earlier, interrupted job
DATASETS = "datasets"          # generated data uploaded for multi-node runs: <root>/datasets/
INPUTS = "inputs"              # local inputs uploaded for multi-node runs: <run>/inputs/


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


@dataclass
class RunContext:
    cfg: RunConfig
    root: Store
    run: Store
    placement: dict
    cluster: ClusterInfo
    data: DataRef
    lease: Optional[leases.Lease] = None   # this command's lease of the run

    def close(self) -> None:
        """Release the run's lease (held since :func:`open_context`)."""
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    @property
    def use_gpu(self) -> bool:
        return bool(self.placement["use_gpu"])

    @property
    def resources(self) -> dict:
        return dict(self.placement.get("resources") or {})

    @property
    def endpoint_url(self) -> str:
        return self.root.endpoint_url or self.cfg.store.endpoint_url or ""

    def data_root(self) -> str:
        """A local folder holding the dataset on this node (a URL is copied once)."""
        return self.data.local()

    def worker_spec(self) -> dict:
        """What a Ray worker needs to find the run, its data and its resources."""
        return {"store_url": self.run.url(), "root_url": self.root.url(),
                "endpoint_url": self.endpoint_url, "data": self.data.to_spec(),
                "use_gpu": self.use_gpu, "resources": self.resources,
                "multi_node": self.cluster.multi_node}

    def for_stage(self) -> "RunContext":
        """This context with a config of the stage's own (a stage may change its copy)."""
        return dataclasses.replace(self, cfg=copy.deepcopy(self.cfg))


# ---------------------------------------------------------------- checks
def _why_multi(cluster: ClusterInfo) -> str:
    if cluster.nodes > 1:
        return f"this Ray cluster has {cluster.nodes} nodes"
    return "this Ray cluster's autoscaler can add nodes"


def check_paths(cfg: RunConfig, root: Store, cluster: ClusterInfo) -> None:
    """One line when a multi-node cluster would need a path only this machine has."""
    if not cluster.multi_node:
        return
    why = _why_multi(cluster)
    if root.protocol == "file" and not cfg.store.shared:
        raise ConfigError(
            f"store.url {root.url()!r} is a folder on this machine and {why}, whose other "
            "nodes cannot reach it: use an s3://bucket/prefix store (or set store.shared=true "
            "if it is a filesystem mounted at the same path on every node)")
    if cfg.data.on_every_node:
        return
    if cfg.data.root and local_path(cfg.data.root) is not None:
        raise ConfigError(
            f"data.root {cfg.data.root!r} is a local folder and {why}: put the dataset on "
            "S3 and set data.root to its s3://bucket/prefix (or set data.on_every_node=true "
            "if the folder exists at the same path on every node)")
    absolute = [f for f in cfg.data.fid_real.split(",") if os.path.isabs(f.strip())]
    if absolute:
        raise ConfigError(
            f"data.fid_real {absolute[0].strip()!r} is a local folder and {why}: give the "
            "folders relative to data.root (e.g. trainB,testB)")


# ---------------------------------------------------------------- data and inputs
def resolve_data(cfg: RunConfig, root: Store, cluster: ClusterInfo) -> DataRef:
    """Where the dataset is. '' (generated demo data) is made here; on a multi-node cluster
    it is uploaded to ``<store>/datasets/<name>/`` once and read from there."""
    endpoint = root.endpoint_url or cfg.store.endpoint_url or ""
    d = cfg.data
    if d.root:
        path = local_path(d.root)
        if path is not None and not os.path.isdir(path):
            raise ConfigError(f"data.root {d.root!r}: folder not found")
        return DataRef(path or d.root, endpoint)
    folder = local_demo_data(d)
    if not cluster.multi_node:
        return DataRef(folder, endpoint)
    prefix = f"{DATASETS}/{demo_name(d)}"
    if not root.exists(f"{prefix}/demo.json"):
        upload_folder(root, prefix, folder, last="demo.json")
    return DataRef(root.url(prefix), endpoint)


def ship_teacher_weights(cfg: RunConfig, run: Store, cluster: ClusterInfo) -> str:
    """``model.teacher_weights`` as every node can read it: a local file is copied into the
    run (``inputs/teacher/<sha1>-<name>``) when the cluster has more than one node."""
    src = cfg.model.teacher_weights
    if not src or ("://" in src and not src.startswith("file://")):
        return src
    path = src[len("file://"):] if src.startswith("file://") else \
        os.path.abspath(os.path.expanduser(src))
    if not os.path.isfile(path):
        raise ConfigError(f"model.teacher_weights {src!r}: file not found")
    if not cluster.multi_node:
        # Absolute, from the driver's working directory: Tune trials (pruning) and Train
        # workers run in folders of their own, where a relative path names nothing.
        return path
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    key = f"{INPUTS}/teacher/{h.hexdigest()[:16]}-{os.path.basename(path)}"
    if not run.exists(key):
        run.put_file(key, path)
    return run.url(key)


# ---------------------------------------------------------------- placement
_MACS: dict = {}     # (teacher spec, data layout, size) -> MACs: measured once a process


def _teacher_macs(cfg: RunConfig):
    """MACs of the config's teacher at a size, as its family measures them
    (:meth:`ganc.families.Family.teacher_macs`), measured once per process for a teacher,
    data layout and size (the checks before a start and the run context both ask; a
    SPADE teacher takes seconds to profile)."""
    def at(size: int) -> float:
        m, d = cfg.model, cfg.data
        spec = teacher_spec(m)
        key = (repr(spec), d.kind, float(d.aspect_ratio), int(size))
        if key not in _MACS:
            _MACS[key] = family_of(m.teacher).teacher_macs(build_generator(spec), d, size)
        return _MACS[key]
    return at


def check_budgets(cfg: RunConfig) -> None:
    """One line when a MACs budget of the config is at or above its teacher's MACs
    (:func:`ganc.placement.check_budgets_below_teacher`); needs no Ray."""
    placements.check_budgets_below_teacher(cfg, _teacher_macs(cfg))


def teacher_config_of(cfg: RunConfig) -> str:
    """``model.teacher_config``, or for a sub-network teacher without one the channel config
    the model.json beside its weights names ('' for teachers that take none)."""
    return teacher_spec(cfg.model).config or ""


def resolve_placement(cfg: RunConfig, run: Store, cluster: ClusterInfo) -> dict:
    """The run's recorded placement, or (first submission) the one decided now, recorded."""
    if run.exists(placements.KEY):
        record = run.get_json(placements.KEY)
        placements.check_request(record, cfg, f"run {run.url()}")
        placements.check_crops(cfg, record)
        return record
    record = placements.decide(cfg, cluster, _teacher_macs(cfg))
    placements.check_crops(cfg, record)          # before the record is written
    run.put_json(placements.KEY, record)
    say(f"[placement] {run.url(placements.KEY)}: {record['device']} at "
        f"{record['crop_size']}px ({record['decided_by']})")
    return record


def open_context(cfg: RunConfig, store=None, *, cluster: Optional[ClusterInfo] = None
                 ) -> RunContext:
    """The context of a run (see the module docstring). Ray, when initialised, is asked
    what the cluster is; otherwise this machine is the cluster."""
    validate(cfg)
    root, run = open_run(cfg, store)
    cluster = cluster or describe_now()
    check_paths(cfg, root, cluster)
    check_budgets(cfg)                   # before writing anything
    # one writer per run: refused in one line naming the owner, before anything is written
    lease = leases.hold(run, existed=run.exists(placements.KEY))
    try:
        return _opened(cfg, root, run, cluster, lease)
    except BaseException:
        lease.release()
        raise


def _opened(cfg: RunConfig, root: Store, run: Store, cluster: ClusterInfo,
            lease: leases.Lease) -> RunContext:
    """The rest of :func:`open_context`, the run's lease held."""
    cleaned = run.clean_temp(older_than=JOB_STARTED)
    if cleaned:
        say(f"[store] removed {cleaned} temporary key(s) an interrupted job left in {run.url()}")
    record = resolve_placement(cfg, run, cluster)
    resolved = placements.apply(cfg, record)
    # a sub-network teacher's channel config, resolved while the model.json beside a local
    # model.teacher_weights is still at hand (shipped weights travel without it)
    resolved.model.teacher_config = teacher_config_of(cfg)
    resolved.model.teacher_weights = ship_teacher_weights(cfg, run, cluster)
    data = resolve_data(resolved, root, cluster)
    return RunContext(resolved, root, run, record, cluster, data, lease)


def ray_storage(run: Store, stage: str):
    """(storage_path, storage_filesystem) for Ray Train's / Tune's files of a stage.

    For S3 the filesystem is the store's s3fs (endpoint and region only) behind pyarrow;
    it is pickled into Ray's controller, workers and ``tuner.pkl``, so it carries no
    credentials: whoever unpickles it signs with its own node's credential chain."""
    if run.protocol == "file":
        path = os.path.join(run.root, stage)
        os.makedirs(path, exist_ok=True)
        return path, None
    return f"{run.root}/{stage}", run.pyarrow_fs()


def keep_credentials_out_of_tune() -> None:
    """Ray Tune copies AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the session tokens from
    the driver's environment into every trial's ``runtime_env``
    (``ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE``), which each node's runtime
    env agent logs and Ray's state API reports. Trials use their own node's credential
    chain like every other worker: take those names out of what Tune propagates. Call it
    before a Tuner starts trials."""
    from ray.tune.execution import class_cache  # deferred: ray
    class_cache.ENV_VARS_TO_PROPAGATE = {
        name for name in class_cache.ENV_VARS_TO_PROPAGATE if not name.startswith("AWS_")}


def keep_pickles_out_of_tune() -> None:
    """Ray Tune reads a failed trial's error back from the trial's folder in the store
    (``error.pkl``, unpickled: ``Trial.get_pickled_error``) when it builds the results;
    whoever can write the store could plant one there. Results carry the error's text
    (``error.txt``) instead. Call it before a Tuner starts trials (issue 28)."""
    from ray.tune.experiment.trial import Trial  # deferred: ray
    Trial.get_pickled_error = _no_pickled_error


def _no_pickled_error(trial):
    return None


@contextlib.contextmanager
def ray_connection(num_cpus: Optional[int] = None):
    """Ray for the duration of the block: joins or starts one unless this process is
    connected already (then leaves it so)."""
    started = init_local(num_cpus=num_cpus)
    try:
        yield
    finally:
        if started:
            import ray  # deferred: ray
            ray.shutdown()


def run_lease(cfg: RunConfig, store=None) -> leases.Lease:
    """This command's lease of the run of ``cfg`` (one writer per run, :mod:`ganc.store.
    lease`): taken before Ray starts, so a second command on a running run is refused at
    once, in one line naming the owner; release it (``.release()`` / ``.close()``)."""
    run = open_run(cfg, store)[1]
    return leases.hold(run, existed=run.exists(placements.KEY))


@contextlib.contextmanager
def stage_context(cfg: RunConfig, store=None, *, ray: bool = True,
                  num_cpus: Optional[int] = None, ctx: Optional[RunContext] = None):
    """:func:`open_context` with Ray connected for the block (``ray=False``: no Ray; this
    machine is the cluster), the run's lease released at its end. With ``ctx`` (the
    pipeline's, which holds Ray and the lease already) that context is the stage's, for a
    config of its own."""
    if ctx is not None:
        yield ctx.for_stage()
        return
    with contextlib.closing(run_lease(cfg, store)), \
            (ray_connection(num_cpus) if ray else contextlib.nullcontext()), \
            contextlib.closing(open_context(cfg, store)) as opened:
        yield opened


__all__ = ["RunContext", "open_context", "check_budgets", "stage_context", "ray_connection",
           "open_run", "run_lease", "run_id_of", "check_paths", "resolve_data",
           "resolve_placement", "ray_storage", "keep_credentials_out_of_tune",
           "keep_pickles_out_of_tune"]
