"""The runtime sections (FID scoring, Ray resources, the store, the pipeline) and
:class:`RunConfig`, which composes every section."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated

import yaml

from ..stages import STAGE_NAMES
from .inputs import DataConfig, ModelConfig
from .ranges import Count, PosInt, Positive, Range, Seed
from .stage_sections import (DistillConfig, FinetuneConfig, PruneConfig, SearchConfig,
                             TeacherConfig)


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

