"""Pruning agents: gates, resource loss, gated MACs, slicing, LDS loss, a short run."""
from __future__ import annotations

import math

import pytest
import torch

from ganc import nn as gnn
from ganc.config import PruneConfig
from ganc.errors import ConfigError
from ganc.profile import count_macs
from ganc.prune import (Agent, LocalDensityLoss, Pruner, expected_gates, gated_discriminator,
                        gated_generator, gumbel_sigmoid, hard_keep, resource_loss,
                        slice_network)
from ganc.prune.agents import floor_open, min_keep
from ganc.nn.pruned import PrunedResnetGenerator
from ganc.prune.lds import FixedFeatures, pooled

SIZE = 32


def _random_keep(gated, seed):
    g = torch.Generator().manual_seed(seed)
    gates = {k: (torch.rand(c, generator=g) > 0.5).float() for k, c in gated.groups.items()}
    keep = hard_keep(gates)
    gates = {k: torch.zeros(c).index_fill(0, keep[k], 1.0) for k, c in gated.groups.items()}
    return gates, keep


def _randomize_bn(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


# ------------------------------------------------------------------------- gates
def test_gumbel_sigmoid_soft_in_train_hard_in_eval_straight_through():
    torch.manual_seed(0)
    logits = torch.linspace(-2, 2, 64, requires_grad=True)
    soft = gumbel_sigmoid(logits, 0.5, training=True, hard=False)
    assert ((soft > 0) & (soft < 1)).all()
    assert ((soft > 0.01) & (soft < 0.99)).any()          # genuinely soft
    assert not torch.equal(soft, gumbel_sigmoid(logits, 0.5, training=True, hard=False))
    hard = gumbel_sigmoid(logits, 0.5, training=True, hard=True)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    hard.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0   # straight-through
    ev = gumbel_sigmoid(logits.detach(), 0.5, training=False)
    assert torch.equal(ev, (logits.detach() > 0).float())
    assert torch.equal(ev, gumbel_sigmoid(logits.detach(), 0.5, training=False))
    e = expected_gates(logits.detach().requires_grad_(), 0.5)
    assert torch.equal(e.detach(), (logits.detach() > 0).float())
    with pytest.raises(ConfigError, match="temperature"):
        gumbel_sigmoid(logits, 0.0)
    # the temperature sets P(open) = sigmoid(logit / T)
    one = torch.full((20000,), 1.0)
    for T in (0.25, 1.0):
        p_open = float(gumbel_sigmoid(one, T, training=True).mean())
        assert abs(p_open - 1 / (1 + math.exp(-1.0 / T))) < 0.02, (T, p_open)


def test_resource_loss_two_sided_with_dead_zone():
    for r0 in (0.097, 0.1, 0.104):                       # inside the dead zone: no pull
        r = torch.tensor(r0, requires_grad=True)
        loss = resource_loss(r, 0.1, 0.005)
        loss.backward()
        assert float(loss.detach()) == 0.0 and float(r.grad) == 0.0
    over = torch.tensor(0.3, requires_grad=True)
    loss = resource_loss(over, 0.1, 0.005)
    assert math.isclose(float(loss.detach()), (0.2 - 0.005) / 0.1, rel_tol=1e-6)
    loss.backward()
    assert float(over.grad) > 0                          # above the target: close channels
    under = torch.tensor(0.05, requires_grad=True)
    resource_loss(under, 0.1, 0.005).backward()
    assert float(under.grad) < 0                         # below it: reopen channels
    with pytest.raises(ConfigError, match="target"):
        resource_loss(torch.tensor(0.5), 0.0)
    with pytest.raises(ConfigError, match="prune.tolerance"):
        resource_loss(torch.tensor(0.5), 0.1, -1.0)


def test_floor_open_keeps_min_width_by_logit():
    logits = {"a": torch.tensor([-3.0, -1.0, -2.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0, -10.0]),
              "b": torch.tensor([1.0, -1.0])}
    gates = {g: (v > 0).float() for g, v in logits.items()}
    out = floor_open(gates, logits, 0.25)
    assert out["a"].tolist() == [1, 1, 1] + [0] * 7      # ceil(2.5) = 3 highest logits
    assert out["b"].tolist() == [1, 0]
    assert min_keep(10, 0.0) == 1 and min_keep(10, 0.1) == 1 and min_keep(64, 0.1) == 7


def test_agent_peer_input_changes_logits():
    torch.manual_seed(0)
    agent = Agent({"a": 4, "b": 6}, peer_layers=3, base=2.0)
    out0 = agent(agent.peer_input(None, None))
    assert list(out0) == ["a", "b"] and out0["b"].shape == (6,)
    assert (out0["a"] > 0).all()                                   # starts open
    out1 = agent(agent.peer_input([0.2, 0.5, 1.0], 0.7))
    assert (out0["a"] - out1["a"]).abs().max() > 0.02        # the peer input moves logits
    assert torch.equal(agent.peer_input(None, None), torch.zeros(4))


# ------------------------------------------------------------------------- MACs + slicing
@pytest.mark.parametrize("name,norm", [("resnet_9blocks", "instance"),
                                       ("mobile_resnet_9blocks", "batch"),
                                       ("resnet_6blocks", "none")])
def test_gated_generator_macs_and_slicing(name, norm):
    torch.manual_seed(1)
    G = gnn.build(name, ngf=8, norm=norm)
    _randomize_bn(G)
    gated = gated_generator(G)
    assert "trunk" in gated.groups and "block1" in gated.groups
    assert gated.full_macs(SIZE) == count_macs(G, (1, 3, SIZE, SIZE))
    G.eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    for seed in (0, 1):
        gates, keep = _random_keep(gated, seed)
        small = slice_network(gated, keep).eval()
        assert isinstance(small, PrunedResnetGenerator)
        counts = {g: v.sum() for g, v in gates.items()}
        assert int(gated.macs(counts, SIZE)) == count_macs(small, (1, 3, SIZE, SIZE))
        with torch.no_grad():
            y_gated, y_small, y_full = gated(x, gates), small(x), G(x)
        assert (y_gated - y_small).abs().max() < 1e-5
        assert (y_gated - y_full).abs().max() > 1e-3              # the gates do something
        rebuilt = PrunedResnetGenerator.from_description(small.description())
        rebuilt.load_state_dict(small.state_dict(), strict=True)
    # differentiable in the gates
    g = {k: torch.full((c,), 0.5, requires_grad=True) for k, c in gated.groups.items()}
    ratio = gated.macs_ratio(g, SIZE)
    ratio.backward()
    assert 0 < float(ratio) < 1 and all(v.grad.abs().sum() > 0 for v in g.values())


def test_gated_discriminator_macs_and_slicing():
    torch.manual_seed(2)
    D = gnn.build("n_layers", input_nc=6, ndf=8, n_layers=3, norm="batch")
    _randomize_bn(D)
    gated = gated_discriminator(D)
    assert list(gated.groups) == ["d0", "d1", "d2", "d3"]
    assert gated.full_macs(SIZE) == count_macs(D, (1, 6, SIZE, SIZE))
    D.eval()
    x = torch.randn(2, 6, SIZE, SIZE)
    gates, keep = _random_keep(gated, 3)
    small = slice_network(gated, keep).eval()
    assert isinstance(small, gnn.NLayerDiscriminator)
    assert small.widths == [int(v.numel()) for v in keep.values()]
    assert int(gated.macs({g: v.sum() for g, v in gates.items()}, SIZE)) == \
        count_macs(small, (1, 6, SIZE, SIZE))
    with torch.no_grad():
        assert (gated(x, gates) - small(x)).abs().max() < 1e-5


def test_slicing_rejects_unknown_group():
    gated = gated_generator(gnn.build("resnet_6blocks", ngf=8))
    with pytest.raises(ConfigError, match="unknown channel group 'nope'"):
        slice_network(gated, {"nope": torch.tensor([0])})


# ------------------------------------------------------------------------- LDS
@pytest.mark.parametrize("features", ["fixed", "discriminator"])
def test_lds_zero_for_identical_and_grows_with_perturbation(features):
    torch.manual_seed(3)
    G = gnn.build("resnet_6blocks", ngf=8).eval()
    D = gnn.build("n_layers", input_nc=6, ndf=8, n_layers=3, norm="instance").eval()
    if features == "fixed":
        fixed = FixedFeatures(3)
        phi = lambda x, y: fixed(y)                                   # noqa: E731
    else:
        phi = lambda x, y: pooled(D.forward_features(torch.cat([x, y], 1))[1])  # noqa: E731
    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    lds = LocalDensityLoss(phi(x[:1], x[:1]).shape[1], k=4, noise=0.1, bandwidth=1.0)
    xs = lds.neighbourhood(x, torch.Generator().manual_seed(0))
    assert xs.shape == (8, 3, SIZE, SIZE) and torch.equal(xs[0], x[0]) and torch.equal(xs[4], x[1])
    with torch.no_grad():
        f_orig = phi(xs, G(xs))
        same = lds(phi(xs, G(xs)), f_orig)
    assert float(same["total"]) < 1e-6 and float(same["adv"]) == pytest.approx(0, abs=1e-6)
    totals = []
    for eps in (0.05, 0.2, 0.6):
        P = gnn.build("resnet_6blocks", ngf=8).eval()
        P.load_state_dict(G.state_dict())
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in P.parameters():
                p.add_(eps * torch.randn(p.shape, generator=gen) * p.std().clamp_min(1e-3))
            t = lds(phi(xs, P(xs)), f_orig)
        totals.append(float(t["density"] + t["structure"]))
    assert totals[0] > 1e-6 and totals[0] < totals[1] < totals[2], totals


def test_lds_gradient_reaches_agent_and_g_within_10x_of_recon(tmp_path):
    """At the default weights the LDS gradient on genG's parameters and on G's weights is
    within 10x of the reconstruction term's (it was ~1e-6 of it with a global kernel
    scale and spatial-mean features)."""
    torch.set_num_threads(1)
    A, B = _demo_batches(tmp_path)
    G, D = _teacher()
    pc = PruneConfig(lr_agent=2e-2, lambda_resource=5.0, lr=1e-4)   # lr > 0: G's weights
    pr = Pruner(pc, 0.3, G, D, size=SIZE)                           # take gradients too
    for i in range(6):                           # prune a little: pruned != original
        pr.step(A[i % 4:i % 4 + 1], B[i % 4:i % 4 + 1])
    gG, gD = pr.gates(training=True)
    terms, _, _, _ = pr.task_terms_G(A[:2], gG, gD)
    assert float(terms["lds"]) > 1e-3, terms
    groups = {"agent": list(pr.genG.parameters()), "G": list(pr.G.parameters())}

    def norm(loss, params):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return float(torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None)))
    for name, params in groups.items():
        lds = norm(pc.lambda_lds * terms["lds"], params)
        recon = norm(pc.lambda_recon * terms["G_recon"], params)
        assert lds > 0 and 0.1 <= lds / recon <= 10, (name, lds, recon)
    # the critic is neither built nor trained when its share is 0
    no_adv = Pruner(PruneConfig(lds_adv=0.0, lds_k=2), 0.3, G, D, size=SIZE)
    assert no_adv.lds.critic is None and "critic" not in no_adv.step(A[:1], B[:1])


