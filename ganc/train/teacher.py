"""Teacher training for users without a pretrained teacher.

- aligned data: pix2pix. ResNet generator, conditional PatchGAN on (A, B),
  ``GAN + lambda_L1 * L1``.
- unaligned data: CycleGAN. Two generators (A->B kept as the teacher, B->A), two
  discriminators, cycle loss ``lambda_cycle`` and identity ``lambda_identity *
  lambda_cycle``, an image pool per discriminator (``teacher.pool_size``).
- MUNIT (``model.teacher: munit``, unpaired pools): one auto-encoder per domain and an
  ``ms_image`` discriminator each; LSGAN on the cross-domain translations with random style
  codes, ``lambda_rec_x`` x image, ``lambda_rec_s`` x style-code and ``lambda_rec_c`` x
  content-code reconstruction (the reference's ``MunitModel``). The teacher kept is the
  A->B translator: A's content encoder with B's style encoder, MLP and decoder.

The recipe is the teacher's family's (:meth:`ganc.families.Family.teacher_recipe`).

Adam (lr, beta1 0.5), LR constant for ``teacher.epochs`` then linearly to 0 over
``teacher.epochs_decay`` (:mod:`ganc.train.schedule`).
``teacher_loop`` is the per-worker function (plain PyTorch; Ray only through the session);
``train_teacher`` is the stage: it runs the loop on Ray Train and returns what it wrote.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch.utils.data import Subset

from .. import nn as gnn
from ..config import RunConfig, from_dict
from ..context import stage_context
from ..data.source import DataRef
from ..data.splits import build_split, eval_split
from ..errors import GancError
from ..families import family_of, teacher_names
from ..families.resnet import build_discriminator   # also ganc.prune.models', from here
from ..store import torch_bytes
from ..losses import GANLoss, ImagePool, discriminator_loss, recon_l1
from ..weights import cpu_state
from . import common
from .evaluate import make_scorer
from .family import adversary, base_lrs, input_nc_of, optimizers
from .launch import run_stage, train_cpus
from .loop import load_modules, run_steps, seed_all, snapshot, train_batches
from .session import Session, open_session
from .supernet import load_teacher, resolve_teacher, teacher_label

STAGE = "teacher"
VAL_PSNR_IMAGES = 200          # paired data: PSNR on at most this many eval images at the end


def build_generator(cfg: RunConfig) -> nn.Module:
    m = cfg.model
    if m.teacher not in teacher_names():
        raise common.ConfigError(f"model.teacher {m.teacher!r}: teacher training builds "
                                 f"{', '.join(teacher_names())}")
    if not family_of(m.teacher).reads(cfg.data):
        raise common.ConfigError(f"model.teacher {m.teacher!r} does not fit data.kind "
                                 f"{cfg.data.kind!r} (spade: label-map data, camvid)")
    return gnn.build_for_training(m.teacher, ngf=m.teacher_ngf, norm=m.norm, dropout=m.dropout)


class CycleGenerators(nn.Module):
    """Both CycleGAN generators in one module, so one DDP wrapper syncs both."""

    def __init__(self, G_A: nn.Module, G_B: nn.Module):
        super().__init__()
        self.G_A, self.G_B = G_A, G_B

    def forward(self, real_A, real_B, identity: bool):
        fake_B = self.G_A(real_A)
        rec_A = self.G_B(fake_B)
        fake_A = self.G_B(real_B)
        rec_B = self.G_A(fake_A)
        idt_A = self.G_A(real_B) if identity else None
        idt_B = self.G_B(real_A) if identity else None
        return fake_B, rec_A, fake_A, rec_B, idt_A, idt_B


def teacher_metadata(cfg: RunConfig) -> dict:
    m = cfg.model
    recipe = family_of(m.teacher).teacher_recipe(cfg.data)
    return {"netG": m.teacher, "ngf": m.teacher_ngf, "norm": m.norm, "dropout": m.dropout,
            "input_nc": input_nc_of(m.teacher), "output_nc": 3, "recipe": recipe,
            "direction": cfg.data.direction}


def teacher_loop(spec: dict) -> None:
    """Per-worker entry point (Ray Train ``train_loop_per_worker``)."""
    sess = open_session(spec)
    cfg = from_dict(spec["config"])
    _RECIPES[family_of(cfg.model.teacher).teacher_recipe(cfg.data)](sess, cfg, spec)


def _adam(params, tc):
    return torch.optim.Adam(params, lr=tc.lr, betas=(tc.beta1, tc.beta2))


def _pix2pix(sess: Session, cfg: RunConfig, spec: dict) -> None:
    tc, dev = cfg.teacher, sess.device
    seed_all(cfg.seed)
    G = build_generator(cfg).to(dev)
    D = build_discriminator(cfg, 6).to(dev)
    modules = {"G": G, "D": D}
    opts = {"G": _adam(G.parameters(), tc), "D": _adam(D.parameters(), tc)}
    start = load_modules(modules, opts, sess.resume_state())
    sess.open_log(start)
    stream = train_batches(sess, cfg, spec, start)
    Gp, Dp = common.wrap_ddp(G, dev), common.wrap_ddp(D, dev)
    gan = GANLoss(cfg.model.gan_mode)
    amp = cfg.scale.amp

    def step_fn(step, batch):
        A, B = batch["A"].to(dev, non_blocking=True), batch["B"].to(dev, non_blocking=True)
        with common.autocast(dev, amp):
            fake = Gp(A)
            # discriminator
            common.set_requires_grad([D], True)
            loss_D = discriminator_loss(gan, Dp(torch.cat([A, B], 1)),
                                        Dp(torch.cat([A, fake.detach()], 1)))
        opts["D"].zero_grad(set_to_none=True)
        loss_D.backward()
        opts["D"].step()
        common.set_requires_grad([D], False)
        with common.autocast(dev, amp):
            loss_gan = gan(D(torch.cat([A, fake], 1)), True, for_discriminator=False)
            loss_l1 = recon_l1(fake, B)
            loss_G = loss_gan + tc.lambda_L1 * loss_l1
        opts["G"].zero_grad(set_to_none=True)
        loss_G.backward()
        opts["G"].step()
        return {"G_GAN": loss_gan.item(), "G_L1": loss_l1.item(), "D": loss_D.item()}

    _run(sess, cfg, spec, modules, opts, stream, step_fn, start, G,
         {"netD": lambda: D.state_dict()}, final_metrics=lambda: _val_psnr(cfg, spec, G, dev))


def _spade(sess: Session, cfg: RunConfig, spec: dict) -> None:
    """GauGAN: label map -> photo with the SPADE family's terms (:mod:`ganc.families.spade`):
    multiscale hinge GAN, feature matching, perceptual; TTUR through ``teacher.lr`` /
    ``lr_D`` and ``beta1`` / ``beta2``."""
    tc, dev = cfg.teacher, sess.device
    seed_all(cfg.seed)
    G = build_generator(cfg).to(dev)
    adv = adversary(cfg, cfg.model.teacher, {"gan": 1.0, "feat": tc.lambda_feat,
                                             "perceptual": tc.lambda_perceptual, "recon": 0.0},
                    True, dev)
    D = adv.D.to(dev)
    modules = {"G": G, "D": D}
    opts = optimizers(tc, G.parameters(), D.parameters())
    start = load_modules(modules, opts, sess.resume_state())
    sess.open_log(start)
    stream = train_batches(sess, cfg, spec, start)
    Gp, Dp = common.wrap_ddp(G, dev), common.wrap_ddp(D, dev)
    amp = cfg.scale.amp

    def step_fn(step, batch):
        A, B = batch["A"].to(dev, non_blocking=True), batch["B"].to(dev, non_blocking=True)
        common.set_requires_grad([D], False)
        with common.autocast(dev, amp):
            fake = Gp(A)
            loss_G, parts = adv.g_loss(A, B, fake, B)
        opts["G"].zero_grad(set_to_none=True)
        loss_G.backward()
        opts["G"].step()
        common.set_requires_grad([D], True)
        with common.autocast(dev, amp):
            loss_D = adv.d_loss(Dp, A, B, [fake.detach()])
        opts["D"].zero_grad(set_to_none=True)
        loss_D.backward()
        opts["D"].step()
        return {**parts, "D": loss_D.item()}

    _run(sess, cfg, spec, modules, opts, stream, step_fn, start, G,
         {"netD": lambda: D.state_dict()})


def _cyclegan(sess: Session, cfg: RunConfig, spec: dict) -> None:
    tc, dev = cfg.teacher, sess.device
    seed_all(cfg.seed)
    G_A, G_B = build_generator(cfg).to(dev), build_generator(cfg).to(dev)
    D_A, D_B = build_discriminator(cfg, 3).to(dev), build_discriminator(cfg, 3).to(dev)
    gens = CycleGenerators(G_A, G_B)
    modules = {"G_A": G_A, "G_B": G_B, "D_A": D_A, "D_B": D_B}
    opts = {"G": _adam(gens.parameters(), tc),
            "D": _adam(list(D_A.parameters()) + list(D_B.parameters()), tc)}
    state = sess.resume_state()
    start = load_modules(modules, opts, state)
    pools = {"A": ImagePool(tc.pool_size), "B": ImagePool(tc.pool_size)}
    for k, pool in pools.items():
        if state and f"pool_{k}" in state:
            pool.load(state[f"pool_{k}"], dev)
    sess.open_log(start)
    stream = train_batches(sess, cfg, spec, start)
    gens_p = common.wrap_ddp(gens, dev)
    D_Ap, D_Bp = common.wrap_ddp(D_A, dev), common.wrap_ddp(D_B, dev)
    gan = GANLoss(cfg.model.gan_mode)
    amp, lam, lam_idt = cfg.scale.amp, tc.lambda_cycle, tc.lambda_identity
    use_idt = lam_idt > 0

    def step_fn(step, batch):
        real_A = batch["A"].to(dev, non_blocking=True)
        real_B = batch["B"].to(dev, non_blocking=True)
        common.set_requires_grad([D_A, D_B], False)
        with common.autocast(dev, amp):
            fake_B, rec_A, fake_A, rec_B, idt_A, idt_B = gens_p(real_A, real_B, use_idt)
            g_gan = (gan(D_A(fake_B), True, for_discriminator=False)
                     + gan(D_B(fake_A), True, for_discriminator=False))
            cycle = recon_l1(rec_A, real_A) + recon_l1(rec_B, real_B)
            idt = (recon_l1(idt_A, real_B) + recon_l1(idt_B, real_A)) if use_idt else \
                torch.zeros((), device=dev)
            loss_G = g_gan + lam * cycle + lam * lam_idt * idt
        opts["G"].zero_grad(set_to_none=True)
        loss_G.backward()
        opts["G"].step()
        common.set_requires_grad([D_A, D_B], True)
        with common.autocast(dev, amp):
            loss_DA = discriminator_loss(gan, D_Ap(real_B), D_Ap(pools["B"].query(fake_B)))
            loss_DB = discriminator_loss(gan, D_Bp(real_A), D_Bp(pools["A"].query(fake_A)))
        opts["D"].zero_grad(set_to_none=True)
        (loss_DA + loss_DB).backward()
        opts["D"].step()
        return {"G_GAN": g_gan.item(), "cycle": cycle.item(), "idt": float(idt),
                "D": (loss_DA + loss_DB).item()}

    _run(sess, cfg, spec, modules, opts, stream, step_fn, start, G_A,
         {"netD": lambda: D_A.state_dict(), "netG_B": lambda: G_B.state_dict()},
         extra_state=lambda: {"pool_A": pools["A"].state(), "pool_B": pools["B"].state()})


def munit_translator(G_A: nn.Module, G_B: nn.Module) -> nn.Module:
    """The A->B MUNIT teacher: a generator of G_B's kind whose content encoder is G_A's
    (shared modules, not copies: it follows the training)."""
    T = type(G_B)(G_B.input_nc, G_B.output_nc, G_B.ngf, G_B.style_dim, G_B.mlp_dim)
    T.enc_content, T.enc_style, T.mlp, T.dec = G_A.enc_content, G_B.enc_style, G_B.mlp, G_B.dec
    return T


class _MunitPair(nn.Module):
    """Both MUNIT auto-encoders in one module (one DDP wrapper): the reference's forward."""

    def __init__(self, G_A: nn.Module, G_B: nn.Module):
        super().__init__()
        self.G_A, self.G_B = G_A, G_B

    def forward(self, x_a, x_b, s_a, s_b):
        c_a, c_b = self.G_A.encode_content(x_a), self.G_B.encode_content(x_b)
        out = {"c_a": c_a, "c_b": c_b,
               "rec_a": self.G_A.decode(c_a, self.G_A.encode_style(x_a)),
               "rec_b": self.G_B.decode(c_b, self.G_B.encode_style(x_b)),
               "x_ba": self.G_A.decode(c_b, s_a), "x_ab": self.G_B.decode(c_a, s_b)}
        out.update(c_b_rec=self.G_A.encode_content(out["x_ba"]),
                   s_a_rec=self.G_A.encode_style(out["x_ba"]),
                   c_a_rec=self.G_B.encode_content(out["x_ab"]),
                   s_b_rec=self.G_B.encode_style(out["x_ab"]))
        return out


