"""Plain-PyTorch pieces shared by the per-worker training loops (no Ray here).

Data (demo-data resolution, a resumable distributed batch stream), the LR schedule,
devices and autocast, DDP wrapping, progress lines and TensorBoard scalars.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from typing import Iterator, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..config import DataConfig, RunConfig
from ..data import build_dataset, make_demo_data
from ..data.demo import demo_folder_name
from ..errors import ConfigError

# ---------------------------------------------------------------- data


def cache_dir() -> str:
    return os.environ.get("GANC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ganc")


def demo_kind(data: DataConfig) -> str:
    if data.kind == "aligned":
        return "paired"
    if data.kind == "unaligned":
        return "unpaired"
    raise ConfigError(f"data.kind {data.kind!r} is not one of: aligned, unaligned")


def resolve_data_root(data: DataConfig) -> str:
    """``data.root``, or (when empty) generated demo data cached under
    ``<GANC_CACHE or ~/.cache/ganc>/demo/<kind>-<n>-<size>-<seed>-task<version>``, made
    once."""
    if data.root:
        root = os.path.abspath(os.path.expanduser(data.root))
        if not os.path.isdir(root):
            raise ConfigError(f"data.root {data.root!r}: folder not found")
        return root
    kind = demo_kind(data)
    out = os.path.join(cache_dir(), "demo",
                       demo_folder_name(kind, data.demo_n, data.demo_size, data.demo_seed))
    if not os.path.isfile(os.path.join(out, "demo.json")):
        try:
            make_demo_data(kind, data.demo_n, data.demo_size, out, seed=data.demo_seed)
        except (ConfigError, OSError):
            if not os.path.isfile(os.path.join(out, "demo.json")):  # lost a race: fine
                raise
    return out


def eval_split(data: DataConfig) -> str:
    """The evaluation split; demo unpaired data names it 'test'."""
    if not data.root and data.kind == "unaligned" and data.eval_split == "val":
        return "test"
    return data.eval_split


def build_split(cfg: RunConfig, root: str, split: str, train: bool) -> Dataset:
    d = cfg.data
    return build_dataset(d.kind, root, split, d.direction, d.load_size if train else d.crop_size,
                         d.crop_size, d.flip if train else False, d.serial, cfg.seed)


class BatchStream:
    """Batches of a distributed sampler, addressed by global step so a resumed run picks
    up at the batch it stopped before. Each rank sees its own shard of every epoch."""

    def __init__(self, dataset: Dataset, batch_size: int, rank: int, world: int, seed: int,
                 num_workers: int = 0):
        self.ds, self.rank, self.world, self.seed = dataset, rank, world, seed
        self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                          seed=seed, drop_last=False)
        per_rank = len(self.sampler)
        self.batch_size = max(1, min(int(batch_size), per_rank))
        self.per_epoch = max(1, per_rank // self.batch_size)
        self.num_workers = num_workers

    def from_step(self, step: int) -> Iterator[dict]:
        epoch, offset = divmod(int(step), self.per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            random.seed(self.seed * 7919 + epoch * 104729 + self.rank)
            idx = list(self.sampler)[offset * self.batch_size: self.per_epoch * self.batch_size]
            loader = DataLoader(self.ds, batch_size=self.batch_size, sampler=idx,
                                num_workers=self.num_workers, drop_last=True)
            yield from loader
            epoch, offset = epoch + 1, 0


# ---------------------------------------------------------------- optimisation


def lr_factor(step: int, steps: int, decay_from: float) -> float:
    """1 until ``decay_from * steps``, then linearly down to 0 at ``steps``."""
    start = int(round(decay_from * steps))
    if step < start or steps <= start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / float(steps - start))


def set_lr(opts, base_lr: float, factor: float) -> None:
    for opt in opts:
        for g in opt.param_groups:
            g["lr"] = base_lr * factor


def set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def check_positive(section: str, **values) -> None:
    for name, v in values.items():
        if v is None or v <= 0:
            raise ConfigError(f"{section}.{name} must be positive, got {v!r}")


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
                      if k not in ("images_per_s", "step_time_s", "step", "lr"))
    ips = metrics.get("images_per_s", 0.0) * world
    eta = metrics.get("step_time_s", 0.0) * (steps - step)
    return (f"[{stage}] step {step}/{steps} {losses} | {ips:.1f} img/s | "
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
                from tensorboardX import SummaryWriter
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


def say(msg: str) -> None:
    print(msg, file=sys.stdout, flush=True)


def finite(x: float) -> bool:
    return math.isfinite(float(x))