def test_lds_terms_live_on_tight_neighbourhoods():
    """Neighbourhoods whose copies sit close together far from the origin (D features:
    large means, small differences) still give O(0.1) terms when the pruned copies move
    by as much as the copies differ: the bandwidth is per neighbourhood, the features
    are normalised by their spread, so the terms do not depend on the features' scale."""
    g = torch.Generator().manual_seed(0)
    centre = 5.0 + torch.randn(3, 1, 64, generator=g)
    Q = centre + 0.01 * torch.randn(3, 4, 64, generator=g)           # (B, K, F)
    P = Q + 0.01 * torch.randn(3, 4, 64, generator=g)
    lds = LocalDensityLoss(64, k=4, adv_weight=0.0)
    t = lds(P.flatten(0, 1), Q.flatten(0, 1))
    assert float(t["density"]) > 0.05, t
    t100 = lds(100 * P.flatten(0, 1), 100 * Q.flatten(0, 1))
    assert float(t100["density"]) == pytest.approx(float(t["density"]), rel=1e-3)


def test_lds_critic_sized_at_the_training_size():
    """D's last maps are smaller than the pooling grid at 32px but not at 64px: the critic
    is built for the features at the pruner's size."""
    torch.manual_seed(5)
    G = gnn.build("resnet_6blocks", ngf=4)
    D = gnn.build("n_layers", input_nc=6, ndf=4, n_layers=3, norm="batch")
    pr = Pruner(PruneConfig(lds_k=2), 0.5, G, D, size=64)
    m = pr.step(torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1)
    assert math.isfinite(m["lds"]) and math.isfinite(m["critic"])