def _munit(sess: Session, cfg: RunConfig, spec: dict) -> None:
    tc, dev = cfg.teacher, sess.device
    seed_all(cfg.seed)
    G_A, G_B = build_generator(cfg).to(dev), build_generator(cfg).to(dev)
    advs = [adversary(cfg, cfg.model.teacher, {"gan": 1.0, "recon": 0.0}, False, dev)
            for _ in range(2)]
    D_A, D_B = advs[0].D.to(dev), advs[1].D.to(dev)
    gens = _MunitPair(G_A, G_B)
    modules = {"G_A": G_A, "G_B": G_B, "D_A": D_A, "D_B": D_B}
    opts = optimizers(tc, gens.parameters(), list(D_A.parameters()) + list(D_B.parameters()))
    start = load_modules(modules, opts, sess.resume_state())
    sess.open_log(start)
    stream = train_batches(sess, cfg, spec, start)
    gens_p = common.wrap_ddp(gens, dev)
    D_Ap, D_Bp = common.wrap_ddp(D_A, dev), common.wrap_ddp(D_B, dev)
    amp, style_dim = cfg.scale.amp, G_A.style_dim

    def step_fn(step, batch):
        x_a, x_b = batch["A"].to(dev, non_blocking=True), batch["B"].to(dev, non_blocking=True)
        s_a = torch.randn(x_a.shape[0], style_dim, device=dev)
        s_b = torch.randn(x_b.shape[0], style_dim, device=dev)
        common.set_requires_grad([D_A, D_B], False)
        with common.autocast(dev, amp):
            o = gens_p(x_a, x_b, s_a, s_b)
            g_gan = advs[0].g_gan(o["x_ba"]) + advs[1].g_gan(o["x_ab"])
            rec_x = recon_l1(o["rec_a"], x_a) + recon_l1(o["rec_b"], x_b)
            rec_s = recon_l1(o["s_a_rec"], s_a) + recon_l1(o["s_b_rec"], s_b)
            rec_c = (recon_l1(o["c_a_rec"], o["c_a"].detach())
                     + recon_l1(o["c_b_rec"], o["c_b"].detach()))
            loss_G = (g_gan + tc.lambda_rec_x * rec_x + tc.lambda_rec_s * rec_s
                      + tc.lambda_rec_c * rec_c)
        opts["G"].zero_grad(set_to_none=True)
        loss_G.backward()
        opts["G"].step()
        common.set_requires_grad([D_A, D_B], True)
        with common.autocast(dev, amp):
            loss_D = (advs[0].d_loss(D_Ap, None, x_a, [o["x_ba"].detach()])
                      + advs[1].d_loss(D_Bp, None, x_b, [o["x_ab"].detach()]))
        opts["D"].zero_grad(set_to_none=True)
        loss_D.backward()
        opts["D"].step()
        return {"G_GAN": g_gan.item(), "rec_x": rec_x.item(), "rec_s": rec_s.item(),
                "rec_c": rec_c.item(), "D": loss_D.item()}

    _run(sess, cfg, spec, modules, opts, stream, step_fn, start, munit_translator(G_A, G_B),
         {"netD": lambda: D_B.state_dict(), "netG_A": lambda: G_A.state_dict(),
          "netG_B": lambda: G_B.state_dict()})


