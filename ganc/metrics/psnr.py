"""PSNR of a paired (pix2pix) generator against the real targets of a split.

A cheap, deterministic check that a generator learned its task (FID needs many images to
mean anything; PSNR is per image). Outputs are quantised to uint8 as saved images would
be, and compared with the real targets at the test-time size.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

MAX_VALUE = 255.0


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> float tensors of their uint8 levels (0..255)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round()


def psnr_db(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of [-1, 1] batches (N, C, H, W), on uint8 levels."""
    mse = ((to_uint8_levels(fake) - to_uint8_levels(real)) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(MAX_VALUE ** 2 / mse.clamp_min(1e-10))


@torch.no_grad()
def split_psnr(generator: torch.nn.Module, dataset: Dataset, batch_size: int = 8,
               device="cpu") -> dict:
    """Mean PSNR (dB) of ``generator(A)`` against ``B`` over an aligned dataset's items
    (``{"A", "B"}`` in [-1, 1]); the generator's train/eval mode is restored."""
    was_training = generator.training
    generator.eval()
    values = []
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            A = torch.stack([it["A"] for it in items]).to(device)
            B = torch.stack([it["B"] for it in items]).to(device)
            values.append(psnr_db(generator(A), B).cpu())
    finally:
        generator.train(was_training)
    per_image = torch.cat(values)
    mean = float(per_image.mean())
    return {"psnr": mean if math.isfinite(mean) else float("nan"), "images": len(per_image)}