def test_neighbours_differ_from_each_other():
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    xs = LocalDensityLoss(8, k=4, noise=0.0).neighbourhood(x, torch.Generator().manual_seed(1))
    d = [(xs[i] - xs[j]).abs().mean() for i in range(4) for j in range(i + 1, 4)]
    assert min(float(v) for v in d) > 0.05, d        # each copy its own flip and shift


def test_lds_config_errors():
    with pytest.raises(ConfigError, match="lds_k"):
        LocalDensityLoss(8, k=1)
    with pytest.raises(ConfigError, match="lds_perturb 'blur'"):
        LocalDensityLoss(8, perturb="blur")


# ------------------------------------------------------------------------- training
def _demo_batches(tmp_path, n=4):
    from ganc.data import build_dataset, make_demo_data
    root = tmp_path / "demo"
    make_demo_data("paired", n, SIZE, str(root), seed=0, n_test=4)
    ds = build_dataset("aligned", str(root), "train", "AtoB", SIZE, SIZE, False)
    items = [ds[i] for i in range(len(ds))]
    A = torch.stack([it["A"] for it in items])
    B = torch.stack([it["B"] for it in items])
    return A, B


def _teacher():
    torch.manual_seed(0)
    G = gnn.build("resnet_6blocks", ngf=8)
    D = gnn.build("n_layers", input_nc=6, ndf=8, n_layers=2, norm="batch")
    return G, D


