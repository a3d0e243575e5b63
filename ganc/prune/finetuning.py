"""Fine-tuning a sliced generator with the search winner's recipe (plain PyTorch, no Ray).

:class:`FinetuneRecipe` reads the recipe from a run's config (the supernet loop of
:mod:`ganc.train.supernet` with one fixed network, as ``ganc finetune`` runs it);
:func:`finetune` trains a pruned generator and its sliced discriminator with it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..losses import FeatureDistiller, GANLoss, discriminator_loss, recon_l1
from ..train.common import set_lr, set_requires_grad
from ..train.family import base_lrs, optimizers
from ..train.loop import load_modules, rng_state, set_rng_state, snapshot
from ..train import schedule


@dataclass(frozen=True)
class FinetuneRecipe:
    """How a pruned generator is fine-tuned: the search winner's recipe (the supernet
    loop of :mod:`ganc.train.supernet` with one fixed network, as ``ganc finetune`` runs
    it), read from the run's config by :meth:`of`."""
    steps: int
    lr: float = 2e-4
    lr_D: float = 0.0             # 0: lr
    beta1: float = 0.5
    beta2: float = 0.999
    decay_start: int = 0          # the LR is constant before this step, then linear to 0
    lambda_recon: float = 100.0
    lambda_gan: float = 1.0
    lambda_distill: float = 1.0
    points: tuple = ("down2", "block3", "block6", "block9")

    @classmethod
    def of(cls, cfg, steps: int) -> "FinetuneRecipe":
        """``distill.*`` weights, betas and points with ``finetune.lr`` and the shape of
        ``finetune.epochs`` (constant) + ``epochs_decay`` (linear decay) over ``steps``."""
        d, f = cfg.distill, cfg.finetune
        steps = int(steps)
        return cls(steps=steps, lr=float(f.lr), lr_D=float(d.lr_D or 0.0),
                   beta1=float(d.beta1), beta2=float(d.beta2),
                   decay_start=schedule.decay_start(steps, int(f.epochs), int(f.epochs_decay)),
                   lambda_recon=float(d.lambda_recon), lambda_gan=float(d.lambda_gan),
                   lambda_distill=float(d.lambda_distill),
                   points=tuple(str(p) for p in d.distill_points))

    def lr_factor(self, step: int) -> float:
        return schedule.linear_decay(step, self.decay_start, self.steps)


def distill_points(G: nn.Module, teacher: nn.Module, wanted) -> List[str]:
    """The wanted named feature points both networks have (a 6-block network has no
    ``block9``): the feature distillation's points."""
    g = getattr(G, "feature_points", {}) or {}
    t = getattr(teacher, "feature_points", {}) or {}
    return [p for p in wanted if p in g and p in t]


def finetune(G: nn.Module, D: nn.Module, teacher: nn.Module, batches: Iterable,
             recipe: FinetuneRecipe, *, paired: bool = True, gan_mode: str = "vanilla",
             device="cpu", start: Optional[dict] = None, checkpoint_every: int = 0,
             checkpoint: Optional[Callable[[int, dict], None]] = None,
             progress: Optional[Callable[[int, dict], None]] = None) -> List[dict]:
    """Fine-tune a sliced generator (and its sliced D) in place with ``recipe``:

        lambda_recon * L1(G(x), target) + lambda_distill * sum_p MSE(map_p(G_p(x)), T_p(x))
        + lambda_gan * GAN(D(G(x)))

    ``target`` the real B on paired data, else the original's output T(x); map_p are
    learnable 1x1 convs from G's features to the original's at the named points (trained
    with G, not exported); D sees (A, image) pairs on paired data. D's real samples are
    the batches' real B either way (on unpaired data real target-domain images, as the
    supernet's D sees them), never the original's outputs. Returns per-step losses.

    Resume: every ``checkpoint_every`` steps (0: never) and at the last,
    ``checkpoint(step, state)`` gets the state the next steps depend on (G, D, the
    mappings and both optimizers, the losses so far, torch's random state; tensors and
    numbers only); ``start``, such a state, continues from its step (then ``batches``
    must start at that step's batch). ``progress(step, losses)`` after every step."""
    dev = torch.device(device)
    G, D, T = G.to(dev).train(), D.to(dev).train(), teacher.to(dev).eval()
    points = distill_points(G, T, recipe.points) if recipe.lambda_distill > 0 else []
    distiller = (FeatureDistiller.from_models(G, T, points, input_nc=G.input_nc, size=64)
                 .to(dev).train() if points else None)
    gan = GANLoss(gan_mode)
    g_params = list(G.parameters()) + (list(distiller.parameters()) if distiller else [])
    lrs = base_lrs(recipe)
    opts = optimizers(recipe, g_params, D.parameters())
    oG, oD = opts["G"], opts["D"]
    cat = (lambda a, y: torch.cat([a, y], 1)) if paired else (lambda a, y: y)
    modules = {"G": G, "D": D, **({"distiller": distiller} if distiller is not None else {})}
    first = load_modules(modules, opts, start) if start else 0
    hist: List[dict] = [dict(h) for h in start["history"]] if start else []
    if start:
        set_rng_state(start.get("rng"))
    it = iter(batches)
    with torch.enable_grad():
        for step in range(first, recipe.steps):
            for name, opt in opts.items():
                set_lr([opt], lrs[name], recipe.lr_factor(step))
            batch = next(it)
            A = batch["A"].to(dev)
            if "B" not in batch:
                raise ConfigError("the pruned fine-tune needs real target images (a batch's "
                                  "'B') for the discriminator; the batch has none")
            B = batch["B"].to(dev)           # real targets (unpaired: real target domain)
            with torch.no_grad():
                t, t_feats = T.forward_features(A, points) if points else (T(A), {})
            if points:
                fake, s_feats = G.forward_features(A, points)
                l_distill = distiller(s_feats, t_feats)
            else:
                fake, l_distill = G(A), torch.zeros((), device=dev)
            set_requires_grad([D], False)
            lg = gan(D(cat(A, fake)), True, for_discriminator=False)
            lr_ = recon_l1(fake, B if paired else t)
            oG.zero_grad(set_to_none=True)
            (recipe.lambda_gan * lg + recipe.lambda_recon * lr_
             + recipe.lambda_distill * l_distill).backward()
            oG.step()
            set_requires_grad([D], True)
            ld = discriminator_loss(gan, D(cat(A, B)), D(cat(A, fake.detach())))
            oD.zero_grad(set_to_none=True)
            ld.backward()
            oD.step()
            hist.append({"G_gan": float(lg.detach()), "G_recon": float(lr_.detach()),
                         "distill": float(l_distill.detach()), "D": float(ld.detach()),
                         "lr": oG.param_groups[0]["lr"]})
            done = step + 1
            if checkpoint is not None and checkpoint_every > 0 and (
                    done % checkpoint_every == 0 or done == recipe.steps):
                checkpoint(done, snapshot(done, modules, opts, {}, {
                    "history": [dict(h) for h in hist], "rng": rng_state()}))
            if progress is not None:
                progress(done, hist[-1])
    G.eval()
    return hist


__all__ = ["FinetuneRecipe", "distill_points", "finetune"]
