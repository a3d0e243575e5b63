"""Local-density-structure (LDS) loss between a pruned and the original generator.

Our design (Ganjdanesh et al., AAAI 2024 publish only the idea; GUIDE §3):

1. **Neighbourhoods.** For each input x of a batch, K copies: x itself and K-1 perturbed
   copies (``augment``, the default: each copy its own random horizontal flip and shift of
   up to ``max(2, H // 32)`` pixels, plus ``x + sigma * N(0, 1)`` noise; ``noise``: the
   noise only), clamped to [-1, 1]. Beyond the abstract: the copies must differ visibly,
   or every neighbourhood collapses to one point and its density structure says nothing;
   so each copy draws its own shift (one shift for all copies made them near-duplicates
   of each other). The original (frozen) generator and the pruned one translate every copy.
2. **Feature space** phi: the discriminator's activations (``discriminator``: every hidden
   LeakyReLU map of the current gated D, conditioned on the input for pix2pix) or a fixed,
   randomly initialised small conv net (``fixed``, seeded, frozen). Maps are average-pooled
   to a ``4 x 4`` grid (:func:`spatial`), not to their mean, so where things are in the
   image counts. Pruned and original outputs go through D in ONE pass (a batch-norm D in
   train mode would otherwise normalise them with different batch statistics, and the
   difference of the two passes would swamp the difference of the two generators).
   Every feature dimension is divided by its spread (the std over the original's outputs
   in the batch, detached), so no layer dominates because of its scale.
3. **Density terms**, per neighbourhood, with a two-scale Gaussian kernel
   ``k(a, b) = mean_s exp(-d(a, b)^2 / (2 h_s^2))`` over the K pruned features P and the K
   original features Q, d^2 the mean squared difference of normalised features and two
   widths per neighbourhood, detached (:func:`bandwidths`): the *local* one, the median of
   the original's within-neighbourhood d^2 times ``prune.lds_bandwidth^2`` (the median
   heuristic; a global scale put the neighbourhood's distances at ~1e-4 of h^2, where the
   kernel is flat and the terms vanish), and the *pooled* one, the median of all pairwise
   d^2 of P and Q together times the same factor. The local width alone fails the other
   way: at a real pruning start (the released horse2zebra compressed generator cut to
   1.4 of its 2.5 GMACs) d^2(P, Q) is ~25 times the local h^2, every ``k(P, Q)`` is
   ~exp(-12), the pull towards the original vanishes and what is left of the gradient
   (P's own terms) pushes the pruned copies away from it;
   the pooled width grows with that distance (and comes back to the local one as P
   approaches Q), so the kernel keeps a gradient at every distance:

   - ``density``: the squared distance between the two Gaussian-kernel density
     estimates, ``mean k(P, P) + mean k(Q, Q) - 2 mean k(P, Q)`` (the kernel MMD^2, i.e.
     the integrated squared difference of the KDEs up to the kernel's self-convolution).
   - ``structure``: ``mean (k(P_i, P_j) - k(Q_i, Q_j))^2`` -- the local density structure
     (how tightly the neighbourhood's images cluster around each other) must match.

   Both are exactly 0 when the pruned generator equals the original and grow as the
   outputs diverge.
4. **Adversarial term on neighbourhoods**: a small critic scores a neighbourhood from its
   set-pooled features (mean and std over the K copies). It is trained to score the
   original's neighbourhood above the pruned one's, relativistically and per input:
   ``softplus(c(P) - c(Q))``; the generator side is ``softplus(c(Q) - c(P)) - log 2``, which
   is also 0 when the two generators coincide. With ``prune.lds_adv: 0`` the critic is
   neither used nor trained.

``total = density + structure + adv`` (weights: ``prune.lambda_lds`` outside, the
adversarial share ``prune.lds_adv``).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

PERTURBATIONS = ("noise", "augment")
FEATURE_SPACES = ("discriminator", "fixed")


def neighbourhood(x: torch.Tensor, k: int, noise: float, mode: str = "augment",
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(B*K, C, H, W): for each input, itself and K-1 perturbed copies (input-major)."""
    if k < 2:
        raise ConfigError(f"prune.lds_k must be at least 2, got {k}")
    if mode not in PERTURBATIONS:
        raise ConfigError(f"prune.lds_perturb {mode!r} is not one of: {', '.join(PERTURBATIONS)}")
    b = x.shape[0]
    copies = x.unsqueeze(1).repeat(1, k - 1, 1, 1, 1).flatten(0, 1)
    eps = torch.randn(copies.shape, generator=generator).to(x.device)
    if mode == "augment":
        n = copies.shape[0]
        flip = torch.rand(n, generator=generator) < 0.5
        copies = torch.where(flip.to(x.device)[:, None, None, None], copies.flip(-1), copies)
        m = max(2, int(x.shape[-2]) // 32)
        shifts = torch.randint(-m, m + 1, (n, 2), generator=generator).tolist()
        copies = torch.stack([torch.roll(c, shifts=(dy, dx), dims=(-2, -1))
                              for c, (dy, dx) in zip(copies, shifts)])
    copies = (copies + noise * eps).clamp(-1, 1)
    out = torch.cat([x.unsqueeze(1), copies.view(b, k - 1, *x.shape[1:])], 1)
    return out.flatten(0, 1)


GRID = 4  # feature maps are average-pooled to GRID x GRID cells


def spatial(feats, grid: int = GRID) -> torch.Tensor:
    """(N, F): every feature map average-pooled to a ``grid x grid`` map, flattened and
    concatenated."""
    return torch.cat([F.adaptive_avg_pool2d(f.float(), min(grid, f.shape[-1])).flatten(1)
                      for f in feats], 1)


def pooled(feats) -> torch.Tensor:
    """(N, F): the spatial mean of every feature map, concatenated."""
    return torch.cat([f.float().mean(dim=(-2, -1)) for f in feats], 1)


class FixedFeatures(nn.Module):
    """A frozen, randomly initialised (seeded) conv net: a generic image feature space."""

    def __init__(self, input_nc: int = 3, width: int = 16, seed: int = 1234):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = [input_nc, width, 2 * width, 4 * width]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1)
                                   for a, b in zip(chans[:-1], chans[1:]))
        with torch.no_grad():
            for c in self.convs:
                c.weight.copy_(torch.randn(c.weight.shape, generator=g)
                               * math.sqrt(2.0 / (c.in_channels * 16)))
                c.bias.zero_()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, y: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        feats = []
        for c in self.convs:
            y = F.leaky_relu(c(y), 0.2)
            feats.append(y)
        return spatial(feats)