def test_short_run_hits_targets_both_ways(tmp_path):
    """G and D end within 0.01 of their MACs targets, on average over the last ten of 60
    steps (the deterministic gates still flip a channel or two from step to step, up to
    ~0.02 of G's MACs at this size, so one step's ratio says little): D's own loss, which
    closes D's channels, is held at its target by the two-sided resource loss."""
    torch.set_num_threads(1)
    A, B = _demo_batches(tmp_path)
    G, _ = _teacher()
    torch.manual_seed(0)
    D = gnn.build("n_layers", input_nc=6, ndf=16, n_layers=2, norm="batch")
    pc = PruneConfig(lr_agent=1e-2, lambda_resource=5.0, d_target=0.5, lds_k=2)
    pr = Pruner(pc, 0.2, G, D, size=SIZE)
    start = pr.ratios()
    assert start["ratio_G"] == 1.0 and start["ratio_D"] == 1.0, start
    # gates start open: the sampled network is the original one at the first step
    gG, gD = pr.gates(training=True)
    assert float(pr.G.macs_ratio(gG, SIZE)) > 0.95 and float(pr.D.macs_ratio(gD, SIZE)) > 0.95
    last = []
    for i in range(60):
        pr.step(A[i % 4:i % 4 + 1], B[i % 4:i % 4 + 1])
        if i >= 50:
            last.append(pr.ratios())
    r = last[-1]
    mean = {k: sum(x[k] for x in last) / len(last) for k in ("ratio_G", "ratio_D")}
    assert abs(mean["ratio_G"] - 0.2) <= 0.01, [x["ratio_G"] for x in last]
    assert abs(mean["ratio_D"] - 0.5) <= 0.01, [x["ratio_D"] for x in last]
    assert all(abs(x["ratio_G"] - 0.2) <= 0.03 and abs(x["ratio_D"] - 0.5) <= 0.03
               for x in last), last
    # G's weights are frozen in the search phase: still the teacher's
    assert all(torch.equal(a, b) for a, b in zip(pr.G.net.state_dict().values(),
                                                  G.state_dict().values()))
    small, small_D, keep = pr.slice()
    assert all(v.numel() >= min_keep(pr.G.groups[g], pc.min_width) for g, v in keep["G"].items())
    assert count_macs(small, (1, 3, SIZE, SIZE)) == round(r["macs_G"])
    gG, gD = pr.hard_gates()
    with torch.no_grad():
        pr.G.eval(), pr.D.eval(), small.eval(), small_D.eval()
        assert (pr.G(A, gG) - small(A)).abs().max() < 1e-5
        x = torch.cat([A, B], 1)
        assert (pr.D(x, gD) - small_D(x)).abs().max() < 1e-5


