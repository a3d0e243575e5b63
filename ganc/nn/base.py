"""Shared behaviour of the sequential ResNet-style generators: named feature points."""
from __future__ import annotations

import torch.nn as nn

# Layout of every ResNet-style generator here: 10 layers before the residual blocks
# (pad, conv, norm, relu, then two [conv, norm, relu] downsamplings).
FIRST_BLOCK = 10


def feature_points(n_blocks: int) -> dict[str, int]:
    """Named distillation points -> index of the ``model`` layer whose output they tap.

    ``down2`` is the output of the second downsampling block; ``block<k>`` the output
    after residual block k, for k at each third of the trunk (3, 6, 9 for 9 blocks).
    """
    points = {"down2": FIRST_BLOCK - 1}
    third = n_blocks // 3
    for k in (third, 2 * third, n_blocks):
        if k > 0:
            points[f"block{k}"] = FIRST_BLOCK + k - 1
    return points


class SequentialGenerator(nn.Module):
    """A generator whose layers live in ``self.model`` (an ``nn.Sequential``)."""

    n_blocks: int = 9

    @property
    def feature_points(self) -> dict[str, int]:
        return feature_points(self.n_blocks)

    def forward(self, x):
        return self.model(x)

    def forward_features(self, x, points=None):
        """Output and a dict of the features at the named points (all by default)."""
        wanted = self.feature_points if points is None else {
            p: self.feature_points[p] for p in points}
        by_index = {i: name for name, i in wanted.items()}
        feats = {}
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in by_index:
                feats[by_index[i]] = x
        return x, feats
