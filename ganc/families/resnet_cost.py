"""Closed-form cost of a ``sub_mobile_resnet_9blocks`` sub-network as a function of its
channel config only: MACs and parameters (the resnet family's cost model).

The search asks for the MACs of thousands of configs, so they are computed in closed form
in the field's convention (``ganc.profile``, GUIDE §3: conv/linear multiplies without bias,
transposed convs per *output* element, one MAC per output element of every norm layer).
``tests/test_search.py`` checks the closed form against ``ganc.profile.count_macs`` on real
modules.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from ..space import ChannelConfig, SearchSpace


def _down(h: int) -> int:
    """Spatial size after a 3x3, stride-2, padding-1 conv."""
    return (h - 1) // 2 + 1


@dataclass(frozen=True)
class CostModel:
    """MACs / params of ``sub_mobile_resnet_9blocks`` at ``size`` x ``size`` input.

    Picklable (Ray Tune pickles the searcher that holds it) and cached per config.
    """

    size: int = 256
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "instance"
    n_blocks: int = 9

    def macs(self, config) -> int:
        return _macs(self, str(ChannelConfig.parse(config, lengths=(8,))))

    def params(self, config) -> int:
        return _params(self, str(ChannelConfig.parse(config, lengths=(8,))))

    __call__ = macs

    def smallest_macs(self, space: SearchSpace) -> int:
        return self.macs(space.smallest())

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=65536)
def _macs(model: CostModel, config: str) -> int:
    c = ChannelConfig.parse(config, lengths=(8,))
    s = model.size
    h1 = _down(s)
    h2 = _down(h1)
    u1, u0 = 2 * h2, 4 * h2          # output sizes of the two transposed convs
    n = 1 if model.norm in ("instance", "batch") else 0  # MACs per norm output element
    stem, d1, d2 = c[0], 2 * c[1], 4 * c[2]
    t1, t2 = 2 * c[6], c[7]
    p0, p1, p2 = s * s, h1 * h1, h2 * h2
    macs = p0 * stem * (model.input_nc * 49 + n)          # 7x7 stem + norm
    macs += p1 * d1 * (stem * 9 + n)                       # down 1
    macs += p2 * d2 * (d1 * 9 + n)                         # down 2
    for i in range(model.n_blocks):
        inner = 4 * c[3 + (3 * i) // model.n_blocks]
        # dw3x3(d2) + norm + pw(d2->inner) + norm(inner) + dw3x3(inner) + norm + pw + norm
        macs += p2 * (d2 * 9 + n * d2 + d2 * inner + n * inner
                      + inner * 9 + n * inner + inner * d2 + n * d2)
    macs += u1 * u1 * t1 * (d2 * 9 + n)                    # up 1 (per output element)
    macs += u0 * u0 * t2 * (t1 * 9 + n)                    # up 2
    macs += u0 * u0 * model.output_nc * t2 * 49            # 7x7 head
    return int(macs)


@lru_cache(maxsize=65536)
def _params(model: CostModel, config: str) -> int:
    """Parameters in closed form (the search asks for thousands; building each network
    costs ~0.1 s): instance norm has no parameters and its convs a bias, batch norm two per
    channel and no conv bias, ``none`` neither norm parameters nor lost biases."""
    c = ChannelConfig.parse(config, lengths=(8,))
    bias = 0 if model.norm == "batch" else 1
    aff = 2 if model.norm == "batch" else 0        # affine parameters per norm channel
    stem, d1, d2 = c[0], 2 * c[1], 4 * c[2]
    u1, u2 = 2 * c[6], c[7]

    def conv(i, o, k):
        return i * o * k * k + bias * o + aff * o   # conv + its norm

    n = conv(model.input_nc, stem, 7) + conv(stem, d1, 3) + conv(d1, d2, 3)
    for i in range(model.n_blocks):
        inner = 4 * c[3 + (3 * i) // model.n_blocks]
        # dw3x3(d2) + norm(d2) + pw(d2->inner) + norm(inner), and back
        n += (d2 * 9 + bias * d2 + aff * d2) + (d2 * inner + bias * inner + aff * inner)
        n += (inner * 9 + bias * inner + aff * inner) + (inner * d2 + bias * d2 + aff * d2)
    n += conv(d2, u1, 3) + conv(u1, u2, 3)
    n += u2 * model.output_nc * 49 + model.output_nc            # 7x7 head, always a bias
    return int(n)


__all__ = ["CostModel"]