def _learned_gates(A, B, G, D, steps=12, **kw):
    pr = Pruner(PruneConfig(lds_k=2, lr_agent=2e-2, lambda_resource=5.0, **kw), 0.3, G, D,
                size=SIZE, seed=0)
    terms = [pr.step(A[i % 4:i % 4 + 1], B[i % 4:i % 4 + 1]) for i in range(steps)][-1]
    with torch.no_grad():
        lG, lD = pr.logits()
    return pr, terms, {g: v > 0 for g, v in lG.items()}, {g: v > 0 for g, v in lD.items()}


def test_ablation_switches_change_the_learned_gates(tmp_path):
    """No LDS and no peer feedback each change the gates genG and genD learn (same seeds,
    same data; the gate samples do not depend on the LDS's random neighbourhoods)."""
    torch.set_num_threads(1)
    A, B = _demo_batches(tmp_path, n=4)
    G, D = _teacher()
    full, m, fG, fD = _learned_gates(A, B, G, D)
    assert {"lds", "lds_density", "lds_structure", "lds_adv", "critic", "task_G"} <= set(m)
    assert m["lds_density"] > 0 and full.last_peer["G"].abs().sum() > 0
    assert full.last_peer["D"].abs().sum() > 0
    # the peer input is the other agent's current P(open) per layer and its model's loss
    pG, _ = full.peer_inputs()
    assert torch.allclose(pG[:-1], torch.tensor(full.peer_D.values), atol=1e-6)
    assert 0 < float(pG[:-1].min()) and float(pG[:-1].max()) <= 1
    _, _, aG, aD = _learned_gates(A, B, G, D)                       # deterministic
    assert all(torch.equal(aG[g], fG[g]) for g in fG) and all(torch.equal(aD[g], fD[g]) for g in fD)

    def changed(xG, xD):
        return (sum(int((xG[g] != fG[g]).sum()) for g in fG),
                sum(int((xD[g] != fD[g]).sum()) for g in fD))
    no_lds, m, nG, nD = _learned_gates(A, B, G, D, use_lds=False)
    assert not any(k.startswith("lds") for k in m) and "critic" not in m
    assert min(changed(nG, nD)) > 0, changed(nG, nD)
    no_peer, m, pG_, pD_ = _learned_gates(A, B, G, D, peer_feedback=False)
    assert no_peer.last_peer["G"].abs().sum() == 0 and no_peer.last_peer["D"].abs().sum() == 0
    assert min(changed(pG_, pD_)) > 0, changed(pG_, pD_)

    no_d = Pruner(PruneConfig(prune_d=False, lds_k=2), 0.1, G, D, size=SIZE)
    m = [no_d.step(A[:1], B[:1]) for _ in range(2)][-1]
    assert no_d.genD is None and m["res_D"] == 0.0 and m["ratio_D"] == 1.0
    assert no_d.ratios()["ratio_D"] == 1.0
    assert no_d.slice()[1].widths == D.widths


