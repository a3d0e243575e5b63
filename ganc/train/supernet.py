"""Once-for-all supernet distillation (GAN Compression "Fast", GUIDE §3).

A frozen teacher; a ``super_mobile_resnet_9blocks`` student whose sub-networks share
weights. Each step trains the sub-network(s) chosen by the sampler (``uniform``: one random
config; ``sandwich``: largest + smallest + one random) with

    lambda_recon * L1(student, target) + lambda_distill * sum_p MSE(map_p(s_p), t_p)
    + lambda_gan * GAN(D(student))

where target is the real B (paired) or the teacher's output (unpaired), p runs over the
named points (``distill.distill_points``) and map_p is a learnable 1x1 conv sliced to the
sub-network's width. A PatchGAN discriminator is trained alongside (on (A, B) pairs for
aligned data, on B alone for unaligned). Every ``eval_every`` steps rank 0 scores the
largest and smallest sub-networks by FID on the eval split.

The exported ``supernet/final.pt`` holds what the search stage needs: ``state_dict``
(supernet weights), ``netG``, ``ngf``, ``norm``, ``search_space`` (dict), ``teacher``
(reference), ``config`` and ``step``.
"""
from __future__ import annotations

import io
import os
from typing import Optional

import torch
import torch.nn as nn

from .. import nn as gnn
from ..config import RunConfig, from_dict
from ..context import stage_context
from ..errors import ConfigError, GancError, WeightsError
from ..families import family_of, supernet_names
from ..losses import FeatureDistiller
from ..modelio import read_model_json, teacher_spec
from ..space import SearchSpace, get_space
from ..store import open_store
from ..weights import cpu_state, load_weights
from . import common
from .evaluate import make_scorer
from .family import adversary, base_lrs, input_nc_of, optimizers
from .launch import run_stage, train_cpus
from .loop import load_modules, run_steps, seed_all, snapshot, train_batches
from .sampling import ConfigSampler
from .session import Session, open_session

STAGE = "supernet"


def search_space_of(cfg: RunConfig) -> SearchSpace:
    """``distill.space_widths`` (uniform) or the preset ``model.search_space``; checked
    against the student's width."""
    widths = [int(w) for w in cfg.distill.space_widths]
    family = family_of(cfg.model.student)
    fam, n = family.name, family.config_length(cfg.model.student)
    if widths:
        if any(w <= 0 for w in widths):
            raise ConfigError(f"distill.space_widths {widths} must be positive")
        space = SearchSpace.uniform("widths-" + "-".join(str(w) for w in widths), widths, fam,
                                    n)
    else:
        space = get_space(cfg.model.search_space)
        if space.family != fam:
            raise ConfigError(f"model.search_space {space.name!r} is a {space.family} space; "
                              f"model.student {cfg.model.student!r} is a {fam} generator")
        if len(space.choices) != n:
            raise ConfigError(f"model.search_space {space.name!r} has {len(space.choices)} "
                              f"positions; model.student {cfg.model.student!r} takes {n}")
    if space.max_width > cfg.model.student_ngf:
        raise ConfigError(f"search space {space.name!r} reaches width {space.max_width} > "
                          f"model.student_ngf {cfg.model.student_ngf}; raise student_ngf or "
                          "set distill.space_widths")
    return space


def student_norm(m) -> str:
    """The supernet's normalization: ``model.student_norm``, else ``model.norm``."""
    return m.student_norm or m.norm


class DistillNet(nn.Module):
    """Student supernet + feature mappings: one module (one DDP wrapper) whose forward
    runs a sub-network and returns its output and distillation loss."""

    def __init__(self, student: nn.Module, distiller: FeatureDistiller):
        super().__init__()
        self.student, self.distiller = student, distiller

    def forward(self, x, config, teacher_feats: dict, extra: Optional[dict] = None):
        """``extra``: the inputs beside the image (a MUNIT style code; ``ganc.extras``),
        the same the teacher was given."""
        out, feats = self.student.forward_features(x, config, self.distiller.points,
                                                   **(extra or {}))
        return out, self.distiller(feats, teacher_feats)


# ---------------------------------------------------------------- the teacher


