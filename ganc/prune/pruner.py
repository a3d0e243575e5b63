"""One pruning run for one target ratio, in plain PyTorch (no Ray here).

:class:`Pruner` holds the frozen original generator ``T``, the gated student generator
``G`` (initialised from ``T``; its weights are frozen in this search phase unless
``prune.lr`` > 0: only the gates move, so a closed channel keeps the weights that could
reopen it), the gated
discriminator ``D``, the agents genG / genD and the LDS loss. Each :meth:`Pruner.step`:

1. both agents emit channel logits from their peer input (the other agent's gate
   probabilities per layer and the other model's task loss, the other side's current
   state: as it stands after the previous step's update, detached; zeros with
   ``peer_feedback: false``) and sample straight-through hard gates;
2. **G side** (G's weights and genG): ``lambda_gan * GAN(D(fake)) + lambda_recon *
   L1(fake, T(x)) + lambda_lds * LDS + lambda_resource * res(r_G, p)`` with the two-sided
   ``res(r, p) = max(|r - p| - tol, 0) / p``;
3. **D side** (D's weights, genD, the neighbourhood critic): the discriminator loss on
   real target images (the batch's B: the paired target, or on unpaired data a real
   image of the target domain, never the original generator's output) vs. gated-G
   images through the gated D (D's weights with ``prune.lr_d``),
   ``+ lambda_resource * res(r_D, p_D)``, + the critic loss.

The MACs ratios r are those of the gated networks (``Gated.macs_ratio``) at ``size`` (the
data's crop size, the evaluation size), in the profiler's convention, whatever size the
steps train at (``train_size``: the agents' crops of the training images,
:func:`ganc.prune.trial.agents_crop`).
:meth:`Pruner.hard_gates` are the deterministic gates (``logits > 0``); :meth:`Pruner.slice`
turns them into plain networks, which :mod:`ganc.prune.finetuning` trains with the search
winner's recipe.
"""
from __future__ import annotations

import copy
import re
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from ..config import PruneConfig, check_value, validate
from ..errors import ConfigError
from ..losses import GANLoss, discriminator_loss, recon_l1
from ..train.loop import load_modules, snapshot
from .agents import (Agent, PeerState, expected_gates, floor_open, gate_probabilities,
                     min_keep, resource_loss)
from .gated import gated_discriminator, gated_generator
from .lds import FEATURE_SPACES, FixedFeatures, LocalDensityLoss, spatial
from .slicing import hard_keep, project_keep, slice_network


BASE_MODELS = ("teacher", "mobile")


def check_prune_config(pc: PruneConfig) -> None:
    """One-line errors for values no run could use."""
    validate(pc, "prune.")          # numbers: the ranges declared in ganc.config
    if pc.base_model not in BASE_MODELS:
        raise ConfigError(f"prune.base_model {pc.base_model!r} is not one of: "
                          + ", ".join(BASE_MODELS))
    if pc.lds_features not in FEATURE_SPACES:
        raise ConfigError(f"prune.lds_features {pc.lds_features!r} is not one of: "
                          + ", ".join(FEATURE_SPACES))
    if not isinstance(pc.tag, str) or not re.fullmatch(r"[A-Za-z0-9_.]{0,32}", pc.tag):
        raise ConfigError(f"prune.tag {pc.tag!r}: only letters, digits, _ and . (at most 32 "
                          "characters; it is appended to each target's folder)")