def test_prune_config_errors():
    G, D = _teacher()
    with pytest.raises(ConfigError, match=r"prune.targets: item 1.5 is out of range"):
        Pruner(PruneConfig(targets=[1.5]), 0.1, G, D)
    with pytest.raises(ConfigError, match="prune.lds_features 'vgg'"):
        Pruner(PruneConfig(lds_features="vgg"), 0.1, G, D)
    with pytest.raises(ConfigError, match="prune.d_target"):
        Pruner(PruneConfig(d_target=0), 0.1, G, D)


# ------------------------------------------------------------------------- equal budget
@pytest.mark.parametrize("start", ["all", "one"])
def test_project_keep_fits_budget_within_one_channel(start):
    """Under the budget, and no closed channel fits any more (at 32px one stem or up2
    channel is ~1.5-2.5% of the MACs, so that is as close as the channels allow)."""
    from ganc.prune.slicing import project_keep
    torch.manual_seed(4)
    gated = gated_generator(gnn.build("resnet_6blocks", ngf=8))
    full = gated.full_macs(SIZE)
    logits = {g: torch.randn(c) for g, c in gated.groups.items()}
    keep = ({g: torch.arange(c) for g, c in gated.groups.items()} if start == "all" else
            {g: torch.tensor([0]) for g in gated.groups})
    floor = {g: min_keep(c, 0.1) for g, c in gated.groups.items()}
    for ratio in (0.08, 0.3, 0.6):
        budget = ratio * full
        out = project_keep(gated, keep, logits, budget, SIZE, floor)
        small = slice_network(gated, out)
        macs = count_macs(small, (1, 3, SIZE, SIZE))
        assert macs <= budget and macs >= 0.95 * budget, (ratio, macs / full)
        counts = {g: int(v.numel()) for g, v in out.items()}
        add = gated.channel_macs(counts, SIZE, add=True)
        assert all(macs + add[g] > budget for g in gated.groups
                   if counts[g] < gated.groups[g]), (ratio, budget - macs, add)
        assert all(out[g].numel() >= floor[g] for g in gated.groups)
        # the kept channels are the highest logits among those that could be kept
        for g in gated.groups:
            closed = sorted(set(range(gated.groups[g])) - set(out[g].tolist()))
            if closed and start == "all":
                assert float(logits[g][out[g]].min()) >= float(logits[g][closed].max()) - 1e-6


def test_targets_default_to_the_search_budget(tmp_path):
    from ganc.config import RunConfig
    from ganc.prune.models import build_base
    from ganc.prune.targets import resolve_targets, search_budgets
    from ganc.store import open_store
    run = open_store(str(tmp_path / "store")).run("r")
    cfg = RunConfig(name="r")
    cfg.data.crop_size = SIZE
    T = gnn.build("resnet_6blocks", ngf=8)
    full = count_macs(T, (1, 3, SIZE, SIZE))
    assert search_budgets(cfg, run) == []
    assert resolve_targets(cfg, run, T, T) == [pytest.approx(0.1, abs=1e-6)]  # search's rule
    run.put_json("best.json", {"search": {"budget_macs": 0.25 * full}})
    assert resolve_targets(cfg, run, T, T) == [pytest.approx(0.25, abs=1e-6)]
    cfg.search.budget_macs = 0.4 * full
    assert resolve_targets(cfg, run, T, T) == [pytest.approx(0.4, abs=1e-6)]
    cfg.prune.targets = [0.3]
    assert resolve_targets(cfg, run, T, T) == [0.3]
    # prune.base_model: mobile prunes the supernet's largest sub-network
    cfg.prune.targets = []
    cfg.prune.base_model = "mobile"
    with pytest.raises(ConfigError, match="supernet/final.pt does not exist"):
        build_base(cfg, run, T)
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=8)
    run.put_torch("supernet/final.pt", {"netG": "super_mobile_resnet_9blocks", "ngf": 8,
                                        "norm": "instance", "state_dict": sup.state_dict()})
    base, name = build_base(cfg, run, T)
    assert name == "mobile" and gated_generator(base).plan.meta["kind"] == "mobile"
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert (base(x) - sup.eval()(x)).abs().max() < 1e-5
    mob = count_macs(base, (1, 3, SIZE, SIZE))
    assert resolve_targets(cfg, run, T, base) == [pytest.approx(0.4 * full / mob, abs=1e-6)]
    cfg.search.budget_macs = 2.0 * mob
    with pytest.raises(ConfigError, match="not below the pruned network's"):
        resolve_targets(cfg, run, T, base)