def resolve_teacher(cfg: RunConfig, run) -> dict:
    """Where the teacher comes from: ``model.teacher_weights`` (a released
    ``latest_net_G.pth`` or any state dict, local path or URL, of any registered generator:
    a sub-network teacher carries its channel config, ``model.teacher_config`` or the
    model.json beside the weights, see :func:`ganc.modelio.teacher_spec`) or this run's
    ``teacher/final.pt``. The reference holds ``config_str`` (None: no channel config) and
    ``arch`` (a pruned teacher's widths, from its model card)."""
    m = cfg.model
    spec = teacher_spec(m)
    meta = {"netG": spec.netG, "ngf": spec.ngf, "norm": spec.norm, "dropout": spec.dropout,
            "input_nc": input_nc_of(spec.netG), "output_nc": 3, "config_str": spec.config,
            "arch": dict(spec.arch)}
    if m.teacher_weights:
        src = m.teacher_weights
        if "://" not in src:
            src = os.path.abspath(os.path.expanduser(src))
            if not os.path.isfile(src):
                raise ConfigError(f"model.teacher_weights {m.teacher_weights!r}: file not found")
        return {**meta, "source": src}
    if not run.exists("teacher/final.pt"):
        raise ConfigError(f"no teacher: set model.teacher_weights to a latest_net_G.pth, or "
                          f"train one first (ganc train-teacher); looked for "
                          f"{run.url('teacher/final.pt')}")
    final = run.get_torch("teacher/final.pt")
    meta.update({k: final[k] for k in ("netG", "ngf", "norm", "dropout", "input_nc",
                                       "output_nc", "config_str") if k in final})
    return {**meta, "source": run.url("teacher/final.pt"), "step": int(final.get("step", 0))}


def teacher_label(ref: dict) -> str:
    """``resnet_9blocks ngf=64 norm=instance``, or for a sub-network teacher
    ``sub_mobile_resnet_9blocks 16_16_32_16_32_32_16_16 norm=instance``."""
    width = ref.get("config_str") or ("(pruned widths)" if (ref.get("arch") or {}).get("widths")
                                      else f"ngf={ref.get('ngf')}")
    return f"{ref['netG']} {width} norm={ref.get('norm')}"


def _read_source(source: str, endpoint_url: str) -> bytes:
    if "://" not in source or source.startswith("file://"):
        path = source[len("file://"):] if source.startswith("file://") else source
        with open(path, "rb") as f:
            return f.read()
    parent, name = source.rsplit("/", 1)
    return open_store(parent, endpoint_url=endpoint_url or None).read_bytes(name)


def build_teacher(ref: dict) -> nn.Module:
    """The teacher's network (untrained) as a reference describes it."""
    return gnn.build(ref["netG"], ngf=int(ref["ngf"]), norm=ref["norm"],
                     dropout=float(ref.get("dropout", 0.0)), config=ref.get("config_str"),
                     **(ref.get("arch") or {}))


def load_teacher(ref: dict, endpoint_url: str = "") -> nn.Module:
    """The teacher with its weights, read with ``weights_only=True`` and loaded with strict
    key and shape matching; a checkpoint that does not fit gets one line naming the file
    and the first mismatch (and what a model.json beside it describes, when it differs)."""
    net = build_teacher(ref)
    try:
        return load_weights(net, io.BytesIO(_read_source(ref["source"], endpoint_url)),
                            arch=teacher_label(ref), name=ref["source"])
    except WeightsError as e:
        raise WeightsError(f"model.teacher_weights: {e}{_card_hint(ref)}") from None


def _card_hint(ref: dict) -> str:
    """``; the model.json beside it describes ...`` when a local weights file has a card
    whose architecture differs from the reference's."""
    src = ref.get("source", "")
    if "://" in src and not src.startswith("file://"):
        return ""
    try:
        card = read_model_json(src[len("file://"):] if src.startswith("file://") else src)
    except GancError:
        return ""
    netG, config = card.get("netG"), card.get("config_str") or card.get("config")
    if not netG or (netG == ref["netG"] and (config or None) == ref.get("config_str")):
        return ""
    fix = ("model.teacher_config" if netG == ref["netG"] else
           "model.teacher" + (" and model.teacher_config" if config else ""))
    return (f" (the model.json beside it describes {netG}" + (f" {config}" if config else "")
            + f": set {fix})")


# ---------------------------------------------------------------- per-worker loop


def supernet_loop(spec: dict) -> None:
    """Per-worker entry point (Ray Train ``train_loop_per_worker``)."""
    sess = open_session(spec)
    cfg = from_dict(spec["config"])
    _distill(sess, cfg, spec)


