"""Loss math, config sampling, LR schedule, batch streams: plain modules, no Ray."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from ganc import nn as gnn
from ganc.config import from_dict
from ganc.errors import ConfigError
from ganc.losses import FeatureDistiller, GANLoss, ImagePool, discriminator_loss, recon_l1
from ganc.space import PRESETS, SearchSpace
from ganc.train import common
from ganc.train.sampling import ConfigSampler
from ganc.train.supernet import search_space_of



def test_gan_losses_match_their_definitions():
    pred = torch.tensor([[-2.0, 0.0, 3.0]])
    v = GANLoss("vanilla")
    assert torch.isclose(v(pred, True), F.softplus(-pred).mean())
    assert torch.isclose(v(pred, False), F.softplus(pred).mean())
    ls = GANLoss("lsgan")
    assert torch.isclose(ls(pred, True), ((pred - 1) ** 2).mean())
    assert torch.isclose(ls(pred, False), (pred ** 2).mean())
    h = GANLoss("hinge")
    assert torch.isclose(h(pred, True), torch.tensor((3 + 1 + 0) / 3))
    assert torch.isclose(h(pred, False), torch.tensor((0 + 1 + 4) / 3))
    assert torch.isclose(h(pred, True, for_discriminator=False), -pred.mean())
    d = discriminator_loss(ls, pred, pred)
    assert torch.isclose(d, 0.5 * (ls(pred, True) + ls(pred, False)))
    with pytest.raises(ConfigError, match="gan_mode 'wgan'"):
        GANLoss("wgan")


def test_recon_l1():
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert recon_l1(a, b).item() == pytest.approx(0.5)


def test_feature_distiller_widths_from_named_points_and_slicing():
    teacher = gnn.build("resnet_9blocks", ngf=8)
    student = gnn.build("super_mobile_resnet_9blocks", ngf=16)
    points = ["down2", "block3", "block6", "block9"]
    dist = FeatureDistiller.from_models(student, teacher, points)
    # student trunk 4*16 -> teacher trunk 4*8 at every point
    assert {p: (c.in_channels, c.out_channels) for p, c in dist.maps.items()} == {
        p: (64, 32) for p in points}
    x = torch.randn(2, 3, 32, 32)
    _, tf = teacher.forward_features(x, points)
    _, sf = student.forward_features(x, "8_8_8_8_8_8_8_8", points)
    assert sf["down2"].shape[1] == 32  # a narrow sub-network
    loss = dist(sf, tf)
    expected = sum(F.mse_loss(F.conv2d(sf[p], dist.maps[p].weight[:, :32], dist.maps[p].bias),
                              tf[p]) for p in points)
    assert torch.isclose(loss, expected)
    loss.backward()
    w = dist.maps["block3"].weight.grad
    assert w[:, :32].abs().sum() > 0 and w[:, 32:].abs().sum() == 0
    with pytest.raises(ConfigError, match="block4"):
        FeatureDistiller.from_models(student, teacher, ["block4"])


def test_distillation_pulls_student_features_to_teacher():
    torch.manual_seed(0)
    teacher = gnn.build("resnet_9blocks", ngf=4).eval()
    student = gnn.build("super_mobile_resnet_9blocks", ngf=4)
    dist = FeatureDistiller.from_models(student, teacher, ["down2", "block3"])
    opt = torch.optim.Adam(list(student.parameters()) + list(dist.parameters()), lr=3e-3)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        _, tf = teacher.forward_features(x, ["down2", "block3"])
    losses = []
    for _ in range(20):
        _, sf = student.forward_features(x, None, ["down2", "block3"])
        loss = dist(sf, tf)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_image_pool():
    pool = ImagePool(2, rng=random.Random(0))
    a = torch.ones(1, 3, 2, 2)
    assert torch.equal(pool.query(a), a) and len(pool.images) == 1
    pool.query(2 * a)
    outs = {pool.query(3 * a)[0, 0, 0, 0].item() for _ in range(30)}
    assert outs <= {1.0, 2.0, 3.0} and len(outs) > 1   # history is returned sometimes
    assert len(pool.images) == 2
    assert torch.equal(ImagePool(0).query(a), a)


def test_config_sampler_uniform_and_sandwich():
    space = PRESETS["channels-64-pix2pix"]
    uni = ConfigSampler(space, "uniform", seed=3)
    assert uni.configs(7) == uni.configs(7)  # same for every rank and after a resume
    drawn = {str(uni.configs(s)[0]) for s in range(50)}
    assert len(drawn) > 40 and all(space.contains(c) for c in drawn)
    sw = ConfigSampler(space, "sandwich", seed=3)
    cs = sw.configs(5)
    assert cs[0] == space.largest() and cs[1] == space.smallest() and cs[2] == uni.configs(5)[0]
    with pytest.raises(ConfigError, match="distill.sampler 'best'"):
        ConfigSampler(space, "best")


def test_lr_constant_then_linear_decay():
    from ganc.train.schedule import make_schedule

    class Len:
        epochs, epochs_decay, steps = 1, 1, 0
    sch = make_schedule("teacher", Len, 100, 2, 1)       # 50 steps per epoch, 100 in all
    assert sch.lr_factor(0) == 1.0 and sch.lr_factor(49) == 1.0
    assert sch.lr_factor(75) == pytest.approx(0.5) and sch.lr_factor(100) == 0.0


def test_batch_loader_resumes_at_the_same_batch_and_ranks_split_it():
    import random

    class Items(torch.utils.data.Dataset):      # an item and the random draw made for it
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"i": torch.tensor(i), "r": torch.tensor(random.random())}

    def take(loader, n):
        it = iter(loader)
        return [next(it) for _ in range(n)]

    full = take(common.batch_loader(Items(), 4, rank=0, world=2, seed=1), 7)
    seq = [b["i"].tolist() for b in full]
    assert len({tuple(x) for x in seq}) > 2 and all(len(x) == 2 for x in seq)
    resumed = take(common.batch_loader(Items(), 4, rank=0, world=2, seed=1, start=3), 4)
    assert [b["i"].tolist() for b in resumed] == seq[3:]
    assert [b["r"].tolist() for b in resumed] == [b["r"].tolist() for b in full[3:]]
    other = take(common.batch_loader(Items(), 4, rank=1, world=2, seed=1), 2)
    assert set(seq[0] + seq[1]).isdisjoint(sum((b["i"].tolist() for b in other), []))
    # loader processes draw the same augmentation as the training process
    two = take(common.batch_loader(Items(), 4, rank=0, world=2, seed=1, num_workers=2), 7)
    assert [b["r"].tolist() for b in two] == [b["r"].tolist() for b in full]


def test_demo_data_resolved_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANC_CACHE", str(tmp_path))
    from ganc.cluster import local_machine
    from ganc.context import resolve_data
    from ganc.store import open_store
    cfg = from_dict({"data": {"kind": "unaligned", "demo_n": 4, "demo_size": 16}})
    store = open_store(tmp_path / "store")
    root = resolve_data(cfg, store, local_machine()).local()
    assert root == str(tmp_path / "demo" / "unpaired-4-16-0-task2")
    stamp = (tmp_path / "demo" / "unpaired-4-16-0-task2" / "demo.json").stat().st_mtime_ns
    assert resolve_data(cfg, store, local_machine()).local() == root
    assert (tmp_path / "demo" / "unpaired-4-16-0-task2" / "demo.json").stat().st_mtime_ns == stamp
    from ganc.data.splits import eval_split
    assert eval_split(cfg.data) == "test"
    cfg.data.root = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match="data.root"):
        resolve_data(cfg, store, local_machine())


def test_search_space_of_config():
    cfg = from_dict({"model": {"student_ngf": 16}, "distill": {"space_widths": [16, 8]}})
    space = search_space_of(cfg)
    # distill.space_widths: every position takes every width, for the student's family
    assert isinstance(space, SearchSpace) and space.family == "resnet"
    assert space.choices == ((16, 8),) * 8 and space.size == 2 ** 8
    assert str(space.largest()) == "_".join(["16"] * 8)
    assert str(space.smallest()) == "_".join(["8"] * 8)
    # none: the preset model.search_space names
    preset = from_dict({"model": {"student_ngf": 64, "search_space": "channels-64-cycleGAN"}})
    assert search_space_of(preset) == PRESETS["channels-64-cycleGAN"]
    cfg.distill.space_widths = []
    with pytest.raises(ConfigError, match="student_ngf 16"):
        search_space_of(cfg)