def test_pruned_finetune_follows_the_search_winners_recipe():
    """The recipe comes from distill.* / finetune.*; feature distillation reaches G's
    weights through the 1x1 mappings; the LR is constant, then decays linearly to 0."""
    from ganc.config import RunConfig
    from ganc.nn.discriminator import NLayerDiscriminator
    from ganc.prune.finetuning import FinetuneRecipe, distill_points, finetune
    cfg = RunConfig(name="r")
    cfg.distill.lambda_recon, cfg.distill.lambda_distill = 100.0, 1.0
    cfg.finetune.epochs, cfg.finetune.epochs_decay, cfg.finetune.lr = 1, 3, 1e-3
    r = FinetuneRecipe.of(cfg, 8)
    assert (r.steps, r.decay_start, r.lr, r.lambda_recon, r.lambda_distill) == (
        8, 2, 1e-3, 100.0, 1.0)
    assert [r.lr_factor(s) for s in (0, 1, 2, 5, 8)] == [1.0, 1.0, 1.0, 0.5, 0.0]
    T = gnn.build("resnet_6blocks", ngf=8).eval()
    widths = {"stem": 4, "down1": 8, "trunk": 16, "blocks": [8] * 6, "up1": 8, "up2": 4}
    G = PrunedResnetGenerator(widths)
    # a 6-block network has no block9: the points both networks have are distilled
    assert distill_points(G, T, r.points) == ["down2", "block6"]
    torch.manual_seed(0)
    batch = {"A": torch.rand(2, 3, SIZE, SIZE) * 2 - 1, "B": torch.rand(2, 3, SIZE, SIZE) * 2 - 1}
    D = NLayerDiscriminator(6, ndf=8, n_layers=2)
    # the feature term alone moves G (Adam leaves a weight with zero gradient in place)
    only = FinetuneRecipe(steps=12, lr=1e-2, lambda_recon=0.0, lambda_gan=0.0,
                          lambda_distill=1.0, points=r.points)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    hist = finetune(G, D, T, iter(lambda: batch, None), only, paired=True)
    moved = [k for k, v in G.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("model.1.") for k in moved) and hist[-1]["distill"] < hist[0]["distill"]
    assert all(math.isfinite(h["distill"]) and h["distill"] > 0 for h in hist)
    # without it (and no other term) G stays where it was
    G2 = PrunedResnetGenerator(widths)
    before = {k: v.clone() for k, v in G2.state_dict().items()}
    finetune(G2, D, T, iter(lambda: batch, None),
             FinetuneRecipe(steps=3, lambda_recon=0.0, lambda_gan=0.0, lambda_distill=0.0),
             paired=True)
    assert all(torch.equal(v, before[k]) for k, v in G2.state_dict().items())
    # the LR schedule is applied step by step
    hist = finetune(G2, D, T, iter(lambda: batch, None), r, paired=True)
    assert [h["lr"] for h in hist] == [1e-3 * r.lr_factor(s) for s in range(8)]
