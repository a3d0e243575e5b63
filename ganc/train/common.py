"""Plain-PyTorch pieces shared by the per-worker training loops (no Ray here).

Data (datasets of a split, one DataLoader per stage serving each rank its part of the
global batches, resumable at a step), devices and autocast, DDP wrapping, progress lines and
TensorBoard scalars. The step schedule lives in :mod:`ganc.train.schedule`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from ..cache import cache_dir as _cache_dir
from ..config import validate
from ..log import say  # noqa: F401  (re-exported: common.say, used by train/ and pipeline)
from .schedule import GlobalBatchSampler

# ---------------------------------------------------------------- data


def cache_dir() -> str:
    return _cache_dir()


class SeededItems(Dataset):
    """Items addressed as ``(index, seed)``: ``random`` is seeded for each item (and its
    state restored after), so the datasets' random augmentation depends on the seed alone,
    not on which process or DataLoader worker loads the item."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        state = random.getstate()
        random.seed(seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(state)


def loader_workers(cpus_per_worker: float) -> int:
    """DataLoader processes of a Train worker: its CPUs minus the training process."""
    return max(0, int(cpus_per_worker) - 1)


def batch_loader(dataset: Dataset, global_batch: int, rank: int, world: int, seed: int,
                 start: int = 0, stop: Optional[int] = None, num_workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """One DataLoader for a whole stage: this rank's part of every global batch from step
    ``start`` to ``stop`` (None: for ever); see :class:`ganc.train.schedule.GlobalBatchSampler`."""
    sampler = GlobalBatchSampler(len(dataset), global_batch, rank, world, seed, start, stop)
    return DataLoader(SeededItems(dataset), batch_sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0, pin_memory=pin_memory)


# ---------------------------------------------------------------- optimisation


def set_lr(opts, base_lr: float, factor: float) -> None:
    for opt in opts:
        for g in opt.param_groups:
            g["lr"] = base_lr * factor


def set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def check_section(cfg, section: str) -> None:
    """The ranges ganc.config declares for ``cfg.<section>``, as one-line errors."""
    validate(getattr(cfg, section), f"{section}.")


# ---------------------------------------------------------------- devices, DDP


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when ``amp``; nothing on CPU (fp32)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel when a process group of >1 ranks exists."""
    rank, world = distributed()
    if world <= 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def mean_across_ranks(values: dict) -> dict:
    """Average scalar metrics over ranks (one all-reduce)."""
    rank, world = distributed()
    if world <= 1 or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    backend = dist.get_backend()
    if backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t.cpu().tolist())}


# ---------------------------------------------------------------- progress and logs


class Meter:
    """Running means of losses between log lines, and images/s."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0
        self.images = 0
        self.t0 = time.perf_counter()

    def add(self, losses: dict, images: int) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.n += 1
        self.images += images

    def pop(self) -> dict:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        out = {k: v / max(self.n, 1) for k, v in self.sums.items()}
        out["images_per_s"] = self.images / dt
        out["step_time_s"] = dt / max(self.n, 1)
        self.__init__()
        return out


def fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def progress_line(stage: str, step: int, steps: int, metrics: dict, world: int) -> str:
    losses = " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                      if k not in ("images_per_s", "step_time_s", "step", "lr", "epoch"))
    ips = metrics.get("images_per_s", 0.0) * world
    eta = metrics.get("step_time_s", 0.0) * (steps - step)
    epoch = f" (epoch {metrics['epoch']:.2f})" if "epoch" in metrics else ""
    return (f"[{stage}] step {step}/{steps}{epoch} {losses} | {ips:.1f} img/s | "
            f"eta {fmt_eta(eta)}")


class ScalarLog:
    """Metrics as JSON lines (``metrics.jsonl`` in the store) and TensorBoard events.

    Rank 0 only. The JSON lines are re-uploaded whole at each checkpoint; on a resume
    lines past the resumed step are dropped, so the log matches the weights.
    TensorBoard events go to ``tb_dir`` (the store's folder for file:// stores, a
    local cache folder uploaded at checkpoints for s3://).
    """

    def __init__(self, lines: list, tb_dir: Optional[str]):
        self.lines = lines
        self.tb = None
        self.tb_dir = tb_dir
        if tb_dir:
            try:
                from tensorboardX import SummaryWriter  # deferred: tensorboardX
                os.makedirs(tb_dir, exist_ok=True)
                self.tb = SummaryWriter(tb_dir, flush_secs=30)
            except ImportError:  # pragma: no cover - tensorboardX ships with ray[tune]
                self.tb = None

    def scalars(self, step: int, metrics: dict) -> None:
        self.lines.append({"step": int(step), **{k: float(v) for k, v in metrics.items()}})
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(k, float(v), int(step))

    def event(self, **fields) -> None:
        self.lines.append({"event": fields.pop("event"), **fields, "time": time.time()})

    def dumps(self) -> bytes:
        return "".join(json.dumps(x, sort_keys=True) + "\n" for x in self.lines).encode()

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def parse_lines(data: bytes, upto_step: Optional[int] = None) -> list:
    out = []
    for line in data.decode().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if upto_step is not None and "event" not in rec and rec.get("step", 0) > upto_step:
            continue
        out.append(rec)
    return out


def finite(x: float) -> bool:
    return math.isfinite(float(x))
