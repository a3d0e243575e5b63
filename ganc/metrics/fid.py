"""FID and KID on torch-fidelity's math, with real statistics cached in the artifact store.

- :func:`extract_features`: the 2048-d Inception features of any image source.
- :func:`fid_from_stats`, :func:`kid_from_features`: torch-fidelity's
  ``fid_statistics_to_metric`` and ``kid_features_to_metric``.
- :func:`fid_from_features`: the same FID, computed exactly in O(n d^2) from the fake
  features instead of O(d^3) (scoring uses it: ~0.1 s instead of ~10 s per score).
- :func:`real_stats`: mean and covariance (and features, for KID) of a set of real images,
  computed once per (images, crop/size, label, extractor) and kept as ``.npz`` in a store.
- :class:`Scorer`: everything needed to score generators on an eval split in one process;
  each FID actor of :mod:`ganc.metrics.pool` holds one.
- :func:`compute_fid`: FID (and KID) of two image sources, for ``ganc fid``.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch_fidelity.metric_fid import (KEY_METRIC_FID, fid_features_to_statistics,
                                       fid_statistics_to_metric)
from torch_fidelity.metric_kid import (KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD,
                                       kid_features_to_metric)

from ..data.camvid import one_hot
from ..errors import DataError, GancError
from ..extras import draw_for
from ..store import open_store, split_url
from .inception import Extractor, load_extractor
from .miou import MiouMeter
from .sources import FolderSource, Source, as_source, iter_batches, quantize

STATS_PREFIX = "fid-stats"
KID_SUBSETS = 100


# ---------------------------------------------------------------- features and math
def extract_features(extractor: Extractor, source: Source, batch_size: int = 16,
                     where: str = "images") -> np.ndarray:
    """(N, 2048) float32 Inception features of every image of ``source``."""
    feats = [extractor.features(b) for b in iter_batches(source, batch_size, where)]
    if not feats:
        raise DataError(f"{where}: no images to score")
    return torch.cat(feats).numpy().astype(np.float32)


def stats_from_features(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64), as torch-fidelity computes them."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise DataError(f"FID needs at least 2 images, got {features.shape[0]}")
    st = fid_features_to_statistics(torch.from_numpy(np.asarray(features, dtype=np.float64)))
    return np.asarray(st["mu"], dtype=np.float64), np.asarray(st["sigma"], dtype=np.float64)


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """torch-fidelity's FID of two (mean, covariance) pairs: O(d^3), ~10 s for d = 2048
    on two CPU cores (a non-symmetric eigendecomposition)."""
    out = fid_statistics_to_metric({"mu": np.asarray(mu1, np.float64),
                                    "sigma": np.asarray(sigma1, np.float64)},
                                   {"mu": np.asarray(mu2, np.float64),
                                    "sigma": np.asarray(sigma2, np.float64)}, verbose=False)
    return float(out[KEY_METRIC_FID])


def fid_from_features(fake: np.ndarray, mu, sigma) -> float:
    """FID of fake features against real (mean, covariance); the same value as
    :func:`fid_from_stats` with the fake set's statistics, computed exactly but fast.

    With B the centred fake features (n x d) and S_f = B^T B / (n - 1), the non-zero
    eigenvalues of S_r S_f are those of the symmetric PSD n x n matrix
    B S_r B^T / (n - 1), so tr sqrt(S_r S_f) is the sum of the square roots of its
    eigenvalues: O(n d^2) instead of O(d^3). Used while n <= d (every eval split of
    ganc's recipes); larger sets fall back to torch-fidelity's formula.
    """
    x = np.asarray(fake, np.float64)
    n, d = x.shape
    if n < 2:
        raise DataError(f"FID needs at least 2 images, got {n}")
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if mu.shape != (d,) or sigma.shape != (d, d):
        raise DataError(f"real statistics have dimension {mu.shape[0]}, features have {d}")
    if n > d:
        m2, s2 = stats_from_features(x)
        return fid_from_stats(m2, s2, mu, sigma)
    mu_f = x.mean(axis=0)
    b = x - mu_f
    inner = b @ sigma @ b.T / (n - 1)
    ev = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(ev, 0, None)).sum())
    diff = mu_f - mu
    return float(diff @ diff + np.trace(sigma) + np.einsum("ij,ij->", b, b) / (n - 1)
                 - 2 * tr_covmean)


def kid_from_features(f1: np.ndarray, f2: np.ndarray, subset_size: int = 1000,
                      subsets: int = KID_SUBSETS, seed: int = 2020) -> tuple[float, float]:
    """KID mean and std over ``subsets`` random subsets (torch-fidelity's polynomial kernel).

    The subset size is capped at the smaller set, as small eval splits need.
    """
    size = int(min(subset_size, len(f1), len(f2)))
    if size < 2:
        raise DataError(f"KID needs at least 2 images per set, got {len(f1)} and {len(f2)}")
    out = kid_features_to_metric(
        torch.from_numpy(np.asarray(f1, np.float64)), torch.from_numpy(np.asarray(f2, np.float64)),
        kid_subsets=int(subsets), kid_subset_size=size, verbose=False, rng_seed=seed,
        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


# ---------------------------------------------------------------- real statistics
@dataclass
class RealStats:
    """Statistics of a set of real images under one extractor."""

    mu: np.ndarray
    sigma: np.ndarray
    features: Optional[np.ndarray]      # float32 (N, 2048), for KID
    n: int
    extractor: str
    key: str = ""                       # store key it was cached under ('' if not cached)
    cached: bool = False                # loaded from the store rather than computed

    def to_arrays(self, meta: dict) -> dict:
        arrays = {"mu": self.mu, "sigma": self.sigma, "n": np.int64(self.n),
                  "extractor": np.array(self.extractor),
                  "meta": np.array(json.dumps(meta, sort_keys=True))}
        if self.features is not None:
            arrays["features"] = self.features.astype(np.float32)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict, where: str) -> "RealStats":
        try:
            mu, sigma = np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64)
            n = int(arrays["n"])
            extractor = str(arrays["extractor"])
        except KeyError as e:
            raise DataError(f"real statistics {where} lack the array {e.args[0]!r}") from None
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise DataError(f"real statistics {where}: mu {mu.shape} and sigma {sigma.shape} "
                            "do not fit")
        feats = arrays.get("features")
        return cls(mu, sigma, None if feats is None else np.asarray(feats, np.float32), n,
                   extractor)


def _slug(label: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")
    return s[:60] or "real"


def stats_key(source: FolderSource, extractor_id: str, label: str = "") -> str:
    """Store key of the cached statistics: changes with the files, crop/size, label and
    extractor."""
    doc = {"images": source.fingerprint(), "label": label, "extractor": extractor_id,
           "version": 2}
    h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]
    return f"{STATS_PREFIX}/{_slug(label or source.folders[0].rstrip('/').split('/')[-1])}-{h}.npz"


def real_stats(source, extractor: Extractor, store=None, label: str = "",
               batch_size: int = 16, keep_features: bool = True) -> RealStats:
    """Statistics of real images, loaded from ``store`` when cached there, else computed
    (and cached when ``store`` is given).

    ``label`` names the dataset/split/domain (e.g. ``facades/val/B``); the key also holds
    a fingerprint of the files' bytes (:meth:`FolderSource.fingerprint`), the crop/resize
    and the extractor, so a changed dataset is recomputed, never served stale.
    """
    source = as_source(source)
    if not isinstance(source, FolderSource):
        feats = extract_features(extractor, source, batch_size, "real images")
        return stats_of_features(feats, extractor.id, keep_features)

    def compute():
        feats = extract_features(extractor, source, batch_size,
                                 f"real images {source.describe()}")
        return stats_of_features(feats, extractor.id, keep_features)

    return cached_real_stats(source, extractor.id, store, label, compute, keep_features)


def stats_of_features(feats: np.ndarray, extractor_id: str, keep_features: bool = True
                      ) -> RealStats:
    mu, sigma = stats_from_features(feats)
    return RealStats(mu, sigma, feats if keep_features else None, len(feats), extractor_id)


def cached_real_stats(source: FolderSource, extractor_id: str, store, label: str,
                      compute, keep_features: bool = True) -> RealStats:
    """The cached statistics of ``source`` in ``store``, or ``compute()`` stored there.

    Split from :func:`real_stats` so the FID pool can keep the store in the driver and
    let an actor do the Inception pass."""
    key = stats_key(source, extractor_id, label)
    if store is not None and store.exists(key):
        st = RealStats.from_arrays(store.get_npz(key), store.url(key))
        if st.extractor == extractor_id and (st.features is not None or not keep_features):
            st.key, st.cached = key, True
            return st
    st = compute()
    if store is not None:
        meta = {"label": label, "folders": list(source.folders), "crop": source.crop,
                "size": source.size, "n": st.n, "extractor": extractor_id,
                "fingerprint": source.fingerprint()}
        store.put_npz(key, st.to_arrays(meta))
        st.key = key
    return st


def load_stats_file(path: str) -> RealStats:
    """Statistics written by ``ganc stats --out`` (a local path or store URL of an .npz)."""
    proto, p = split_url(path)
    parent, _, name = p.rpartition("/")
    if not name:
        raise DataError(f"statistics path {path!r} names no file")
    store = open_store(f"s3://{parent}" if proto == "s3" else (parent or "/"))
    return RealStats.from_arrays(store.get_npz(name), store.url(name))


# ---------------------------------------------------------------- scoring
def score_features(fake: np.ndarray, real: RealStats, kid: bool = False,
                   kid_subset_size: int = 1000) -> dict:
    out = {"fid": fid_from_features(fake, real.mu, real.sigma)}
    if kid:
        if real.features is None:
            raise GancError("KID needs the real features; the real statistics hold only "
                            "mean and covariance (recompute them with KID enabled)")
        out["kid_mean"], out["kid_std"] = kid_from_features(fake, real.features,
                                                            kid_subset_size)
    return out


def compute_fid(real, fake, *, kid: bool = False, extractor: Any = "auto", weights: str = "",
                batch_size: int = 16, store=None, label: str = "",
                kid_subset_size: int = 1000) -> dict:
    """FID (and KID) of ``fake`` against ``real``.

    ``real``: folder(s), a FolderSource, a tensor/iterable, or precomputed
    :class:`RealStats`; ``fake``: the same kinds (uint8 or [-1, 1] float tensors).
    Real statistics of folders are cached in ``store`` when given.
    Returns ``{fid, [kid_mean, kid_std], n_real, n_fake, extractor}``.
    """
    ext = extractor if isinstance(extractor, Extractor) else load_extractor(extractor, weights)
    if isinstance(real, RealStats):
        rs = real
        if rs.extractor != ext.id:
            raise GancError(f"real statistics were computed with {rs.extractor}, not {ext.id}")
    else:
        rs = real_stats(real, ext, store=store, label=label, batch_size=batch_size,
                        keep_features=kid)
    fake_feats = extract_features(ext, as_source(fake), batch_size, "generated images")
    out = score_features(fake_feats, rs, kid, kid_subset_size)
    out.update(n_real=int(rs.n), n_fake=int(len(fake_feats)), extractor=ext.id)
    return out


EXTRA_SEED = 0      # seed of the style codes (ganc.extras) every scored model gets


class Scorer:
    """Scores generators on one eval split against cached real statistics, in-process.

    ``inputs``: the eval inputs, uint8 (N, 3, H, W) (converted to [-1, 1] per batch) or float
    in [-1, 1]. ``score(model, config)`` runs ``model(x)`` (or ``model(x, config)`` for a
    supernet) where the model is, quantises the outputs like saved images and returns FID
    (and KID); the model is not moved and its training mode is kept.

    Label-map inputs (SPADE): ``input_classes`` > 0 means ``inputs`` are uint8 class indices
    (N, 1, H, W), fed one-hot; ``miou=(segmenter, gt)`` adds the ESPNet-CamVid mIoU and
    pixel accuracy of the outputs against ``gt`` (one label map per input, at its own size).
    """

    def __init__(self, extractor: Extractor, real: RealStats, inputs: torch.Tensor,
                 batch_size: int = 16, kid: bool = False, kid_subset_size: int = 1000,
                 device=None, input_classes: int = 0, miou=None):
        if not torch.is_tensor(inputs) or inputs.dim() != 4 or inputs.shape[0] == 0:
            raise DataError("eval inputs must be a non-empty (N, C, H, W) tensor")
        self.extractor = extractor
        self.real = real
        self.inputs = inputs
        self.batch_size = int(batch_size)
        self.kid = kid
        self.kid_subset_size = kid_subset_size
        self.device = torch.device(device) if device else extractor.device
        self.input_classes = int(input_classes)
        self.miou = miou

    def _input_batches(self, device):
        """(index of the batch's first input, the batch on ``device``)."""
        for i in range(0, self.inputs.shape[0], self.batch_size):
            x = self.inputs[i:i + self.batch_size]
            if self.input_classes:
                x = one_hot(x[:, 0].long(), self.input_classes)
            elif x.dtype == torch.uint8:
                x = x.float() / 127.5 - 1.0
            yield i, x.to(device)

    @torch.inference_mode()
    def generate(self, model: torch.nn.Module, config=None, on_output=None):
        """uint8 output batches of ``model`` on the eval inputs, on the model's device
        (``on_output`` sees each float output batch first).

        The model runs in eval mode; its training mode is restored afterwards. A model
        that takes inputs beside the image (a MUNIT style code, :mod:`ganc.extras`) gets
        values drawn per input from the fixed seed :data:`EXTRA_SEED`, so every model
        scored on a split sees the same style codes."""
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else self.device
        was_training = model.training
        model.eval()
        try:
            for i, x in self._input_batches(device):
                extra = draw_for(model, x.shape[0], EXTRA_SEED, first=i, device=device)
                y = model(x, **extra) if config is None else model(x, config, **extra)
                if on_output is not None:
                    on_output(y)
                yield quantize(y)
        finally:
            model.train(was_training)

    def score(self, model: torch.nn.Module, config=None) -> dict:
        """FID (and KID) of the model's outputs; a model whose outputs hold NaN or inf
        (a blown-up training) scores FID inf instead of the FID of its quantised
        garbage."""
        t0 = time.perf_counter()
        broken = []
        meter = None
        if self.miou is not None:
            segmenter, gt = self.miou
            meter, done = MiouMeter(segmenter), [0]

        def check(y):
            if not broken and not bool(torch.isfinite(y).all()):
                broken.append(True)
            if meter is not None:
                n = y.shape[0]
                meter.update(y.detach().float().cpu(),
                             [torch.as_tensor(g).long() for g in gt[done[0]:done[0] + n]])
                done[0] += n
        feats = extract_features(self.extractor, self.generate(model, config, check),
                                 self.batch_size, "generated images")
        out = score_features(feats, self.real, self.kid, self.kid_subset_size)
        if meter is not None:
            res = meter.result()
            out.update(miou=res["miou"], pixel_acc=res["pixel_acc"])
        if broken:
            out.update(fid=math.inf, nonfinite_outputs=True)
        out.update(n_fake=int(len(feats)), seconds=time.perf_counter() - t0)
        return out
