"""The sections of the training and compression stages: teacher, distill, search,
finetune and prune."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Optional

from .ranges import (Beta, Budgets, Count, PosInt, Positive, Prob, Range, Ratio, Ratios, Seed,
                     Weight, Widths)


@dataclass
class TeacherConfig:
    """Training the teacher (pix2pix, CycleGAN, GauGAN or MUNIT recipe) on Ray Train."""
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
    lambda_rec_x: Weight = 10.0    # MUNIT: image reconstruction (within each domain)
    lambda_rec_s: Weight = 1.0     # MUNIT: style-code reconstruction
    lambda_rec_c: Weight = 1.0     # MUNIT: content-code reconstruction
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
    checkpoint_every: Count = 100  # steps between a target's resume checkpoints, in the
                                   # agents' phase and in its fine-tune (0: none)
    crop_size: Count = 0           # the agents' phase trains on random crops this wide of
                                   # the images resized to data.load_size (0: the run's
                                   # training crop, data.train_crop_size, else
                                   # data.crop_size); the fine-tune after it trains on
                                   # data.train_crop_size crops; MACs, budget, scoring and
                                   # export stay at data.crop_size
    tag: str = ""                  # appended to each target's folder, prune/p<target>-<tag>
                                   # (letters, digits, _ and .; at most 32): keeps variants
                                   # the other tags do not tell apart (e.g. step counts)

