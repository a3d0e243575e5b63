"""FID of generators during training (rank 0, in-process), on the split choices are made
on: the search split held out of the training data (``data.search_split``), else the eval
split (:func:`ganc.metrics.splits.scoring_split`).

Uses ``ganc.metrics`` (the Inception weights the driver shipped, real statistics cached in
the store under the store root, the in-process :class:`ganc.metrics.Scorer`). The training process keeps its
own CPU/GPU slot; an actor pool would compete with the training workers for them, so
scoring here runs in the chief worker between steps, on the same device.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..config import RunConfig
from ..data.source import DataRef
from ..errors import GancError
from ..store import open_store
from . import common


class GeneratorScorer:
    """``score(model, {name: config or None}) -> {fid_<name>: value}``."""

    def __init__(self, cfg: RunConfig, spec: dict, device: torch.device):
        from ..metrics.splits import scoring_split  # deferred: torch_fidelity
        from ..metrics import Scorer, load_extractor, real_stats  # deferred: torch_fidelity
        from ..metrics.inception import load_shipped_extractor  # deferred: torch_fidelity

        ref = DataRef.from_spec(spec["data"])
        split = scoring_split(cfg, ref.local(), name=ref.name)
        inputs = torch.from_numpy(split.load_inputs())
        n = int(getattr(cfg.distill, "eval_n", 0) or 0)
        if n > 0:
            inputs = inputs[:n]
        if spec.get("fid_weights"):      # checked and shipped by the driver
            ext = load_shipped_extractor(spec["fid_weights"], device=device)
        else:
            ext = load_extractor(cfg.fid.extractor, cfg.fid.weights, device=device)
        root = spec.get("root_url")
        store = open_store(root, endpoint_url=spec.get("endpoint_url") or None) if root else None
        real = real_stats(split.real, ext, store=store, label=split.label,
                          batch_size=cfg.fid.batch_size, keep_features=False)
        self.scorer = Scorer(ext, real, inputs, batch_size=cfg.fid.batch_size, kid=False,
                             device=device, input_classes=split.input_classes)
        self.n = int(inputs.shape[0])

    def score(self, model: torch.nn.Module, configs: dict) -> dict:
        was_training = model.training
        out = {}
        try:
            for name, config in configs.items():
                res = self.scorer.score(model, config)
                out[f"fid_{name}"] = float(res["fid"])
        finally:
            model.train(was_training)
        return out


def make_scorer(cfg: RunConfig, spec: dict, device) -> Optional[GeneratorScorer]:
    """A scorer, or None (with one warning line) when FID cannot be computed here."""
    try:
        return GeneratorScorer(cfg, spec, device)
    except (GancError, ImportError, OSError) as e:
        common.say(f"[{spec['stage']}] warning: FID disabled: {str(e).splitlines()[0][:200]}")
        return None
