"""Scoring in one process: :class:`ScoringState` (the Inception extractor, the split's
inputs, the real statistics, the segmenter on label-map data and the built models) is what
each FID actor holds, and :class:`LocalPool` runs it in-process, without Ray (tests, and the
baseline of ``bench/fid_pool.py``). :func:`fid_opts` are the options both get."""
from __future__ import annotations

import math
import os
import time
import uuid
from typing import Optional, Sequence

import numpy as np
import torch

from ..config import FidConfig
from ..errors import ConfigError, GancError
from .espnet import load_espnet
from .fid import RealStats, Scorer, cached_real_stats, extract_features, stats_of_features
from .inception import load_extractor, load_shipped_extractor
from .miou import Segmenter, find_weights
from .models import build_from_entry, config_for, model_entry, recalibrated
from .sources import _group_same_shape
from .specs import EvalSplit, Score, SubnetSpec, failed_score, score_of

MODEL_CACHE = 8     # built models each actor keeps
DEFAULT_TIMEOUT_S = 600.0   # fid.timeout_s when the options do not say: per scoring task


class ScoringState:
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
            seg = self.opts.get("segmenter")
            self.segmenter = (_segmenter_from(seg, self.extractor.device) if seg else
                              Segmenter.load(device=self.extractor.device))
        self.inputs = torch.from_numpy(np.array(inputs, copy=True))
        self.real = real
        self.models: dict = {}          # insertion order = least recently used first

    def compute_real(self, images: list) -> RealStats:
        """Statistics of real images given as uint8 (3, H, W) tensors (no store access)."""
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
                import ray      # deferred: Ray only where a pool put the entry
                entry = ray.get(entry[0])
            cached = (build_from_entry(entry).to(self.extractor.device),
                      bool(entry.get("recalibrate")))
        self.models[key] = cached
        while len(self.models) > MODEL_CACHE:
            self.models.pop(next(iter(self.models)))
        model, recalibrate = cached
        config = config_for(model, spec)
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
    return Segmenter(load_espnet(seg["bytes"], name=seg.get("name")), device=device)


def segmenter_opts(weights=None) -> dict:
    """The ESPNet-CamVid weights (found on the driver, :func:`ganc.metrics.miou.find_weights`)
    as bytes for the actors: they may run on nodes without the file."""
    path = find_weights(weights)
    return {"bytes": path.read_bytes(), "name": str(path)}


def fid_opts(fid, split: Optional[EvalSplit] = None) -> dict:
    """The scoring options the actors get; on label-map data (``split.gt``) with the
    ESPNet-CamVid segmenter's weights as bytes (:func:`segmenter_opts`)."""
    opts = _fid_settings(fid)
    if split is not None and split.gt is not None and "segmenter" not in opts:
        opts["segmenter"] = segmenter_opts()
    return opts


def _fid_settings(fid) -> dict:
    if fid is None:
        fid = FidConfig()
    if isinstance(fid, dict):
        return dict(fid)
    return {"extractor": fid.extractor, "weights": fid.weights, "batch_size": fid.batch_size,
            "kid": fid.kid, "kid_subset_size": fid.kid_subset_size,
            "timeout_s": getattr(fid, "timeout_s", DEFAULT_TIMEOUT_S)}


class LocalPool:
    """The pool's API, scoring one spec after another in this process (no Ray)."""

    def __init__(self, split: EvalSplit, store=None, fid=None):
        self.split = split
        self.opts = fid_opts(fid, split)
        self.state = ScoringState(self.opts, split.payload(), None)
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
                s = score_of(i, spec, self.state.score(spec, self.entries[spec.model], kid),
                              "local", 1)
            except Exception as e:
                if failures == "raise":
                    raise
                s = failed_score(i, spec, f"scoring {spec} failed: {type(e).__name__}: {e}",
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


__all__ = ["ScoringState", "LocalPool", "fid_opts", "segmenter_opts", "MODEL_CACHE",
           "DEFAULT_TIMEOUT_S"]