class Pruner:
    """Agents + gated G/D for one target ``p`` (see the module docstring)."""

    def __init__(self, pc: PruneConfig, target: float, teacher: nn.Module,
                 discriminator: nn.Module, *, conditional: bool = True, size: int = 256,
                 gan_mode: str = "vanilla", device="cpu", seed: int = 0,
                 base: Optional[nn.Module] = None, train_size: Optional[int] = None):
        check_prune_config(pc)
        check_value(PruneConfig, "d_target", target, "prune target")
        self.pc, self.target, self.size = pc, float(target), int(size)
        # the side of the images the steps see (the LDS features' length depends on it);
        # MACs, budget and projections are at ``size``
        self.train_size = int(train_size or size)
        self.d_target = float(pc.d_target)
        self.device = torch.device(device)
        self.conditional = conditional
        torch.manual_seed(seed)
        self.rng = torch.Generator().manual_seed(seed)          # gate samples
        self.rng_lds = torch.Generator().manual_seed(seed + 1)  # neighbourhoods (its own,
        # so that switching the LDS off leaves the gate samples as they were)
        self.T = copy.deepcopy(teacher).to(self.device).eval()
        for p in self.T.parameters():
            p.requires_grad_(False)
        # the network pruned: the teacher, or another start (the supernet's largest
        # sub-network, prune.base_model: mobile); T stays the reference either way
        start = teacher if base is None else base
        self.G = gated_generator(copy.deepcopy(start).to(self.device).train())
        if pc.lr <= 0:  # search phase: G's weights frozen, only the gates move
            for p in self.G.parameters():
                p.requires_grad_(False)
        self.D = gated_discriminator(copy.deepcopy(discriminator).to(self.device).train())
        nG, nD = len(self.G.groups), len(self.D.groups)
        self.genG = Agent(self.G.groups, nD, base=pc.base).to(self.device)
        self.genD = Agent(self.D.groups, nG, base=pc.base).to(self.device) if pc.prune_d else None
        self.gan = GANLoss(gan_mode)
        self.fixed = FixedFeatures(3).to(self.device) if pc.lds_features == "fixed" else None
        self.lds = None
        if pc.use_lds:
            dim = self._feature_dim()
            self.lds = LocalDensityLoss(dim, pc.lds_k, pc.lds_noise, pc.lds_bandwidth,
                                        pc.lds_perturb, pc.lds_adv).to(self.device)
        agent_params = list(self.genG.parameters())
        self.opt_agentG = torch.optim.Adam(agent_params, lr=pc.lr_agent, betas=(0.5, 0.999))
        self.opt_agentD = (torch.optim.Adam(self.genD.parameters(), lr=pc.lr_agent, betas=(0.5, 0.999))
                           if self.genD is not None else None)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=pc.lr, betas=(0.5, 0.999)) \
            if pc.lr > 0 else None
        d_params = list(self.D.parameters()) + (
            list(self.lds.critic.parameters())
            if self.lds is not None and self.lds.critic is not None else [])
        self.opt_D = torch.optim.Adam(d_params, lr=pc.lr_d, betas=(0.5, 0.999))
        # peer feedback: each agent's current gate probabilities and its model's latest
        # task loss (no resource term), read by the other agent
        self.peer_G, self.peer_D = PeerState(), PeerState()
        self.last_peer: Dict[str, torch.Tensor] = {}
        self.step_count = 0
        self.full_macs_G = self.G.full_macs(self.size)
        self.full_macs_D = self.D.full_macs(self.size)

    # ------------------------------------------------------------------ pieces
    def _d_input(self, cond, y):
        return torch.cat([cond, y], 1) if self.conditional else y

    def features(self, cond, y, gates_D) -> torch.Tensor:
        """phi(y): D's activations pooled to a grid (gated D, gates detached) or the
        fixed net's."""
        if self.fixed is not None:
            return self.fixed(y)
        g = None if gates_D is None else {k: v.detach() for k, v in gates_D.items()}
        return spatial(self.D.forward_features(self._d_input(cond, y), g)[1])

    @torch.no_grad()
    def _feature_dim(self) -> int:
        """Length of phi(y) at the training size (the grid pooling keeps fewer cells of
        maps smaller than the grid, so it depends on the size)."""
        nc, s = self.G.plan.fixed["in"], self.train_size
        x = torch.zeros(1, nc, s, s, device=self.device)
        was = self.D.training
        self.D.eval()
        try:
            return int(self.features(x, torch.zeros(1, self.G.plan.fixed["out"], s, s,
                                                    device=self.device), None).shape[1])
        finally:
            self.D.train(was)

    def peer_inputs(self):
        """genG's input from genD / D, genD's from genG / G (zeros without feedback)."""
        fb = self.pc.peer_feedback
        pG = self.genG.peer_input(self.peer_D.values if fb else None,
                                  self.peer_D.loss if fb else None, self.device)
        pD = None
        if self.genD is not None:
            pD = self.genD.peer_input(self.peer_G.values if fb else None,
                                      self.peer_G.loss if fb else None, self.device)
        return pG, pD

    @torch.no_grad()
    def _update_peers(self, task_G: float, loss_D: float) -> None:
        """Each side's summary as it stands after this step's update (detached): the gate
        probabilities the agent emits now, from the peer input it was given this step,
        and its model's task loss at this step. The other agent reads it next step."""
        T = self.pc.temperature
        self.peer_G.update(gate_probabilities(self.genG(self.last_peer["G"]), T), task_G)
        if self.genD is not None:
            self.peer_D.update(gate_probabilities(self.genD(self.last_peer["D"]), T), loss_D)

    def logits(self):
        """Channel logits of both agents from the current peer inputs."""
        pG, pD = self.peer_inputs()
        self.last_peer = {"G": pG, "D": pD}
        lG = self.genG(pG)
        lD = self.genD(pD) if self.genD is not None else None
        return lG, lD

    def gates(self, training: bool = True, with_expected: bool = False, logits=None):
        """Sampled (training) or deterministic gates of G and D (None when D is not
        pruned); with ``with_expected`` also the deterministic straight-through gates
        the resource loss uses; ``logits`` (G's, D's) when already computed."""
        lG, lD = self.logits() if logits is None else logits
        T, mw = self.pc.temperature, self.pc.min_width
        gG = self.genG.gates(lG, T, training, self.rng, mw)
        gD = self.genD.gates(lD, T, training, self.rng, mw) if lD is not None else None
        if not with_expected:
            return gG, gD
        eG = floor_open({g: expected_gates(v, T) for g, v in lG.items()}, lG, mw)
        eD = (floor_open({g: expected_gates(v, T) for g, v in lD.items()}, lD, mw)
              if lD is not None else None)
        return gG, gD, eG, eD

    @torch.no_grad()
    def hard_gates(self):
        """Deterministic gates (``logits > 0``), at least one channel per group."""
        gG, gD = self.gates(training=False)
        kG = hard_keep(gG)
        gG = {g: torch.zeros_like(v).index_fill(0, kG[g].to(v.device), 1.0)
              for g, v in gG.items()}
        if gD is not None:
            kD = hard_keep(gD)
            gD = {g: torch.zeros_like(v).index_fill(0, kD[g].to(v.device), 1.0)
                  for g, v in gD.items()}
        return gG, gD

    def ratios(self) -> Dict[str, float]:
        """MACs of the deterministic (eval) gates: ratios and absolute G MACs."""
        gG, gD = self.hard_gates()
        rG = float(self.G.macs_ratio(gG, self.size))
        rD = float(self.D.macs_ratio(gD, self.size)) if gD is not None else 1.0
        return {"ratio_G": rG, "ratio_D": rD, "macs_G": rG * self.full_macs_G,
                "macs_D": rD * self.full_macs_D}

    # ------------------------------------------------------------------ training
    def task_terms_G(self, A: torch.Tensor, gG, gD):
        """G's task terms under gates ``gG`` / ``gD`` (GAN, reconstruction, LDS), with the
        fake images, the original's images and the LDS features (pruned detached,
        original) for the critic."""
        gD_det = None if gD is None else {k: v.detach() for k, v in gD.items()}
        fake = self.G(A, gG)
        with torch.no_grad():
            target_img = self.T(A)
        terms: Dict[str, torch.Tensor] = {}
        terms["G_gan"] = self.gan(self.D(self._d_input(A, fake), gD_det), True,
                                  for_discriminator=False)
        terms["G_recon"] = recon_l1(fake, target_img)
        feats = None
        if self.lds is not None:
            xs = self.lds.neighbourhood(A, self.rng_lds)
            with torch.no_grad():
                ys_T = self.T(xs)
            # one joint pass of pruned and original outputs through D (batch statistics
            # shared, see ganc.prune.lds); the original's half carries no gradient
            f = self.features(torch.cat([xs, xs]), torch.cat([self.G(xs, gG), ys_T]), gD)
            fP, fQ = f.chunk(2)
            fQ = fQ.detach()
            lds = self.lds(fP, fQ)
            for k in ("density", "structure", "adv"):
                terms[f"lds_{k}"] = lds[k]
            terms["lds"] = lds["total"]
            feats = (fP.detach(), fQ)
        return terms, fake, target_img, feats

    def step(self, A: torch.Tensor, B: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """One update of G, genG, D, genD and the critic; returns the loss terms. ``B``:
        real target images, D's real samples (required; on unpaired data real images of
        the target domain, not A's translations)."""
        with torch.enable_grad():  # an in-process FID scorer may have turned grads off
            return self._step(A, B)

    def _step(self, A: torch.Tensor, B: Optional[torch.Tensor]) -> Dict[str, float]:
        pc = self.pc
        if B is None:
            raise ConfigError("pruning needs real target images (a batch's 'B') for the "
                              "discriminator's real samples; the batch has none")
        A, B = A.to(self.device), B.to(self.device)
        self.G.train(), self.D.train()
        lG, lD = self.logits()
        gG, gD, eG, eD = self.gates(training=True, with_expected=True, logits=(lG, lD))
        terms, fake, feats, loss_G, ratio_G = self._update_G(A, gG, gD, eG)
        loss_D, ratio_D = self._update_D(A, B, fake, gD, eD, terms, feats)
        task_G = float((loss_G - pc.lambda_resource * terms["res_G"]).detach())
        self._update_peers(task_G, float(terms["D"].detach()))
        self.step_count += 1
        out = {k: float(v.detach()) for k, v in terms.items()}
        out.update(loss_G=float(loss_G.detach()), task_G=task_G, loss_D=float(loss_D.detach()),
                   ratio_G=float(ratio_G.detach()), ratio_D=float(ratio_D.detach()),
                   sampled_ratio_G=float(self.G.macs_ratio(gG, self.size).detach()))
        return out

    def _update_G(self, A: torch.Tensor, gG, gD, eG):
        """The G side (G's weights and genG, D frozen): task terms + resource loss.
        Returns (terms, fake images, LDS features for the critic, loss_G, ratio_G)."""
        pc = self.pc
        for p in self.D.parameters():
            p.requires_grad_(False)
        terms, fake, _, feats = self.task_terms_G(A, gG, gD)
        ratio_G = self.G.macs_ratio(eG, self.size)
        terms["res_G"] = resource_loss(ratio_G, self.target, pc.tolerance)
        loss_G = (pc.lambda_gan * terms["G_gan"] + pc.lambda_recon * terms["G_recon"]
                  + pc.lambda_resource * terms["res_G"])
        if self.lds is not None:
            loss_G = loss_G + pc.lambda_lds * terms["lds"]
        self.opt_agentG.zero_grad(set_to_none=True)
        if self.opt_G is not None:
            self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_agentG.step()
        if self.opt_G is not None:
            self.opt_G.step()
        for p in self.D.parameters():
            p.requires_grad_(True)
        return terms, fake, feats, loss_G, ratio_G

    def _update_D(self, A: torch.Tensor, B: torch.Tensor, fake: torch.Tensor, gD, eD,
                  terms: Dict[str, torch.Tensor], feats):
        """The D side (D's weights, genD, the neighbourhood critic) on real target images
        (paired: A's own B; unpaired: any real B); adds its terms to ``terms``. Returns
        (loss_D, ratio_D)."""
        pc = self.pc
        pred_real = self.D(self._d_input(A, B), gD)
        pred_fake = self.D(self._d_input(A, fake.detach()), gD)
        terms["D"] = discriminator_loss(self.gan, pred_real, pred_fake)
        loss_D = terms["D"]
        if gD is not None:
            ratio_D = self.D.macs_ratio(eD, self.size)
            terms["res_D"] = resource_loss(ratio_D, self.d_target, pc.tolerance)
            loss_D = loss_D + pc.lambda_resource * terms["res_D"]
        else:
            ratio_D = torch.ones(())
            terms["res_D"] = torch.zeros(())
        if self.lds is not None and self.lds.critic is not None and feats is not None:
            terms["critic"] = self.lds.critic_loss(*feats)
            loss_D = loss_D + terms["critic"]
        self.opt_D.zero_grad(set_to_none=True)
        if self.opt_agentD is not None:
            self.opt_agentD.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()
        if self.opt_agentD is not None:
            self.opt_agentD.step()
        return loss_D, ratio_D

    # ------------------------------------------------------------------ results
    @torch.no_grad()
    def sample_keeps(self, n: int) -> List[Dict[str, torch.Tensor]]:
        """The deterministic sub-generator and n-1 Gumbel-sampled hard ones (as kept
        channel indices per group)."""
        out = [hard_keep(self.hard_gates()[0])]
        for _ in range(max(0, n - 1)):
            gG, _ = self.gates(training=True)
            out.append(hard_keep(gG))
        return out

    @property
    def budget_macs(self) -> float:
        """G's MACs budget: the target ratio of the full gated G's MACs."""
        return self.target * self.full_macs_G

    @torch.no_grad()
    def project(self, keep: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Kept channels of G moved to at most the budget, ranked by importance per MAC
        (keep probability ``sigmoid(logit / T)`` of the current logits over the channel's
        MACs; :func:`project_keep`)."""
        lG, _ = self.logits()
        floor = {g: min_keep(c, self.pc.min_width) for g, c in self.G.groups.items()}
        return project_keep(self.G, keep, lG, self.budget_macs, self.size, floor,
                            temperature=self.pc.temperature)

    def keep_macs(self, keep) -> int:
        return int(self.G.macs({g: int(v.numel()) for g, v in keep.items()}, self.size))

    @torch.no_grad()
    def slice(self, keep_G: Optional[Dict[str, torch.Tensor]] = None):
        """(plain generator, plain discriminator, kept indices) from the hard gates (G's
        kept channels ``keep_G`` instead when given)."""
        gG, gD = self.hard_gates()
        keepG = hard_keep(gG) if keep_G is None else keep_G
        G = slice_network(self.G, keepG)
        if gD is not None:
            keepD = hard_keep(gD)
            D = slice_network(self.D, keepD)
        else:
            keepD, D = None, copy.deepcopy(self.D.net)
        return G, D, {"G": keepG, "D": keepD}

    # ------------------------------------------------------------------ resume
    def _learners(self) -> tuple[dict, dict]:
        """({name: module}, {name: optimizer}) of everything a step changes."""
        mods = {"G": self.G, "D": self.D, "genG": self.genG, "genD": self.genD,
                "lds": self.lds, "fixed": self.fixed}
        opts = {"agentG": self.opt_agentG, "agentD": self.opt_agentD, "G": self.opt_G,
                "D": self.opt_D}
        return ({k: m for k, m in mods.items() if m is not None},
                {k: o for k, o in opts.items() if o is not None})

    def checkpoint_state(self) -> dict:
        """What the next steps depend on, as tensors, numbers and containers
        (``weights_only``-loadable): the modules and optimizers, the gate and
        neighbourhood generators, both peer summaries and the step."""
        mods, opts = self._learners()
        return snapshot(self.step_count, mods, opts, {}, {
            "generators": {"gates": self.rng.get_state(), "lds": self.rng_lds.get_state()},
            "peers": {"G": [self.peer_G.values, self.peer_G.loss],
                      "D": [self.peer_D.values, self.peer_D.loss]}})

    def load_checkpoint_state(self, state: dict) -> int:
        """Restore :meth:`checkpoint_state` (strict) into this Pruner, built with the same
        config and networks; returns the step it holds."""
        mods, opts = self._learners()
        self.step_count = load_modules(mods, opts, state)
        self.rng.set_state(state["generators"]["gates"])
        self.rng_lds.set_state(state["generators"]["lds"])
        for side, peer in (("G", self.peer_G), ("D", self.peer_D)):
            peer.values, peer.loss = state["peers"][side]
        return self.step_count


def describe_gates(keep: Dict[str, torch.Tensor], groups: Dict[str, int]) -> Dict[str, list]:
    """{group: [kept, full]} for logs and the model card."""
    return {g: [int(keep[g].numel()), int(groups[g])] for g in groups}

