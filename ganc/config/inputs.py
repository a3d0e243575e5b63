"""The run's inputs: the dataset (``data``) and the networks (``model``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from .ranges import MAX_SEED, Beta, Count, PosInt, Positive, Range, Seed, Weight

DIRECTIONS = ("AtoB", "BtoA")      # data.direction: which side of a pair is the input


@dataclass
class DataConfig:
    """The dataset: where it is, its layout, image sizes and the held-out splits.

    Sizes: the training stages sample random crops train_crop_size wide (0: crop_size) of
    the images resized to load_size; everything evaluated (FID, search, MACs budgets,
    latency, export, report) is at crop_size."""
    kind: str = "aligned"          # aligned | unaligned | camvid (label map -> photo, SPADE)
    root: str = ""                 # dataset folder or fsspec URL (s3://bucket/prefix,
                                   # file:///abs); empty -> generated demo data
    on_every_node: bool = False    # a local root is present at the same path on every node
    direction: str = "AtoB"        # AtoB | BtoA
    load_size: PosInt = 286        # training: resize to this, then random crop
    crop_size: PosInt = 256        # the evaluation size (test-time resize; FID, MACs
                                   # budgets, latency, export) and the training crop
                                   # unless train_crop_size sets it
    train_crop_size: Count = 0     # training stages (teacher, supernet, fine-tunes, the
                                   # prune's agents unless prune.crop_size) train on random
                                   # crops this wide of the images resized to load_size
                                   # (0: crop_size); evaluation stays at crop_size
    flip: bool = True              # random horizontal flips in training
    serial: bool = False           # unaligned: pair A[i] with B[i mod |B|]
    unpaired: bool = False         # aligned: read the A and B halves as two unpaired pools
                                   # (a training image's A with a random file's B; MUNIT on
                                   # sketch/photo AB files, the input half must be the sketch)
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
    split_seed: Annotated[int, Range(-1, MAX_SEED)] = -1  # seed of the search_split and
                                   # val_split draws (-1: the run's seed), so runs of other
                                   # seeds can be scored on the same held-out images
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
    student_norm: str = ""         # the supernet's (and its sub-networks') normalization
                                   # if it differs from the teacher's: instance | batch |
                                   # none; '': model.norm
    dropout: Beta = 0.0            # generator dropout
    netD: str = "n_layers"         # D of every stage: n_layers (PatchGAN) | multi_scale
    ndf: PosInt = 64               # D's base width (pix2pix presets: 128)
    n_layers_D: PosInt = 3         # D's conv layers (SPADE: 4)
    norm_D: str = "batch"          # D's normalization (pix2pix presets: instance)
    gan_mode: str = "vanilla"      # vanilla | lsgan | hinge


def split_seed(cfg) -> int:
    """The seed the held-out splits (``data.search_split``, ``data.val_split``) are drawn
    with: ``data.split_seed``, else (-1) the run's ``seed``."""
    s = int(cfg.data.split_seed)
    return int(cfg.seed) if s < 0 else s


def train_crop(data: DataConfig) -> int:
    """The side of the random training crops every training stage samples
    (``data.train_crop_size``, else ``data.crop_size``); the pruning agents' own override
    is ``prune.crop_size`` (:func:`ganc.prune.trial.agents_crop`)."""
    return int(data.train_crop_size or data.crop_size)
