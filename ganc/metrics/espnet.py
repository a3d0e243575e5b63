"""ESPNet (Mehta et al., ECCV 2018), the CamVid segmenter behind ganc's mIoU metric.

ganc's own implementation, written from the paper's description, whose module names follow
the released ``espnet_p_2_q_8_camvid.pth`` so that file loads strictly (``weights_only``).

The network, for ``p`` and ``q`` ESP blocks at levels 2 and 3 and ``classes`` outputs:

- level 1: a stride-2 3x3 conv-BN-PReLU (16 channels), concatenated with the input average-
  pooled to half size and passed through BN + PReLU (``b1``: 16 + 3 = 19 channels);
- level 2: a strided ESP block to 64 channels, ``p`` residual ESP blocks, then the
  concatenation [blocks' output, strided block's output, input pooled to a quarter] through
  BN + PReLU (``b2``: 64 + 64 + 3 = 131 channels);
- level 3: a strided ESP block to 128 channels, ``q`` residual ESP blocks, the concatenation
  [strided, blocks] through BN + PReLU (``b3``: 256 channels) and a 1x1 classifier;
- decoder: the level-3 logits (BN, 2x transposed conv) joined with a 1x1 projection of the
  level-2 map (``level3_C``), fused by BN + PReLU and a non-residual ESP block (``combine_l2_l3``),
  upsampled 2x (``up_l2``), concatenated with the level-1 map ``b1`` (12 + 19 = 31 channels)
  into a 3x3 conv-BN-PReLU (``conv``), and a final 2x transposed conv (``classifier``).

An ESP block reduces its input with one conv (3x3 stride 2 when it downsamples, else 1x1) to
``n = out // 5`` channels, runs five 3x3 convs with dilations 1, 2, 4, 8, 16 on it in
parallel (the first gives ``out - 4n`` channels), adds the dilated outputs cumulatively
(hierarchical feature fusion: d2, d2+d4, d2+d4+d8, d2+d4+d8+d16), concatenates them with the
dilation-1 output, optionally adds the input, and ends in BN + PReLU. Every BN has eps 1e-3;
no conv has a bias.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..weights import check_fit, read_state_dict

BN_EPS = 1e-3
LEVEL1_WIDTH = 16
LEVEL2_WIDTH = 64
LEVEL3_WIDTH = 128
DILATIONS = (1, 2, 4, 8, 16)


class Conv(nn.Module):
    """A bias-free conv with 'same' padding for its dilation (ESPNet's ``C``/``CDilated``)."""

    def __init__(self, cin, cout, k, stride=1, dilation=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2 * dilation,
                              dilation=dilation, bias=False)

    def forward(self, x):
        return self.conv(x)


class BNPReLU(nn.Module):
    """Batch norm then a per-channel PReLU (ESPNet's ``BR``)."""

    def __init__(self, channels):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.act = nn.PReLU(channels)

    def forward(self, x):
        return self.act(self.bn(x))


class ConvBNPReLU(nn.Module):
    """Conv, batch norm, PReLU (ESPNet's ``CBR``)."""

    def __init__(self, cin, cout, k, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.PReLU(cout)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class ESPBlock(nn.Module):
    """Reduce, split into dilated branches, fuse hierarchically, [add input], BN + PReLU.

    ``downsample``: the reduction is a 3x3 stride-2 conv and the block ends in its own
    ``bn``/``act`` (the released ``level2_0``/``level3_0`` layout); otherwise a 1x1 conv, and
    ``bn`` is a :class:`BNPReLU`.
    """

    def __init__(self, cin, cout, downsample=False, residual=True):
        super().__init__()
        n = cout // len(DILATIONS)
        first = cout - n * (len(DILATIONS) - 1)
        self.residual = residual and not downsample and cin == cout
        self.c1 = Conv(cin, n, 3, stride=2) if downsample else Conv(cin, n, 1)
        for d in DILATIONS:
            setattr(self, f"d{d}", Conv(n, first if d == 1 else n, 3, dilation=d))
        self.downsample = downsample
        if downsample:
            self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
            self.act = nn.PReLU(cout)
        else:
            self.bn = BNPReLU(cout)

    def forward(self, x):
        r = self.c1(x)
        parts = [self.d1(r)]
        fused = None
        for d in DILATIONS[1:]:
            y = getattr(self, f"d{d}")(r)
            fused = y if fused is None else fused + y
            parts.append(fused)
        out = torch.cat(parts, 1)
        if self.residual:
            out = out + x
        return self.act(self.bn(out)) if self.downsample else self.bn(out)


class InputPool(nn.Module):
    """The input average-pooled ``times`` times by 3x3 stride-2 windows (ESPNet's input
    reinforcement); holds no parameters."""

    def __init__(self, times):
        super().__init__()
        self.pool = nn.ModuleList(nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times))

    def forward(self, x):
        for p in self.pool:
            x = p(x)
        return x


class ESPNetEncoder(nn.Module):
    def __init__(self, classes, p, q, in_channels=3):
        super().__init__()
        c1 = LEVEL1_WIDTH + in_channels
        c2 = 2 * LEVEL2_WIDTH + in_channels
        self.level1 = ConvBNPReLU(in_channels, LEVEL1_WIDTH, 3, stride=2)
        self.sample1 = InputPool(1)
        self.sample2 = InputPool(2)
        self.b1 = BNPReLU(c1)
        self.level2_0 = ESPBlock(c1, LEVEL2_WIDTH, downsample=True)
        self.level2 = nn.ModuleList(ESPBlock(LEVEL2_WIDTH, LEVEL2_WIDTH) for _ in range(p))
        self.b2 = BNPReLU(c2)
        self.level3_0 = ESPBlock(c2, LEVEL3_WIDTH, downsample=True)
        self.level3 = nn.ModuleList(ESPBlock(LEVEL3_WIDTH, LEVEL3_WIDTH) for _ in range(q))
        self.b3 = BNPReLU(2 * LEVEL3_WIDTH)
        self.classifier = Conv(2 * LEVEL3_WIDTH, classes, 1)

    def levels(self, x):
        """The three level outputs (after their BN + PReLU) and the level-3 logits."""
        l1 = self.b1(torch.cat([self.level1(x), self.sample1(x)], 1))
        down2 = self.level2_0(l1)
        y = down2
        for block in self.level2:
            y = block(y)
        l2 = self.b2(torch.cat([y, down2, self.sample2(x)], 1))
        down3 = self.level3_0(l2)
        y = down3
        for block in self.level3:
            y = block(y)
        l3 = self.b3(torch.cat([down3, y], 1))
        return l1, l2, self.classifier(l3)

    def forward(self, x):
        return self.levels(x)[2]


def _up2(channels):
    return nn.ConvTranspose2d(channels, channels, 2, stride=2, bias=False)


class ESPNet(nn.Module):
    """ESPNet with its light decoder; ``forward`` returns logits at the input size
    (for sides divisible by 8)."""

    def __init__(self, classes=12, p=2, q=8, in_channels=3):
        super().__init__()
        self.classes = classes
        self.encoder = ESPNetEncoder(classes, p, q, in_channels)
        c1 = LEVEL1_WIDTH + in_channels
        c2 = 2 * LEVEL2_WIDTH + in_channels
        self.level3_C = Conv(c2, classes, 1)
        self.br = nn.BatchNorm2d(classes, eps=BN_EPS)
        self.conv = ConvBNPReLU(classes + c1, classes, 3)
        self.up_l3 = nn.Sequential(_up2(classes))
        self.combine_l2_l3 = nn.Sequential(BNPReLU(2 * classes),
                                           ESPBlock(2 * classes, classes, residual=False))
        self.up_l2 = nn.Sequential(_up2(classes), BNPReLU(classes))
        self.classifier = _up2(classes)

    def forward(self, x):
        l1, l2, logits3 = self.encoder.levels(x)
        up3 = self.up_l3(self.br(logits3))
        combined = self.up_l2(self.combine_l2_l3(torch.cat([self.level3_C(l2), up3], 1)))
        return self.classifier(self.conv(torch.cat([combined, l1], 1)))


def load_espnet(source, classes=12, p=2, q=8, name=None) -> ESPNet:
    """An eval-mode ESPNet holding the weights of ``source`` (path or bytes), loaded with
    ``weights_only=True`` and strict key/shape matching.

    Checkpoints of old torch versions carry no ``num_batches_tracked`` buffers; those (and
    only those) may be absent: they do not take part in an eval-mode forward.
    """
    net = ESPNet(classes, p, q)
    label = name or (str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>")
    state = read_state_dict(source, label)
    for key, t in net.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = t.clone()
    check_fit(net, state, label, f"ESPNet(p={p}, q={q}, classes={classes})")
    net.load_state_dict(state, strict=True)
    return net.eval()


__all__ = ["ESPNet", "ESPNetEncoder", "ESPBlock", "load_espnet"]
