"""FID actor pool: N Ray actors, each holding the Inception extractor, the eval split and
the cached real statistics, scoring sub-generators in parallel.

    pool = FidPool(EvalSplit.from_folders(inputs="val_A", real="val_B"), num_actors=2,
                   store=store)
    pool.register_model("super", supernet)                  # weights put in Ray once
    scores = pool.score([SubnetSpec("super", "16_16_32_16_32_32_16_16"), ...])

A spec names a registered model (a supernet plus a channel config, or a plain generator
with no config); the model's weights go into the Ray object store once per registration
and each actor builds the model once, so a task carries only the spec. One
:class:`PoolDispatcher` (an async Ray actor) owns the FID actors and schedules the specs of
every caller onto them: the driver's ``FidPool.score`` and any other process holding a
:class:`PoolClient` (``pool.client()``, e.g. the search's Tune trials) go through the same
queue and the same replace-and-retry. An actor that dies mid-score or answers no task within
``timeout_s`` is replaced (same inputs, same statistics) and its unfinished work is re-run;
every spec gets exactly one :class:`Score` (``status='failed'`` with its ``error`` when the
spec's own scoring fails).

Only the driver touches the store: it reads the cached real statistics, or has the first
actor compute them from images it sends through the object store and writes them (so
actors need no store credentials and no shared filesystem). The driver also makes sure of
the Inception weights (SHA-1 checked) and ships them: actors on its node use its file,
actors on other nodes a content-addressed copy under the store's root
(``fid-weights/<sha1>.pt``), downloaded once per node into the node's cache.

On a GPU placement each actor takes ``1 / ceil(N / G)`` of a GPU (G: the GPUs the cluster
has or its autoscaler can add), so the N actors always fit on the G GPUs; otherwise one
CPU each. Every actor also asks for ``resources`` (``scale.resources``). The N actors are
requested together as one placement group (what the autoscaler scales for), granted within
``wait_s`` or refused with one line naming the missing resource; a replaced actor takes the
dead one's bundle. :class:`LocalPool` runs the same scoring in-process, without Ray
(tests, and the baseline of ``bench/fid_pool.py``).

The parts: :mod:`.specs` (specs, splits, scores), :mod:`.models` (model entries, sub-network
selection, batch-norm recalibration), :mod:`.scoring` (one actor's scoring state, the
in-process pool), :mod:`.dispatcher` (the Ray actors, scheduling and retries) and this module
(the driver's pool and the client other processes score through); their public names are
importable from here.
"""
from __future__ import annotations

import math
import uuid
from typing import Any, Optional, Sequence

from ..cluster import current
from ..errors import ConfigError, GancError
from ..placement import gpu_share
from ..resources import reserve, worker_bundle
from .dispatcher import (DISPATCHER_PREFIX, START_TIMEOUT_S, PoolDispatcher, dispatcher_class,
                         init_error, unwrap_error)
from .fid import RealStats, cached_real_stats
from .inception_weights import ship_weights
from .models import CALIBRATION_BATCH, build_from_entry, model_entry, recalibrated
from .scoring import (DEFAULT_TIMEOUT_S, MODEL_CACHE, LocalPool, ScoringState, fid_opts,
                      segmenter_opts)
from .specs import EvalSplit, Score, SubnetSpec


class PoolClient:
    """A picklable handle on a pool's dispatcher: what Tune trials (or any other process)
    score through. Same ``score`` as :class:`FidPool`."""

    def __init__(self, dispatcher, entries: dict, real: Optional[list] = None):
        self.dispatcher = dispatcher
        self.entries = dict(entries)        # model name -> [ObjectRef of its entry]
        self.real = real                    # [ObjectRef of RealStats], sent with each call

    def submit(self, specs: Sequence[SubnetSpec], kid: Optional[bool] = None):
        """The ObjectRef of the scores of ``specs`` (see :meth:`score`)."""
        specs = list(specs)
        for spec in specs:
            if spec.model not in self.entries:
                raise ConfigError(f"spec {spec}: no model registered as {spec.model!r}")
        used = {s.model: self.entries[s.model] for s in specs}
        return self.dispatcher.score.remote(specs, used, kid, self.real)

    def score(self, specs: Sequence[SubnetSpec], kid: Optional[bool] = None,
              failures: str = "raise") -> list[Score]:
        """One Score per spec, in the order given. ``kid``: compute KID (None: the pool's
        ``fid.kid``). ``failures='raise'``: a spec whose scoring failed raises its one-line
        error; ``'record'``: it comes back with ``status='failed'`` and ``error``."""
        import ray      # deferred: Ray stays optional for in-process scoring
        if failures not in ("raise", "record"):
            raise ConfigError(f"failures must be 'raise' or 'record', got {failures!r}")
        specs = list(specs)
        if not specs:
            return []
        try:
            scores = ray.get(self.submit(specs, kid))
        except ray.exceptions.RayTaskError as e:
            raise unwrap_error(e, "FID pool") from None
        if failures == "raise":
            bad = next((s for s in scores if s.status != "ok"), None)
            if bad is not None:
                raise GancError(bad.error)
        return scores

    def stats(self) -> dict:
        import ray      # deferred: Ray stays optional for in-process scoring
        return ray.get(self.dispatcher.stats.remote())


