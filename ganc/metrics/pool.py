"""FID actor pool: N Ray actors, each holding the Inception extractor, the eval split and
the cached real statistics, scoring sub-generators in parallel.

    pool = FidPool(EvalSplit.from_folders(inputs="val_A", real="val_B"), num_actors=2,
                   store=store)
    pool.register_model("super", supernet)                  # weights put in Ray once
    scores = pool.score([SubnetSpec("super", "16_16_32_16_32_32_16_16"), ...])

A spec names a registered model (a supernet plus a channel config, or a plain generator
with no config); the model's weights go into the Ray object store once per registration
and each actor builds the model once, so a task carries only the spec. An actor that
dies mid-score is replaced (same inputs, same statistics) and its unfinished work is
re-run; every spec gets exactly one :class:`Score`.

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

import os
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

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
    seconds: float = 0.0                # scoring time inside the actor
    actor: str = ""                     # who scored it ('local' in-process)
    attempts: int = 1                   # 2+ when an actor died while scoring it

    def to_dict(self) -> dict:
        return {"index": self.index, "model": self.spec.model, "config": self.spec.config,
                "tag": self.spec.tag, "fid": self.fid, "kid_mean": self.kid_mean,
                "kid_std": self.kid_std, "n_fake": self.n_fake, "seconds": self.seconds,
                "actor": self.actor, "attempts": self.attempts}


@dataclass
class EvalSplit:
    """Generator inputs and real targets of one evaluation split.

    ``inputs``: a FolderSource (read once by the driver) or a tensor, uint8 or [-1, 1]
    float (N, 3, H, W). ``real``: a FolderSource of real target images, or precomputed
    RealStats. ``label`` names it in the statistics cache (e.g. ``facades/val/B``).
    """

    inputs: Union[FolderSource, torch.Tensor]
    real: Union[FolderSource, RealStats]
    label: str = ""

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
                state: Optional[dict] = None, **build_kw) -> dict:
    """What a pool ships once per registered model: ``arch`` + kwargs + state dict
    (rebuilt with ``ganc.nn.build``), or the module itself (pickled by Ray; copied once
    in-process), for models without a registered arch."""
    if model is None and arch is None:
        raise ConfigError("register a model instance or an arch name with its state dict")
    if arch is not None:
        if state is None and model is not None:
            state = model.state_dict()
        if state is None:
            raise ConfigError(f"model {arch!r}: give its state dict")
        return {"arch": arch, "kw": dict(build_kw),
                "state": {k: v.detach().cpu() for k, v in state.items()}}
    return {"module": model}


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
    from ..space import ChannelConfig
    is_super = isinstance(model, gnn.SuperMobileResnetGenerator)
    if spec.config is None:
        return None
    if not is_super:
        raise ConfigError(f"spec {spec}: model {spec.model!r} is not a supernet; "
                          "give no channel config")
    return ChannelConfig.parse(spec.config)


class _ScoringState:
    """Extractor, eval inputs, real statistics and built models: one per actor/process."""

    def __init__(self, fid_opts: dict, inputs: np.ndarray, real: Optional[RealStats]):
        self.opts = dict(fid_opts)
        if self.opts.get("weights_ref"):     # shipped by the pool's driver
            self.extractor = load_shipped_extractor(self.opts["weights_ref"])
        else:
            self.extractor = load_extractor(self.opts.get("extractor", "auto"),
                                            self.opts.get("weights", ""))
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

    def score(self, spec: SubnetSpec, entry) -> dict:
        if self.real is None:
            raise GancError("FID actor has no real statistics")
        # Built models are cached by what was registered (the ObjectRef, or the entry
        # itself in-process), so re-registering a name with new weights is never served
        # stale; the least recently used beyond MODEL_CACHE are dropped.
        key = entry[0].hex() if isinstance(entry, list) else entry["key"]
        model = self.models.pop(key, None)
        if model is None:
            if isinstance(entry, list):     # [ObjectRef]: fetched once, then cached
                import ray
                entry = ray.get(entry[0])
            model = build_from_entry(entry).to(self.extractor.device)
        self.models[key] = model
        while len(self.models) > MODEL_CACHE:
            self.models.pop(next(iter(self.models)))
        config = _config_for(model, spec)
        scorer = Scorer(self.extractor, self.real, self.inputs,
                        batch_size=self.opts.get("batch_size", 16),
                        kid=bool(self.opts.get("kid", False)),
                        kid_subset_size=int(self.opts.get("kid_subset_size", 1000)))
        return scorer.score(model, config)


def _fid_opts(fid) -> dict:
    if fid is None:
        from ..config import FidConfig
        fid = FidConfig()
    if isinstance(fid, dict):
        return dict(fid)
    return {"extractor": fid.extractor, "weights": fid.weights, "batch_size": fid.batch_size,
            "kid": fid.kid, "kid_subset_size": fid.kid_subset_size}


def _to_score(i: int, spec: SubnetSpec, res: dict, actor: str, attempts: int) -> Score:
    return Score(i, spec, float(res["fid"]), res.get("kid_mean"), res.get("kid_std"),
                 int(res.get("n_fake", 0)), float(res.get("seconds", 0.0)), actor, attempts)


# ---------------------------------------------------------------- in-process
class LocalPool:
    """The pool's API, scoring one spec after another in this process (no Ray)."""

    def __init__(self, split: EvalSplit, store=None, fid=None):
        self.split = split
        self.opts = _fid_opts(fid)
        self.state = _ScoringState(self.opts, split.load_inputs(), None)
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

    def score(self, specs: Sequence[SubnetSpec], on_result: Optional[Callable] = None
              ) -> list[Score]:
        out = []
        for i, spec in enumerate(specs):
            if spec.model not in self.entries:
                raise ConfigError(f"spec {spec}: no model registered as {spec.model!r}")
            s = _to_score(i, spec, self.state.score(spec, self.entries[spec.model]), "local", 1)
            out.append(s)
            if on_result:
                on_result(s)
        return out

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- Ray
_ACTOR_CLASS = None


