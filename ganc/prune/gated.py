"""Gated generators and discriminators: a gate on every prunable channel group.

The groups and gate points of a network are its plan (:mod:`ganc.prune.plan`). Gates
multiply the output of every *norm slot* of a group (norm layers, ``Identity`` for
``norm='none'``, and D's first conv, which has no norm), before the ReLU. Because a
norm acts per channel and the next op reads a gated-off channel as exact zeros, a gate
of 0 removes the channel exactly: the sliced network (kept channels only,
:func:`ganc.prune.slicing.slice_network`) computes the same function as the hard-gated
one. For residual blocks this means ``x + g * branch(x)``, and inside mobile blocks the
depthwise conv's norm is gated too (a zero channel through depthwise conv + bias + batch
norm would otherwise become a constant).

MACs (:meth:`Gated.macs`) are a sum over plan entries in the profiler's convention
(``ganc.profile``: conv = out elements x in/groups x k^2, transposed conv per output
element, +1 per output element of every norm layer), written as polynomials in the kept
counts ``n_g = sum(gate_g)``, so they are differentiable in the gates; with hard gates
they equal ``ganc.profile.count_macs`` of the sliced network exactly.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn

from ..nn.discriminator import NLayerDiscriminator
from .plan import Plan, discriminator_plan, generator_plan


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


__all__ = ["Gated", "gated_generator", "gated_discriminator"]
