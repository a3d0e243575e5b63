"""Soundness of the pruning variant: the LDS kernel far from the original, the peer
feedback, the per-MAC projection and the unpaired discriminator's real samples."""
from __future__ import annotations

import pytest
import torch

from ganc import nn as gnn
from ganc.config import PruneConfig
from ganc.errors import ConfigError
from ganc.prune import LocalDensityLoss, Pruner, gated_generator, kernel_terms
from ganc.prune.slicing import hard_keep
from ganc.prune.lds import bandwidths

from .helpers import H2Z_DATA, H2Z_MODEL, needs_shared


def _d2(a, b):
    return (a.unsqueeze(2) - b.unsqueeze(1)).pow(2).mean(-1)


def _pull(fP, fQ, lds):
    """(loss, slope, |grad|): the density + structure terms at pruned features fP, the
    derivative of the loss along the straight path from fP to the original's fQ
    (``d loss(fP + t (fQ - fP)) / dt`` at t = 0; negative: moving towards the original
    lowers the loss) and the gradient's norm w.r.t. fP."""
    fP = fP.detach().clone().requires_grad_()
    t = lds(fP, fQ.detach())
    loss = t["density"] + t["structure"]
    g, = torch.autograd.grad(loss, fP)
    return float(loss.detach()), float((g * (fQ - fP.detach())).sum()), float(g.norm())


# ------------------------------------------------------------------------- a. LDS far away
def test_lds_pulls_far_pruned_outputs_towards_the_original():
    """Tight neighbourhoods (copies ~0.1 apart) with the pruned ones ~3 away: with the
    original's local width alone, k(P, Q) ~ exp(-450) and the only gradient left pushes
    the pruned copies apart (the MMD's repulsion); the pooled width keeps the pull."""
    g = torch.Generator().manual_seed(0)
    centre = torch.randn(2, 1, 64, generator=g)
    Q = centre + 0.1 * torch.randn(2, 4, 64, generator=g)                    # (B, K, F)
    P = centre + 3.0 + 0.2 * torch.randn(2, 4, 64, generator=g)
    h2 = bandwidths(P, Q, 1.0)
    assert float((_d2(P, Q).amin((1, 2)) / h2[:, 0]).min()) > 100       # far, in local widths
    lds = LocalDensityLoss(64, k=4, adv_weight=0.0)
    loss, slope, grad = _pull(P.flatten(0, 1), Q.flatten(0, 1), lds)
    assert loss > 0.5 and slope < -0.2 * loss and grad > 1e-3, (loss, slope, grad)
    # zero where the pruned outputs are the original's
    same = kernel_terms(Q, Q.clone(), 1.0)
    assert float(same["density"]) == 0.0 and float(same["structure"]) == 0.0


@needs_shared(H2Z_MODEL, H2Z_DATA)
def test_lds_pulls_a_real_pruning_start_towards_the_original():
    """The released horse2zebra compressed generator (2.55 GMACs at 256px) pruned to
    1.4 GMACs the way the pruner makes an export (its initial hard gates projected to the
    budget, Pruner.project), a fresh D (as for a released teacher), a real horse
    neighbourhood (batch 1, K 4, D's features):
    d^2(pruned, original) is ~25 times the original's local h^2. The LDS terms still pull
    the pruned features towards the original's (with the local width alone the slope
    along the path is positive: the gradient pushes away)."""
    from ganc.data import build_dataset
    from ganc.weights import load_weights
    torch.set_num_threads(1)
    T = gnn.build("sub_mobile_resnet_9blocks", config="16_16_32_16_32_32_16_16")
    load_weights(T, H2Z_MODEL / "latest_net_G.pth")
    torch.manual_seed(0)
    D = gnn.build_for_training("n_layers", input_nc=3, ndf=64, n_layers=3, norm="instance")
    pr = Pruner(PruneConfig(), 1.4e9 / 2546204672, T.eval(), D, conditional=False, size=256)
    assert pr.full_macs_G == 2546204672
    keep = pr.project(hard_keep(pr.hard_gates()[0]))
    assert 1.35e9 < pr.keep_macs(keep) <= 1.4e9
    gates = {g: torch.zeros(c).index_fill(0, keep[g], 1.0) for g, c in pr.G.groups.items()}
    ds = build_dataset("unaligned", H2Z_DATA, "train", load_size=256, crop_size=256,
                       serial=True, train_aug=False)
    A = ds[0]["A"].unsqueeze(0)
    xs = pr.lds.neighbourhood(A, pr.rng_lds)
    with torch.no_grad():
        f = pr.features(torch.cat([xs, xs]), torch.cat([pr.G(xs, gates), pr.T(xs)]), None)
    fP, fQ = f.chunk(2)
    k = pr.lds.k
    from ganc.prune.lds import normalise
    P, Q = (v.view(-1, k, v.shape[-1]) for v in normalise(fP, fQ))
    h2 = bandwidths(P, Q, pr.pc.lds_bandwidth)
    far = float((_d2(P, Q).amin((1, 2)) / h2[:, 0]).min())
    assert far > 10, far                                 # k(P, Q) <= exp(-5) at the local width
    loss, slope, grad = _pull(fP, fQ, pr.lds)
    assert loss > 0.5 and slope < -0.2 * loss and grad > 0, (far, loss, slope, grad)