def _actor_class():
    global _ACTOR_CLASS
    if _ACTOR_CLASS is not None:
        return _ACTOR_CLASS
    import ray

    @ray.remote
    class FidActor:
        def __init__(self, fid_opts, inputs, real):
            self.state = _ScoringState(fid_opts, inputs, real)

        def compute_real(self, images):
            return self.state.compute_real(images)

        def set_real(self, real):
            self.state.set_real(real)

        def score(self, spec, entry):
            return self.state.score(spec, entry)

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


class FidPool:
    """N Ray actors scoring specs in parallel; see the module docstring.

    Ray must already be initialised (``ray.init`` by the caller). ``use_gpu``: None takes
    GPUs when the cluster has some now; ``gpus``: the GPUs to share (default: what the
    cluster has or its autoscaler can add). ``num_gpus`` fixes the share per actor instead;
    without a GPU each actor takes ``num_cpus`` CPUs.
    """

    def __init__(self, split: EvalSplit, num_actors: int = 1, store=None, fid=None,
                 num_gpus: Optional[float] = None, num_cpus: float = 1,
                 max_attempts: int = 3, per_actor_queue: int = 2, *,
                 use_gpu: Optional[bool] = None, gpus: Optional[float] = None,
                 resources: Optional[dict] = None, wait_s: float = 900.0):
        import ray

        from ..cluster import current
        from ..placement import gpu_share
        from ..resources import reserve, worker_bundle
        if not ray.is_initialized():
            raise GancError("the FID pool needs Ray: call ray.init() first")
        if int(num_actors) < 1:
            raise ConfigError(f"fid.num_actors must be >= 1, got {num_actors}")
        self._ray = ray
        self.split = split
        self.opts = _fid_opts(fid)
        self.num_actors = int(num_actors)
        self.max_attempts = int(max_attempts)
        self.per_actor_queue = max(1, int(per_actor_queue))
        cluster = current()
        if num_gpus is None:
            if use_gpu is None:
                use_gpu = float(cluster.resources.get("GPU", 0) or 0) > 0
            share_of = gpus if gpus is not None else cluster.capacity("GPU")
            num_gpus = gpu_share(self.num_actors, max(1.0, share_of)) if use_gpu else 0.0
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
        self.replacements = 0
        self._entries: dict[str, Any] = {}          # name -> ObjectRef of the model entry
        self._serial = 0
        self.slots: list[_Slot] = []

        try:
            self._inputs_ref = ray.put(split.load_inputs())
            if isinstance(split.real, RealStats):
                self.real: RealStats = split.real
                self._real_ref = ray.put(self.real)
                first = self._new_actor(self._real_ref, 0)
            else:   # cached in the store (read by this driver), or computed by the first actor
                first = self._new_actor(None, 0)
                ext_id = self._get(first.info.remote())["extractor"]
                source = split.real

                def compute():
                    images = ray.put([source.load(p) for p in source.paths()])
                    return self._get(first.compute_real.remote(images))

                self.real = cached_real_stats(source, ext_id, store, split.label, compute,
                                              keep_features=bool(self.opts.get("kid", False)))
                self._real_ref = ray.put(self.real)
                self._get(first.set_real.remote(self._real_ref))
            self.slots = [_Slot(first, self._name(), 0)]
            for i in range(1, self.num_actors):
                self.slots.append(_Slot(self._new_actor(self._real_ref, i), self._name(), i))
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------- plumbing
    def _name(self) -> str:
        self._serial += 1
        return f"fid-actor-{self._serial}"

    def _new_actor(self, real_ref, bundle: int):
        opts = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            opts["resources"] = dict(self.resources)
        if self._pg is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
            opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self._pg, placement_group_bundle_index=bundle)
        return _actor_class().options(**opts).remote(self.opts, self._inputs_ref, real_ref)

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
        return [s.actor for s in self.slots]

    def register_model(self, name: str, model=None, **kw) -> str:
        """Put a model's weights into the Ray object store once; specs refer to ``name``.

        Registering a name again replaces its model (actors rebuild it on next use)."""
        self._entries[name] = self._ray.put(model_entry(model, **kw))
        return name

    def unregister_model(self, name: str) -> None:
        """Drop a model (its weights leave the object store once no task needs them)."""
        self._entries.pop(name, None)

    def _replace(self, slot: _Slot) -> None:
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:
            pass
        slot.actor = self._new_actor(self._real_ref, slot.bundle)
        slot.name = self._name()
        slot.generation += 1
        slot.inflight = 0
        self.replacements += 1

    # ----------------------------------------------------------- scoring
    def score(self, specs: Sequence[SubnetSpec], on_result: Optional[Callable] = None
              ) -> list[Score]:
        """One Score per spec, in the order given. ``on_result(score)`` is called as each
        arrives (from this thread)."""
        ray = self._ray
        specs = list(specs)
        for spec in specs:
            if spec.model not in self._entries:
                raise ConfigError(f"spec {spec}: no model registered as {spec.model!r}")
        pending = deque(range(len(specs)))
        attempts = [0] * len(specs)
        results: dict[int, Score] = {}
        inflight: dict[Any, tuple[_Slot, int, int]] = {}   # ref -> (slot, generation, index)
        died = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)

        def fill():   # the least busy actor first, up to per_actor_queue tasks each
            while pending:
                slot = min(self.slots, key=lambda s: s.inflight)
                if slot.inflight >= self.per_actor_queue:
                    return
                i = pending.popleft()
                attempts[i] += 1
                ref = slot.actor.score.remote(specs[i], [self._entries[specs[i].model]])
                inflight[ref] = (slot, slot.generation, i)
                slot.inflight += 1

        fill()
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            ref = ready[0]
            slot, gen, i = inflight.pop(ref)
            if gen == slot.generation:
                slot.inflight -= 1
            try:
                res = ray.get(ref)
            except died as e:
                if getattr(e, "actor_init_failed", False):
                    raise _init_error(e) from None
                if gen == slot.generation:          # first failure seen from this actor
                    self._replace(slot)
                if attempts[i] >= self.max_attempts:
                    raise GancError(f"spec {specs[i]}: FID actors died {attempts[i]} times "
                                    "while scoring it") from None
                pending.appendleft(i)
                fill()
                continue
            except ray.exceptions.RayTaskError as e:
                raise _unwrap(e, f"scoring {specs[i]}") from None
            if i in results:                        # cannot happen; guard exactly-once
                raise GancError(f"spec {specs[i]} was scored twice")
            results[i] = _to_score(i, specs[i], res, slot.name if gen == slot.generation
                                   else f"{slot.name}(replaced)", attempts[i])
            if on_result:
                on_result(results[i])
            fill()
        return [results[i] for i in range(len(specs))]

    def info(self) -> list[dict]:
        return [self._get(s.actor.info.remote()) for s in self.slots]

    def close(self) -> None:
        for s in self.slots:
            try:
                self._ray.kill(s.actor, no_restart=True)
            except Exception:
                pass
        self.slots = []
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
