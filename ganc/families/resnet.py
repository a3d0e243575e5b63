"""The ResNet family (pix2pix, CycleGAN): image -> image generators, a PatchGAN adversary.

Its nets are ``ganc.nn``'s ResNet generators (the teachers ``resnet_9blocks`` /
``resnet_6blocks``, the mobile one, its supernet and sub-networks, the pruned one). Training
terms: a PatchGAN on (A, B) pairs (paired data) or on B alone,
``lambda_recon * L1(out, target) + lambda_gan * GAN``, the discriminator's loss halved.
Sub-networks are exported as ``model.pt``, ``model.onnx`` and ``model.pt2``.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import nn as gnn
from ..losses import GANLoss, discriminator_loss, recon_l1
from ..profile import count_macs
from .base import Family, register_family
from .resnet_cost import CostModel


def build_discriminator(cfg, input_nc: int) -> torch.nn.Module:
    """The PatchGAN of every training stage (teacher, supernet, fine-tune, pruning), freshly
    initialised; its input is (A, B) stacked for paired data, B alone for unpaired."""
    m = cfg.model
    return gnn.build_for_training(m.netD, input_nc=input_nc, ndf=m.ndf, n_layers=m.n_layers_D,
                                  norm=m.norm_D)


class ResnetAdversary:
    """pix2pix / CycleGAN-style terms (the resnet family)."""

    def __init__(self, cfg, weights: dict, paired: bool):
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


class Pix2pixTerms:
    """pix2pix's and CycleGAN's training terms, for the families trained like them: the
    PatchGAN adversary (:class:`ResnetAdversary`), and the pix2pix recipe for paired data,
    CycleGAN's for unpaired."""

    def adversary(self, cfg, weights: dict, paired: bool, device) -> ResnetAdversary:
        return ResnetAdversary(cfg, weights, paired)

    def teacher_recipe(self, data) -> str:
        return "pix2pix" if data.kind == "aligned" else "cyclegan"


class ResnetFamily(Pix2pixTerms, Family):
    name = "resnet"
    title = "ResNet"
    generators = ("resnet_9blocks", "resnet_6blocks", "mobile_resnet_9blocks",
                  "super_mobile_resnet_9blocks", "sub_mobile_resnet_9blocks", "pruned_resnet")
    teachers = ("resnet_9blocks", "resnet_6blocks")
    supernets = ("super_mobile_resnet_9blocks",)
    subnet = "sub_mobile_resnet_9blocks"
    input_nc = 3
    norm = "instance"
    legacy_config = True
    example_config = "16_16_32_16_32_32_16_16"
    label_maps = False
    default_metric = "fid"

    def input_hw(self, data) -> tuple[int, int]:
        return (int(data.crop_size),) * 2

    def teacher_macs(self, net, data, size: int) -> float:
        """Profiled at 32px and scaled by the pixel count (exact for these fully
        convolutional generators at sizes divisible by 4)."""
        probe = 32 if size % 4 == 0 else size
        return float(count_macs(net, (1, self.input_nc, probe, probe))) * (size / probe) ** 2

    def cost_model(self, payload: dict, size: int, height: Optional[int] = None) -> CostModel:
        return CostModel(size=int(size), input_nc=int(payload.get("input_nc", self.input_nc)),
                         output_nc=int(payload.get("output_nc", 3)),
                         norm=payload.get("norm", self.norm))

    def export_arch(self, calibrated: Optional[int]) -> dict:
        return {"netG": self.subnet, "n_blocks": 9}


RESNET = register_family(ResnetFamily())

__all__ = ["Pix2pixTerms", "RESNET", "ResnetFamily", "ResnetAdversary", "build_discriminator"]
