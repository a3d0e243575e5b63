"""Reading checkpoints safely (``weights_only=True``) and fitting them to a model; the CPU
copies of state dicts that checkpoints are written from."""
from __future__ import annotations

import io
import os
from typing import Mapping

import torch
import torch.nn as nn

from .errors import WeightsError
from .nn.resnet import DROPOUT_SLOT, ResnetBlock

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
    return sd


_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _block_renames(prefix: str, state_keys, model_keys) -> dict[str, str] | None:
    """Renames of one residual block's checkpoint keys to the model's layout, or None.

    The two layouts differ only by the dropout slot at ``conv_block.<DROPOUT_SLOT>``:
    every entry after it sits one index later in the layout that has the slot.
    """
    head = prefix + "conv_block."

    def index_and_rest(key):
        j, _, rest = key[len(head):].partition(".")
        return int(j), rest

    def params(keys):          # running statistics may be absent on either side
        return {k for k in keys if k.rsplit(".", 1)[-1] not in _RUNNING_STATS}

    ours = params(k for k in model_keys if k.startswith(head))
    theirs = [k for k in state_keys if k.startswith(head)]
    for shift in (0, 1, -1):
        renames = {}
        for key in theirs:
            j, rest = index_and_rest(key)
            renames[key] = f"{head}{j + shift if j >= DROPOUT_SLOT else j}.{rest}"
        if params(renames.values()) == ours:
            return renames
    return None


def fit_layout(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint ``state`` with its keys renamed to ``model``'s layout, by rule only.

    ResNet generators are released in two layouts (GUIDE §3): pytorch-CycleGAN-and-pix2pix
    holds a Dropout slot in each residual block only when trained with dropout, GAN
    Compression's "full" teachers always hold it, so the second conv of a block is
    ``conv_block.5`` in one and ``conv_block.6`` in the other. Keys after the slot are
    shifted to the model's layout when that makes the block's keys match exactly.
    Running statistics that old torch versions saved for instance norm layers (which
    track none) are dropped. Anything else is left for :func:`check_fit` to report.
    """
    out = dict(state)
    model_keys = list(model.state_dict())
    for name, module in model.named_modules():
        if isinstance(module, ResnetBlock):
            renames = _block_renames(f"{name}." if name else "", list(out), model_keys)
            if renames:
                moved = {new: out.pop(old) for old, new in renames.items()}
                out.update(moved)
    untracked = {name for name, m in model.named_modules()
                 if isinstance(m, nn.InstanceNorm2d) and not m.track_running_stats}
    return {k: v for k, v in out.items()
            if not (k.rsplit(".", 1)[-1] in _RUNNING_STATS and k.rsplit(".", 1)[0] in untracked)}


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
    """Load a checkpoint into ``model`` with strict key and shape matching, after renaming
    a released layout's keys to the model's (:func:`fit_layout`). Every weights file
    ganc loads (teachers, exports, ``ganc translate``) comes through here."""
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>")
    state = fit_layout(model, read_state_dict(source, label))
    check_fit(model, state, label, arch)
    model.load_state_dict(state, strict=True)
    return model


def cpu_state(state: Mapping[str, torch.Tensor], clone: bool = False) -> dict[str, torch.Tensor]:
    """``state`` (a state dict) detached on the CPU, to be saved; ``clone``: copies even of
    tensors already there (none shares storage with the live model)."""
    if clone:
        return {k: v.detach().cpu().clone() for k, v in state.items()}
    return {k: v.detach().cpu() for k, v in state.items()}
