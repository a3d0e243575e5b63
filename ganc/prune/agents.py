"""Pruning agents (genG, genD): small networks producing per-channel gate logits.

Our design (the paper's details are not public; GUIDE §3): an agent holds one learned
embedding per prunable layer (channel group) of its model; the *peer input* -- the other
agent's mean gate probability per layer (``sigmoid(logit / T)``) and ``log1p`` of the other
model's task loss (without its resource term), both the other side's current state (after
its latest update, detached; :class:`PeerState`) -- is mapped to the embedding size and
added to every layer's embedding; a GRU runs over the layers in
network order (so each layer's decision sees the ones before it); a linear head per
layer gives one logit per channel, plus a constant ``base`` offset so gates start open
(``base=3``, ``T=0.5``: every channel is open with probability >= sigmoid(5) ~ 0.993 at
the first step, so the sampled network starts as the original). Head biases start spread
evenly over ``[-spread, spread]`` (in random channel order), so channels close one after
another as the resource loss lowers the logits, not all at once.

Gates: :func:`gumbel_sigmoid` draws ``sigmoid(logits / T + log u - log(1 - u))`` in
training and makes it hard (``> 0.5``) with a straight-through estimator
(``hard - soft.detach() + soft``); in eval it is deterministic, ``logits > 0``. The
temperature divides the logits, not the noise, so it sets how random the sampled
architecture is: P(open) = sigmoid(logit / T) (dividing the sum of logit and noise would
leave P(open) = sigmoid(logit) whatever T).
The resource loss is taken on the deterministic gates (:func:`expected_gates`: hard
``logits > 0`` with the gradient of ``sigmoid(logits / T)``), i.e. on the network that
would be exported, while the task losses see Gumbel samples (exploration). Taking it on
the samples instead drives every logit far below 0 (a channel at logit 0 is still kept
half the time), and the deterministic network collapses far under its target.
:func:`resource_loss` is two-sided: ``max(|r - p| - tol, 0) / p`` for a MACs ratio r,
target p and dead zone ``tol`` (``prune.tolerance``), so a network pruned under its
target is pulled back open (a one-sided loss lets D's own loss close D far below its
target). Every group keeps at least ``prune.min_width`` of its channels
(:func:`floor_open`: the highest logits are forced open), so no layer collapses.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn

from ..errors import ConfigError


def gumbel_sigmoid(logits: torch.Tensor, temperature: float = 0.5, training: bool = True,
                   hard: bool = True, generator: Optional[torch.Generator] = None):
    """Gates from logits. Training: a Gumbel-sigmoid sample, hard with a straight-through
    gradient when ``hard`` (else soft in (0, 1)). Eval: ``(logits > 0)`` as floats."""
    if temperature <= 0:
        raise ConfigError(f"prune.temperature must be positive, got {temperature}")
    if not training:
        return (logits > 0).to(logits.dtype)
    u = torch.rand(logits.shape, generator=generator, device="cpu").to(logits.device)
    u = u.clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid(logits / temperature + torch.log(u) - torch.log1p(-u))
    if not hard:
        return soft
    hard_v = (soft > 0.5).to(soft.dtype)
    return hard_v - soft.detach() + soft


def expected_gates(logits: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Deterministic hard gates ``logits > 0`` with the straight-through gradient of
    ``sigmoid(logits / T)``: the architecture that would be exported, differentiably."""
    soft = torch.sigmoid(logits / temperature)
    return (logits > 0).to(soft.dtype) - soft.detach() + soft


def resource_loss(ratio: torch.Tensor, target: float, tolerance: float = 0.0) -> torch.Tensor:
    """``max(|r - p| - tol, 0) / p``: zero inside the dead zone ``|r - p| <= tol``,
    pushing r down above it and up below it (relative to p, like ``log(r / p)`` near p)."""
    if not 0 < target <= 1:
        raise ConfigError(f"pruning target must be in (0, 1], got {target}")
    if tolerance < 0:
        raise ConfigError(f"prune.tolerance must be >= 0, got {tolerance}")
    ratio = torch.as_tensor(ratio)
    return torch.clamp((ratio - target).abs() - tolerance, min=0) / target


def min_keep(width: int, min_width: float) -> int:
    """Channels a group of ``width`` keeps at least: ``ceil(min_width * width)``, >= 1."""
    return max(1, min(int(width), math.ceil(float(min_width) * int(width) - 1e-9)))