class NeighbourhoodCritic(nn.Module):
    """Scores a neighbourhood (K feature vectors) from their mean and std over K."""

    def __init__(self, feature_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * feature_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, s: torch.Tensor) -> torch.Tensor:  # s: (B, K, F)
        return self.net(torch.cat([s.mean(1), s.std(1)], -1)).squeeze(-1)


def bandwidths(P: torch.Tensor, Q: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """(B, 2): the two squared kernel widths of each neighbourhood (detached):

    - local: the median of the original's within-neighbourhood d^2 (the median heuristic on
      Q alone), the scale at which the neighbourhood's structure is resolved;
    - pooled: the median of all pairwise d^2 of the pooled 2K points P and Q, which grows
      with the pruned-to-original distances (the median heuristic on both samples).

    Both times ``bandwidth^2``, at least 1e-8."""
    k = Q.shape[1]
    Z = torch.cat([P, Q], 1).detach()
    dzz = (Z.unsqueeze(2) - Z.unsqueeze(1)).pow(2).mean(-1)        # (B, 2K, 2K)
    off_q = ~torch.eye(k, dtype=torch.bool, device=Q.device)
    off_z = ~torch.eye(2 * k, dtype=torch.bool, device=Q.device)
    local = dzz[:, k:, k:][:, off_q].median(dim=1).values
    pooled = dzz[:, off_z].median(dim=1).values
    return torch.stack([local, pooled], 1).clamp_min(1e-8) * bandwidth ** 2


def kernel_terms(P: torch.Tensor, Q: torch.Tensor, bandwidth: float) -> Dict[str, torch.Tensor]:
    """Density (KDE L2 / MMD^2) and structure terms for neighbourhoods P, Q: (B, K, F)
    (features already normalised), with a two-scale Gaussian kernel per neighbourhood
    (:func:`bandwidths`: the mean of a kernel at the original's local scale and one at
    the pooled P-and-Q scale). With the local scale alone, a pruned output far from the
    original's (d^2(P, Q) ~ 25x the local scale at a real pruning start) puts every
    ``k(P, Q)`` at ~exp(-12): the pull towards the original vanishes and what gradient
    is left comes from P's own terms (it pushes the pruned copies apart). The pooled
    scale keeps ``k(P, Q)`` at O(1) there and shrinks to the local one as P approaches Q;
    a sum of Gaussian kernels is a kernel, so the density term stays an MMD^2 (>= 0, 0
    when P equals Q)."""
    if bandwidth <= 0:
        raise ConfigError(f"prune.lds_bandwidth must be positive, got {bandwidth}")
    h2 = bandwidths(P, Q, bandwidth)                               # (B, S)

    def d2(a, b):
        return (a.unsqueeze(2) - b.unsqueeze(1)).pow(2).mean(-1)   # (B, K, K)

    def gram(d):
        return torch.exp(-d.unsqueeze(-1) / (2 * h2[:, None, None, :])).mean(-1)

    kpp, kqq, kpq = gram(d2(P, P)), gram(d2(Q, Q)), gram(d2(P, Q))
    density = (kpp.mean((1, 2)) + kqq.mean((1, 2)) - 2 * kpq.mean((1, 2))).clamp_min(0).mean()
    structure = (kpp - kqq).pow(2).mean()
    return {"density": density, "structure": structure}


def normalise(P: torch.Tensor, Q: torch.Tensor):
    """P and Q (N, F) divided per dimension by the spread of Q over N (detached)."""
    spread = Q.detach().std(0, keepdim=True).clamp_min(1e-6)
    return P / spread, Q / spread


class LocalDensityLoss(nn.Module):
    """The LDS loss; holds the neighbourhood critic (trained by :meth:`critic_loss`)."""

    def __init__(self, feature_dim: int, k: int = 4, noise: float = 0.05,
                 bandwidth: float = 1.0, perturb: str = "augment", adv_weight: float = 0.1):
        super().__init__()
        if perturb not in PERTURBATIONS:
            raise ConfigError(f"prune.lds_perturb {perturb!r} is not one of: "
                              + ", ".join(PERTURBATIONS))
        if k < 2:
            raise ConfigError(f"prune.lds_k must be at least 2, got {k}")
        if bandwidth <= 0:
            raise ConfigError(f"prune.lds_bandwidth must be positive, got {bandwidth}")
        self.k, self.noise, self.bandwidth = int(k), float(noise), float(bandwidth)
        self.perturb, self.adv_weight = perturb, float(adv_weight)
        self.critic = NeighbourhoodCritic(feature_dim) if self.adv_weight > 0 else None

    def neighbourhood(self, x, generator=None):
        return neighbourhood(x, self.k, self.noise, self.perturb, generator)

    def _sets(self, f: torch.Tensor) -> torch.Tensor:
        return f.view(-1, self.k, f.shape[-1])

    def forward(self, feat_pruned: torch.Tensor, feat_orig: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Generator-side terms from features (B*K, F) of pruned and original outputs on
        the same neighbourhoods (from :meth:`neighbourhood`)."""
        fP, fQ = normalise(feat_pruned, feat_orig.detach())
        P, Q = self._sets(fP), self._sets(fQ)
        terms = kernel_terms(P, Q, self.bandwidth)
        if self.adv_weight > 0:
            gap = self.critic(Q) - self.critic(P)
            terms["adv"] = self.adv_weight * (F.softplus(gap) - math.log(2.0)).mean()
        else:
            terms["adv"] = torch.zeros((), device=P.device)
        terms["total"] = terms["density"] + terms["structure"] + terms["adv"]
        return terms

    def critic_loss(self, feat_pruned: torch.Tensor, feat_orig: torch.Tensor) -> torch.Tensor:
        fP, fQ = normalise(feat_pruned.detach(), feat_orig.detach())
        P, Q = self._sets(fP), self._sets(fQ)
        return F.softplus(self.critic(P) - self.critic(Q)).mean()


FeatureFn = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
