"""Reading checkpoints safely (``weights_only=True``) and fitting them to a model."""
from __future__ import annotations

import io
import os
from typing import Mapping

import torch
import torch.nn as nn

from .errors import WeightsError

# Wrappers other tools put around a state dict.
_WRAPPER_KEYS = ("state_dict", "model", "netG", "generator", "weights")


def read_state_dict(source, name: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict from a path, bytes or file object; never unpickles arbitrary objects.

    Accepts the zip format and the legacy (pre-1.6) torch.save format, a bare state dict
    or one wrapped under a common key, and strips a DataParallel ``module.`` prefix.
    """
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise WeightsError(f"weights file not found: {label}")
    try:
        obj = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or holds arbitrary objects
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"cannot read weights {label}: {first[:200]}") from None
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights {label} do not hold a state dict of tensors")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    # InstanceNorm layers of old torch versions saved running stats the model lacks.
    return sd


def check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], label: str,
              arch: str | None = None) -> None:
    """Raise a one-line WeightsError at the first key or shape that does not fit."""
    arch = arch or type(model).__name__
    own = model.state_dict()
    for key, t in own.items():
        if key not in state:
            raise WeightsError(f"weights {label} do not fit {arch}: missing key {key} "
                               f"(model shape {tuple(t.shape)})")
        if tuple(state[key].shape) != tuple(t.shape):
            raise WeightsError(f"weights {label} do not fit {arch}: key {key} has shape "
                               f"{tuple(state[key].shape)} in the file, "
                               f"{tuple(t.shape)} in the model")
    for key, t in state.items():
        if key not in own:
            raise WeightsError(f"weights {label} do not fit {arch}: unexpected key {key} "
                               f"(file shape {tuple(t.shape)})")


def load_weights(model: nn.Module, source, arch: str | None = None,
                 name: str | None = None) -> nn.Module:
    """Load a checkpoint into ``model`` with strict key and shape matching."""
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    state = read_state_dict(source, label)
    check_fit(model, state, label, arch)
    model.load_state_dict(state, strict=True)
    return model