def floor_open(gates: Mapping[str, torch.Tensor], logits: Mapping[str, torch.Tensor],
               min_width: float) -> Dict[str, torch.Tensor]:
    """Gates with each group's ``min_keep`` highest-logit channels forced open (1, no
    gradient there): the minimum width per group."""
    out = {}
    for g, v in gates.items():
        lg = logits[g].detach()
        k = min_keep(lg.shape[-1], min_width)
        top = torch.topk(lg, k, dim=-1).indices
        mask = torch.zeros_like(lg, dtype=torch.bool).scatter_(-1, top, True)
        out[g] = torch.where(mask, torch.ones_like(v), v)
    return out


class Agent(nn.Module):
    """Per-layer embeddings (+ peer input) -> GRU -> per-layer heads -> channel logits."""

    def __init__(self, groups: Mapping[str, int], peer_layers: int, embed: int = 32,
                 hidden: int = 64, base: float = 3.0, spread: float = 0.5):
        super().__init__()
        self.names = list(groups)
        self.widths = [int(groups[g]) for g in self.names]
        self.base = float(base)
        self.peer_layers = int(peer_layers)
        self.embed = nn.Parameter(torch.randn(len(self.names), embed) * 0.1)
        self.peer = nn.Linear(self.peer_layers + 1, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.heads = nn.ModuleList(nn.Linear(hidden, w) for w in self.widths)
        for h in self.heads:
            # large enough that the peer input and the GRU move the logits (~0.1 at
            # initialisation), small against base so gates still start open
            nn.init.normal_(h.weight, 0.0, 0.05)
            # channels start spread around the base offset, so that a falling offset
            # closes them one after another (a smooth MACs path) instead of all at once
            with torch.no_grad():
                h.bias.copy_(torch.linspace(-spread, spread, h.out_features)[
                    torch.randperm(h.out_features)])

    def peer_input(self, peer_ratios: Optional[Sequence[float]], peer_loss: Optional[float],
                   device=None) -> torch.Tensor:
        """The peer vector: the other agent's per-layer gate summary and ``log1p`` of the
        other model's task loss; zeros when feedback is off (``None``)."""
        v = torch.zeros(self.peer_layers + 1, device=device)
        if peer_ratios is not None:
            r = torch.as_tensor(list(peer_ratios), dtype=torch.float32, device=device)
            v[: min(len(r), self.peer_layers)] = r[: self.peer_layers]
        if peer_loss is not None and math.isfinite(float(peer_loss)):
            v[-1] = math.log1p(max(float(peer_loss), 0.0))
        return v

    def forward(self, peer: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        dev = self.embed.device
        if peer is None:
            peer = torch.zeros(self.peer_layers + 1, device=dev)
        seq = self.embed + self.peer(peer.to(dev)).unsqueeze(0)
        out, _ = self.gru(seq.unsqueeze(0))
        h = out[0]
        return {g: head(h[i]) + self.base for i, (g, head) in enumerate(zip(self.names,
                                                                             self.heads))}

    def gates(self, logits: Mapping[str, torch.Tensor], temperature: float, training: bool,
              generator: Optional[torch.Generator] = None,
              min_width: float = 0.0) -> Dict[str, torch.Tensor]:
        g = {k: gumbel_sigmoid(v, temperature, training, True, generator)
             for k, v in logits.items()}
        return floor_open(g, logits, min_width)


def gate_probabilities(logits: Mapping[str, torch.Tensor], temperature: float) -> List[float]:
    """Mean P(open) = sigmoid(logit / T) per layer: the gate summary a peer sees."""
    return [float(torch.sigmoid(v.detach().float() / temperature).mean())
            for v in logits.values()]


class PeerState:
    """One side's latest summary as its peer reads it: a list of per-layer values (its
    agent's gate probabilities) and its model's task loss; ``None`` until the first
    update. Each update replaces the summary (no average over steps: the peer sees where
    the other side is now, not where it was on average over the last steps)."""

    def __init__(self):
        self.values: Optional[List[float]] = None
        self.loss: Optional[float] = None

    def update(self, values: Sequence[float], loss: float) -> None:
        self.values = [float(v) for v in values]
        if math.isfinite(float(loss)):
            self.loss = float(loss)


def kept_ratios(gates: Mapping[str, torch.Tensor]) -> List[float]:
    """Fraction of channels kept per layer (the gate summary a peer sees)."""
    return [float(v.detach().float().mean()) for v in gates.values()]
