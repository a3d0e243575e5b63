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
"""
from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import ConfigError, DataError, GancError
from .fid import RealStats, Scorer, cached_real_stats, extract_features
from .inception import load_extractor, load_shipped_extractor, ship_weights
from .sources import FolderSource


MODEL_CACHE = 8     # built models each actor keeps


# ---------------------------------------------------------------- specs and results
@dataclass(frozen=True)
class SubnetSpec:
    """What to score: a registered model and, for a supernet, a channel config."""

    model: str
    config: Optional[str] = None        # '16_16_32_16_32_32_16_16'; None: run it as is
    tag: str = ""                       # carried to the Score unchanged

    def __post_init__(self):
        if self.config is not None and not isinstance(self.config, str):
            object.__setattr__(self, "config", str(self.config))   # ChannelConfig -> str

    def __str__(self) -> str:
        return f"{self.model}[{self.config}]" if self.config else self.model


@dataclass
class Score:
    index: int                          # position of the spec in the list given to score()
    spec: SubnetSpec
    fid: float
    kid_mean: Optional[float] = None
    kid_std: Optional[float] = None
    n_fake: int = 0
    miou: Optional[float] = None        # ESPNet-CamVid mIoU (label-map data only)
    pixel_acc: Optional[float] = None
    seconds: float = 0.0                # scoring time inside the actor
    actor: str = ""                     # who scored it ('local' in-process)
    attempts: int = 1                   # 2+ when an actor died while scoring it
    status: str = "ok"                  # 'failed': the spec's own scoring failed (error)
    error: str = ""

    def to_dict(self) -> dict:
        return {"index": self.index, "model": self.spec.model, "config": self.spec.config,
                "tag": self.spec.tag, "fid": self.fid, "kid_mean": self.kid_mean,
                "kid_std": self.kid_std, "n_fake": self.n_fake, "miou": self.miou,
                "pixel_acc": self.pixel_acc, "seconds": self.seconds,
                "actor": self.actor, "attempts": self.attempts, "status": self.status,
                "error": self.error}


@dataclass
class EvalSplit:
    """Generator inputs and real targets of one evaluation split.

    ``inputs``: a FolderSource (read once by the driver) or a tensor, uint8 or [-1, 1]
    float (N, 3, H, W). ``real``: a FolderSource of real target images, or precomputed
    RealStats. ``label`` names it in the statistics cache (e.g. ``facades/val/B``).

    Label-map data (SPADE, ``ganc.data.splits.label_map_split``): ``inputs`` are uint8 class
    indices (N, 1, H, W), one-hot with ``input_classes`` channels when scored; ``gt`` the
    label maps at their own size, for the ESPNet-CamVid mIoU of every score; ``calib``
    uint8 (n, 1, H, W) training label maps that re-estimate the batch-norm statistics of a
    model registered with ``recalibrate=True`` before it is scored.
    """

    inputs: Union[FolderSource, torch.Tensor]
    real: Union[FolderSource, RealStats]
    label: str = ""
    input_classes: int = 0
    gt: Optional[list] = None
    calib: Optional[np.ndarray] = None

    @classmethod
    def from_folders(cls, inputs, real, size: int = 0, label: str = "",
                     input_crop: str = "full", real_crop: str = "full") -> "EvalSplit":
        """Inputs resized to ``size`` (the test-time transform); real images as they are."""
        inp = FolderSource(_folders(inputs), input_crop, size)
        rl = real if isinstance(real, RealStats) else FolderSource(_folders(real), real_crop, 0)
        return cls(inp, rl, label)

    @classmethod
    def from_data_config(cls, data, name: str = "") -> "EvalSplit":
        """The eval split of a ``DataConfig`` whose ``root`` is a local folder (aligned: A|B
        halves of ``<root>/<eval_split>``; unaligned: ``<eval_split>A`` ->
        ``<eval_split>B``, or ``fid_real`` folders). ``name`` labels the dataset in the
        statistics cache (default: the folder's name)."""
        if not data.root:
            raise ConfigError("data.root is empty: no eval split to score on")
        a_to_b = data.direction == "AtoB"
        if data.kind == "aligned":
            folder = os.path.join(data.root, data.eval_split)
            inp = FolderSource((folder,), "left" if a_to_b else "right", data.crop_size)
            real = FolderSource((folder,), "right" if a_to_b else "left", 0)
            if data.fid_real:
                real = FolderSource(_real_folders(data), "full", 0)
        elif data.kind == "unaligned":
            src, dst = ("A", "B") if a_to_b else ("B", "A")
            inp = FolderSource((os.path.join(data.root, data.eval_split + src),), "full",
                               data.crop_size)
            real = FolderSource(_real_folders(data) if data.fid_real else
                                (os.path.join(data.root, data.eval_split + dst),), "full", 0)
        else:
            raise ConfigError(f"data.kind {data.kind!r} is not one of: aligned, unaligned")
        name = name or os.path.basename(os.path.normpath(data.root))
        label = f"{name}/{data.eval_split}/{data.direction}"
        return cls(inp, real, label)

    def load_inputs(self) -> np.ndarray:
        """uint8 (N, 3, H, W) array of the generator inputs."""
        x = self.inputs
        if isinstance(x, FolderSource):
            x = x.load_all()
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[0] == 0:
            raise DataError("eval inputs must be a non-empty (N, C, H, W) tensor or a folder")
        if x.is_floating_point():
            x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.contiguous().numpy()

    def payload(self):
        """What the actors get: the inputs (uint8 array), or for label-map data a dict of
        the inputs, ``input_classes``, ``gt`` and ``calib``."""
        x = self.load_inputs()
        if not self.input_classes:
            return x
        return {"x": x, "input_classes": int(self.input_classes), "gt": self.gt,
                "calib": self.calib}


def _real_folders(data) -> tuple:
    """``data.fid_real``: folders relative to the dataset's root (absolute paths as given)."""
    return tuple(os.path.join(data.root, f) for f in _folders(data.fid_real))


def _folders(x) -> tuple:
    if isinstance(x, str):
        return tuple(p.strip() for p in x.split(",") if p.strip())
    if isinstance(x, os.PathLike):
        return (os.fspath(x),)
    return tuple(os.fspath(p) for p in x)


# ---------------------------------------------------------------- model entries
def model_entry(model: Optional[torch.nn.Module] = None, *, arch: Optional[str] = None,
                state: Optional[dict] = None, recalibrate: bool = False, **build_kw) -> dict:
    """What a pool ships once per registered model: ``arch`` + kwargs + state dict
    (rebuilt with ``ganc.nn.build``), or the module itself (pickled by Ray; copied once
    in-process), for models without a registered arch. ``recalibrate``: re-estimate the
    batch-norm statistics of each scored (sub-)network on the split's calibration label
    maps first (SPADE supernets and their sub-networks)."""
    if model is None and arch is None:
        raise ConfigError("register a model instance or an arch name with its state dict")
    if arch is not None:
        if state is None and model is not None:
            state = model.state_dict()
        if state is None:
            raise ConfigError(f"model {arch!r}: give its state dict")
        return {"arch": arch, "kw": dict(build_kw), "recalibrate": bool(recalibrate),
                "state": {k: v.detach().cpu() for k, v in state.items()}}
    return {"module": model, "recalibrate": bool(recalibrate)}


def build_from_entry(entry: dict) -> torch.nn.Module:
    """The model of an entry: a private copy (the caller's module is never changed)."""
    if "module" in entry:
        import copy
        return copy.deepcopy(entry["module"]).eval()
    from .. import nn as gnn
    model = gnn.build(entry["arch"], **entry["kw"])
    from ..weights import check_fit
    check_fit(model, entry["state"], f"registered {entry['arch']}", entry["arch"])
    model.load_state_dict(entry["state"], strict=True)
    return model.eval()


def _config_for(model: torch.nn.Module, spec: SubnetSpec):
    from .. import nn as gnn
    is_super = isinstance(model, gnn.SUPERNETS)
    if spec.config is None:
        return None
    if not is_super:
        raise ConfigError(f"spec {spec}: model {spec.model!r} is not a supernet; "
                          "give no channel config")
    return model.parse_config(spec.config)


CALIBRATION_BATCH = 16      # label maps per batch of the batch-norm recalibration


def recalibrated(model: torch.nn.Module, config, calib: np.ndarray, classes: int):
    """A copy of ``model`` (at ``config``: its extracted sub-network) whose batch-norm
    statistics are re-estimated on the calibration label maps (uint8 (n, 1, H, W))."""
    import copy
    from .. import nn as gnn
    from ..data.camvid import one_hot
    from ..nn.calibrate import recalibrate_bn
    net = gnn.extract_subnet(model, config) if config is not None else copy.deepcopy(model)
    device = next(model.parameters()).device
    labels = torch.from_numpy(np.array(calib))   # a copy: object-store arrays are read-only
    recalibrate_bn(net.to(device), (one_hot(labels[i:i + CALIBRATION_BATCH, 0].long(), classes)
                                    for i in range(0, labels.shape[0], CALIBRATION_BATCH)))
    return net.eval()


class _ScoringState:
    """Extractor, eval inputs, real statistics and built models: one per actor/process."""

    def __init__(self, fid_opts: dict, inputs, real: Optional[RealStats]):
        self.opts = dict(fid_opts)
        if self.opts.get("weights_ref"):     # shipped by the pool's driver
            self.extractor = load_shipped_extractor(self.opts["weights_ref"])
        else:
            self.extractor = load_extractor(self.opts.get("extractor", "auto"),
                                            self.opts.get("weights", ""))
        labels = inputs if isinstance(inputs, dict) else {"x": inputs}
        inputs = labels["x"]
        self.input_classes = int(labels.get("input_classes") or 0)
        self.gt = labels.get("gt")
        self.calib = labels.get("calib")
        self.segmenter = None
        if self.gt is not None:              # label-map data: every score has its mIoU
            from .miou import Segmenter
            seg = self.opts.get("segmenter")
            self.segmenter = (_segmenter_from(seg, self.extractor.device) if seg else
                              Segmenter.load(device=self.extractor.device))
        self.inputs = torch.from_numpy(np.array(inputs, copy=True))
        self.real = real
        self.models: dict = {}          # insertion order = least recently used first

    def compute_real(self, images: list) -> RealStats:
        """Statistics of real images given as uint8 (3, H, W) tensors (no store access)."""
        from .fid import stats_of_features
        from .sources import _group_same_shape
        feats = extract_features(self.extractor,
                                 _group_same_shape(images, self.opts.get("batch_size", 16)),
                                 self.opts.get("batch_size", 16), "real images")
        self.real = stats_of_features(feats, self.extractor.id,
                                      bool(self.opts.get("kid", False)))
        return self.real

    def set_real(self, real: RealStats) -> None:
        self.real = real

    def _maybe_hang(self, spec: SubnetSpec) -> None:
        """Test hook (``test_hang`` of the pool: ``{"config", "seconds", "marker"}``): the
        first scoring of that config anywhere (``marker``: a file made then) sleeps, as a
        stuck device would."""
        hang = self.opts.get("test_hang")
        if not hang or spec.config != hang.get("config"):
            return
        try:
            fd = os.open(hang["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        time.sleep(float(hang.get("seconds", 3600)))

    def score(self, spec: SubnetSpec, entry, kid: Optional[bool] = None) -> dict:
        """FID (and KID when ``kid``, default: the pool's ``fid.kid``) of one spec."""
        self._maybe_hang(spec)
        if self.real is None:
            raise GancError("FID actor has no real statistics")
        # Built models are cached by what was registered (the ObjectRef, or the entry
        # itself in-process), so re-registering a name with new weights is never served
        # stale; the least recently used beyond MODEL_CACHE are dropped.
        key = entry[0].hex() if isinstance(entry, list) else entry["key"]
        cached = self.models.pop(key, None)
        if cached is None:
            if isinstance(entry, list):     # [ObjectRef]: fetched once, then cached
                import ray
                entry = ray.get(entry[0])
            cached = (build_from_entry(entry).to(self.extractor.device),
                      bool(entry.get("recalibrate")))
        self.models[key] = cached
        while len(self.models) > MODEL_CACHE:
            self.models.pop(next(iter(self.models)))
        model, recalibrate = cached
        config = _config_for(model, spec)
        if recalibrate and self.calib is not None:
            model, config = recalibrated(model, config, self.calib, self.input_classes), None
        scorer = Scorer(self.extractor, self.real, self.inputs,
                        batch_size=self.opts.get("batch_size", 16),
                        kid=bool(self.opts.get("kid", False) if kid is None else kid),
                        kid_subset_size=int(self.opts.get("kid_subset_size", 1000)),
                        input_classes=self.input_classes,
                        miou=None if self.segmenter is None else (self.segmenter, self.gt))
        return scorer.score(model, config)


def _segmenter_from(seg: dict, device):
    """The ESPNet-CamVid segmenter from the weights' bytes the driver shipped."""
    from .espnet import load_espnet
    from .miou import Segmenter
    return Segmenter(load_espnet(seg["bytes"], name=seg.get("name")), device=device)


def segmenter_opts(weights=None) -> dict:
    """The ESPNet-CamVid weights (found on the driver, :func:`ganc.metrics.miou.find_weights`)
    as bytes for the actors: they may run on nodes without the file."""
    from .miou import find_weights
    path = find_weights(weights)
    return {"bytes": path.read_bytes(), "name": str(path)}


def _fid_opts(fid, split: Optional["EvalSplit"] = None) -> dict:
    """The scoring options the actors get; on label-map data (``split.gt``) with the
    ESPNet-CamVid segmenter's weights as bytes (:func:`segmenter_opts`)."""
    opts = _fid_settings(fid)
    if split is not None and split.gt is not None and "segmenter" not in opts:
        opts["segmenter"] = segmenter_opts()
    return opts


def _fid_settings(fid) -> dict:
    if fid is None:
        from ..config import FidConfig
        fid = FidConfig()
    if isinstance(fid, dict):
        return dict(fid)
    return {"extractor": fid.extractor, "weights": fid.weights, "batch_size": fid.batch_size,
            "kid": fid.kid, "kid_subset_size": fid.kid_subset_size,
            "timeout_s": getattr(fid, "timeout_s", DEFAULT_TIMEOUT_S)}


def _to_score(i: int, spec: SubnetSpec, res: dict, actor: str, attempts: int) -> Score:
    miou, acc = res.get("miou"), res.get("pixel_acc")
    return Score(i, spec, float(res["fid"]), res.get("kid_mean"), res.get("kid_std"),
                 int(res.get("n_fake", 0)), None if miou is None else float(miou),
                 None if acc is None else float(acc), float(res.get("seconds", 0.0)), actor,
                 attempts)


# ---------------------------------------------------------------- in-process
class LocalPool:
    """The pool's API, scoring one spec after another in this process (no Ray)."""

    def __init__(self, split: EvalSplit, store=None, fid=None):
        self.split = split
        self.opts = _fid_opts(fid, split)
        self.state = _ScoringState(self.opts, split.payload(), None)
        if isinstance(split.real, RealStats):
            self.state.set_real(split.real)
        else:
            source = split.real
            self.state.set_real(cached_real_stats(
                source, self.state.extractor.id, store, split.label,
                lambda: self.state.compute_real([source.load(p) for p in source.paths()]),
                keep_features=bool(self.opts.get("kid", False))))
        self.entries: dict[str, dict] = {}

    @property
    def real(self) -> RealStats:
        return self.state.real

    def register_model(self, name: str, model=None, **kw) -> str:
        entry = model_entry(model, **kw)
        entry["key"] = uuid.uuid4().hex
        self.entries[name] = entry
        return name

    def unregister_model(self, name: str) -> None:
        self.entries.pop(name, None)

    def score(self, specs: Sequence[SubnetSpec], kid: Optional[bool] = None,
              failures: str = "raise") -> list[Score]:
        """One Score per spec, in order (arguments as :meth:`PoolClient.score`)."""
        if failures not in ("raise", "record"):
            raise ConfigError(f"failures must be 'raise' or 'record', got {failures!r}")
        out = []
        for i, spec in enumerate(specs):
            if spec.model not in self.entries:
                raise ConfigError(f"spec {spec}: no model registered as {spec.model!r}")
            try:
                s = _to_score(i, spec, self.state.score(spec, self.entries[spec.model], kid),
                              "local", 1)
            except Exception as e:
                if failures == "raise":
                    raise
                s = _failed(i, spec, f"scoring {spec} failed: {type(e).__name__}: {e}",
                            "local", 1)
            if s.status == "ok" and not math.isfinite(s.fid):
                s.status, s.error = "failed", f"FID is {s.fid} (not finite)"
            if s.status != "ok" and failures == "raise":
                raise GancError(f"scoring {spec} failed: {s.error}")
            out.append(s)
        return out

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- Ray
_ACTOR_CLASS = None
_DISPATCHER_CLASS = None
DEFAULT_TIMEOUT_S = 600.0
DISPATCHER_PREFIX = "ganc-fid-pool-"   # named actor: tests and tools find a running pool
START_TIMEOUT_S = 900.0     # an actor not up (Inception loaded) by then is replaced


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is not None:
        return _ACTOR_CLASS
    import ray

    @ray.remote
    class FidActor:
        def __init__(self, fid_opts, inputs, real):
            self.state = _ScoringState(fid_opts, ray.get(inputs[0]),
                                       None if real is None else ray.get(real[0]))

        def compute_real(self, images):
            return self.state.compute_real(ray.get(images[0]))

        def set_real(self, real):
            self.state.set_real(ray.get(real[0]))

        def score(self, spec, entry, kid=None):
            return self.state.score(spec, entry, kid)

        def info(self):
            return {"pid": os.getpid(), "threads": torch.get_num_threads(),
                    "extractor": self.state.extractor.id,
                    "device": str(self.state.extractor.device)}

    _ACTOR_CLASS = FidActor
    return FidActor


@dataclass
class _Slot:
    actor: Any
    name: str
    bundle: int = 0                 # its bundle of the pool's placement group
    generation: int = 0
    inflight: int = 0
    ready: Any = None               # ObjectRef of its first info() call: it is up


class PoolDispatcher:
    """The pool's one scheduler: owns the FID actors and hands them work from any number
    of concurrent ``score`` calls (an async Ray actor, so the search's trials, the driver and
    a pruning scorer all reach the same actors through it, each call a batch of specs).

    - the least busy actor first, up to ``per_actor_queue`` tasks queued per actor (the next
      task is already there when one finishes: no idle gap between scorings);
    - an actor that dies (``ray.kill``, node loss, a crashed process) or does not answer
      within ``timeout_s`` (per task, counted from when it could start) is killed and
      replaced in its bundle, and its tasks go back to the front of the queue: an
      infrastructure failure never becomes a result; after ``max_attempts`` tries of one
      spec the call fails (its caller, e.g. a Tune trial, restarts from its checkpoint);
    - a spec whose own scoring fails (an exception in the model, a non-finite FID) is a
      result with ``status='failed'`` and its reason;
    - counts of restarts, timeouts, retries and failures are kept for the summary.
    """

    def __init__(self, opts: dict, inputs: list, real: Optional[list], num_actors: int,
                 actor_options: dict, pg, max_attempts: int, per_actor_queue: int,
                 timeout_s: float, prefix: str):
        self.opts = opts
        self.inputs = inputs            # [ObjectRef] (kept as a ref: actors fetch it)
        self.real = real                # [ObjectRef] of RealStats, or None until computed
        self.actor_options = actor_options
        self.pg = pg
        self.max_attempts = int(max_attempts)
        self.per_actor_queue = max(1, int(per_actor_queue))
        self.timeout_s = float(timeout_s)
        self.prefix = prefix
        self.serial = 0
        self.counts = {"restarts": 0, "timeouts": 0, "retries": 0, "failed": 0, "scored": 0}
        self.slots = []
        for i in range(num_actors):
            actor = self._new_actor(i)
            self.slots.append(_Slot(actor, self._name(), i, ready=actor.info.remote()))
        self._cond = None               # asyncio.Condition, made on the actor's event loop

    # --------------------------------------------------------- actors
    def _name(self) -> str:
        self.serial += 1
        return f"{self.prefix}-{self.serial}"

    def _new_actor(self, bundle: int):
        opts = dict(self.actor_options)
        if self.pg is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self.pg, placement_group_bundle_index=bundle)
        return _actor_class().options(**opts).remote(self.opts, self.inputs, self.real)

    def _replace(self, slot: _Slot, generation: int, why: str, detail: str = "") -> None:
        import ray
        if slot.generation != generation:       # already replaced by another task
            return
        try:
            ray.kill(slot.actor, no_restart=True)
        except Exception:
            pass
        slot.actor = self._new_actor(slot.bundle)
        slot.ready = slot.actor.info.remote()
        old, slot.name = slot.name, self._name()
        slot.generation += 1
        slot.inflight = 0
        self.counts["restarts"] += 1
        if why == "timeout":
            self.counts["timeouts"] += 1
        print(f"[ganc] FID actor {old} {detail or why}; replaced by {slot.name}", flush=True)

    def actors(self) -> list:
        return [s.actor for s in self.slots]

    def names(self, busy: bool = False) -> list:
        return [s.name for s in self.slots if s.inflight > 0 or not busy]

    def stats(self) -> dict:
        return dict(self.counts, actors=len(self.slots))

    async def call_all(self, method: str, *args) -> list:
        """``method(*args)`` on every actor (e.g. info)."""
        return await asyncio.gather(*[getattr(s.actor, method).remote(*args)
                                      for s in self.slots]) if self.slots else []

    async def set_real(self, real: list) -> None:
        """The real statistics ([ObjectRef]): kept for the actors started from now on and
        handed to the current ones (one that died meanwhile is replaced with them)."""
        self.real = real
        await asyncio.gather(*[s.actor.set_real.remote(real) for s in self.slots],
                             return_exceptions=True)

    async def call_first(self, method: str, *args):
        return await getattr(self.slots[0].actor, method).remote(*args)

    # --------------------------------------------------------- scoring
    async def _acquire(self) -> _Slot:
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while True:
                slot = min(self.slots, key=lambda s: s.inflight)
                if slot.inflight < self.per_actor_queue:
                    slot.inflight += 1
                    return slot
                await self._cond.wait()

    async def _release(self, slot: _Slot, generation: int) -> None:
        async with self._cond:
            if slot.generation == generation:
                slot.inflight = max(0, slot.inflight - 1)
            self._cond.notify_all()

    async def _one(self, i: int, spec: SubnetSpec, entry, kid) -> Score:
        import ray
        died = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
        attempts = 0
        while True:
            slot = await self._acquire()
            attempts += 1
            gen, name, ahead = slot.generation, slot.name, slot.inflight
            try:
                # the timeout counts from when the actor is up (a new one loads Inception),
                # and the tasks queued ahead on it may use their share of the time
                await asyncio.wait_for(asyncio.wrap_future(slot.ready.future()),
                                       max(self.timeout_s, START_TIMEOUT_S))
                ref = slot.actor.score.remote(spec, entry, kid)
                res = await asyncio.wait_for(asyncio.wrap_future(ref.future()),
                                             self.timeout_s * ahead)
            except asyncio.TimeoutError:
                self._replace(slot, gen, "timeout",
                              f"gave no answer within {self.timeout_s * ahead:g}s on {spec}")
                res = None
            except died as e:
                if getattr(e, "actor_init_failed", False):
                    raise _init_error(e) from None
                self._replace(slot, gen, "died")
                res = None
            except ray.exceptions.RayTaskError as e:
                await self._release(slot, gen)
                self.counts["failed"] += 1
                return _failed(i, spec, str(_unwrap(e, f"scoring {spec}")), name, attempts)
            await self._release(slot, gen)
            if res is not None:
                score = _to_score(i, spec, res, name, attempts)
                if not math.isfinite(score.fid):
                    self.counts["failed"] += 1
                    score.status, score.error = "failed", f"FID is {score.fid} (not finite)"
                else:
                    self.counts["scored"] += 1
                return score
            if attempts >= self.max_attempts:
                raise GancError(f"spec {spec}: FID actors died or timed out {attempts} times "
                                "while scoring it")
            self.counts["retries"] += 1

    async def score(self, specs: list, entries: dict, kid: Optional[bool] = None,
                    real: Optional[list] = None) -> list:
        """One :class:`Score` per spec, in order (``entries``: model name -> [ObjectRef];
        ``real``: [ObjectRef] of the real statistics, which every call carries: a
        dispatcher restarted by Ray is built from its first arguments, from before the
        statistics were computed, and learns them here)."""
        if real is not None and self.real is None:
            await self.set_real(real)
        return list(await asyncio.gather(*[
            self._one(i, s, entries[s.model], kid) for i, s in enumerate(specs)]))

    def close(self) -> None:
        import ray
        for s in self.slots:
            try:
                ray.kill(s.actor, no_restart=True)
            except Exception:
                pass
        self.slots = []


def _dispatcher_class():
    global _DISPATCHER_CLASS
    if _DISPATCHER_CLASS is None:
        import ray
        _DISPATCHER_CLASS = ray.remote(PoolDispatcher)
    return _DISPATCHER_CLASS


def _failed(i: int, spec: SubnetSpec, error: str, actor: str, attempts: int) -> Score:
    return Score(i, spec, float("nan"), actor=actor, attempts=attempts, status="failed",
                 error=error.strip().splitlines()[0][:300] if error.strip() else "failed")


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
        import ray
        if failures not in ("raise", "record"):
            raise ConfigError(f"failures must be 'raise' or 'record', got {failures!r}")
        specs = list(specs)
        if not specs:
            return []
        try:
            scores = ray.get(self.submit(specs, kid))
        except ray.exceptions.RayTaskError as e:
            raise _unwrap(e, "FID pool") from None
        if failures == "raise":
            bad = next((s for s in scores if s.status != "ok"), None)
            if bad is not None:
                raise GancError(bad.error)
        return scores

    def stats(self) -> dict:
        import ray
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
    import ray
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
        import ray

        from ..cluster import current
        from ..placement import gpu_share
        from ..resources import reserve, worker_bundle
        if not ray.is_initialized():
            raise GancError("the FID pool needs Ray: call ray.init() first")
        self._ray = ray
        self.split = split
        self.opts = _fid_opts(fid, split)
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
            self.dispatcher = _dispatcher_class().options(
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
                raise _init_error(e) from None
            raise GancError("FID actor died: " + str(e).strip().splitlines()[0][:200]) from None
        except self._ray.exceptions.RayTaskError as e:
            raise _unwrap(e) from None

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


def _unwrap(e, what: str = "FID actor") -> GancError:
    cause = getattr(e, "cause", None)
    if isinstance(cause, GancError):
        return cause
    if cause is not None:
        msg = str(cause).strip().splitlines()
        return GancError(f"{what} failed: {type(cause).__name__}: {msg[0][:200] if msg else ''}")
    return GancError(f"{what} failed: {str(e).strip().splitlines()[0][:200]}")


def _init_error(e) -> GancError:
    """One line from an actor whose constructor raised (e.g. no Inception weights)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = next((ln for ln in reversed(lines) if "Error:" in ln), lines[-1] if lines else "")
    if ": " in msg and msg.split(": ", 1)[0].split(".")[-1].endswith("Error"):
        msg = msg.split(": ", 1)[1]
    return GancError(f"FID actor failed to start: {msg[:300]}")
