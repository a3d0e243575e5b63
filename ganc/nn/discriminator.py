"""PatchGAN discriminator (pytorch-CycleGAN-and-pix2pix ``basic`` / ``n_layers``)."""
from __future__ import annotations

import torch.nn as nn

from ..errors import ConfigError
from .norm import norm_layer


def default_widths(ndf: int = 64, n_layers: int = 3) -> list[int]:
    """Widths of the n_layers + 1 hidden convs: ndf, 2ndf, 4ndf, 8ndf (capped at 8ndf)."""
    return [ndf * min(2 ** i, 8) for i in range(n_layers + 1)]


class NLayerDiscriminator(nn.Module):
    """70x70 PatchGAN for n_layers=3. ``widths`` sets every hidden conv's width, so a
    pruned discriminator is the same class with smaller widths."""

    def __init__(self, input_nc=3, ndf=64, n_layers=3, norm="batch", widths=None):
        super().__init__()
        make_norm, bias = norm_layer(norm)
        widths = list(widths) if widths is not None else default_widths(ndf, n_layers)
        if len(widths) != n_layers + 1 or any(int(w) <= 0 for w in widths):
            raise ConfigError(f"discriminator widths {widths} must be {n_layers + 1} positive "
                              f"numbers for n_layers={n_layers}")
        self.widths = [int(w) for w in widths]
        layers = [nn.Conv2d(input_nc, widths[0], 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        for i in range(1, n_layers + 1):
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(widths[i - 1], widths[i], 4, stride=stride, padding=1, bias=bias),
                       make_norm(widths[i]), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)

    def forward_features(self, x):
        """Patch logits and the activations after each LeakyReLU (a feature space)."""
        feats = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(x)
        return x, feats
