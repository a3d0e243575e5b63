"""The models a pool scores: what it ships once per registered model (an entry), how a
scorer rebuilds it, which sub-network a spec selects, and the batch-norm recalibration of
SPADE sub-networks on the split's calibration label maps."""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch

from .. import nn as gnn
from ..data.camvid import one_hot
from ..errors import ConfigError
from ..nn.calibrate import recalibrate_bn
from ..weights import check_fit
from .specs import SubnetSpec

CALIBRATION_BATCH = 16      # label maps per batch of the batch-norm recalibration


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
        return copy.deepcopy(entry["module"]).eval()
    model = gnn.build(entry["arch"], **entry["kw"])
    check_fit(model, entry["state"], f"registered {entry['arch']}", entry["arch"])
    model.load_state_dict(entry["state"], strict=True)
    return model.eval()


def config_for(model: torch.nn.Module, spec: SubnetSpec):
    """The channel config ``spec`` selects in ``model`` (None: the model as it is)."""
    is_super = isinstance(model, gnn.SUPERNETS)
    if spec.config is None:
        return None
    if not is_super:
        raise ConfigError(f"spec {spec}: model {spec.model!r} is not a supernet; "
                          "give no channel config")
    return model.parse_config(spec.config)


def recalibrated(model: torch.nn.Module, config, calib: np.ndarray, classes: int):
    """A copy of ``model`` (at ``config``: its extracted sub-network) whose batch-norm
    statistics are re-estimated on the calibration label maps (uint8 (n, 1, H, W))."""
    net = gnn.extract_subnet(model, config) if config is not None else copy.deepcopy(model)
    device = next(model.parameters()).device
    labels = torch.from_numpy(np.array(calib))   # a copy: object-store arrays are read-only
    recalibrate_bn(net.to(device), (one_hot(labels[i:i + CALIBRATION_BATCH, 0].long(), classes)
                                    for i in range(0, labels.shape[0], CALIBRATION_BATCH)))
    return net.eval()


__all__ = ["model_entry", "build_from_entry", "config_for", "recalibrated",
           "CALIBRATION_BATCH"]
