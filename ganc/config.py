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
from typing import Annotated, Any, Optional

import yaml

from .criteria import check_criterion as _check_criterion
from .errors import ConfigError
from .stages import STAGE_NAMES


# ---------------------------------------------------------------- declared ranges
@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field (of each item, for a list field), declared in
    the field's type: ``batch_size: PosInt = 1``. :func:`validate` checks every numeric
    field against it; any float field, ranged or not, must be finite."""
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False          # lo itself is excluded
    hi_open: bool = False

    def admits(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def describe(self) -> str:
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi}"
        if lo and hi:
            return f"in {'(' if self.lo_open else '['}{self.lo}, {self.hi}" \
                   f"{')' if self.hi_open else ']'}"
        return lo or hi or "finite"


MAX_SEED = 2 ** 32 - 1             # numpy's seeds are 32-bit
PosInt = Annotated[int, Range(1)]              # sizes, counts of things that must exist
Count = Annotated[int, Range(0)]               # 0 allowed (0: off / all / default)
Seed = Annotated[int, Range(0, MAX_SEED)]
Positive = Annotated[float, Range(0, lo_open=True)]   # learning rates, bandwidths, budgets
Weight = Annotated[float, Range(0)]            # loss weights, noise levels (0: off)
Prob = Annotated[float, Range(0, 1)]
Ratio = Annotated[float, Range(0, 1, lo_open=True)]   # (0, 1]: MACs ratios, shares
Beta = Annotated[float, Range(0, 1, hi_open=True)]    # Adam beta1, dropout
Ratios = Annotated[list, Range(0, 1, lo_open=True)]   # a list field: the range of each item
Widths = Annotated[list, Range(1)]
Budgets = Annotated[list, Range(0, lo_open=True)]  # MACs budgets: each positive


@dataclass
class DataConfig:
    """The dataset: where it is, its layout, image sizes and the held-out splits."""
    kind: str = "aligned"          # aligned | unaligned | camvid (label map -> photo, SPADE)
    root: str = ""                 # dataset folder or fsspec URL (s3://bucket/prefix,
                                   # file:///abs); empty -> generated demo data
    on_every_node: bool = False    # a local root is present at the same path on every node
    direction: str = "AtoB"        # AtoB | BtoA
    load_size: PosInt = 286        # training: resize to this, then random crop
    crop_size: PosInt = 256        # training crop; test-time resize
    flip: bool = True              # random horizontal flips in training
    serial: bool = False           # unaligned: pair A[i] with B[i mod |B|]
    train_split: str = "train"     # training folder (unaligned: train -> trainA, trainB)
    eval_split: str = "val"        # aligned: folder; unaligned: 'test' -> testA/testB
    search_split: Weight = 0.0     # training images held out for the search, fine-tune
                                   # selection and export: a fraction (<1) or a count (>=1)
                                   # of train_split (unaligned: of trainA and of trainB);
                                   # the supernet and fine-tune train on the rest, the
                                   # teacher on all. 0: none (the search then scores on
                                   # eval_split, which the report uses too)
    val_split: Weight = 0.0        # training images held out as the evaluation split
                                   # ('val', for data without a val / test folder): a
                                   # fraction (<1) or a count (>=1) of train_split, drawn
                                   # from what search_split leaves; the report scores on it
                                   # instead of eval_split. 0: none
    split_targets: bool = True     # unaligned: search_split / val_split hold out target
                                   # images too (their real set); false: source images only,
                                   # scored against fid_real (else the whole target folder)
    fid_real: str = ""             # folder(s) of real target images for FID, relative to root
                                   # ('' -> eval targets); several joined by ','
    batch_size: PosInt = 1         # the GLOBAL batch: split evenly over scale.workers
    demo_n: PosInt = 64            # generated data: images per training split
    demo_size: Annotated[int, Range(16)] = 64  # a multiple of 4 (checked when made)
    demo_seed: Seed = 0            # generated data: seed
    aspect_ratio: Positive = 0.75  # label-map data (camvid): height / width of the images
                                   # (width: crop_size); both sides multiples of 32 for SPADE


@dataclass
class ModelConfig:
    """The teacher, the supernet (student) and its search space, the discriminator."""
    teacher: str = "resnet_9blocks"  # teacher architecture: a registered generator
    teacher_ngf: PosInt = 64       # teacher's base width
    teacher_weights: str = ""      # released latest_net_G.pth, or '' to train one
    teacher_config: str = ""       # channel config of a sub-network teacher
                                   # (sub_mobile_resnet_9blocks / sub_mobile_spade), e.g.
                                   # 16_16_32_16_32_32_16_16; '': the config_str of the
                                   # model.json beside teacher_weights
    student: str = "super_mobile_resnet_9blocks"  # the supernet's architecture
    student_ngf: PosInt = 64       # the supernet's base (widest) width
    search_space: str = "channels-64-pix2pix"  # named space (`ganc nets` lists them)
    norm: str = "instance"         # generator normalization: instance | batch | none
    dropout: Beta = 0.0            # generator dropout
    netD: str = "n_layers"         # D of every stage: n_layers (PatchGAN) | multi_scale
    ndf: PosInt = 64               # D's base width (pix2pix presets: 128)
    n_layers_D: PosInt = 3         # D's conv layers (SPADE: 4)
    norm_D: str = "batch"          # D's normalization (pix2pix presets: instance)
    gan_mode: str = "vanilla"      # vanilla | lsgan | hinge


@dataclass
class TeacherConfig:
    """Training the teacher (pix2pix, CycleGAN or GauGAN recipe) on Ray Train."""
    epochs: Count = 100            # epochs at the constant LR (the reference's nepochs)
    epochs_decay: Count = 100      # then epochs of linear decay to 0 (nepochs_decay)
    steps: Count = 0               # >0: exactly this many steps instead (same LR shape)
    lr: Positive = 2e-4            # Adam, G (used as given: never rescaled)
    beta1: Beta = 0.5              # Adam beta1
    beta2: Beta = 0.999            # Adam beta2 (SPADE preset: 0.9)
    lr_D: Weight = 0.0             # the discriminator's LR (0: lr; SPADE's TTUR: 4e-4)
    lambda_feat: Weight = 10.0     # SPADE: discriminator feature matching
    lambda_perceptual: Weight = 10.0  # SPADE: Inception perceptual term (ganc.losses_spade)
    lambda_L1: Weight = 100.0      # pix2pix
    lambda_cycle: Weight = 10.0    # CycleGAN
    lambda_identity: Weight = 0.5  # CycleGAN identity term
    pool_size: Count = 50          # CycleGAN image pool
    checkpoint_every: PosInt = 200  # steps between checkpoints
    log_every: PosInt = 20         # steps between progress lines
    eval_every: Annotated[int, Range(-1)] = 0  # FID every n steps; 0: at the end; <0: never


@dataclass
class DistillConfig:
    """Distilling the once-for-all supernet from the teacher on Ray Train."""
    epochs: Count = 100            # epochs at the constant LR
    epochs_decay: Count = 100      # then epochs of linear decay to 0
    steps: Count = 0               # >0: exactly this many steps instead (same LR shape)
    lr: Positive = 2e-4            # Adam, G (used as given)
    beta1: Beta = 0.5              # Adam beta1
    beta2: Beta = 0.999            # Adam beta2 (SPADE: 0.9)
    lr_D: Weight = 0.0             # 0: lr
    lambda_feat: Weight = 10.0     # SPADE: feature matching
    lambda_perceptual: Weight = 10.0  # SPADE: perceptual term
    sampler: str = "uniform"       # uniform | sandwich (largest + smallest + one random)
    lambda_recon: Weight = 100.0   # pix2pix 100, CycleGAN 10
    lambda_distill: Weight = 1.0   # pix2pix 1, CycleGAN 0.01
    lambda_gan: Weight = 1.0       # GAN term
    # named feature-distillation points (SPADE: fc, head_0, G_middle_0/1, up_0..up_3)
    distill_points: list = field(default_factory=lambda: ["down2", "block3", "block6", "block9"])
    checkpoint_every: PosInt = 200  # steps between checkpoints
    log_every: PosInt = 20         # steps between progress lines
    eval_every: Count = 500        # FID of the largest and smallest sub-net every n steps
    space_widths: Widths = field(default_factory=list)  # non-empty: these widths at every
                                   # position instead of model.search_space (small students)
    eval_n: Count = 0              # FID during distillation on the first n eval images (0: all)


@dataclass
class SearchConfig:
    """The search for the best sub-network under the budgets (Ray Tune, FID pool)."""
    method: str = "evolution"      # evolution | nsga2
    budget_macs: Weight = 0.0      # at data.crop_size; 0: a tenth of the teacher's
    budgets: Budgets = field(default_factory=list)  # several MACs budgets (at data.crop_size),
                                   # searched side by side on one pool; the first is primary
    population: Annotated[int, Range(2)] = 100  # configs per generation
    parent_ratio: Ratio = 0.25     # share of the population kept as parents
    mutation_prob: Prob = 0.2      # per position; the reference's presets: 0.4 horse2zebra,
                                   # 0.3 edges2shoes-r / map2sat / cityscapes
    mutation_ratio: Prob = 0.5     # share of the children made by mutation (rest: crossover);
                                   # each generation makes `population` children
    weighted_sample: Positive = 1.0  # first generation: narrowest width this many times as likely
                                   # as the widest (1: uniform; the reference's horse2zebra: 2)
    generations: PosInt = 500      # rounds of the evolution
    seed: Seed = 0                 # the searcher's seed
    criterion: str = "fid"         # fid (minimised) | miou (ESPNet-CamVid mIoU, maximised;
                                   # label-map data only)
    calibration_images: Count = 256  # SPADE: training label maps that re-estimate a
                                   # sub-network's batch-norm statistics before it is scored
    max_concurrent: Count = 0      # unused since one Tune trial runs a whole search
    latency_objective: bool = False  # nsga2: the latency table's prediction as an objective
    budget_ms: Optional[Positive] = None  # latency budget (ms, by the latency table); None: off
    latency_runtime: str = "onnxruntime"  # runtime of the latency table: eager | onnxruntime
    latency_threads: Count = 1     # threads of the latency table (0: the runtime's default)
    latency_device: str = ""       # '' this machine (measured once, cached in the store);
                                   # else a device id whose table is in the store


@dataclass
class FinetuneConfig:
    """Fine-tuning the chosen sub-network; kept only when it scores better."""
    enabled: bool = True           # false: no fine-tune, the supernet's slice is exported
                                   # (the reference skips it where it hurts: horse2zebra)
    epochs: Count = 5              # epochs at the constant LR
    epochs_decay: Count = 15       # then epochs of linear decay to 0
    steps: Count = 0               # >0: exactly this many steps instead (same LR shape)
    lr: Positive = 2e-4            # Adam, G
    checkpoint_every: PosInt = 200  # steps between checkpoints
    log_every: PosInt = 20         # steps between progress lines


@dataclass
class PruneConfig:
    """Local-density pruning agents (genG, genD); one Ray Tune trial per target."""
    targets: Ratios = field(default_factory=list)  # G's MACs ratios; empty: the search budget
    base_model: str = "teacher"    # teacher | mobile (the supernet's largest sub-network)
    d_target: Ratio = 0.5          # D's MACs-ratio target
    steps: PosInt = 1000           # steps of the agents' search phase
    lr_agent: Positive = 5e-3      # the agents' (gate logits') Adam LR
    temperature: Positive = 0.5    # P(open) = sigmoid(logit / T) for sampled gates
    base: float = 3.0              # logit offset: gates start open (P(open) >= 0.99)
    tolerance: Weight = 0.005      # dead zone of the two-sided resource loss (MACs ratio)
    min_width: Annotated[float, Range(0, 1, hi_open=True)] = 0.1  # every group keeps at
                                   # least this share of its channels
    lambda_resource: Weight = 2.0  # two-sided resource loss
    lambda_lds: Weight = 1.0       # local-density loss
    lds_k: Annotated[int, Range(2)] = 4  # neighbourhood size
    lds_noise: Weight = 0.05       # noise on each neighbourhood copy
    lds_bandwidth: Positive = 1.0  # x both kernel widths (medians: within the original's
                                   # neighbourhood; over pruned and original pooled)
    lds_features: str = "discriminator"  # discriminator | fixed
    peer_feedback: bool = True     # each agent sees the other's state (--no-peer-feedback)
    prune_d: bool = True           # prune D too (--no-prune-d)
    use_lds: bool = True           # the local-density loss (--no-lds)
    sample_every: PosInt = 200     # steps between FID scorings of sub-generators
    samples: PosInt = 4            # scored each time: the deterministic one + samples-1
    lr: Weight = 0.0               # G's weights during the agents' search (0: frozen)
    lr_d: Weight = 2e-4            # D's weights during the search (D follows the pruned G)
    lambda_recon: Weight = 10.0    # L1 of the pruned G's output to the original's (search
                                   # phase; the fine-tune uses distill.lambda_recon)
    lambda_gan: Weight = 1.0       # GAN term of the search phase
    lds_perturb: str = "augment"   # augment (flip + shift + noise per copy) | noise
    lds_adv: Weight = 0.1          # weight of the adversarial neighbourhood term inside LDS
    finetune_steps: Annotated[int, Range(-1)] = -1  # fine-tune of the exported generator
                                   # with the search winner's recipe (-1: as long as the
                                   # search winner's, finetune.steps / epochs + epochs_decay)
    eval_n: Count = 0              # FID of sampled sub-generators on the first n eval images


@dataclass
class FidConfig:
    """FID / KID scoring and the FID actor pool."""
    extractor: str = "auto"        # auto | inception-v3-compat | fid-helper
    weights: str = ""              # local Inception weights file (optional)
    batch_size: PosInt = 16        # images per Inception batch
    num_actors: Count = 0          # 0: auto (one per GPU; on CPU one per free CPU)
    kid: bool = True               # search: KID only for each budget's Pareto set
    kid_subset_size: Annotated[int, Range(2)] = 1000  # KID: images per subset
    timeout_s: Positive = 600.0    # per scoring task: an actor past it is replaced


@dataclass
class ScaleConfig:
    """Ray resources: workers, GPU or CPU, custom resources, waits, restarts."""
    workers: PosInt = 1            # Ray Train workers (--workers)
    use_gpu: str = "auto"          # auto | true | false (see ganc.placement)
    cpus_per_worker: PosInt = 1    # per Train worker; DataLoader processes get all but one
    resources: dict = field(default_factory=dict)  # custom resources every Train worker,
                                   # FID actor and pruning trial requests, e.g. {accel: 1}
    wait_s: Positive = 900.0       # how long a resource request may stay unmet
    amp: bool = False              # bf16 autocast on GPU (the reference trains in fp32)
    max_failures: Count = 2        # Ray Train worker restarts
    cpu_crop_size: Count = 0       # >0: without a GPU, train/eval at this size (load_size
                                   # scaled alike), e.g. 128 on CPU for a 256px recipe


@dataclass
class StoreConfig:
    """The artifact store: a folder, file:// or s3://."""
    url: str = "./runs"            # file path / file:// or s3://bucket/prefix
    shared: bool = False           # a file:// store mounted on every node (NFS, FSx)
    run_id: str = ""               # empty: derived from the config name
    endpoint_url: str = ""         # S3-compatible server (else AWS_ENDPOINT_URL)


