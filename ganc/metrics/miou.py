"""ESPNet-CamVid mIoU: how well a pretrained segmenter recovers the input label map from a
generated photo (ganc's stand-in for the paper's DRN-D-105 Cityscapes mIoU).

The protocol (``PROTOCOL``), calibrated on the real CamVid val photos to mIoU 69.49 and pixel
accuracy 93.34 (60.50 mIoU with 176x240 segmenter input):

1. the image as uint8 RGB (generated images are quantised as saved PNGs would be);
2. RGB -> BGR, subtract the CamVid train mean and divide by its std (per BGR channel),
   divide by 255;
3. bilinear resize to 352x480 (``INPUT_SIZE``) and run ESPNet (p=2, q=8);
4. bilinear upsampling of the 12 logits to the ground-truth label map's size (360x480 for
   CamVid), argmax over the 11 classes (the void logit is dropped);
5. ground-truth void pixels are ignored; one confusion matrix is accumulated over the split;
   IoU per class = TP / (TP + FP + FN), mIoU = their mean over the 11 classes (a class absent
   from both ground truth and predictions is left out of the mean), pixel accuracy =
   correct / scored pixels. Both are reported in percent.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..data.camvid import N_CLASSES, VOID, load_label_map, pair_by_name
from ..data.images import load_rgb
from ..errors import ConfigError, DataError, WeightsError
from .espnet import load_espnet
from .inception_weights import cache_root
from .sources import quantize

BGR_MEAN = (110.33, 108.41, 105.03)   # CamVid train split, BGR order, 0-255 scale
BGR_STD = (72.13, 72.69, 69.90)
INPUT_SIZE = (352, 480)               # (height, width) the segmenter sees
ESPNET_FILE = "espnet_p_2_q_8_camvid.pth"
ESPNET_ENV = "GANC_ESPNET"
PROTOCOL = ("ESPNet-CamVid mIoU: ESPNet p=2 q=8 (CamVid), BGR input normalised by the CamVid "
            "train mean/std and /255, bilinear to 352x480, logits bilinear to the label size, "
            "argmax over 11 classes, void ignored, one confusion matrix over the split")


class SegmenterError(WeightsError):
    """The ESPNet-CamVid weights cannot be found."""


def default_weights_candidates() -> list[Path]:
    """Where the ESPNet weights are looked for when no path is given, in order."""
    out = []
    if os.environ.get(ESPNET_ENV):
        out.append(Path(os.environ[ESPNET_ENV]).expanduser())
    out.append(cache_root() / "espnet-camvid" / ESPNET_FILE)
    repo = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), repo):
        out.append(base.parent / "shared" / "models" / "espnet-camvid" / ESPNET_FILE)
    return out


def find_weights(weights=None) -> Path:
    if weights:
        p = Path(os.fspath(weights)).expanduser()
        if not p.is_file():
            raise SegmenterError(f"ESPNet weights file not found: {p}")
        return p
    tried = default_weights_candidates()
    for p in tried:
        if p.is_file():
            return p
    raise SegmenterError(f"no ESPNet-CamVid weights ({ESPNET_FILE}); give --weights, set "
                         f"{ESPNET_ENV}, or put the file at {tried[1 if os.environ.get(ESPNET_ENV) else 0]}")


class Segmenter:
    """ESPNet-CamVid with the protocol's pre- and post-processing."""

    def __init__(self, net: torch.nn.Module, input_size=INPUT_SIZE, device=None):
        self.device = torch.device(device) if device else torch.device("cpu")
        self.net = net.to(self.device).eval()
        self.input_size = tuple(int(s) for s in input_size)
        if len(self.input_size) != 2 or min(self.input_size) < 8 or any(
                s % 8 for s in self.input_size):
            raise ConfigError(f"segmenter input size {input_size} must be (height, width), "
                              "multiples of 8")
        self.mean = torch.tensor(BGR_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(BGR_STD, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def load(cls, weights=None, input_size=INPUT_SIZE, device=None) -> "Segmenter":
        path = find_weights(weights)
        return cls(load_espnet(path), input_size, device)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB (N, 3, H, W) -> the network input (N, 3, *INPUT_SIZE)."""
        x = images.to(self.device).float().flip(1)                     # RGB -> BGR
        x = (x - self.mean) / self.std
        x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return x / 255.0

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 12, *INPUT_SIZE) logits of uint8 RGB images (N, 3, H, W) of any size."""
        return self.net(self.preprocess(images)).float()

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, size) -> torch.Tensor:
        """Class indices 0..10 (N, *size) of uint8 RGB images, at label-map ``size``."""
        up = F.interpolate(self.logits(images), size=tuple(size), mode="bilinear",
                           align_corners=False)
        return up[:, :N_CLASSES].argmax(1).cpu()


# ---------------------------------------------------------------- confusion matrix
def confusion(pred: torch.Tensor, gt: torch.Tensor, n: int = N_CLASSES,
              ignore: int = VOID) -> torch.Tensor:
    """(n, n) int64 counts, rows = ground truth, columns = prediction; ``ignore`` pixels of
    the ground truth are left out."""
    gt = torch.as_tensor(gt).long().reshape(-1)
    pred = torch.as_tensor(pred).long().reshape(-1)
    if gt.shape != pred.shape:
        raise DataError(f"prediction has {pred.numel()} pixels, ground truth {gt.numel()}")
    keep = gt != ignore
    return torch.bincount(gt[keep] * n + pred[keep], minlength=n * n).reshape(n, n)


def scores(cm: torch.Tensor) -> dict:
    """mIoU and pixel accuracy (percent) and per-class IoU of a confusion matrix."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    total = cm.sum()
    if total == 0:
        raise DataError("no scored pixels: every ground-truth pixel is void")
    return {"miou": float(iou[present].mean() * 100), "pixel_acc": float(tp.sum() / total * 100),
            "iou": [None if not p else round(float(v) * 100, 4) for v, p in zip(iou, present)],
            "pixels": int(total)}


class MiouMeter:
    """Accumulates one confusion matrix over batches of (images, ground-truth label maps)."""

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter
        self.cm = torch.zeros(N_CLASSES, N_CLASSES, dtype=torch.long)
        self.n = 0

    def update(self, images: torch.Tensor, labels) -> None:
        """``images``: uint8 (N, 3, H, W) or float in [-1, 1] (quantised as saved PNGs);
        ``labels``: (N, h, w) class indices (a tensor, or a list of differently sized maps)."""
        if images.is_floating_point():
            images = quantize(images)
        if torch.is_tensor(labels) and labels.dim() == 2:
            labels = labels[None]
        if len(labels) != images.shape[0]:
            raise DataError(f"{images.shape[0]} images but {len(labels)} label maps")
        sizes = {tuple(lab.shape[-2:]) for lab in labels}
        if len(sizes) == 1:
            pred = self.segmenter.predict(images, sizes.pop())
            for p, lab in zip(pred, labels):
                self.cm += confusion(p, lab)
        else:
            logits = self.segmenter.logits(images)
            for lg, lab in zip(logits, labels):
                up = F.interpolate(lg[None], size=tuple(lab.shape[-2:]), mode="bilinear",
                                   align_corners=False)
                self.cm += confusion(up[0, :N_CLASSES].argmax(0).cpu(), lab)
        self.n += images.shape[0]

    def result(self) -> dict:
        if self.n == 0:
            raise DataError("mIoU of an empty set")
        out = scores(self.cm)
        out.update(n=self.n, protocol=PROTOCOL)
        return out


# ---------------------------------------------------------------- scoring entry points
def _load_uint8(path) -> torch.Tensor:
    im = load_rgb(path)
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy())


def check_pairs(pairs) -> None:
    """Decode every image and label map once; raise on the first bad file."""
    for img, lab in pairs:
        load_rgb(img)
        load_label_map(lab)


def score_folders(images, labels, segmenter: Optional[Segmenter] = None,
                  batch_size: int = 8, weights=None, input_size=INPUT_SIZE,
                  device=None) -> dict:
    """mIoU of the images of folder ``images`` against the label maps of folder ``labels``
    (matched by file name without extension). Every file is checked before the segmenter
    (``Segmenter.load(weights, input_size, device)`` unless given) runs."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    pairs = pair_by_name(images, labels)
    check_pairs(pairs)
    meter = MiouMeter(segmenter or Segmenter.load(weights, input_size, device))
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        imgs = [_load_uint8(p) for p, _ in chunk]
        labs = [torch.from_numpy(load_label_map(lab)) for _, lab in chunk]
        if len({tuple(t.shape) for t in imgs}) == 1:
            meter.update(torch.stack(imgs), labs)
        else:
            for im, lab in zip(imgs, labs):
                meter.update(im[None], [lab])
    return meter.result()


def score_tensors(images: torch.Tensor, labels, segmenter: Segmenter,
                  batch_size: int = 8) -> dict:
    """mIoU of generated images (float in [-1, 1] or uint8, (N, 3, H, W)) against label maps."""
    meter = MiouMeter(segmenter)
    for i in range(0, images.shape[0], batch_size):
        meter.update(images[i:i + batch_size], labels[i:i + batch_size])
    return meter.result()


@torch.no_grad()
def score_generator(generator, batches: Iterable[dict], segmenter: Segmenter,
                    **forward_kw) -> dict:
    """mIoU of a label-map -> photo generator over ``batches`` of a CamVid dataset built with
    ``native_gt=True`` (``A`` one-hot input, ``gt`` ground truth at its own size).

    ``forward_kw`` goes to the generator (``config=...`` for a supernet). The generator's mode
    is left as it was; call it in eval mode (after :func:`ganc.nn.calibrate.recalibrate_bn`
    for a sub-network of a batch-norm supernet).
    """
    meter = MiouMeter(segmenter)
    device = next(generator.parameters()).device
    for batch in batches:
        if "gt" not in batch:
            raise ConfigError("score_generator needs batches with 'gt' (CamVidDataset(..., "
                              "native_gt=True))")
        fake = generator(batch["A"].to(device), **forward_kw)
        meter.update(fake.cpu(), batch["gt"])
    return meter.result()


__all__ = ["BGR_MEAN", "BGR_STD", "INPUT_SIZE", "PROTOCOL", "Segmenter", "SegmenterError",
           "MiouMeter", "confusion", "scores", "score_folders", "score_tensors",
           "score_generator", "find_weights"]
