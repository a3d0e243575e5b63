"""Run configuration: one dataclass per stage, composed into ``RunConfig``.

Loaded from YAML (``configs/*.yaml``) with overrides such as ``--set distill.steps=200``.
Unknown fields and ill-typed values fail with one line naming the file and field.
The resolved config is saved beside every artifact of a run.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from .errors import ConfigError


@dataclass
class DataConfig:
    kind: str = "aligned"          # aligned | unaligned
    root: str = ""                 # dataset folder or fsspec URL (s3://bucket/prefix,
                                   # file:///abs); empty -> generated demo data
    on_every_node: bool = False    # a local root is present at the same path on every node
    direction: str = "AtoB"        # AtoB | BtoA
    load_size: int = 286           # training: resize to this, then random crop
    crop_size: int = 256           # training crop; test-time resize
    flip: bool = True
    serial: bool = False           # unaligned: pair A[i] with B[i mod |B|]
    train_split: str = "train"
    eval_split: str = "val"        # aligned: folder; unaligned: 'test' -> testA/testB
    fid_real: str = ""             # folder(s) of real target images for FID, relative to root
                                   # ('' -> eval targets); several joined by ','
    batch_size: int = 1            # the GLOBAL batch: split evenly over scale.workers
    demo_n: int = 64               # generated data: images per training split
    demo_size: int = 64
    demo_seed: int = 0


@dataclass
class ModelConfig:
    teacher: str = "resnet_9blocks"
    teacher_ngf: int = 64
    teacher_weights: str = ""      # released latest_net_G.pth, or '' to train one
    student: str = "super_mobile_resnet_9blocks"
    student_ngf: int = 64
    search_space: str = "channels-64-pix2pix"
    norm: str = "instance"
    dropout: float = 0.0
    netD: str = "n_layers"
    ndf: int = 64
    n_layers_D: int = 3
    norm_D: str = "batch"
    gan_mode: str = "vanilla"      # vanilla | lsgan | hinge


@dataclass
class TeacherConfig:
    epochs: int = 100              # epochs at the constant LR (the reference's nepochs)
    epochs_decay: int = 100        # then epochs of linear decay to 0 (nepochs_decay)
    steps: int = 0                 # >0: exactly this many steps instead (same LR shape)
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_L1: float = 100.0       # pix2pix
    lambda_cycle: float = 10.0     # CycleGAN
    lambda_identity: float = 0.5
    pool_size: int = 50
    checkpoint_every: int = 200
    log_every: int = 20
    eval_every: int = 0            # 0: only at the end


@dataclass
class DistillConfig:
    epochs: int = 100
    epochs_decay: int = 100
    steps: int = 0                 # >0: exactly this many steps instead (same LR shape)
    lr: float = 2e-4
    beta1: float = 0.5
    sampler: str = "uniform"       # uniform | sandwich
    lambda_recon: float = 100.0    # pix2pix 100, CycleGAN 10
    lambda_distill: float = 1.0    # pix2pix 1, CycleGAN 0.01
    lambda_gan: float = 1.0
    distill_points: list = field(default_factory=lambda: ["down2", "block3", "block6", "block9"])
    checkpoint_every: int = 200
    log_every: int = 20
    eval_every: int = 500
    space_widths: list = field(default_factory=list)  # non-empty: these widths at every
                                   # position instead of model.search_space (small students)
    eval_n: int = 0                # FID during distillation on the first n eval images (0: all)


@dataclass
class SearchConfig:
    method: str = "evolution"      # evolution | nsga2
    budget_macs: float = 0.0       # 0: a tenth of the teacher's MACs
    population: int = 100
    parent_ratio: float = 0.25
    mutation_prob: float = 0.2     # per position; the reference's presets: 0.4 horse2zebra,
                                   # 0.3 edges2shoes-r / map2sat / cityscapes
    mutation_ratio: float = 0.5    # share of the children made by mutation (rest: crossover);
                                   # each generation makes `population` children
    weighted_sample: float = 1.0   # first generation: narrowest width this many times as likely
                                   # as the widest (1: uniform; the reference's horse2zebra: 2)
    generations: int = 500
    seed: int = 0
    max_concurrent: int = 0        # 0: fit the FID pool
    latency_objective: bool = False  # nsga2: the latency table's prediction as an objective
    budget_ms: Optional[float] = None  # latency budget (ms, by the latency table); None: off
    latency_runtime: str = "onnxruntime"  # runtime of the latency table: eager | onnxruntime
    latency_threads: int = 1       # threads of the latency table (0: the runtime's default)
    latency_device: str = ""       # '' this machine (measured once, cached in the store);
                                   # else a device id whose table is in the store


@dataclass
class FinetuneConfig:
    epochs: int = 5
    epochs_decay: int = 15
    steps: int = 0                 # >0: exactly this many steps instead (same LR shape)
    lr: float = 2e-4
    checkpoint_every: int = 200
    log_every: int = 20


@dataclass
class PruneConfig:
    targets: list = field(default_factory=list)  # G's MACs ratios; empty: the search budget
    base_model: str = "teacher"    # teacher | mobile (the supernet's largest sub-network)
    d_target: float = 0.5
    steps: int = 1000
    lr_agent: float = 5e-3
    temperature: float = 0.5       # P(open) = sigmoid(logit / T) for sampled gates
    base: float = 3.0              # logit offset: gates start open (P(open) >= 0.99)
    tolerance: float = 0.005       # dead zone of the two-sided resource loss (MACs ratio)
    min_width: float = 0.1         # every group keeps at least this share of its channels
    lambda_resource: float = 2.0
    lambda_lds: float = 1.0
    lds_k: int = 4                 # neighbourhood size
    lds_noise: float = 0.05
    lds_bandwidth: float = 1.0     # x the median distance within each neighbourhood
    lds_features: str = "discriminator"  # discriminator | fixed
    peer_feedback: bool = True
    prune_d: bool = True
    use_lds: bool = True
    sample_every: int = 200
    samples: int = 4
    lr: float = 0.0                # G's weights during the agents' search (0: frozen)
    lr_d: float = 2e-4             # D's weights during the search (D follows the pruned G)
    lambda_recon: float = 10.0     # L1 of the pruned G's output to the original's
    lambda_gan: float = 1.0
    lds_perturb: str = "augment"   # augment (flip + shift + noise per copy) | noise
    lds_adv: float = 0.1           # weight of the adversarial neighbourhood term inside LDS
    finetune_steps: int = -1       # fine-tune of the exported generator (-1: as long as the
                                   # search winner's, finetune.steps / epochs + epochs_decay)
    eval_n: int = 0                # FID of sampled sub-generators on the first n eval images


@dataclass
class FidConfig:
    extractor: str = "auto"        # auto | inception-v3-compat | fid-helper
    weights: str = ""              # local Inception weights file (optional)
    batch_size: int = 16
    num_actors: int = 1
    kid: bool = True
    kid_subset_size: int = 1000


@dataclass
class ScaleConfig:
    workers: int = 1
    use_gpu: str = "auto"          # auto | true | false (see ganc.placement)
    cpus_per_worker: int = 1       # per Train worker; DataLoader processes get all but one
    resources: dict = field(default_factory=dict)  # custom resources every Train worker,
                                   # FID actor and pruning trial requests, e.g. {accel: 1}
    wait_s: float = 900.0          # how long a resource request may stay unmet
    amp: bool = False              # bf16 autocast on GPU (the reference trains in fp32)
    max_failures: int = 2
    cpu_crop_size: int = 0         # >0: without a GPU, train/eval at this size (load_size
                                   # scaled alike), e.g. 128 on CPU for a 256px recipe


@dataclass
class StoreConfig:
    url: str = "./runs"            # file path / file:// or s3://bucket/prefix
    shared: bool = False           # a file:// store mounted on every node (NFS, FSx)
    run_id: str = ""               # empty: derived from the config name
    endpoint_url: str = ""         # S3-compatible server (else AWS_ENDPOINT_URL)


PIPELINE_STAGES = ("teacher", "supernet", "search", "prune", "finetune", "export", "report")


@dataclass
class PipelineConfig:
    # Stages of `ganc compress`, in order; drop "prune" to skip the pruning variant.
    stages: list = field(default_factory=lambda: list(PIPELINE_STAGES))
    report_images: int = 4         # rows of the input / teacher / compressed grid


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    fid: FidConfig = field(default_factory=FidConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------- building from dicts
def _coerce(value: Any, typ, where: str):
    origin = typing.get_origin(typ)
    if typ is Any:
        return value
    if origin is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no",
                                                        "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            num = float(value) if isinstance(value, str) else value
            if typ is int:
                if float(num) != int(float(num)):
                    raise ValueError
                return int(float(num))
            return float(num)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    if typ is dict or origin is dict:
        return _coerce_resources(value, where)
    if typ is list or origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            value = [yaml.safe_load(v) for v in value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]            # --set prune.targets=0.1
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of fields, got {value!r}")
        return _build(typ, value, where)
    return value


RESERVED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def _coerce_resources(value: Any, where: str) -> dict:
    """A mapping of resource names to positive numbers (``scale.resources``)."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping such as {{accel: 1}}, got {value!r}")
    out = {}
    for k, v in value.items():
        name = str(k).strip()
        if not name:
            raise ConfigError(f"{where}: empty resource name")
        if name in RESERVED_RESOURCES:
            raise ConfigError(f"{where}.{name}: set CPUs with scale.cpus_per_worker and GPUs "
                              "with scale.use_gpu; resources holds custom resources only")
        num = _coerce(v, float, f"{where}.{name}")
        if not math.isfinite(num) or num <= 0:
            raise ConfigError(f"{where}.{name}: expected a positive number, got {v!r}")
        out[name] = num
    return out


def _build(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: unknown field {key!r}; known: {', '.join(sorted(names))}")
    kw = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kw)


def from_dict(data: dict, where: str = "config") -> RunConfig:
    return _build(RunConfig, data or {}, where)


def apply_override(cfg: RunConfig, assignment: str, where: str = "--set") -> RunConfig:
    """Apply ``section.field=value`` (value parsed as YAML) to ``cfg`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"{where} {assignment!r}: expected section.field=value")
    path, raw = assignment.split("=", 1)
    parts = path.strip().split(".")
    obj = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise ConfigError(f"{where} {assignment!r}: unknown field {'.'.join(parts[:i + 1])!r}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
    hints = typing.get_type_hints(type(obj))
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    setattr(obj, parts[-1], _coerce(value, hints[parts[-1]], path))
    return cfg


def load_config(path: Optional[str] = None, overrides=(), store: Optional[str] = None) -> RunConfig:
    """Read a YAML config (or defaults), apply ``--set`` overrides and ``--store``."""
    data = {}
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" (line {mark.line + 1})" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{at}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
    cfg = from_dict(data, where=path or "config")
    for ov in overrides or ():
        apply_override(cfg, ov)
    if store:
        cfg.store.url = store
    return cfg