PIPELINE_STAGES = STAGE_NAMES       # the stages of `ganc compress`: ganc.stages


@dataclass
class PipelineConfig:
    """What `ganc compress` runs."""
    # Stages of `ganc compress`, in order; drop "prune" to skip the pruning variant.
    stages: list = field(default_factory=lambda: list(PIPELINE_STAGES))
    report_images: PosInt = 4      # rows of the input / teacher / compressed grid


@dataclass
class RunConfig:
    """A run: its name and seed, and one section per stage."""
    name: str = "run"              # run name: the run folder unless store.run_id
    seed: Seed = 0                 # the run's seed (held-out splits, sampling)
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
                if not math.isfinite(float(num)) or float(num) != int(float(num)):
                    raise ValueError
                return int(float(num))
            return float(num)
        except (TypeError, ValueError, OverflowError):
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
    if hints[parts[-1]] is str and isinstance(value, (int, float)):
        value = raw.strip()     # as typed: YAML reads 16_16_32_16_32_32_16_16 as one int
    setattr(obj, parts[-1], check_value(obj, parts[-1], _coerce(value, hints[parts[-1]], path),
                                        path))
    return cfg


# ---------------------------------------------------------------- validation
def _declared(cls, name: str):
    """(base type, Range or None) of a field, from its annotation."""
    hint = typing.get_type_hints(cls, include_extras=True)[name]
    if typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        return base, next((e for e in extras if isinstance(e, Range)), None)
    return hint, None