_RECIPES = {"pix2pix": _pix2pix, "cyclegan": _cyclegan, "spade": _spade, "munit": _munit}


def _val_psnr(cfg: RunConfig, spec: dict, G: nn.Module, dev) -> dict:
    """PSNR of the trained pix2pix teacher on (the first images of) the eval split: a
    check, in the log and the model card, that it learned its task. {} if unreadable."""
    from ..metrics.psnr import split_psnr  # deferred: torch_fidelity
    try:
        ds = build_split(cfg, DataRef.from_spec(spec["data"]).local(), eval_split(cfg.data),
                         train=False)
    except (GancError, OSError) as e:
        common.say(f"[{STAGE}] warning: no val PSNR: {str(e).splitlines()[0][:200]}")
        return {}
    ds = Subset(ds, range(min(len(ds), VAL_PSNR_IMAGES)))
    res = split_psnr(G, ds, device=dev)
    common.say(f"[{STAGE}] val PSNR {res['psnr']:.2f} dB on {res['images']} "
               f"{eval_split(cfg.data)} images")
    return {"val_psnr": res["psnr"], "val_psnr_images": res["images"]}


def _run(sess, cfg, spec, modules, opts, stream, step_fn, start, G, final_extra,
         extra_state=None, final_metrics=None) -> None:
    tc = cfg.teacher
    schedule, batches = stream
    common.check_section(cfg, "teacher")

    def make_state(step):
        return snapshot(step, modules, opts, spec["config"],
                        extra_state() if extra_state else None)

    # teacher.eval_every: >0 every n steps and at the end; 0 at the end only; <0 never
    evaluate = None
    every = tc.eval_every if tc.eval_every > 0 else \
        (schedule.total_steps if tc.eval_every == 0 else 0)
    if tc.eval_every >= 0 and sess.is_chief:
        scorer = make_scorer(cfg, spec, sess.device)
        if scorer is not None:
            def evaluate(step):
                return scorer.score(G, {"G": None})

    for m in modules.values():
        m.train()
    last = run_steps(sess, schedule=schedule, start=start,
                     checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
                     lr=base_lrs(tc),
                     opts=opts, batches=batches, train_step=step_fn, make_state=make_state,
                     eval_every=every, evaluate=evaluate)
    if sess.is_chief:
        measured = final_metrics() if final_metrics is not None else {}
        payload = {**teacher_metadata(cfg), "state_dict": cpu_state(G.state_dict()),
                   **{k: cpu_state(f()) for k, f in final_extra.items()},
                   "config": spec["config"], "step": int(last),
                   "schedule": schedule.to_dict(), **measured}
        # the released layout (weights + card) as a unit first, final.pt (the stage's
        # "finished" mark) last: a crash in between leaves the stage unfinished, redone
        sess.store.commit_unit(STAGE, {"latest_net_G.pth": torch_bytes(cpu_state(G.state_dict())),
                                       "model.json": {**teacher_metadata(cfg), **measured}})
        sess.write_final(payload)


