"""The SPADE family (GauGAN): one-hot label map -> photo generators.

Its nets are ``ganc.nn``'s SPADE generators (the teacher ``spade``, the mobile one, its
supernet and sub-networks). Training terms: the multiscale PatchGAN on (one-hot label map,
photo) pairs, hinge GAN averaged over the scales, ``lambda_feat`` x feature matching,
``lambda_perceptual`` x the Inception perceptual term (:mod:`ganc.losses_spade`), optionally
``lambda_recon`` x L1 to the photo; the discriminator's loss is the sum of its real and fake
hinge terms. Inputs are ``crop_size`` wide and ``aspect_ratio`` x that high; sub-networks
are scored (mIoU) after a batch-norm recalibration and exported as ``model.pt`` only.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch

from .. import nn as gnn
from ..data.camvid import LABEL_NC
from ..data.splits import image_hw
from ..errors import ConfigError
from ..losses import GANLoss, recon_l1
from ..losses_spade import (InceptionPerceptualLoss, discriminator_input,
                            feature_matching_loss, multiscale_gan_loss)
from ..profile import count_macs
from .base import Family, register_family
from .spade_cost import SpadeCostModel


class SpadeAdversary:
    """GauGAN's terms: multiscale hinge GAN, feature matching, perceptual (and L1)."""

    def __init__(self, cfg, weights: dict, device):
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
        return discriminator_input(A, img)

    def g_loss(self, A, B, out, target) -> tuple[torch.Tensor, dict]:
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
        n = len(fakes)
        real = D_p(self.d_input(A, B))
        fake = D_p(self.d_input(torch.cat([A] * n, 0), torch.cat(fakes, 0)))
        return (multiscale_gan_loss(self.gan, real, True)
                + multiscale_gan_loss(self.gan, fake, False))


class SpadeFamily(Family):
    name = "spade"
    title = "SPADE"
    generators = ("spade", "mobile_spade", "super_mobile_spade", "sub_mobile_spade")
    teachers = ("spade",)
    supernets = ("super_mobile_spade",)
    subnet = "sub_mobile_spade"
    input_nc = LABEL_NC
    norm = "batch"
    legacy_config = False
    example_config = "32_32_32_32_32_24_24_24"
    label_maps = True
    default_metric = "miou"
    supports_onnx = False
    supports_latency = False
    calibrates_bn = True
    options = ("upsampling",)
    deploy_note = ("model.pt only: ONNX and torch.export are not exported for the SPADE "
                   "family yet")

    def input_hw(self, data) -> tuple[int, int]:
        return image_hw(data)

    def teacher_macs(self, net, data, size: int) -> float:
        """Profiled on a label map of the run's aspect ratio, ``size`` wide."""
        data = copy.deepcopy(data)
        data.crop_size = size
        h, w = image_hw(data)
        return float(count_macs(net, (1, self.input_nc, h, w)))

    def cost_model(self, payload: dict, size: int,
                   height: Optional[int] = None) -> SpadeCostModel:
        """``size`` wide, ``height`` high (default square)."""
        return SpadeCostModel(height=int(height or size), width=int(size),
                              input_nc=int(payload.get("input_nc", self.input_nc)),
                              output_nc=int(payload.get("output_nc", 3)),
                              norm=payload.get("norm", self.norm))

    def adversary(self, cfg, weights: dict, paired: bool, device) -> SpadeAdversary:
        return SpadeAdversary(cfg, weights, device)

    def teacher_recipe(self, data) -> str:
        return "spade"

    def export_arch(self, calibrated: Optional[int]) -> dict:
        return {"netG": self.subnet, "upsampling": "normal",
                "bn_calibration_images": calibrated}


SPADE = register_family(SpadeFamily())

__all__ = ["SPADE", "SpadeFamily", "SpadeAdversary"]
