"""What a model family decides, and the registry of families (in the spirit of timm's
register / create).

A :class:`Family` names its generators (keys of :mod:`ganc.nn`'s registry), their default
input channels and norm, how a channel config is written, the size of one input, the cost
model of its sub-networks, its adversary (discriminator and losses), its teacher recipe,
its evaluation metric and what an export holds. Code outside :mod:`ganc.families` asks the
family of a net (:func:`family_of`) instead of testing family names.
"""
from __future__ import annotations

from typing import Optional

from ..data.splits import has_label_maps, image_hw
from ..errors import ConfigError
from ..extras import draw_for
from ..space import PRESETS, ChannelConfig


class Family:
    """One model family; a subclass per family sets the attributes and overrides the
    methods that differ."""

    name: str = ""
    title: str = ""                     # the family in messages (``ResNet``, ``SPADE``)
    generators: tuple[str, ...] = ()    # its nets in ganc.nn's registry
    teachers: tuple[str, ...] = ()      # the nets teacher training builds
    supernets: tuple[str, ...] = ()     # the nets a search slices sub-networks from
    subnet: str = ""                    # the net an exported sub-network is
    input_nc: int = 3                   # default input channels
    norm: str = "instance"              # default norm
    legacy_config: bool = False         # a 6-number legacy channel config is accepted
    config_lengths: tuple[int, ...] = (8,)  # numbers in a channel config (per net: config_length)
    example_config: str = ""            # shown when a channel config is missing
    label_maps: bool = False            # reads one-hot label maps (label-map data)
    default_metric: str = "fid"         # the criterion a run of this family is scored by
    supports_onnx: bool = True          # export writes model.onnx and model.pt2
    supports_latency: bool = True       # a latency table / budget can be measured
    calibrates_bn: bool = False         # sub-networks are scored after a batch-norm recalibration
    supports_pruning: bool = True       # the pruning agents (``ganc prune``) handle its teachers
    options: tuple[str, ...] = ()       # extra builder arguments a model card may hold
    deploy_note: str = ""               # the export card's ``deploy`` without ONNX

    def defaults(self) -> dict:
        """Default ``input_nc`` and ``norm`` of the family's generators."""
        return {"input_nc": self.input_nc, "norm": self.norm}

    def parse_config(self, value) -> ChannelConfig:
        """A channel config of this family's sub-networks (``config_lengths`` numbers)."""
        return ChannelConfig.parse(value, legacy=self.legacy_config,
                                   lengths=self.config_lengths)

    def draw_inputs(self, net, batch: int, seed: int, first: int = 0, device=None) -> dict:
        """The inputs ``net`` takes beside the image (a MUNIT style code), for images
        ``first`` .. ``first + batch - 1``, drawn from ``seed`` (:mod:`ganc.extras`): call
        ``net(x, **inputs)``. The same seed gives teacher and student the same values; {}
        for a net that takes the image alone."""
        return draw_for(net, batch, seed, first, device)

    def config_length(self, net: str) -> int:
        """Numbers in a channel config of generator ``net`` (a supernet or sub-network)."""
        return self.config_lengths[-1]

    def probe_size(self, net: str) -> int:
        """The smallest square input side ``net`` runs on that is at least 64 (a dummy
        forward measures its feature widths at this size)."""
        return 64

    def side_multiple(self, net: str) -> int:
        """Input sides ``net`` takes are multiples of this (2 ** its stride-2 halvings)."""
        return 4

    def reads(self, data) -> bool:
        """Whether the family's generators read ``data`` (a :class:`ganc.config.DataConfig`)."""
        return self.label_maps == has_label_maps(data)

    def spaces(self) -> list[str]:
        """The preset search spaces (:data:`ganc.space.PRESETS`) of this family."""
        return sorted(k for k, s in PRESETS.items() if s.family == self.name)

    def input_hw(self, data) -> tuple[int, int]:
        """(height, width) of one input at the run's size."""
        return image_hw(data)

    def input_shape(self, data) -> tuple[int, int, int, int]:
        """(1, C, H, W) of one input at the run's size."""
        h, w = self.input_hw(data)
        return (1, int(self.input_nc), int(h), int(w))

    def teacher_macs(self, net, data, size: int) -> float:
        """MACs of teacher ``net`` on inputs ``size`` wide."""
        raise NotImplementedError

    def cost_model(self, payload: dict, size: int, height: Optional[int] = None):
        """The closed-form cost of a supernet's (``payload``) sub-networks at ``size``."""
        raise NotImplementedError

    def adversary(self, cfg, weights: dict, paired: bool, device):
        """The adversarial terms (discriminator ``.D``, ``d_input(A, image)``: what ``.D`` takes
        of an input and an image, ``g_loss``, ``d_loss``) of training."""
        raise NotImplementedError

    def teacher_recipe(self, data) -> str:
        """The teacher-training recipe for ``data`` (``ganc.train.teacher``)."""
        raise NotImplementedError

    def card_arch(self, card: dict) -> dict:
        """The extra builder arguments (:attr:`options`) ``card`` holds."""
        return {k: card[k] for k in self.options if k in card}

    def export_arch(self, calibrated: Optional[int]) -> dict:
        """The architecture fields of an exported sub-network's model card."""
        return {"netG": self.subnet}

    def export_files(self) -> dict:
        """The ``files`` of an exported model card."""
        if self.supports_onnx:
            return {"weights": "model.pt", "onnx": "model.onnx", "pt2": "model.pt2"}
        return {"weights": "model.pt"}


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add ``family`` to the registry (its name must be new, its nets in no other family)."""
    if family.name in _FAMILIES:
        raise ConfigError(f"model family {family.name!r} is registered twice")
    for other in _FAMILIES.values():
        shared = set(family.generators) & set(other.generators)
        if shared:
            raise ConfigError(f"model family {family.name!r}: nets {sorted(shared)} already "
                              f"belong to {other.name!r}")
    _FAMILIES[family.name] = family
    return family


def family_names() -> list[str]:
    return list(_FAMILIES)


def get_family(name: str) -> Family:
    """The family called ``name``; an unknown one is a one-line error naming the known."""
    if name not in _FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; known: {', '.join(family_names())}")
    return _FAMILIES[name]


def family_of(net: str) -> Family:
    """The family of generator ``net``; a net of no family is a one-line error."""
    for fam in _FAMILIES.values():
        if net in fam.generators:
            return fam
    raise ConfigError(f"network {net!r} belongs to no model family (known families: "
                      f"{', '.join(family_names())}; their generators: "
                      f"{', '.join(generator_names())})")


def generator_names() -> list[str]:
    """Every registered family's generators, family by family."""
    return [n for fam in _FAMILIES.values() for n in fam.generators]


def teacher_names() -> list[str]:
    """The nets teacher training builds, over every family."""
    return [n for fam in _FAMILIES.values() for n in fam.teachers]


def supernet_names() -> list[str]:
    return [n for fam in _FAMILIES.values() for n in fam.supernets]


def check_prunable(teacher: str) -> None:
    """A one-line refusal when teacher ``teacher``'s family has no pruning agents."""
    fam = family_of(teacher)
    if not fam.supports_pruning:
        raise ConfigError(f"model.teacher {teacher!r}: the pruning agents do not handle the "
                          f"{fam.title} family (their gates are ResNet-only); compress it "
                          "with the search (stages supernet, search)")


def family_for_data(data) -> Family:
    """The first registered family whose generators read ``data``."""
    for fam in _FAMILIES.values():
        if fam.reads(data):
            return fam
    raise ConfigError(f"data.kind {data.kind!r} is read by no model family "
                      f"(known: {', '.join(family_names())})")


__all__ = ["Family", "register_family", "family_names", "get_family", "family_of",
           "generator_names", "teacher_names", "supernet_names", "family_for_data",
           "check_prunable"]