def _distill(sess: Session, cfg: RunConfig, spec: dict) -> None:
    dc, m, dev = cfg.distill, cfg.model, sess.device
    common.check_section(cfg, "distill")
    # aligned (unless read as unpaired pools), or label map -> photo pairs
    paired = cfg.data.kind != "unaligned" and not cfg.data.unpaired
    space = SearchSpace.from_dict(spec["search_space"])
    seed_all(cfg.seed)
    teacher = load_teacher(spec["teacher"], spec.get("endpoint_url", "")).to(dev).eval()
    common.set_requires_grad([teacher], False)
    student = gnn.build_for_training(m.student, ngf=m.student_ngf, norm=student_norm(m),
                                     dropout=m.dropout).to(dev)
    if not isinstance(student, gnn.SUPERNETS):
        raise ConfigError(f"model.student {m.student!r} is not a supernet "
                          f"(use {' or '.join(supernet_names())})")
    input_nc = input_nc_of(m.student)
    distiller = FeatureDistiller.from_models(
        student, teacher, dc.distill_points, input_nc=input_nc,
        size=family_of(m.student).probe_size(m.student)).to(dev)
    gen = DistillNet(student, distiller)
    adv = adversary(cfg, m.student, {"recon": dc.lambda_recon, "gan": dc.lambda_gan,
                                     "feat": dc.lambda_feat,
                                     "perceptual": dc.lambda_perceptual}, paired, dev)
    D = adv.D.to(dev)
    modules = {"student": student, "distiller": distiller, "D": D}
    opts = optimizers(dc, gen.parameters(), D.parameters())
    start = load_modules(modules, opts, sess.resume_state())
    sess.open_log(start)
    schedule, batches = train_batches(sess, cfg, spec, start)
    gen_p, D_p = common.wrap_ddp(gen, dev), common.wrap_ddp(D, dev)
    sampler = ConfigSampler(space, dc.sampler, cfg.seed)
    amp = cfg.scale.amp
    points = list(dc.distill_points)
    fam = family_of(m.student)

    def step_fn(step, batch):
        A, B = batch["A"].to(dev, non_blocking=True), batch["B"].to(dev, non_blocking=True)
        configs = sampler.configs(step)
        # inputs beside the image (a style code), drawn per step: teacher and student alike
        extra = fam.draw_inputs(student, A.shape[0], cfg.seed, first=step * A.shape[0],
                                device=dev)
        with torch.no_grad(), common.autocast(dev, amp):
            t_out, t_feats = teacher.forward_features(A, points, **extra)
        target = B if paired else t_out.detach()
        common.set_requires_grad([D], False)
        loss_G = 0.0
        parts = {"distill": 0.0}
        fakes = []
        n = len(configs)
        with common.autocast(dev, amp):
            for c in configs:
                out, l_distill = gen_p(A, c, t_feats, extra)
                l_task, terms = adv.g_loss(A, B, out, target)
                loss_G = loss_G + (l_task + dc.lambda_distill * l_distill) / n
                parts["distill"] += l_distill.item() / n
                for k, v in terms.items():
                    parts[k] = parts.get(k, 0.0) + v / n
                fakes.append(out.detach())
        opts["G"].zero_grad(set_to_none=True)
        loss_G.backward()
        opts["G"].step()
        common.set_requires_grad([D], True)
        with common.autocast(dev, amp):
            loss_D = adv.d_loss(D_p, A, B, fakes)
        opts["D"].zero_grad(set_to_none=True)
        loss_D.backward()
        opts["D"].step()
        return {**parts, "D": loss_D.item()}

    evaluate = None
    if dc.eval_every > 0 and sess.is_chief:
        scorer = make_scorer(cfg, spec, dev)
        if scorer is not None:
            def evaluate(step):
                return scorer.score(student, {"largest": space.largest(),
                                              "smallest": space.smallest()})

    def make_state(step):
        return snapshot(step, modules, opts, spec["config"])

    student.train(), distiller.train(), D.train()
    last = run_steps(sess, schedule=schedule, start=start,
                     checkpoint_every=dc.checkpoint_every, log_every=dc.log_every,
                     lr=base_lrs(dc),
                     opts=opts, batches=batches, train_step=step_fn, make_state=make_state,
                     eval_every=dc.eval_every, evaluate=evaluate)
    if sess.is_chief:
        sess.write_final({
            "netG": m.student, "ngf": m.student_ngf, "norm": student_norm(m),
            "dropout": m.dropout,
            "input_nc": input_nc, "output_nc": 3, "search_space": space.to_dict(),
            "teacher": spec["teacher"], "distill_points": points,
            "state_dict": cpu_state(student.state_dict()), "distiller": cpu_state(distiller.state_dict()),
            "netD": cpu_state(D.state_dict()), "config": spec["config"], "step": int(last),
            "schedule": schedule.to_dict()})


# ---------------------------------------------------------------- the stage


def train_supernet(cfg: RunConfig, store=None, *, runner: Optional[str] = None,
                   ctx=None) -> dict:
    """Distil the once-for-all supernet on Ray Train; returns what it wrote (``ctx``: the
    pipeline's run context, else one is opened)."""
    space = search_space_of(cfg)
    with stage_context(cfg, store, ray=runner != "local", num_cpus=train_cpus(cfg),
                       ctx=ctx) as ctx:
        teacher = resolve_teacher(ctx.cfg, ctx.run)
        load_teacher(teacher, ctx.endpoint_url)  # fails here in one line, not in workers
        return run_stage(STAGE, supernet_loop, ctx, runner=runner,
                         extra_spec={"search_space": space.to_dict(), "teacher": teacher})
