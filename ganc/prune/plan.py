"""Plans of prunable networks: every conv / norm module with the channel groups it reads
and writes.

A *plan* lists, for one network, every conv / transposed conv / depthwise conv / norm
module with the channel *group* of its input and output. Groups are what a gate prunes
(:mod:`ganc.prune.gated`):

generator (``resnet_*`` or ``mobile_resnet_9blocks`` layout, ``model.<i>`` keys):
    ``stem`` (7x7 conv out), ``down1``, ``trunk`` (second downsampling out: ONE group
    shared by every residual block's input and output and by the first upsampling's
    input, so residual additions stay aligned), ``block<i>`` (inner width of residual
    block i: the first 3x3 conv's output, or for mobile blocks the first separable
    conv's pointwise output), ``up1``, ``up2``.
discriminator (``NLayerDiscriminator``): ``d0`` .. ``d<n_layers>``, one per hidden conv.

Fixed groups ``in`` / ``out`` (image channels) are never pruned. The plan's gate points
are the *norm slots* of every group (norm layers, ``Identity`` for ``norm='none'``, and
D's first conv, which has no norm).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import torch.nn as nn

from ..errors import ConfigError
from ..nn.discriminator import NLayerDiscriminator
from ..nn.mobile import MobileResnetBlock, SeparableConv2d
from ..nn.resnet import ResnetBlock

FIXED = ("in", "out")
NORM_TYPES = (nn.BatchNorm2d, nn.InstanceNorm2d)


@dataclass(frozen=True)
class Entry:
    """One MACs-bearing (or gated) module: ``op`` in conv | convT | dw | norm | none."""

    path: str
    op: str
    gin: str
    gout: str
    kernel: int = 1   # kernel area


class Plan:
    """Groups (name -> full width), entries and gate points of one network."""

    def __init__(self, kind: str, groups: Dict[str, int], entries: List[Entry],
                 gate_points: List[tuple], fixed: Dict[str, int], meta: dict):
        self.kind, self.groups, self.entries = kind, groups, entries
        self.gate_points, self.fixed, self.meta = gate_points, fixed, meta

    @property
    def names(self) -> List[str]:
        return list(self.groups)

    @property
    def widths(self) -> List[int]:
        return [self.groups[g] for g in self.groups]


def _norm_entry(path: str, module: nn.Module, group: str) -> Entry:
    if isinstance(module, NORM_TYPES):
        return Entry(path, "norm", group, group)
    if isinstance(module, nn.Identity):
        return Entry(path, "none", group, group)
    raise ConfigError(f"layer {path}: expected a norm layer, found {type(module).__name__}")


def _conv_entry(path: str, module: nn.Module, gin: str, gout: str) -> Entry:
    k = int(module.kernel_size[0] * module.kernel_size[1])
    if isinstance(module, nn.ConvTranspose2d):
        return Entry(path, "convT", gin, gout, k)
    if isinstance(module, nn.Conv2d):
        if module.groups > 1:
            if module.groups != module.in_channels or module.out_channels != module.in_channels:
                raise ConfigError(f"layer {path}: only depthwise grouped convs can be pruned")
            return Entry(path, "dw", gin, gin, k)
        return Entry(path, "conv", gin, gout, k)
    raise ConfigError(f"layer {path}: expected a conv layer, found {type(module).__name__}")


def generator_kind(net: nn.Module) -> str:
    """'resnet' or 'mobile' from the residual blocks of a sequential generator."""
    blocks = [m for m in getattr(net, "model", []) if hasattr(m, "conv_block")]
    if not blocks:
        raise ConfigError(f"{type(net).__name__} is not a ResNet-style generator "
                          "(resnet_9blocks, resnet_6blocks or mobile_resnet_9blocks)")
    if isinstance(blocks[0], MobileResnetBlock):
        return "mobile"
    if isinstance(blocks[0], ResnetBlock):
        return "resnet"
    raise ConfigError(f"cannot prune residual blocks of type {type(blocks[0]).__name__}")


def _gate_norm(entries: List[Entry], gates: List[tuple], path: str, module: nn.Module,
               group: str) -> None:
    """A norm (or identity) entry that is also a gate point of ``group``."""
    entries.append(_norm_entry(path, module, group))
    gates.append((path, group))


def _block_entries(kind: str, cb, p: str, g: str, entries: List[Entry],
                   gates: List[tuple]) -> int:
    """Entries and gate points of the residual block ``p`` (its ``conv_block`` ``cb``):
    its inner width is group ``g``, its input and output the trunk. Returns the full
    inner width."""
    if kind == "resnet":
        c1, c2 = cb[1], cb[len(cb) - 2]
        entries.append(_conv_entry(f"{p}.1", c1, "trunk", g))
        _gate_norm(entries, gates, f"{p}.2", cb[2], g)
        entries.append(_conv_entry(f"{p}.{len(cb) - 2}", c2, g, "trunk"))
        _gate_norm(entries, gates, f"{p}.{len(cb) - 1}", cb[len(cb) - 1], "trunk")
        return c1.out_channels
    s1, s2 = cb[1], cb[6]
    if not (isinstance(s1, SeparableConv2d) and isinstance(s2, SeparableConv2d)):
        raise ConfigError(f"{p}: expected separable convs at 1 and 6")
    entries.append(_conv_entry(f"{p}.1.conv.0", s1.conv[0], "trunk", "trunk"))
    _gate_norm(entries, gates, f"{p}.1.conv.1", s1.conv[1], "trunk")
    entries.append(_conv_entry(f"{p}.1.conv.2", s1.conv[2], "trunk", g))
    _gate_norm(entries, gates, f"{p}.2", cb[2], g)
    entries.append(_conv_entry(f"{p}.6.conv.0", s2.conv[0], g, g))
    _gate_norm(entries, gates, f"{p}.6.conv.1", s2.conv[1], g)
    entries.append(_conv_entry(f"{p}.6.conv.2", s2.conv[2], g, "trunk"))
    _gate_norm(entries, gates, f"{p}.7", cb[7], "trunk")
    return s1.conv[2].out_channels


def generator_plan(net: nn.Module) -> Plan:
    """The plan of a resnet / mobile ResNet generator (``model.<i>`` layout)."""
    kind = generator_kind(net)
    m = list(net.model)
    n_blocks = sum(1 for x in m if hasattr(x, "conv_block"))
    if not hasattr(net, "model") or len(m) != 19 + n_blocks:
        raise ConfigError(f"{type(net).__name__}: unexpected layer layout for pruning")
    entries: List[Entry] = []
    gates: List[tuple] = []

    def conv(i, gin, gout):
        entries.append(_conv_entry(f"model.{i}", m[i], gin, gout))

    def norm(i, group):
        _gate_norm(entries, gates, f"model.{i}", m[i], group)

    conv(1, "in", "stem"); norm(2, "stem")
    conv(4, "stem", "down1"); norm(5, "down1")
    conv(7, "down1", "trunk"); norm(8, "trunk")
    groups = {"stem": m[1].out_channels, "down1": m[4].out_channels,
              "trunk": m[7].out_channels}
    for b in range(n_blocks):
        i = 10 + b
        groups[f"block{b + 1}"] = _block_entries(kind, m[i].conv_block, f"model.{i}.conv_block",
                                                 f"block{b + 1}", entries, gates)
    u = 10 + n_blocks
    conv(u, "trunk", "up1"); norm(u + 1, "up1")
    conv(u + 3, "up1", "up2"); norm(u + 4, "up2")
    conv(u + 7, "up2", "out")
    groups["up1"] = m[u].out_channels
    groups["up2"] = m[u + 3].out_channels
    fixed = {"in": m[1].in_channels, "out": m[u + 7].out_channels}
    return Plan("generator", groups, entries, gates, fixed,
                _generator_meta(net, kind, n_blocks, fixed))


def _generator_meta(net: nn.Module, kind: str, n_blocks: int, fixed: Dict[str, int]) -> dict:
    """What rebuilds a sliced generator besides its widths: kind, blocks, norm, dropout
    and the image channels."""
    first_norm = net.model[2]
    norm_name = ("batch" if isinstance(first_norm, nn.BatchNorm2d) else
                 "instance" if isinstance(first_norm, nn.InstanceNorm2d) else "none")
    dropout = next((x.p for x in net.modules() if isinstance(x, nn.Dropout)), 0.0)
    return {"kind": kind, "n_blocks": n_blocks, "norm": norm_name, "dropout": float(dropout),
            "input_nc": fixed["in"], "output_nc": fixed["out"]}


def discriminator_plan(net: NLayerDiscriminator) -> Plan:
    """The plan of a PatchGAN ``NLayerDiscriminator``."""
    if not isinstance(net, NLayerDiscriminator):
        raise ConfigError(f"cannot prune discriminator {type(net).__name__}: only n_layers")
    m = list(net.model)
    n = len(net.widths) - 1
    entries = [_conv_entry("model.0", m[0], "in", "d0")]
    gates = [("model.0", "d0")]
    for i in range(1, n + 1):
        ci, ni = 2 + 3 * (i - 1), 3 + 3 * (i - 1)
        entries.append(_conv_entry(f"model.{ci}", m[ci], f"d{i - 1}", f"d{i}"))
        entries.append(_norm_entry(f"model.{ni}", m[ni], f"d{i}"))
        gates.append((f"model.{ni}", f"d{i}"))
    entries.append(_conv_entry(f"model.{len(m) - 1}", m[-1], f"d{n}", "out"))
    groups = {f"d{i}": w for i, w in enumerate(net.widths)}
    norm_name = ("batch" if isinstance(m[3], nn.BatchNorm2d) else
                 "instance" if isinstance(m[3], nn.InstanceNorm2d) else "none") if n else "none"
    fixed = {"in": m[0].in_channels, "out": m[-1].out_channels}
    meta = {"n_layers": n, "norm": norm_name, "input_nc": fixed["in"]}
    return Plan("discriminator", groups, entries, gates, fixed, meta)



__all__ = ["FIXED", "NORM_TYPES", "Entry", "Plan", "generator_kind", "generator_plan",
           "discriminator_plan"]
