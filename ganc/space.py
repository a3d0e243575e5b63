"""Channel configurations and search spaces: the one source of truth for both.

A channel configuration has one number per position of its family's layout: 8 for the
ResNet and SPADE families, one per level (7 or 8) for the U-Net family, 10 for the MUNIT
family; a search space names its family, which names the positions.

A channel configuration of a mobile ResNet generator (family ``resnet``) has 8 numbers
(GUIDE §3):

    [0] stem width; [1] first downsampling (its output is 2x this); [2] second
    downsampling (output 4x this, also the residual trunk width); [3], [4], [5] inner
    width / 4 of residual blocks 1-3, 4-6, 7-9; [6], [7] the two transposed convs
    (outputs 2x and 1x this).

The legacy 6-number form uses one inner width for all blocks: [c0, c1, c2, c3, c4, c5]
means [c0, c1, c2, c3, c3, c3, c4, c5].

A channel configuration of a mobile SPADE generator (family ``spade``, GAN Compression's
GauGAN layout) gives one number c per block: ``fc`` (the trunk width is 16 c), ``head_0``,
``G_middle_0``, ``G_middle_1`` (inner width 16 c), ``up_0``, ``up_1``, ``up_2``, ``up_3``
(output width 8 c, 4 c, 2 c, c); every SPADE modulation of a block has 2 c hidden channels
(see ``ganc.nn.spade``). It has no legacy form.

A channel configuration of a mobile U-Net generator (family ``unet``, ``ganc.nn.unet``)
gives one number c per level, outermost first: level i's encoder outputs (and its decoder
reads, twice: skip and upsampled path) ``min(2**(i-1), 8) * c`` channels, as pix2pix's
``unet_256`` does with c = ngf = 64; 8 levels for ``unet_256``, 7 for ``unet_128``. No
legacy form.

A channel configuration of a mobile MUNIT generator (family ``munit``, GAN Compression's
``channels-64`` order) has 10 numbers: [0] style encoder base width; [1] stem; [2], [3] the
two downsamplings (outputs 2x and 4x; the second is the trunk); [4], [5] inner width / 4 of
the content encoder's residual blocks 1-2 and 3-4; [6], [7] the same for the decoder's AdaIN
blocks; [8], [9] the two upsampling convs (outputs 2x and 1x) (see ``ganc.nn.munit``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

from .errors import ConfigError

N_POSITIONS = 8                  # positions of a ResNet / SPADE config (the default)
POSITION_NAMES = (
    "stem", "down1", "down2", "blocks1-3", "blocks4-6", "blocks7-9", "up1", "up2",
)
SPADE_POSITION_NAMES = (
    "fc", "head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3",
)
UNET_POSITION_NAMES = tuple(f"level{i}" for i in range(1, 9))
MUNIT_POSITION_NAMES = (
    "style", "stem", "down1", "down2", "enc_res1-2", "enc_res3-4", "dec_res1-2", "dec_res3-4",
    "up1", "up2",
)
# Channel-config layout of each model family (``ganc.families``): its position names,
# the config lengths it takes (a U-Net config of 7 levels uses the first 7 names) and
# whether the legacy 6-number form is accepted. A space without a family is a resnet one.
FAMILIES = {"resnet": POSITION_NAMES, "spade": SPADE_POSITION_NAMES,
            "unet": UNET_POSITION_NAMES, "munit": MUNIT_POSITION_NAMES}
LENGTHS = {"resnet": (8,), "spade": (8,), "unet": (7, 8), "munit": (10,)}
LEGACY_FORM = {"resnet": True, "spade": False, "unet": False, "munit": False}
# any family's config length (a family's parser asks for its own: Family.config_lengths)
CONFIG_LENGTHS = tuple(sorted({n for lengths in LENGTHS.values() for n in lengths}))
DEFAULT_FAMILY = "resnet"


@dataclass(frozen=True, order=True)
class ChannelConfig:
    """An immutable channel configuration: 8 numbers (7 for a 7-level U-Net, 10 for
    MUNIT; :data:`LENGTHS`)."""

    channels: tuple[int, ...]

    def __post_init__(self):
        chans = tuple(int(c) for c in self.channels)
        if len(chans) not in CONFIG_LENGTHS:
            raise ConfigError(
                f"channel config needs {' or '.join(map(str, CONFIG_LENGTHS))} numbers, got "
                f"{len(chans)}: {chans}")
        for i, c in enumerate(chans):
            if c <= 0:
                raise ConfigError(f"channel config position {i} must be positive, got {c}")
        object.__setattr__(self, "channels", chans)

    @classmethod
    def parse(cls, value: "str | Sequence[int] | ChannelConfig", legacy: bool = True,
              lengths: Sequence[int] = CONFIG_LENGTHS) -> "ChannelConfig":
        """Parse ``"16_16_32_16_32_32_16_16"``, a list, or (with ``legacy``, the ResNet
        family) a 6-number legacy string; ``lengths``: the numbers of positions allowed
        (a family's nets pass theirs)."""
        if isinstance(value, ChannelConfig):
            if len(value) not in lengths:
                raise ConfigError(f"channel config {value} has {len(value)} numbers; expected "
                                  + " or ".join(str(n) for n in lengths))
            return value
        if isinstance(value, str):
            parts = [p for p in value.strip().replace(",", "_").split("_") if p != ""]
            try:
                nums = [int(p) for p in parts]
            except ValueError:
                raise ConfigError(
                    f"channel config {value!r} must be numbers joined by '_', "
                    "e.g. 16_16_32_16_32_32_16_16") from None
        else:
            nums = [int(v) for v in value]
        if len(nums) == 6 and legacy:
            nums = nums[:4] + [nums[3], nums[3]] + nums[4:]
        elif len(nums) not in lengths:
            raise ConfigError(
                f"channel config {value!r} has {len(nums)} numbers; expected "
                + " or ".join(str(n) for n in lengths)
                + (" (or the legacy 6-number form)" if legacy else ""))
        return cls(tuple(nums))

    def __str__(self) -> str:
        return "_".join(str(c) for c in self.channels)

    def __iter__(self):
        return iter(self.channels)

    def __getitem__(self, i):
        return self.channels[i]

    def __len__(self):
        return len(self.channels)

    @classmethod
    def uniform(cls, width: int, n: int = N_POSITIONS) -> "ChannelConfig":
        return cls((width,) * n)


@dataclass(frozen=True)
class SearchSpace:
    """Allowed widths per position of one generator family; configs are drawn from the
    product."""

    name: str
    choices: tuple[tuple[int, ...], ...]
    family: str = "resnet"

    def __post_init__(self):
        ch = tuple(tuple(sorted(set(int(w) for w in c), reverse=True)) for c in self.choices)
        if self.family not in FAMILIES:
            raise ConfigError(f"search space {self.name!r}: family {self.family!r} is not one "
                              f"of: {', '.join(FAMILIES)}")
        if len(ch) not in LENGTHS[self.family] or any(len(c) == 0 for c in ch):
            raise ConfigError(f"search space {self.name!r} needs "
                              + " or ".join(str(n) for n in LENGTHS[self.family])
                              + " non-empty positions")
        object.__setattr__(self, "choices", ch)

    @classmethod
    def uniform(cls, name: str, widths: Iterable[int], family: str = "resnet",
                n: "int | None" = None) -> "SearchSpace":
        """The same ``widths`` at each of ``n`` positions (default: the family's longest
        config, :data:`LENGTHS`)."""
        widths = tuple(widths)
        n = LENGTHS.get(family, (N_POSITIONS,))[-1] if n is None else n
        return cls(name, (widths,) * n, family)

    @property
    def positions(self) -> tuple[str, ...]:
        """Names of the positions in this family (as many as the space has)."""
        return FAMILIES[self.family][:len(self.choices)]

    @property
    def size(self) -> int:
        n = 1
        for c in self.choices:
            n *= len(c)
        return n

    def largest(self) -> ChannelConfig:
        return ChannelConfig(tuple(c[0] for c in self.choices))

    def smallest(self) -> ChannelConfig:
        return ChannelConfig(tuple(c[-1] for c in self.choices))

    @property
    def max_width(self) -> int:
        return max(max(c) for c in self.choices)

    def sample(self, rng: random.Random) -> ChannelConfig:
        return ChannelConfig(tuple(rng.choice(c) for c in self.choices))

    def validate(self, config) -> ChannelConfig:
        cfg = ChannelConfig.parse(config, legacy=LEGACY_FORM[self.family],
                                  lengths=(len(self.choices),))
        for i, (c, allowed) in enumerate(zip(cfg, self.choices)):
            if c not in allowed:
                raise ConfigError(
                    f"channel config {cfg}: width {c} at position {i} ({self.positions[i]}) "
                    f"is not in search space {self.name!r}; allowed: "
                    + ", ".join(str(a) for a in allowed))
        return cfg

    def contains(self, config) -> bool:
        try:
            self.validate(config)
        except ConfigError:
            return False
        return True

    def to_dict(self) -> dict:
        d = {"name": self.name, "choices": [list(c) for c in self.choices]}
        if self.family != DEFAULT_FAMILY:      # resnet dicts stay as older runs wrote them
            d["family"] = self.family
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(d["name"], tuple(tuple(c) for c in d["choices"]), d.get("family", DEFAULT_FAMILY))


# The search spaces of the released GAN Compression recipes. GauGAN's (its
# configs/spade_configs ``channels-48`` and ``channels-64``) allow one width fewer at the
# first five blocks than at up_1..up_3.
_SPADE_48 = ((48, 40, 32),) * 5 + ((48, 40, 32, 24),) * 3
_SPADE_64 = ((64, 48, 40, 32),) * 5 + ((64, 48, 40, 32, 24),) * 3
# ganc's own, not a released recipe's: ``channels-32-to-8`` (32, 24, 16, 12, 8 per position)
# for compressing an already small teacher such as the released compressed horse2zebra
# model (16_16_32_16_32_32_16_16, 2.55G MACs at 256x256, which lies in it). Deviation from
# the reference on purpose: its CycleGAN space bottoms out at 16 channels (1.42G MACs at
# 256x256), so budgets of 1.4e9 and 1.0e9 are out of its reach; down to 8 channels the
# smallest config needs 0.446G, the largest 4.96G.
_UNET = (64, 48, 32, 24, 16)
PRESETS = {
    "channels-64-cycleGAN": SearchSpace.uniform("channels-64-cycleGAN", [64, 48, 32, 24, 16]),
    "channels-32-to-8": SearchSpace.uniform("channels-32-to-8", [32, 24, 16, 12, 8]),
    "channels-64-pix2pix": SearchSpace.uniform("channels-64-pix2pix", [64, 56, 48, 40, 32, 24, 16]),
    "spade-channels-48": SearchSpace("spade-channels-48", _SPADE_48, "spade"),
    "spade-channels-64": SearchSpace("spade-channels-64", _SPADE_64, "spade"),
    # ganc's own U-Net spaces (no released recipe compresses pix2pix's U-Net): one width
    # per level, scaled by the level's multiplier (1, 2, 4, 8, 8, ...; 64 everywhere is
    # the teacher's widths), 8 levels for unet_256, 7 for unet_128
    "unet256-channels-64": SearchSpace.uniform("unet256-channels-64", _UNET, "unet", 8),
    "unet128-channels-64": SearchSpace.uniform("unet128-channels-64", _UNET, "unet", 7),
    # the reference's MUNIT space (configs/munit_configs ``channels-64``)
    "munit-channels-64": SearchSpace.uniform("munit-channels-64",
                                             [64, 56, 48, 40, 32, 24, 16], "munit", 10),
}


def get_space(name_or_space) -> SearchSpace:
    """A preset by name, a dict as written by ``to_dict``, or a SearchSpace."""
    if isinstance(name_or_space, SearchSpace):
        return name_or_space
    if isinstance(name_or_space, dict):
        return SearchSpace.from_dict(name_or_space)
    if name_or_space in PRESETS:
        return PRESETS[name_or_space]
    raise ConfigError(
        f"unknown search space {name_or_space!r}; presets: " + ", ".join(sorted(PRESETS)))