def _number_problem(v, base, rng: Optional[Range]) -> Optional[str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "is not a number"
    if not math.isfinite(v):
        return "is not a finite number"
    if base is int and v != int(v):
        return "is not an integer"
    if rng is not None and not rng.admits(v):
        return f"is out of range: must be {rng.describe()}"
    return None


def check_value(section, name: str, value, where: str):
    """``value`` for field ``name`` of the dataclass ``section`` (class or instance), checked
    against the field's declared range; one line naming ``where`` when it is not."""
    cls = section if isinstance(section, type) else type(section)
    base, rng = _declared(cls, name)
    if value is None:
        return value
    if base in (int, float):
        problem = _number_problem(value, base, rng)
        if problem:
            raise ConfigError(f"{where}: {value!r} {problem}")
    elif base is list and rng is not None:
        for item in value:
            problem = _number_problem(item, float, rng)
            if problem:
                raise ConfigError(f"{where}: item {item!r} {problem}")
    return value


def validate(cfg, prefix: str = ""):
    """Every numeric field of ``cfg`` (a RunConfig, or one section with its ``prefix`` such
    as ``"prune."``) finite and in its declared range; the first offender as one line
    naming the field (``data.batch_size: -1 is out of range: must be >= 1``)."""
    def walk(obj, prefix: str):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            where = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, where + ".")
            else:
                check_value(obj, f.name, value, where)
    walk(cfg, prefix)
    return cfg


LABEL_MAP_KINDS = ("camvid",)      # data kinds whose inputs are label maps (mIoU possible)


def check_criterion(cfg: RunConfig, method: Optional[str] = None) -> RunConfig:
    """``search.criterion`` is a searchable criterion, one needing label maps only on
    label-map data and, with ``method``, one that search method can rank by (one line;
    :func:`ganc.criteria.check_criterion`)."""
    _check_criterion(cfg.search.criterion, data_kind=cfg.data.kind,
                     label_map_kinds=LABEL_MAP_KINDS, method=method)
    return cfg


def set_field(cfg: RunConfig, path: str, value, where: str) -> RunConfig:
    """Set ``section.field`` from a command-line flag (``where``, e.g. ``--budget-macs``),
    coerced and checked like the config file's own value."""
    *sections, name = path.split(".")
    obj = cfg
    for part in sections:
        obj = getattr(obj, part)
    hints = typing.get_type_hints(type(obj))
    setattr(obj, name, check_value(obj, name, _coerce(value, hints[name], where), where))
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
    return check_criterion(validate(cfg))
