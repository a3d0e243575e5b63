"""The U-Net family (pix2pix's default generator): image -> image U-Nets, a PatchGAN
adversary.

Its nets are ``ganc.nn``'s U-Nets: the teachers ``unet_256`` (8 levels) and ``unet_128``
(7 levels) exactly as pytorch-CycleGAN-and-pix2pix builds them (their ``latest_net_G.pth``
files load strictly), the mobile ones, their supernets and the sub-network
``sub_mobile_unet`` (:mod:`ganc.nn.unet`, :mod:`ganc.nn.unet_mobile`). A channel config has
one number per level. Training terms are pix2pix's, as for the ResNet family (a PatchGAN on
(A, B) pairs, ``lambda_recon * L1 + lambda_gan * GAN``). The nets run, are scored (FID),
distilled from and exported in eval mode (running statistics, no dropout); pix2pix's
``test.py`` default (train mode) is :func:`ganc.nn.unet.reference_test_mode`. Sub-networks
are exported as ``model.pt``, ``model.onnx`` and ``model.pt2``; latency budgets are not
available yet (the latency table times ResNet segments). The pruning agents handle
ResNet generators only (their gates know residual blocks, and a U-Net's skips tie each
encoder's width to its decoder's): ``ganc prune`` refuses a U-Net run.
"""
from __future__ import annotations

from typing import Optional

from ..nn.unet import LEVELS
from ..profile import count_macs
from .base import Family, register_family
from .resnet import Pix2pixTerms
from .unet_cost import UnetCostModel

# levels of every U-Net of the family (a sub-network's: its config's length)
_LEVELS = {prefix + name: n for name, n in LEVELS.items()
           for prefix in ("", "mobile_", "super_mobile_")}


class UnetFamily(Pix2pixTerms, Family):
    name = "unet"
    title = "U-Net"
    generators = ("unet_256", "unet_128", "mobile_unet_256", "mobile_unet_128",
                  "super_mobile_unet_256", "super_mobile_unet_128", "sub_mobile_unet")
    teachers = ("unet_256", "unet_128")
    supernets = ("super_mobile_unet_256", "super_mobile_unet_128")
    subnet = "sub_mobile_unet"
    input_nc = 3
    norm = "batch"
    legacy_config = False
    config_lengths = (7, 8)
    example_config = "32_32_32_32_32_32_32_32 (8 levels; 7 for a unet_128 supernet)"
    label_maps = False
    default_metric = "fid"
    supports_pruning = False
    supports_latency = False            # the latency table times ResNet segments

    def levels(self, net: str) -> int:
        """Levels of ``net`` (8 for the sub-network when its config is not known)."""
        return _LEVELS.get(net, 8)

    def config_length(self, net: str) -> int:
        return self.levels(net)

    def probe_size(self, net: str) -> int:
        return max(64, 2 ** self.levels(net))

    def side_multiple(self, net: str) -> int:
        return 2 ** self.levels(net)

    def input_hw(self, data) -> tuple[int, int]:
        return (int(data.crop_size),) * 2

    def teacher_macs(self, net, data, size: int) -> float:
        """Profiled at ``size`` (a U-Net does not run smaller than 2 ** levels)."""
        return float(count_macs(net, (1, self.input_nc, size, size)))

    def cost_model(self, payload: dict, size: int,
                   height: Optional[int] = None) -> UnetCostModel:
        return UnetCostModel(size=int(size), levels=self.levels(payload["netG"]),
                             input_nc=int(payload.get("input_nc", self.input_nc)),
                             output_nc=int(payload.get("output_nc", 3)),
                             norm=payload.get("norm", self.norm))

    def export_arch(self, calibrated: Optional[int]) -> dict:
        return {"netG": self.subnet}


UNET = register_family(UnetFamily())

__all__ = ["UNET", "UnetFamily"]
