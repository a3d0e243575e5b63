"""Kept channels of a gated network, and the plain network that holds only them.

- :func:`hard_keep`: the kept channels of hard gates (at least one per group).
- :func:`slice_network` / :func:`sliced_state_dict`: a plain network (a
  :class:`~ganc.nn.pruned.PrunedResnetGenerator` or a narrower ``NLayerDiscriminator``)
  with the kept channels' weights; it computes what the hard-gated network computes.
- :func:`project_keep` moves a set of kept channels to at most a MACs budget (closing, then
  opening, channels in the order of their importance per MAC: keep probability from the
  gate logit over the MACs the channel costs at the current widths), so what is exported
  fits the budget.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..nn.discriminator import NLayerDiscriminator
from ..nn.pruned import PrunedResnetGenerator
from .gated import Gated
from .plan import FIXED, Entry


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
    proj = _Projection(gated, keep, logits, budget_macs, size, floor, temperature)
    proj.close_over_budget()
    proj.restore_floors()
    proj.open_while_fits()
    return proj.kept()


class _Projection:
    """One projection's state (:func:`project_keep`): the open channels of each group,
    their logits and log importance, and the open counts the MACs are taken at."""

    def __init__(self, gated: Gated, keep: Mapping[str, torch.Tensor],
                 logits: Mapping[str, torch.Tensor], budget_macs: float, size,
                 floor: Dict[str, int], temperature: float):
        self.gated, self.budget, self.size, self.floor = gated, budget_macs, size, floor
        self.is_open = {g: torch.zeros(c, dtype=torch.bool) for g, c in gated.groups.items()}
        for g, idx in keep.items():
            self.is_open[g][torch.as_tensor(idx).long().cpu()] = True
        self.score = {g: logits[g].detach().double().reshape(-1).cpu() for g in gated.groups}
        # log importance (float64 log-sigmoid: no tie between large logits)
        self.log_imp = {g: torch.nn.functional.logsigmoid(v / float(temperature))
                        for g, v in self.score.items()}
        self.counts = {g: int(v.sum()) for g, v in self.is_open.items()}

    def macs(self) -> float:
        return self.gated.macs(self.counts, self.size)

    def by_logit(self, g: str, mask: torch.Tensor, descending: bool) -> deque:
        idx = torch.nonzero(mask).reshape(-1)
        order = torch.argsort(self.score[g][idx], descending=descending, stable=True)
        return deque(int(i) for i in idx[order])

    def close_over_budget(self) -> None:
        """While over the budget, close the open channel with the lowest importance per
        MAC saved (each group's lowest logit is its candidate; no group under its floor)."""
        open_q = {g: self.by_logit(g, v, False) for g, v in self.is_open.items()}
        while self.macs() > self.budget:
            save = self.gated.channel_macs(self.counts, self.size)
            best = None
            for g, q in open_q.items():
                if not q or self.counts[g] <= self.floor[g] or save[g] <= 0:
                    continue
                key = float(self.log_imp[g][q[0]]) - math.log(save[g])
                if best is None or key < best[0]:
                    best = (key, g)
            if best is None:
                break
            g = best[1]
            self.is_open[g][open_q[g].popleft()] = False
            self.counts[g] -= 1

    def restore_floors(self) -> None:
        """A group under its floor (too few kept): its best channels by logit."""
        for g in self.gated.groups:
            if self.counts[g] < self.floor[g]:
                order = torch.argsort(self.score[g], descending=True)
                for i in order[: self.floor[g]]:
                    self.is_open[g][i] = True
                self.counts[g] = int(self.is_open[g].sum())

    def open_while_fits(self) -> None:
        """Open the closed channel with the highest importance per MAC added first, while
        one still fits the budget."""
        closed_q = {g: self.by_logit(g, ~v, True) for g, v in self.is_open.items()}
        while True:
            now = self.macs()
            cost = self.gated.channel_macs(self.counts, self.size, add=True)
            best = None
            for g, q in closed_q.items():
                if not q or now + cost[g] > self.budget:
                    continue
                key = float(self.log_imp[g][q[0]]) - math.log(max(cost[g], 1))
                if best is None or key > best[0]:
                    best = (key, g)
            if best is None:
                break
            g = best[1]
            self.is_open[g][closed_q[g].popleft()] = True
            self.counts[g] += 1

    def kept(self) -> Dict[str, torch.Tensor]:
        return {g: torch.nonzero(v).reshape(-1) for g, v in self.is_open.items()}


__all__ = ["hard_keep", "sliced_state_dict", "slice_network", "project_keep"]
