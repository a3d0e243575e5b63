"""Gated generators and discriminators: a gate on every prunable channel group.

A *plan* lists, for one network, every conv / transposed conv / depthwise conv / norm
module with the channel *group* of its input and output. Groups are what a gate prunes:

generator (``resnet_*`` or ``mobile_resnet_9blocks`` layout, ``model.<i>`` keys):
    ``stem`` (7x7 conv out), ``down1``, ``trunk`` (second downsampling out: ONE group
    shared by every residual block's input and output and by the first upsampling's
    input, so residual additions stay aligned), ``block<i>`` (inner width of residual
    block i: the first 3x3 conv's output, or for mobile blocks the first separable
    conv's pointwise output), ``up1``, ``up2``.
discriminator (``NLayerDiscriminator``): ``d0`` .. ``d<n_layers>``, one per hidden conv.

Fixed groups ``in`` / ``out`` (image channels) are never pruned.

Gates multiply the output of every *norm slot* of a group (norm layers, ``Identity``
for ``norm='none'``, and D's first conv, which has no norm), before the ReLU. Because a
norm acts per channel and the next op reads a gated-off channel as exact zeros, a gate
of 0 removes the channel exactly: the sliced network (kept channels only,
:func:`slice_network`) computes the same function as the hard-gated one. For residual
blocks this means ``x + g * branch(x)``, and inside mobile blocks the depthwise conv's
norm is gated too (a zero channel through depthwise conv + bias + batch norm would
otherwise become a constant).

MACs (:meth:`Gated.macs`) are a sum over plan entries in the profiler's convention
(``ganc.profile``: conv = out elements x in/groups x k^2, transposed conv per output
element, +1 per output element of every norm layer), written as polynomials in the kept
counts ``n_g = sum(gate_g)``, so they are differentiable in the gates; with hard gates
they equal ``ganc.profile.count_macs`` of the sliced network exactly.

:func:`project_keep` moves a set of kept channels to at most a MACs budget (closing, then
opening, channels in the order of their importance per MAC: keep probability from the gate
logit over the MACs the channel costs at the current widths), so what is exported fits the
budget.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..nn.base import SequentialGenerator
from ..nn.discriminator import NLayerDiscriminator
from ..nn.mobile import MobileResnetBlock, SeparableConv2d
from ..nn.norm import norm_layer
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

    def norm(path, module, group):
        entries.append(_norm_entry(path, module, group))
        gates.append((path, group))

    conv(1, "in", "stem"); norm("model.2", m[2], "stem")
    conv(4, "stem", "down1"); norm("model.5", m[5], "down1")
    conv(7, "down1", "trunk"); norm("model.8", m[8], "trunk")
    groups = {"stem": m[1].out_channels, "down1": m[4].out_channels,
              "trunk": m[7].out_channels}
    for b in range(n_blocks):
        i = 10 + b
        cb = m[i].conv_block
        p = f"model.{i}.conv_block"
        g = f"block{b + 1}"
        if kind == "resnet":
            c1, c2 = cb[1], cb[len(cb) - 2]
            entries.append(_conv_entry(f"{p}.1", c1, "trunk", g))
            norm(f"{p}.2", cb[2], g)
            entries.append(_conv_entry(f"{p}.{len(cb) - 2}", c2, g, "trunk"))
            norm(f"{p}.{len(cb) - 1}", cb[len(cb) - 1], "trunk")
            groups[g] = c1.out_channels
        else:
            s1, s2 = cb[1], cb[6]
            if not (isinstance(s1, SeparableConv2d) and isinstance(s2, SeparableConv2d)):
                raise ConfigError(f"{p}: expected separable convs at 1 and 6")
            entries.append(_conv_entry(f"{p}.1.conv.0", s1.conv[0], "trunk", "trunk"))
            norm(f"{p}.1.conv.1", s1.conv[1], "trunk")
            entries.append(_conv_entry(f"{p}.1.conv.2", s1.conv[2], "trunk", g))
            norm(f"{p}.2", cb[2], g)
            entries.append(_conv_entry(f"{p}.6.conv.0", s2.conv[0], g, g))
            norm(f"{p}.6.conv.1", s2.conv[1], g)
            entries.append(_conv_entry(f"{p}.6.conv.2", s2.conv[2], g, "trunk"))
            norm(f"{p}.7", cb[7], "trunk")
            groups[g] = s1.conv[2].out_channels
    u = 10 + n_blocks
    conv(u, "trunk", "up1"); norm(f"model.{u + 1}", m[u + 1], "up1")
    conv(u + 3, "up1", "up2"); norm(f"model.{u + 4}", m[u + 4], "up2")
    conv(u + 7, "up2", "out")
    groups["up1"] = m[u].out_channels
    groups["up2"] = m[u + 3].out_channels
    first = m[1]
    fixed = {"in": first.in_channels, "out": m[u + 7].out_channels}
    norm_name = ("batch" if isinstance(m[2], nn.BatchNorm2d) else
                 "instance" if isinstance(m[2], nn.InstanceNorm2d) else "none")
    dropout = next((x.p for x in net.modules() if isinstance(x, nn.Dropout)), 0.0)
    meta = {"kind": kind, "n_blocks": n_blocks, "norm": norm_name, "dropout": float(dropout),
            "input_nc": fixed["in"], "output_nc": fixed["out"]}
    return Plan("generator", groups, entries, gates, fixed, meta)


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


class Gated(nn.Module):
    """A network with a gate on every channel group of its plan.

    ``forward(x, gates)``: ``gates`` maps group name -> (C,) tensor (or (N, C) per sample);
    groups left out are fully open. ``macs(counts, size)`` is differentiable in counts.
    """

    def __init__(self, net: nn.Module, plan: Plan):
        super().__init__()
        self.net = net
        self.plan = plan
        self._active: Optional[Mapping[str, torch.Tensor]] = None
        self._shapes: Dict[tuple, Dict[str, tuple]] = {}
        modules = dict(net.named_modules())
        for path, group in plan.gate_points:
            modules[path].register_forward_hook(self._hook(group))

    def _hook(self, group):
        def apply(module, inputs, output):
            gates = self._active
            if not gates or group not in gates:
                return output
            g = gates[group].to(output.dtype)
            shape = (1, -1, 1, 1) if g.dim() == 1 else (g.shape[0], -1, 1, 1)
            return output * g.reshape(shape)
        return apply

    @property
    def groups(self) -> Dict[str, int]:
        return self.plan.groups

    def forward(self, x, gates: Optional[Mapping[str, torch.Tensor]] = None):
        self._active = gates
        try:
            return self.net(x)
        finally:
            self._active = None

    def forward_features(self, x, gates: Optional[Mapping[str, torch.Tensor]] = None):
        self._active = gates
        try:
            return self.net.forward_features(x)
        finally:
            self._active = None

    # ------------------------------------------------------------------ MACs
    def _spatial(self, size) -> Dict[str, tuple]:
        """Output (H, W) of every plan entry at input ``size`` (one dummy pass, cached)."""
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        key = (int(h), int(w))
        if key not in self._shapes:
            shapes: Dict[str, tuple] = {}
            modules = dict(self.net.named_modules())
            handles = []
            for e in self.plan.entries:
                def rec(mod, inp, out, path=e.path):
                    shapes[path] = tuple(out.shape[-2:])
                handles.append(modules[e.path].register_forward_hook(rec))
            p = next(self.net.parameters())
            was = self.net.training
            self.net.eval()
            try:
                with torch.no_grad():
                    self.net(torch.zeros(1, self.plan.fixed["in"], *key, device=p.device))
            finally:
                self.net.train(was)
                for hd in handles:
                    hd.remove()
            self._shapes[key] = shapes
        return self._shapes[key]

    def macs(self, counts: Optional[Mapping[str, object]] = None, size=256):
        """MACs in the profiler's convention for kept counts per group (floats or
        tensors; missing groups count as full width). Returns a tensor when any count is
        a tensor, else an int."""
        counts = dict(counts or {})
        n = {**self.plan.groups, **self.plan.fixed, **counts}
        shapes = self._spatial(size)
        total = 0
        for e in self.plan.entries:
            hw = shapes[e.path][0] * shapes[e.path][1]
            if e.op in ("conv", "convT"):
                total = total + hw * n[e.gout] * n[e.gin] * e.kernel
            elif e.op == "dw":
                total = total + hw * n[e.gout] * e.kernel
            elif e.op == "norm":
                total = total + hw * n[e.gout]
        if isinstance(total, torch.Tensor):
            return total
        return int(round(total))

    def channel_macs(self, counts: Optional[Mapping[str, int]] = None, size=256,
                     add: bool = False) -> Dict[str, int]:
        """Per prunable group, the MACs one channel of it costs at kept ``counts`` (missing
        groups: full width): what closing one saves, or with ``add`` what opening one more
        adds. Exact (``macs(counts) - macs(counts - 1 in g)``): MACs are a sum over entries
        of products of at most two counts."""
        n = {**self.plan.groups, **self.plan.fixed, **dict(counts or {})}
        shapes = self._spatial(size)
        d = {g: 0 for g in self.plan.groups}
        for e in self.plan.entries:
            hw = shapes[e.path][0] * shapes[e.path][1]
            if e.op in ("conv", "convT"):
                c = hw * e.kernel
                if e.gin == e.gout:      # n^2 terms: (n+1)^2 - n^2 or n^2 - (n-1)^2
                    if e.gout in d:
                        d[e.gout] += c * (2 * int(n[e.gout]) + (1 if add else -1))
                    continue
                if e.gout in d:
                    d[e.gout] += c * int(n[e.gin])
                if e.gin in d:
                    d[e.gin] += c * int(n[e.gout])
            elif e.op == "dw" and e.gout in d:
                d[e.gout] += hw * e.kernel
            elif e.op == "norm" and e.gout in d:
                d[e.gout] += hw
        return d

    def full_macs(self, size=256) -> int:
        return int(self.macs(None, size))

    def macs_ratio(self, gates: Optional[Mapping[str, torch.Tensor]], size=256):
        """Gated MACs / full MACs (differentiable in the gates)."""
        counts = {g: v.sum(-1).mean() if v.dim() > 1 else v.sum() for g, v in
                  (gates or {}).items()}
        return self.macs(counts, size) / float(self.full_macs(size))


def gated_generator(net: nn.Module) -> Gated:
    return Gated(net, generator_plan(net))


def gated_discriminator(net: NLayerDiscriminator) -> Gated:
    return Gated(net, discriminator_plan(net))


# ---------------------------------------------------------------------- slicing
class PrunedResnetBlock(ResnetBlock):
    """A ResNet block with its own inner width (the layout of ``ResnetBlock``)."""

    def __init__(self, dim: int, inner: int, norm: str = "instance", dropout: float = 0.0):
        super().__init__(dim, norm, dropout, inner=inner)


WIDTH_KEYS = ("stem", "down1", "trunk", "blocks", "up1", "up2")


class PrunedResnetGenerator(SequentialGenerator):
    """A plain generator with per-layer widths: the result of pruning a resnet or mobile
    ResNet generator. ``widths = {"stem", "down1", "trunk", "blocks": [inner per block],
    "up1", "up2"}``; ``kind`` 'resnet' (3x3 convs in blocks) or 'mobile' (separable).
    The module layout (``model.<i>``) is the teacher's, so its state dict is the
    teacher's sliced to the kept channels, and so are its named feature points."""

    def __init__(self, widths: Mapping, kind: str = "resnet", input_nc: int = 3,
                 output_nc: int = 3, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        if kind not in ("resnet", "mobile"):
            raise ConfigError(f"pruned generator kind {kind!r} is not one of: resnet, mobile")
        missing = [k for k in WIDTH_KEYS if k not in widths]
        if missing:
            raise ConfigError(f"pruned generator widths lack {missing[0]!r}")
        w = {k: (list(map(int, widths[k])) if k == "blocks" else int(widths[k]))
             for k in WIDTH_KEYS}
        bad = [k for k in WIDTH_KEYS if (min(w[k]) if k == "blocks" and w[k] else
                                         (0 if k == "blocks" else w[k])) <= 0]
        if bad:
            raise ConfigError(f"pruned generator width {bad[0]!r} must be positive: {w[bad[0]]}")
        self.widths, self.kind = w, kind
        self.n_blocks = len(w["blocks"])
        self.input_nc, self.output_nc, self.norm, self.dropout = input_nc, output_nc, norm, dropout
        make_norm, bias = norm_layer(norm)
        s, d1, t = w["stem"], w["down1"], w["trunk"]
        block = PrunedResnetBlock if kind == "resnet" else MobileResnetBlock
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, s, 7, bias=bias), make_norm(s),
                  nn.ReLU(True),
                  nn.Conv2d(s, d1, 3, stride=2, padding=1, bias=bias), make_norm(d1),
                  nn.ReLU(True),
                  nn.Conv2d(d1, t, 3, stride=2, padding=1, bias=bias), make_norm(t),
                  nn.ReLU(True)]
        layers += [block(t, inner, norm, dropout) for inner in w["blocks"]]
        u1, u2 = w["up1"], w["up2"]
        layers += [nn.ConvTranspose2d(t, u1, 3, stride=2, padding=1, output_padding=1, bias=bias),
                   make_norm(u1), nn.ReLU(True),
                   nn.ConvTranspose2d(u1, u2, 3, stride=2, padding=1, output_padding=1,
                                      bias=bias),
                   make_norm(u2), nn.ReLU(True),
                   nn.ReflectionPad2d(3), nn.Conv2d(u2, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def description(self) -> dict:
        """What it takes to rebuild this network (the model card's architecture)."""
        return {"netG": "pruned_resnet", "kind": self.kind, "widths": dict(self.widths),
                "input_nc": self.input_nc, "output_nc": self.output_nc, "norm": self.norm,
                "dropout": self.dropout}

    @classmethod
    def from_description(cls, d: Mapping) -> "PrunedResnetGenerator":
        return cls(d["widths"], d.get("kind", "resnet"), int(d.get("input_nc", 3)),
                   int(d.get("output_nc", 3)), d.get("norm", "instance"),
                   float(d.get("dropout", 0.0)))


def hard_keep(gates: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Indices of kept channels (gate > 0.5) per group; at least one per group (the
    largest gate) so no layer vanishes."""
    keep = {}
    for g, v in gates.items():
        v = v.detach().reshape(-1)
        idx = torch.nonzero(v > 0.5).reshape(-1)
        if idx.numel() == 0:
            idx = v.argmax().reshape(1)
        keep[g] = idx.cpu()
    return keep


def _slice_tensor(name: str, t: torch.Tensor, e: Entry, keep) -> torch.Tensor:
    def idx(g):
        return keep.get(g) if g not in FIXED else None

    if t.dim() == 0:
        return t.clone()
    if e.op in ("norm", "none"):
        i = idx(e.gout)
        return t.clone() if i is None else t.index_select(0, i)
    if name == "bias":
        i = idx(e.gout)
        return t.clone() if i is None else t.index_select(0, i)
    if e.op == "dw":
        i = idx(e.gin)
        return t.clone() if i is None else t.index_select(0, i)
    dim_out, dim_in = (1, 0) if e.op == "convT" else (0, 1)
    out = t
    if idx(e.gout) is not None:
        out = out.index_select(dim_out, idx(e.gout))
    if idx(e.gin) is not None:
        out = out.index_select(dim_in, idx(e.gin))
    return out.clone()


def _full_keep(gated: Gated, keep: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    unknown = [g for g in keep if g not in gated.plan.groups]
    if unknown:
        raise ConfigError(f"unknown channel group {unknown[0]!r}; groups: "
                          + ", ".join(gated.plan.groups))
    full = {g: torch.arange(c) for g, c in gated.plan.groups.items()}
    return {**full, **{g: torch.as_tensor(v).long().reshape(-1).cpu() for g, v in keep.items()}}


def sliced_state_dict(gated: Gated, keep: Mapping[str, torch.Tensor]) -> dict:
    """The network's state dict restricted to the kept channels of every group."""
    keep = _full_keep(gated, keep)
    modules = dict(gated.net.named_modules())
    out = {}
    for e in gated.plan.entries:
        mod = modules[e.path]
        for name, t in list(mod.state_dict().items()):
            out[f"{e.path}.{name}"] = _slice_tensor(name, t.detach().cpu(), e, keep)
    return out


@torch.no_grad()
def slice_network(gated: Gated, keep: Mapping[str, torch.Tensor]) -> nn.Module:
    """A plain network holding only the kept channels; equal to the hard-gated network."""
    keep = _full_keep(gated, keep)
    counts = {g: int(v.numel()) for g, v in keep.items()}
    zero = [g for g, c in counts.items() if c <= 0]
    if zero:
        raise ConfigError(f"cannot slice: group {zero[0]!r} keeps no channel")
    meta = gated.plan.meta
    if gated.plan.kind == "generator":
        widths = {"stem": counts["stem"], "down1": counts["down1"], "trunk": counts["trunk"],
                  "blocks": [counts[f"block{i + 1}"] for i in range(meta["n_blocks"])],
                  "up1": counts["up1"], "up2": counts["up2"]}
        net = PrunedResnetGenerator(widths, meta["kind"], meta["input_nc"], meta["output_nc"],
                                    meta["norm"], meta["dropout"])
    else:
        net = NLayerDiscriminator(meta["input_nc"], 1, meta["n_layers"], meta["norm"],
                                  [counts[f"d{i}"] for i in range(meta["n_layers"] + 1)])
    net.load_state_dict(sliced_state_dict(gated, keep), strict=True)
    p = next(gated.net.parameters())
    return net.to(p.device).train(gated.net.training)


def project_keep(gated: Gated, keep: Mapping[str, torch.Tensor],
                 logits: Mapping[str, torch.Tensor], budget_macs: float, size,
                 min_count: Optional[Mapping[str, int]] = None,
                 temperature: float = 1.0) -> Dict[str, torch.Tensor]:
    """Kept channels projected to at most ``budget_macs``, ranking channels by importance
    per MAC: a channel's importance is its keep probability ``sigmoid(logit / temperature)``
    and its cost the MACs closing it saves at the current widths
    (:meth:`Gated.channel_macs`, which changes as other groups shrink). While over the
    budget, close the open channel with the lowest importance per MAC saved (no group
    under ``min_count``, default 1), so of two equally important channels the one in the
    layer whose removal saves more MACs goes first; then, while anything fits, open the
    closed channel with the highest importance per MAC added. Within a group all channels
    cost the same, so each group keeps its highest logits; the result lands under the
    budget, within one channel's MACs of it. Ranked by raw logits instead, cheap channels
    with slightly lower logits are closed one after another where one expensive channel
    would have met the budget at a smaller loss of importance."""
    floor = {g: max(1, int((min_count or {}).get(g, 1))) for g in gated.groups}
    is_open = {g: torch.zeros(c, dtype=torch.bool) for g, c in gated.groups.items()}
    for g, idx in keep.items():
        is_open[g][torch.as_tensor(idx).long().cpu()] = True
    score = {g: logits[g].detach().double().reshape(-1).cpu() for g in gated.groups}
    # log importance (float64 log-sigmoid: no tie between large logits)
    log_imp = {g: torch.nn.functional.logsigmoid(v / float(temperature)) for g, v in score.items()}

    def macs(counts):
        return gated.macs(counts, size)

    def by_logit(g, mask, descending):
        idx = torch.nonzero(mask).reshape(-1)
        order = torch.argsort(score[g][idx], descending=descending, stable=True)
        return deque(int(i) for i in idx[order])

    counts = {g: int(v.sum()) for g, v in is_open.items()}
    # close: lowest importance per MAC saved first (each group's lowest logit is its candidate)
    open_q = {g: by_logit(g, v, False) for g, v in is_open.items()}
    while macs(counts) > budget_macs:
        save = gated.channel_macs(counts, size)
        best = None
        for g, q in open_q.items():
            if not q or counts[g] <= floor[g] or save[g] <= 0:
                continue
            key = float(log_imp[g][q[0]]) - math.log(save[g])
            if best is None or key < best[0]:
                best = (key, g)
        if best is None:
            break
        g = best[1]
        is_open[g][open_q[g].popleft()] = False
        counts[g] -= 1
    for g in gated.groups:  # a group under its floor (too few kept): its best channels
        if counts[g] < floor[g]:
            order = torch.argsort(score[g], descending=True)
            for i in order[: floor[g]]:
                is_open[g][i] = True
            counts[g] = int(is_open[g].sum())
    # open: highest importance per MAC added first, while one still fits
    closed_q = {g: by_logit(g, ~v, True) for g, v in is_open.items()}
    while True:
        now = macs(counts)
        cost = gated.channel_macs(counts, size, add=True)
        best = None
        for g, q in closed_q.items():
            if not q or now + cost[g] > budget_macs:
                continue
            key = float(log_imp[g][q[0]]) - math.log(max(cost[g], 1))
            if best is None or key > best[0]:
                best = (key, g)
        if best is None:
            break
        g = best[1]
        is_open[g][closed_q[g].popleft()] = True
        counts[g] += 1
    return {g: torch.nonzero(v).reshape(-1) for g, v in is_open.items()}
