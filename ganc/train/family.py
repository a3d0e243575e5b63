"""Per-family adversarial terms of the training stages (plain PyTorch, no Ray).

The teacher, supernet and fine-tune loops are one code path; what differs between model
families is the discriminator, what it sees and the generator's task loss:

- ``resnet`` (pix2pix / CycleGAN): a PatchGAN on (A, B) pairs (paired data) or on B alone,
  ``lambda_recon * L1(out, target) + lambda_gan * GAN``, the discriminator's loss halved;
- ``spade`` (GauGAN): the multiscale PatchGAN on (one-hot label map, photo) pairs, hinge
  GAN averaged over the scales, ``lambda_feat`` x feature matching, ``lambda_perceptual`` x
  the Inception perceptual term (:mod:`ganc.losses_spade`), optionally ``lambda_recon`` x L1
  to the photo; the discriminator's loss is the sum of its real and fake hinge terms.

:func:`adversary` picks the family from the generator's name; :func:`optimizers` builds
the G / D Adam pair with the section's ``lr`` / ``lr_D`` (TTUR) and ``beta1`` / ``beta2``.
"""
from __future__ import annotations

import torch

from .. import nn as gnn
from ..errors import ConfigError
from ..losses import GANLoss, discriminator_loss, recon_l1


def base_lrs(section) -> dict:
    """``{optimizer: base LR}``: the generator's ``lr``, the discriminator's ``lr_D``
    (0: ``lr``)."""
    lr = float(section.lr)
    return {"G": lr, "D": float(getattr(section, "lr_D", 0.0) or 0.0) or lr}


def optimizers(section, g_params, d_params) -> dict:
    betas = (float(section.beta1), float(getattr(section, "beta2", 0.999)))
    lrs = base_lrs(section)
    return {"G": torch.optim.Adam(g_params, lr=lrs["G"], betas=betas),
            "D": torch.optim.Adam(d_params, lr=lrs["D"], betas=betas)}


class ResnetAdversary:
    """pix2pix / CycleGAN-style terms (the resnet family)."""

    def __init__(self, cfg, weights: dict, paired: bool):
        from .teacher import build_discriminator
        self.paired = paired
        self.weights = weights
        self.gan = GANLoss(cfg.model.gan_mode)
        self.D = build_discriminator(cfg, 6 if paired else 3)

    def d_input(self, A, img):
        return torch.cat([A, img], 1) if self.paired else img

    def g_loss(self, A, B, out, target) -> tuple[torch.Tensor, dict]:
        """Generator loss (weighted) and its unweighted parts; ``target``: the L1 target."""
        l_recon = recon_l1(out, target)
        l_gan = self.gan(self.D(self.d_input(A, out)), True, for_discriminator=False)
        total = self.weights["recon"] * l_recon + self.weights["gan"] * l_gan
        return total, {"recon": l_recon.item(), "G_GAN": l_gan.item()}

    def d_loss(self, D_p, A, B, fakes: list) -> torch.Tensor:
        n = len(fakes)
        real = D_p(self.d_input(A, B))
        fake = D_p(self.d_input(torch.cat([A] * n, 0), torch.cat(fakes, 0)))
        return discriminator_loss(self.gan, real, fake)


class SpadeAdversary:
    """GauGAN's terms: multiscale hinge GAN, feature matching, perceptual (and L1)."""

    def __init__(self, cfg, weights: dict, device):
        from ..data.camvid import LABEL_NC
        from ..losses_spade import InceptionPerceptualLoss
        m = cfg.model
        if m.netD != "multi_scale":
            raise ConfigError(f"model.netD {m.netD!r}: SPADE training uses the multiscale "
                              "discriminator (model.netD: multi_scale)")
        if m.gan_mode != "hinge":
            raise ConfigError(f"model.gan_mode {m.gan_mode!r}: SPADE training uses the hinge "
                              "loss (model.gan_mode: hinge)")
        self.weights = weights
        self.gan = GANLoss("hinge")
        # spectral norm: PyTorch's default init (init_weights would bypass weight_orig)
        self.D = gnn.build("multi_scale", input_nc=LABEL_NC + 3, ndf=m.ndf,
                           n_layers=m.n_layers_D)
        self.perceptual = (InceptionPerceptualLoss.load().to(device)
                           if weights.get("perceptual", 0) > 0 else None)

    @staticmethod
    def d_input(A, img):
        from ..losses_spade import discriminator_input
        return discriminator_input(A, img)

    def g_loss(self, A, B, out, target) -> tuple[torch.Tensor, dict]:
        from ..losses_spade import feature_matching_loss, multiscale_gan_loss
        w = self.weights
        pred_fake = self.D(self.d_input(A, out))
        with torch.no_grad():
            pred_real = self.D(self.d_input(A, B))
        l_gan = multiscale_gan_loss(self.gan, pred_fake, True, for_discriminator=False)
        l_feat = feature_matching_loss(pred_fake, pred_real)
        total = w["gan"] * l_gan + w["feat"] * l_feat
        parts = {"G_GAN": l_gan.item(), "feat": float(torch.as_tensor(l_feat).detach())}
        if self.perceptual is not None:
            l_perc = self.perceptual(out, B)
            total = total + w["perceptual"] * l_perc
            parts["perceptual"] = l_perc.item()
        if w.get("recon", 0) > 0:
            l_recon = recon_l1(out, target)
            total = total + w["recon"] * l_recon
            parts["recon"] = l_recon.item()
        return total, parts

    def d_loss(self, D_p, A, B, fakes: list) -> torch.Tensor:
        from ..losses_spade import multiscale_gan_loss
        n = len(fakes)
        real = D_p(self.d_input(A, B))
        fake = D_p(self.d_input(torch.cat([A] * n, 0), torch.cat(fakes, 0)))
        return (multiscale_gan_loss(self.gan, real, True)
                + multiscale_gan_loss(self.gan, fake, False))


def adversary(cfg, netG: str, weights: dict, paired: bool, device):
    """The adversarial terms of generator ``netG``'s family."""
    if gnn.family(netG) == "spade":
        return SpadeAdversary(cfg, weights, device)
    return ResnetAdversary(cfg, weights, paired)


def input_nc_of(netG: str) -> int:
    """Input channels of a generator family (3: an image; SPADE: the one-hot label map)."""
    return int(gnn.defaults(netG)["input_nc"])


__all__ = ["adversary", "optimizers", "base_lrs", "input_nc_of", "ResnetAdversary",
           "SpadeAdversary"]
