"""Everything a command needs, checked before it starts Ray or writes a key.

:func:`check_run` resolves and checks, in this order, each as one line of what it
checked or one line per problem:

- the **config**: every field in range, the search space and criterion known, the
  stages known (:func:`ganc.config.validate`);
- the **store**: reachable, and writable for commands that write (a local store's
  nearest existing folder; on S3 a temporary key written and removed at the root);
- the **run's inputs** of a single-stage command: what its upstream stages leave in the
  run (``ganc search`` reads ``supernet/final.pt``), unless the config gives it
  (``model.teacher_weights``) or the command does (``--subnet-config``);
- the **teacher checkpoint** ``model.teacher_weights``: loaded with ``weights_only=True``
  into the net the config builds, every key and shape matching;
- the **budgets** below the teacher's MACs;
- the **discriminator** of training stages: the family's adversarial terms build from
  the config and the discriminator takes the run's image sizes, and the generators take
  the training crops (``data.train_crop_size``);
- the **data** (:mod:`ganc.data.check`): the folders the stages read, layout, split
  sizes, and decoded images: a sample of each folder before a command, all of them under
  ``ganc check``.

:func:`require` is what a command calls: the first problem, raised (one line, exit 2),
before anything exists of a run that did not. ``ganc check`` prints them all.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from .config import RunConfig, check_criterion, validate
from .context import check_budgets, open_run
from .data.check import check_dataset
from .data.splits import image_hw
from .errors import ConfigError, Findings, one_line
from .families import check_prunable, family_of
from .stages import stage as declared
from .train.supernet import search_space_of
from .train.teacher import check_given_teacher

# What a single-stage command reads from its run, by the stage that writes it (the key
# is that stage's first declared artifact): the teacher unless model.teacher_weights
# gives it, the search's best.json unless --subnet-config names the config.
READS = {"supernet": ("teacher",), "search": ("supernet",), "prune": ("teacher",),
         "finetune": ("supernet", "search"), "export": ("supernet", "search")}
TRAINS = {"teacher", "supernet", "prune", "finetune"}     # stages that train against a D
COMMANDS = {"teacher": "ganc train-teacher", "supernet": "ganc train-supernet",
            "search": "ganc search", "prune": "ganc prune", "finetune": "ganc finetune",
            "export": "ganc export"}


def _config(cfg: RunConfig, method: Optional[str], stage: Optional[str]) -> str:
    validate(cfg)
    check_criterion(cfg, method)
    if stage != "teacher" and (stage or set(cfg.pipeline.stages) - {"teacher"}):
        search_space_of(cfg)          # the space fits the student (and its family)
    space = ("distill.space_widths" if cfg.distill.space_widths
             else f"search space {cfg.model.search_space}")
    return (f"config {cfg.name}: every field in range; teacher {cfg.model.teacher}, {space}, "
            f"criterion {cfg.search.criterion}; stages {', '.join(cfg.pipeline.stages)}")


def _reads(cfg: RunConfig, stage: str, subnet_config: Optional[str]) -> list[str]:
    """The upstream stages whose outputs a single ``stage`` command reads from its run."""
    reads = list(READS.get(stage, ()))
    if stage == "prune" and cfg.prune.base_model == "mobile":
        reads = ["supernet"]
    if subnet_config:
        reads = [u for u in reads if u != "search"]
    return [u for u in reads if not (declared(u).given_by and _given(cfg, declared(u).given_by))]


def _given(cfg: RunConfig, dotted: str) -> bool:
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return bool(obj)


def _store(cfg: RunConfig, store, write: bool, stage: Optional[str],
           subnet_config: Optional[str]) -> str:
    root, run = open_run(cfg, store)
    access = root.check_access(write)
    exists = bool(run.children(""))
    for upstream in _reads(cfg, stage, subnet_config) if stage else ():
        key = declared(upstream).artifacts[0]
        if not exists or not run.exists(key):
            what = f"run {run.url()} does not exist" if not exists else \
                f"{run.url(key)} is missing"
            raise ConfigError(f"no {upstream}: {COMMANDS[stage]} reads the {upstream} stage's "
                              f"{key}, and "
                              f"{what}: run {COMMANDS[upstream]} (or ganc compress) first"
                              + (", or set model.teacher_weights" if upstream == "teacher"
                                 else ""))
    return (f"store {root.url()}: {access}; run {run.url()}: "
            + ("exists" if exists else "new (nothing is written before the checks pass)"))


def _teacher(cfg: RunConfig) -> str:
    if not cfg.model.teacher_weights:
        return f"teacher: {cfg.model.teacher}, trained by the run (no model.teacher_weights)"
    ref = check_given_teacher(cfg)
    arch = ref["netG"] + (f" {ref['config_str']}" if ref.get("config_str") else "")
    return (f"teacher: model.teacher_weights {ref['source']} loaded (weights_only) into "
            f"{arch}: every key and shape fits")


def _adversary(cfg: RunConfig) -> str:
    """The family's adversarial terms build from the config (SPADE's need the multiscale
    discriminator and the hinge loss) and its discriminator takes the run's image sizes
    (``data.crop_size``, ``scale.cpu_crop_size`` where a CPU placement uses it, the
    training crops ``data.train_crop_size`` and the pruning agents' crops,
    ``prune.crop_size``; a PatchGAN of ``n_layers_D`` halvings
    needs sides of at least 3 x 2^n_layers_D): one line naming the fields, not a worker's
    traceback minutes into training."""
    import torch  # deferred: torch
    data, m = cfg.data, cfg.model
    fam = family_of(m.teacher)
    adv = fam.adversary(cfg, {}, data.kind != "unaligned", "cpu")
    sizes = []
    for field, width in (("data.crop_size", data.crop_size),
                         ("scale.cpu_crop_size", cfg.scale.cpu_crop_size),
                         ("data.train_crop_size", data.train_crop_size),
                         ("prune.crop_size", cfg.prune.crop_size)):
        if not width:
            continue
        h, w = image_hw(dataclasses.replace(data, crop_size=int(width)))
        try:
            with torch.no_grad():
                adv.D(adv.d_input(torch.zeros(1, fam.input_nc, h, w), torch.zeros(1, 3, h, w)))
        except (RuntimeError, ValueError) as e:     # a conv's kernel or a norm's 1x1 input
            raise ConfigError(f"{field} {width}: the discriminator (model.netD {m.netD}, "
                              f"model.n_layers_D {m.n_layers_D}) cannot take {w}x{h} (WxH) "
                              f"images ({one_line(e, limit=120)}); raise {field} or lower "
                              "model.n_layers_D") from None
        sizes.append(f"{w}x{h}")
    return f"discriminator: {m.netD} takes {' and '.join(sizes)} (WxH) images"


def _train_crop(cfg: RunConfig) -> str:
    """``data.train_crop_size`` a side the teacher and the supernet take: a multiple of
    their family's :meth:`~ganc.families.Family.side_multiple` (a U-Net of L levels halves
    its input L times: 128 for ``unet_128``, so it cannot train on smaller crops)."""
    crop, m = int(cfg.data.train_crop_size), cfg.model
    for field, net in (("model.teacher", m.teacher), ("model.student", m.student)):
        fam = family_of(net)
        k = fam.side_multiple(net)
        if crop % k:
            raise ConfigError(f"data.train_crop_size {crop}: {field} {net} ({fam.title}) takes "
                              f"sides that are multiples of {k} only; set a multiple of {k} "
                              "(at most data.load_size) or 0 (train at data.crop_size)")
    return f"training crops: {crop}x{crop} (data.train_crop_size) fit the generators"


def _prunable(cfg: RunConfig) -> str:
    check_prunable(cfg.model.teacher)
    return f"prune: the {family_of(cfg.model.teacher).title} family has pruning agents"


def _budgets(cfg: RunConfig) -> str:
    check_budgets(cfg)
    return "budgets: below the teacher's MACs"


def check_run(cfg: RunConfig, store=None, *, write: bool = True, full: bool = False,
              stage: Optional[str] = None, method: Optional[str] = None,
              subnet_config: Optional[str] = None) -> Findings:
    """What a command on ``cfg`` needs (see the module docstring); ``stage``: the stage a
    single-stage command runs (None: ``ganc compress`` or ``ganc check``); ``full``:
    decode every image of a local dataset. Starts nothing, writes no key."""
    found = Findings()
    line = found.attempt(_config, cfg, method, stage)
    if line is None:                  # the rest reads the config: stop at a bad one
        return found
    found.checked.append(line)
    stages = [stage] if stage else list(cfg.pipeline.stages)
    checks = [(_store, (cfg, store, write, stage, subnet_config)), (_teacher, (cfg,)),
              (_budgets, (cfg,))]
    if set(stages) & TRAINS:
        checks.append((_adversary, (cfg,)))
        if cfg.data.train_crop_size:
            checks.append((_train_crop, (cfg,)))
    if "prune" in stages:
        checks.append((_prunable, (cfg,)))
    for check, args in checks:
        line = found.attempt(check, *args)
        if line is not None:
            found.checked.append(line)
    data = found.attempt(check_dataset, cfg.data, cfg.store.endpoint_url or "", full=full,
                         stages=stages)
    return found.extend(data) if data is not None else found


def require(cfg: RunConfig, store=None, *, stage: Optional[str] = None,
            method: Optional[str] = None, subnet_config: Optional[str] = None,
            write: bool = True) -> list[str]:
    """:func:`check_run` with a sampled decode, its first problem raised (one line); what
    it checked otherwise. Call it before Ray starts or anything is written."""
    found = check_run(cfg, store, write=write, stage=stage, method=method,
                      subnet_config=subnet_config)
    found.raise_first()
    return found.checked


__all__ = ["check_run", "require", "READS"]