def check_given_teacher(cfg: RunConfig) -> dict:
    """``model.teacher_weights`` loaded into the teacher's architecture (any registered
    generator, a released compressed sub-network with its channel config included) with
    ``weights_only=True`` and strict keys, from the file as given, before a run writes
    anything: a file that does not fit fails in one line naming it and the first
    mismatch. Returns the teacher's reference (:func:`ganc.train.supernet.resolve_teacher`)."""
    ref = resolve_teacher(cfg, None)
    load_teacher(ref, cfg.store.endpoint_url)
    return ref


def given_teacher(cfg: RunConfig, store=None, *, ctx=None) -> dict:
    """The teacher stage when ``model.teacher_weights`` is set: the checkpoint is loaded
    (:func:`check_given_teacher`) and the run opened (unless the pipeline's ``ctx`` is
    given); nothing is trained. Needs no Ray."""
    ref = check_given_teacher(cfg)
    with stage_context(cfg, store, ray=False, ctx=ctx):     # the run opened (its lease held)
        pass
    common.say(f"[{STAGE}] using {ref['source']} ({teacher_label(ref)}); not trained")
    return {"trained": False, "skipped": True, "source": ref["source"], "final": ref["source"],
            "netG": ref["netG"], "config_str": ref.get("config_str"), "step": 0,
            "metrics": {}}


def train_teacher(cfg: RunConfig, store=None, *, runner: Optional[str] = None,
                  ctx=None) -> dict:
    """Train a teacher on Ray Train; returns what it wrote (see ``launch.run_stage``;
    ``ctx``: the pipeline's run context, else one is opened). With
    ``model.teacher_weights`` set, that teacher is loaded instead and nothing is trained
    (:func:`given_teacher`)."""
    if cfg.model.teacher_weights:
        return given_teacher(cfg, store, ctx=ctx)
    with stage_context(cfg, store, ray=runner != "local", num_cpus=train_cpus(cfg),
                       ctx=ctx) as ctx:
        return run_stage(STAGE, teacher_loop, ctx, runner=runner)