# ------------------------------------------------------------------------- b. peer feedback
def _small(input_nc=6, seed=0):
    torch.manual_seed(seed)
    G = gnn.build("resnet_6blocks", ngf=8)
    D = gnn.build("n_layers", input_nc=input_nc, ndf=8, n_layers=2, norm="batch")
    return G, D


def test_peer_input_is_the_peers_current_summary():
    """After every step each agent's peer input is the other agent's gate probabilities as
    they stand after that step's update (and the other model's loss at that step), not an
    average over earlier steps; the peer's gates do move from step to step."""
    from ganc.prune.agents import gate_probabilities
    torch.set_num_threads(1)
    G, D = _small()
    pr = Pruner(PruneConfig(lds_k=2, lr_agent=5e-2, lambda_resource=5.0), 0.3, G, D, size=32)
    g = torch.Generator().manual_seed(1)
    T = pr.pc.temperature
    before = None
    for step in range(3):
        A, B = (torch.rand(1, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
        m = pr.step(A, B)
        with torch.no_grad():
            now_D = gate_probabilities(pr.genD(pr.last_peer["D"]), T)
            now_G = gate_probabilities(pr.genG(pr.last_peer["G"]), T)
        if before is not None:                        # the peer's gates changed this step
            assert max(abs(a - b) for a, b in zip(now_D, before)) > 1e-3, (now_D, before)
        before = now_D
        pG, pD = pr.peer_inputs()
        assert not pG.requires_grad and not pD.requires_grad
        assert torch.allclose(pG[:-1], torch.tensor(now_D), atol=1e-6), (step, pG, now_D)
        assert torch.allclose(pD[:-1], torch.tensor(now_G), atol=1e-6), (step, pD, now_G)
        assert float(pG[-1]) == pytest.approx(torch.log1p(torch.tensor(m["D"])).item(), rel=1e-5)
        assert float(pD[-1]) == pytest.approx(torch.log1p(torch.tensor(m["task_G"])).item(),
                                              rel=1e-5)
    # the ablation: no peer feedback, zero peer inputs
    off = Pruner(PruneConfig(lds_k=2, peer_feedback=False), 0.3, G, D, size=32)
    off.step(A, B)
    assert all(float(v.abs().sum()) == 0 for v in off.peer_inputs())


# ------------------------------------------------------------------------- c. per-MAC projection
def test_channel_macs_are_the_exact_marginal_costs():
    for name in ("resnet_6blocks", "mobile_resnet_9blocks"):
        gated = gated_generator(gnn.build(name, ngf=8))
        g = torch.Generator().manual_seed(0)
        counts = {k: int(torch.randint(2, c + 1, (1,), generator=g)) for k, c in
                  gated.groups.items()}
        m = gated.macs(counts, 32)
        save = gated.channel_macs(counts, 32)
        add = gated.channel_macs(counts, 32, add=True)
        for k in gated.groups:
            assert save[k] == m - gated.macs({**counts, k: counts[k] - 1}, 32), (name, k)
            assert add[k] == gated.macs({**counts, k: counts[k] + 1}, 32) - m, (name, k)


def test_projection_cuts_by_importance_per_mac():
    """Two cheap stem channels with slightly lower logits than one expensive trunk channel
    (a trunk channel feeds every residual block: 1.4x a stem channel's MACs at 32px, so
    the two stem channels together save more than it). The budget needs one trunk
    channel's MACs: ranked by raw logit both stem channels go (and the network lands
    109k MACs under the budget); per MAC the trunk channel goes, exactly at the budget."""
    from ganc.prune.slicing import project_keep
    gated = gated_generator(gnn.build("resnet_6blocks", ngf=8))
    full = gated.full_macs(32)
    save = gated.channel_macs(None, 32)
    assert save["trunk"] > 1.3 * save["stem"] and 2 * save["stem"] > save["trunk"], save
    logits = {g: torch.full((c,), 8.0) for g, c in gated.groups.items()}
    logits["stem"][:2] = torch.tensor([-4.1, -4.05])
    logits["trunk"][0] = -4.0                       # the highest of the three low logits
    keep = {g: torch.arange(c) for g, c in gated.groups.items()}
    budget = full - save["trunk"]
    out = project_keep(gated, keep, logits, budget, 32, temperature=1.0)
    kept = {g: set(v.tolist()) for g, v in out.items()}
    assert kept["trunk"] == set(range(1, gated.groups["trunk"])), kept["trunk"]
    assert all(kept[g] == set(range(c)) for g, c in gated.groups.items() if g != "trunk")
    assert gated.macs({g: len(v) for g, v in kept.items()}, 32) == budget
    # importance still comes first: an important trunk channel stays, the stem pays
    logits["trunk"][0] = 8.0
    out = project_keep(gated, keep, logits, budget, 32, temperature=1.0)
    assert set(out["stem"].tolist()) == set(range(2, gated.groups["stem"]))
    assert out["trunk"].numel() == gated.groups["trunk"]
    assert gated.macs({g: int(v.numel()) for g, v in out.items()}, 32) <= budget


# ------------------------------------------------------------------------- d. D's real samples
def _unpaired_batch(tmp_path, size=32):
    from ganc.data import build_dataset, make_demo_data
    root = tmp_path / "unpaired"
    make_demo_data("unpaired", 2, size, str(root), seed=0, n_test=4)
    ds = build_dataset("unaligned", str(root), "train", load_size=size, crop_size=size,
                       serial=True, train_aug=False)
    items = [ds[i] for i in range(2)]
    return {k: torch.stack([it[k] for it in items]) for k in ("A", "B")}


def _record_inputs(D):
    seen = []
    D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    return seen


def test_unpaired_discriminator_sees_real_target_images(tmp_path):
    """Unaligned data (CycleGAN-like): D's real samples are the dataset's real B images (real
    zebras), in the pruning search and in the pruned fine-tune, never the original
    generator's translations of A; the fine-tune's reconstruction target stays the
    original's output. Paired: D's real samples are (A, B) pairs."""
    from ganc.nn.discriminator import NLayerDiscriminator
    from ganc.prune.finetuning import FinetuneRecipe, finetune
    torch.set_num_threads(1)
    batch = _unpaired_batch(tmp_path)
    A, B = batch["A"], batch["B"]
    G, D = _small(input_nc=3)
    with torch.no_grad():
        translated = G.eval()(A)

    def is_in(x, seen):
        return any(s.shape == x.shape and torch.equal(s, x) for s in seen)

    # the search phase (the gated D's network; its fakes are still the original's
    # translations at the first step, all gates open)
    pr = Pruner(PruneConfig(lds_k=2), 0.5, G, D, conditional=False, size=32)
    seen = _record_inputs(pr.D.net)
    pr.step(A, B)
    assert is_in(B, seen)
    with pytest.raises(ConfigError, match="real target images"):
        pr.step(A, None)
    # the fine-tune of a sliced generator at half the MACs (its fakes differ from the
    # original's translations)
    small, small_D, _ = pr.slice(pr.project(hard_keep(pr.hard_gates()[0])))
    with torch.no_grad():
        assert not torch.equal(small.eval()(A), translated)
    seen = _record_inputs(small_D)
    recipe = FinetuneRecipe(steps=1, lambda_distill=0.0)
    finetune(small, small_D, G, iter([batch]), recipe, paired=False)
    assert is_in(B, seen) and not is_in(translated, seen)
    # paired: (A, B) pairs
    D6 = NLayerDiscriminator(6, ndf=8, n_layers=2)
    seen = _record_inputs(D6)
    finetune(small, D6, G, iter([batch]), recipe, paired=True)
    assert is_in(torch.cat([A, B], 1), seen)