def resolve_num_actors(num_actors: int, use_gpu: bool, gpus: Optional[float]) -> int:
    """``fid.num_actors``; 0 (auto): one per GPU on a GPU placement, else one per CPU the
    cluster has free now (at least 1)."""
    n = int(num_actors)
    if n < 0:
        raise ConfigError(f"fid.num_actors must be >= 0 (0: auto), got {num_actors}")
    if n > 0:
        return n
    if use_gpu:
        return max(1, int(math.floor(float(gpus or 1) + 1e-9)))
    import ray      # deferred: Ray stays optional for in-process scoring
    return max(1, int(math.floor(float(ray.available_resources().get("CPU", 1)) + 1e-9)))


class FidPool:
    """N Ray actors scoring specs in parallel, behind one :class:`PoolDispatcher`; see the
    module docstring.

    Ray must already be initialised (``ray.init`` by the caller). ``num_actors`` 0: auto
    (:func:`resolve_num_actors`). ``use_gpu``: None takes GPUs when the cluster has some now;
    ``gpus``: the GPUs to share (default: what the cluster has or its autoscaler can add).
    ``num_gpus`` fixes the share per actor instead; without a GPU each actor takes
    ``num_cpus`` CPUs. ``timeout_s``: per scoring task. ``test_hang``: a test hook, see
    :class:`_ScoringState`.
    """

    def __init__(self, split: EvalSplit, num_actors: int = 1, store=None, fid=None,
                 num_gpus: Optional[float] = None, num_cpus: float = 1,
                 max_attempts: int = 3, per_actor_queue: int = 2, *,
                 use_gpu: Optional[bool] = None, gpus: Optional[float] = None,
                 resources: Optional[dict] = None, wait_s: float = 900.0,
                 timeout_s: Optional[float] = None, test_hang: Optional[dict] = None):
        import ray      # deferred: Ray stays optional for in-process scoring
        if not ray.is_initialized():
            raise GancError("the FID pool needs Ray: call ray.init() first")
        self._ray = ray
        self.split = split
        self.opts = fid_opts(fid, split)
        if test_hang:
            self.opts["test_hang"] = dict(test_hang)
        cluster = current()
        if num_gpus is None:
            if use_gpu is None:
                use_gpu = float(cluster.resources.get("GPU", 0) or 0) > 0
            share_of = gpus if gpus is not None else cluster.capacity("GPU")
            self.num_actors = resolve_num_actors(num_actors, use_gpu, share_of)
            num_gpus = gpu_share(self.num_actors, max(1.0, share_of)) if use_gpu else 0.0
        else:
            self.num_actors = resolve_num_actors(num_actors, float(num_gpus) > 0, 1)
        self.max_attempts = int(max_attempts)
        self.timeout_s = float(timeout_s if timeout_s is not None else
                               self.opts.get("timeout_s") or DEFAULT_TIMEOUT_S)
        if not self.timeout_s > 0:
            raise ConfigError(f"fid.timeout_s must be positive, got {self.timeout_s:g}")
        self.num_gpus = float(num_gpus)
        self.num_cpus = float(num_cpus) if self.num_gpus == 0 else 0.0
        self.resources = {k: float(v) for k, v in (resources or {}).items()}
        # The Inception weights, checked here and shipped to the actors' nodes.
        try:
            self.opts["weights_ref"] = ship_weights(
                self.opts.get("extractor", "auto"), self.opts.get("weights", ""),
                store if (store is not None and cluster.multi_node) else None)
        except GancError as e:
            raise GancError(f"FID pool: {e}") from None
        bundle = worker_bundle(self.num_cpus, self.num_gpus > 0, self.resources,
                               gpu=self.num_gpus)
        self._pg = reserve([bundle] * self.num_actors, wait_s,
                           f"the FID pool's {self.num_actors} actors", cluster, keep=True)
        self._entries: dict[str, Any] = {}          # name -> [ObjectRef of the model entry]
        self.dispatcher = None
        try:
            self._inputs_ref = ray.put(split.payload())
            actor_opts = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
            if self.resources:
                actor_opts["resources"] = dict(self.resources)
            known = isinstance(split.real, RealStats)
            real_ref = ray.put(split.real) if known else None
            # The dispatcher restarts (and its calls are retried) if its process dies; it
            # owns the FID actors, so a restarted one starts them afresh in the same bundles.
            self.name = f"{DISPATCHER_PREFIX}{uuid.uuid4().hex[:8]}"
            self.dispatcher = dispatcher_class().options(
                name=self.name, num_cpus=0, max_restarts=3, max_task_retries=3,
                max_concurrency=1000).remote(
                self.opts, [self._inputs_ref], None if real_ref is None else [real_ref],
                self.num_actors, actor_opts, self._pg, self.max_attempts, per_actor_queue,
                self.timeout_s, f"fid-actor-{uuid.uuid4().hex[:6]}")
            if known:
                self.real: RealStats = split.real
            else:   # cached in the store (read by this driver), or computed by the first actor
                ext_id = self._get(self.dispatcher.call_first.remote("info"))["extractor"]
                source = split.real

                def compute():
                    images = ray.put([source.load(p) for p in source.paths()])
                    return self._get(self.dispatcher.call_first.remote("compute_real",
                                                                       [images]))

                self.real = cached_real_stats(source, ext_id, store, split.label, compute,
                                              keep_features=bool(self.opts.get("kid", False)))
                real_ref = ray.put(self.real)
                self._get(self.dispatcher.set_real.remote([real_ref]))
            self._real_ref = real_ref
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------- plumbing
    def _get(self, ref):
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayActorError as e:
            if getattr(e, "actor_init_failed", False):
                raise init_error(e) from None
            raise GancError("FID actor died: " + str(e).strip().splitlines()[0][:200]) from None
        except self._ray.exceptions.RayTaskError as e:
            raise unwrap_error(e) from None

    @property
    def actors(self) -> list:
        """The live actor handles, one per slot (tests kill them)."""
        return self._get(self.dispatcher.actors.remote())

    @property
    def replacements(self) -> int:
        return int(self.stats()["restarts"])

    def stats(self) -> dict:
        """Counts of the dispatcher: restarts, timeouts, retries, failed, scored, actors."""
        return self._get(self.dispatcher.stats.remote())

    def register_model(self, name: str, model=None, **kw) -> str:
        """Put a model's weights into the Ray object store once; specs refer to ``name``.

        Registering a name again replaces its model (actors rebuild it on next use)."""
        self._entries[name] = [self._ray.put(model_entry(model, **kw))]
        return name

    def unregister_model(self, name: str) -> None:
        """Drop a model (its weights leave the object store once no task needs them)."""
        self._entries.pop(name, None)

    def client(self) -> PoolClient:
        """A picklable handle for other processes (Tune trials) to score through."""
        return PoolClient(self.dispatcher, self._entries, [self._real_ref])

    # ----------------------------------------------------------- scoring
    def score(self, specs: Sequence[SubnetSpec], kid: Optional[bool] = None,
              failures: str = "raise") -> list[Score]:
        """One Score per spec, in the order given (see :meth:`PoolClient.score`)."""
        return self.client().score(specs, kid=kid, failures=failures)

    def info(self) -> list[dict]:
        return self._get(self.dispatcher.call_all.remote("info"))

    def close(self) -> None:
        if getattr(self, "dispatcher", None) is not None:
            try:
                self._ray.get(self.dispatcher.close.remote(), timeout=60)
            except Exception:
                pass
            try:
                self._ray.kill(self.dispatcher, no_restart=True)
            except Exception:
                pass
            self.dispatcher = None
        if getattr(self, "_pg", None) is not None:
            # deferred: Ray stays optional for in-process scoring
            from ray.util.placement_group import remove_placement_group
            try:
                remove_placement_group(self._pg)
            except Exception:
                pass
            self._pg = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["FidPool", "PoolClient", "LocalPool", "PoolDispatcher", "ScoringState",
           "SubnetSpec", "Score", "EvalSplit", "model_entry", "build_from_entry",
           "recalibrated", "segmenter_opts", "fid_opts", "resolve_num_actors",
           "CALIBRATION_BATCH", "DEFAULT_TIMEOUT_S", "DISPATCHER_PREFIX", "MODEL_CACHE",
           "START_TIMEOUT_S"]
