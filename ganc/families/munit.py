"""The MUNIT family: multimodal unpaired image -> image generators (content + style code).

Its nets are ``ganc.nn``'s MUNIT generators (the teacher ``munit``, ``mobile_munit``, the
supernets ``super_munit`` / ``super_mobile_munit`` and ``sub_mobile_munit``). Every one
takes a style code beside the image (``extra_inputs``; :meth:`Family.draw_inputs` draws it
from a seed, so teacher and student see the same code). Training terms of distillation and
fine-tune (GAN Compression's MUNIT distiller, with ganc's feature distillation on the
content code): LSGAN on the ``ms_image`` discriminator (3 scales, B alone), averaged over
the scales, ``lambda_recon`` x L1 to the teacher's output for the same content and style
code; the discriminator's loss is the sum of its real and fake terms.

MACs are the reference's: the reconstruction forward ``G(x)`` with its style encoder
(77.3G for ``munit`` at 256x256); ``translate_macs`` of the cost model counts the
translation path (a sampled style code, no style encoder). Sub-networks are exported as
``model.pt``, ``model.onnx`` and ``model.pt2`` with two inputs, ``input`` and ``style``.
The pruning agents do not handle MUNIT (``supports_pruning`` False).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import nn as gnn
from ..errors import ConfigError
from ..losses import GANLoss, recon_l1
from ..nn.munit import STYLE_DIM
from ..profile import count_macs
from .base import Family, register_family
from .munit_cost import MunitCostModel


PLAIN_SUPERNETS = ("super_munit",)     # supernets with the teacher's plain convs


def _mean_over_scales(gan: GANLoss, outputs, real: bool, for_discriminator: bool):
    return sum(gan(o, real, for_discriminator) for o in outputs) / len(outputs)


class MunitAdversary:
    """The ``ms_image`` discriminator on generated and real B images, LSGAN, and L1 to the
    target (the teacher's output for unpaired data)."""

    def __init__(self, cfg, weights: dict):
        m = cfg.model
        if m.netD != "ms_image":
            raise ConfigError(f"model.netD {m.netD!r}: MUNIT training uses the multiscale "
                              "image discriminator (model.netD: ms_image)")
        self.weights = weights
        self.gan = GANLoss(m.gan_mode)
        self.D = gnn.build_for_training("ms_image", input_nc=3, ndf=m.ndf,
                                        n_layers=m.n_layers_D)

    @staticmethod
    def d_input(A, img):
        """What the discriminator sees of a (input, image) pair: the image alone (MUNIT's
        discriminator is unconditional)."""
        return img

    def g_gan(self, out) -> torch.Tensor:
        """The generator's GAN term on generated images ``out``."""
        return _mean_over_scales(self.gan, self.D(out), True, False)

    def g_loss(self, A, B, out, target) -> tuple[torch.Tensor, dict]:
        l_recon = recon_l1(out, target)
        l_gan = self.g_gan(out)
        total = self.weights["recon"] * l_recon + self.weights["gan"] * l_gan
        return total, {"recon": l_recon.item(), "G_GAN": l_gan.item()}

    def d_loss(self, D_p, A, B, fakes: list) -> torch.Tensor:
        real = _mean_over_scales(self.gan, D_p(B), True, True)
        fake = _mean_over_scales(self.gan, D_p(torch.cat(fakes, 0)), False, True)
        return real + fake


class MunitFamily(Family):
    name = "munit"
    title = "MUNIT"
    generators = ("munit", "mobile_munit", "super_munit", "super_mobile_munit",
                  "sub_mobile_munit")
    teachers = ("munit",)
    supernets = ("super_mobile_munit", "super_munit")
    subnet = "sub_mobile_munit"
    input_nc = 3
    norm = "instance"
    legacy_config = False
    config_lengths = (10,)
    example_config = "16_16_16_24_56_16_40_40_32_24"
    label_maps = False
    default_metric = "fid"
    supports_onnx = True
    supports_latency = False
    supports_pruning = False
    calibrates_bn = False
    style_dim = STYLE_DIM

    def input_hw(self, data) -> tuple[int, int]:
        return (int(data.crop_size),) * 2

    def teacher_macs(self, net, data, size: int) -> float:
        """Profiled at ``size`` (the MLP and the style code's 1x1 conv do not scale with
        the pixel count): the reference's count, style encoder included."""
        return float(count_macs(net, (1, self.input_nc, int(size), int(size))))

    def cost_model(self, payload: dict, size: int,
                   height: Optional[int] = None) -> MunitCostModel:
        """``size`` wide, ``height`` high (default square); plain convs for ``super_munit``
        (its sub-networks keep the teacher's convs)."""
        return MunitCostModel(height=int(height or size), width=int(size),
                              input_nc=int(payload.get("input_nc", self.input_nc)),
                              output_nc=int(payload.get("output_nc", 3)),
                              style_dim=int(payload.get("style_dim", STYLE_DIM)),
                              separable=payload.get("netG") not in PLAIN_SUPERNETS)

    def adversary(self, cfg, weights: dict, paired: bool, device) -> MunitAdversary:
        return MunitAdversary(cfg, weights)

    def teacher_recipe(self, data) -> str:
        return "munit"

    def export_arch(self, calibrated: Optional[int]) -> dict:
        return {"netG": self.subnet, "style_dim": self.style_dim,
                "inputs": {"input": "image (N, 3, H, W) in [-1, 1]",
                           "style": f"style code (N, {self.style_dim}), N(0, 1)"}}


MUNIT = register_family(MunitFamily())

__all__ = ["MUNIT", "MunitFamily", "MunitAdversary"]
