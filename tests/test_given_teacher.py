"""Any loadable generator is a teacher (issue 26): the released GAN Compression horse2zebra
compressed model (a sub_mobile_resnet_9blocks with its channel config) loads strictly as
the teacher, the supernet's distillation mappings take its widths, a checkpoint that does
not fit is refused in one line naming the file, and so is a budget at or above the
teacher's MACs. No Ray: the teacher stage with model.teacher_weights needs none."""
from __future__ import annotations

import shutil

import pytest
import torch

from ganc import nn as gnn
from ganc.config import from_dict
from ganc.errors import ConfigError, WeightsError

from .helpers import H2Z_MODEL, needs_shared

WEIGHTS = H2Z_MODEL / "latest_net_G.pth"
CONFIG = "16_16_32_16_32_32_16_16"          # its model.json's config_str
TEACHER_MACS_256 = 2_546_204_672             # GUIDE §3: 2.55G MACs at 256x256


def _cfg(store, weights=WEIGHTS, **model):
    """A tiny run on generated data whose teacher is the released compressed model."""
    return from_dict({
        "name": "given", "store": {"url": str(store)},
        "data": {"kind": "unaligned", "demo_n": 4, "demo_size": 32, "load_size": 32,
                 "crop_size": 32},
        "model": {"teacher": "sub_mobile_resnet_9blocks", "teacher_weights": str(weights),
                  "student_ngf": 16, "ndf": 8, **model},
        "distill": {"space_widths": [16, 8]},
    })


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANC_CACHE", str(tmp_path / "cache"))   # generated demo data


@needs_shared(WEIGHTS)
def test_released_compressed_model_is_a_teacher_and_sets_the_distillation_widths(tmp_path):
    from ganc.losses import FeatureDistiller
    from ganc.train.supernet import DistillNet, load_teacher, resolve_teacher, search_space_of
    from ganc.train.teacher import train_teacher
    cfg = _cfg(tmp_path / "store")                 # teacher_config '' -> its model.json
    # the teacher stage loads it (weights_only, strict keys) and trains nothing
    s = train_teacher(cfg, str(tmp_path / "store"))
    assert s["trained"] is False and s["config_str"] == CONFIG
    assert not (tmp_path / "store" / "runs" / "given" / "teacher").exists()
    ref = resolve_teacher(cfg, None)
    assert (ref["netG"], ref["config_str"]) == ("sub_mobile_resnet_9blocks", CONFIG)
    teacher = load_teacher(ref).eval()
    assert sum(p.numel() for p in teacher.parameters()) == 356_867
    # the 1x1 mappings go from the student's widths (4 x 16 = 64 at every point) to the
    # teacher's (4 x 32 = 128: its trunk, not the 4 x ngf = 256 of a 64-wide network)
    student = gnn.build_for_training("super_mobile_resnet_9blocks", ngf=16)
    points = cfg.distill.distill_points
    distiller = FeatureDistiller.from_models(student, teacher, points, size=32)
    assert {p: (m.in_channels, m.out_channels) for p, m in distiller.maps.items()} == {
        p: (64, 128) for p in ("down2", "block3", "block6", "block9")}
    # one distillation step of the supernet on two sub-networks
    net = DistillNet(student, distiller)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        t_out, t_feats = teacher.forward_features(x, points)
    space = search_space_of(cfg)
    before = distiller.maps["block9"].weight.detach().clone()
    for c in (space.largest(), space.smallest()):
        out, l_distill = net(x, c, t_feats)
        loss = (out - t_out).abs().mean() + 0.01 * l_distill
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert out.shape == t_out.shape and torch.isfinite(loss)
    assert not torch.equal(before, distiller.maps["block9"].weight)


@needs_shared(WEIGHTS)
def test_a_checkpoint_that_does_not_fit_its_teacher_is_one_line_naming_the_file(
        tmp_path, capsys):
    from ganc.cli import main
    from ganc.train.supernet import load_teacher, resolve_teacher
    # the released weights under another channel config
    ref = resolve_teacher(_cfg(tmp_path / "s", teacher_config="16_16_32_16_32_32_16_24"), None)
    with pytest.raises(WeightsError) as e:
        load_teacher(ref)
    msg = str(e.value)
    assert "\n" not in msg and str(WEIGHTS) in msg
    assert "has shape" in msg and "in the file" in msg
    assert "16_16_32_16_32_32_16_24" in msg
    # another generator's checkpoint, beside a copy of the released model.json, through
    # the CLI's teacher stage: exit 2, one line, no traceback
    folder = tmp_path / "wrong"
    folder.mkdir()
    shutil.copy(H2Z_MODEL / "model.json", folder / "model.json")
    torch.save(gnn.build("resnet_6blocks", ngf=4).state_dict(), folder / "latest_net_G.pth")
    bad = folder / "latest_net_G.pth"
    code = main(["train-teacher", "--store", str(tmp_path / "s2"),
                 "--set", "data.kind=unaligned", "--set", "data.demo_size=32",
                 "--set", "data.demo_n=4", "--set", "model.teacher=sub_mobile_resnet_9blocks",
                 "--set", f"model.teacher_weights={bad}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(bad) in lines[0] and "do not fit sub_mobile_resnet_9blocks " + CONFIG in lines[0]
    assert "key model." in lines[0]


def test_a_sub_network_teacher_without_a_config_is_one_line(tmp_path):
    from ganc.modelio import teacher_spec
    cfg = _cfg(tmp_path, weights=tmp_path / "nowhere.pth")
    with pytest.raises(ConfigError, match=r"^model.teacher sub_mobile_resnet_9blocks needs its "
                                          r"channel config: set model.teacher_config"):
        teacher_spec(cfg.model)
    cfg.model.teacher, cfg.model.teacher_config = "resnet_9blocks", CONFIG
    with pytest.raises(ConfigError, match="takes no channel config"):
        teacher_spec(cfg.model)


@needs_shared(WEIGHTS)
@pytest.mark.parametrize("budget", [TEACHER_MACS_256 / 64, 3.0e9 / 64])
def test_a_budget_at_or_above_the_teachers_macs_is_one_line(tmp_path, budget):
    """At 32x32 the teacher needs (32/256)^2 of its 2.55G: 39,784,448 MACs; exactly that
    and more (the horse2zebra preset's 3.0e9 at 256x256) are refused before any stage
    runs."""
    from ganc.context import open_context
    from ganc.train.teacher import train_teacher
    cfg = _cfg(tmp_path / "store")
    cfg.search.budget_macs = budget
    with pytest.raises(ConfigError) as e:
        open_context(cfg)
    msg = str(e.value)
    assert msg.startswith(f"search.budget_macs {budget:.4g} is at or above the teacher's "
                          f"{TEACHER_MACS_256 / 64:.4g} MACs at 32px")
    assert "\n" not in msg
    assert not (tmp_path / "store" / "runs" / "given").exists()    # nothing written
    with pytest.raises(ConfigError, match="search.budget_macs"):
        train_teacher(cfg)                         # the teacher stage refuses it too
    cfg.search.budget_macs, cfg.search.budgets = 0, [2e7, budget]
    with pytest.raises(ConfigError, match=r"^search.budgets .* is at or above the teacher's"):
        open_context(cfg)
    cfg.search.budgets = [1.0e9 / 64, 1.4e9 / 64, 2.0e9 / 64]   # the preset's, at 32px: fine
    assert open_context(cfg).placement["budgets_macs"] == cfg.search.budgets


def test_search_refuses_a_budget_flag_at_or_above_the_teacher():
    """The search checks its final budgets (``--budget-macs`` included) at the eval size."""
    from ganc.placement import check_below_teacher
    check_below_teacher([(1e9, 1e9)], 2.5e9, "256x256")
    check_below_teacher([(0.0, 0.0)], 2.5e9, "256x256")            # 0: a tenth of it
    with pytest.raises(ConfigError, match=r"^search.budget_macs 3e\+09 \(7.5e\+08 at 128x128\) "
                                          r"is at or above the teacher's 6.25e\+08 MACs at "
                                          r"128x128"):
        check_below_teacher([(7.5e8, 3e9)], 6.25e8, "128x128")


def test_a_pruned_generator_with_its_card_is_a_teacher_and_a_supernet_is_not(tmp_path):
    """pruned_resnet takes its widths from the model.json beside its weights (as ganc's
    pruning exports it); a supernet is refused in one line."""
    import json

    from ganc.losses import FeatureDistiller
    from ganc.modelio import teacher_spec
    from ganc.train.supernet import load_teacher, resolve_teacher
    widths = {"stem": 6, "down1": 5, "trunk": 7, "blocks": [9, 3, 4, 5, 6, 7], "up1": 5,
              "up2": 4}
    net = gnn.build("pruned_resnet", widths=widths, kind="resnet")
    torch.save(net.state_dict(), tmp_path / "model.pt")
    (tmp_path / "model.json").write_text(json.dumps({"netG": "pruned_resnet", "kind": "resnet",
                                                     "widths": widths}))
    cfg = _cfg(tmp_path / "s", weights=tmp_path / "model.pt", teacher="pruned_resnet")
    teacher = load_teacher(resolve_teacher(cfg, None))
    student = gnn.build("super_mobile_resnet_9blocks", ngf=8)
    maps = FeatureDistiller.from_models(student, teacher, ["down2", "block6"], size=32).maps
    assert {p: (m.in_channels, m.out_channels) for p, m in maps.items()} == {
        "down2": (32, 7), "block6": (32, 7)}            # 6 blocks: block6 is its last
    cfg.model.teacher = "super_mobile_resnet_9blocks"
    with pytest.raises(ConfigError, match="is a supernet, not one network"):
        teacher_spec(cfg.model)


@needs_shared(WEIGHTS)
def test_a_relative_teacher_path_reaches_stages_that_run_in_other_folders(tmp_path,
                                                                          monkeypatch):
    """The presets name the teacher relative to the repository; pruning trials run in
    Tune's trial folders. On one node the run context hands every stage the file's
    absolute path, resolved where the job was started."""
    import os

    from ganc.context import open_context
    from ganc.train.supernet import resolve_teacher
    home = tmp_path / "repo"
    home.mkdir()
    shutil.copy(WEIGHTS, home / "latest_net_G.pth")
    monkeypatch.chdir(home)
    ctx = open_context(_cfg(tmp_path / "store", weights="latest_net_G.pth",
                            teacher_config=CONFIG))
    assert ctx.cfg.model.teacher_weights == str(home / "latest_net_G.pth")
    elsewhere = tmp_path / "trial"
    elsewhere.mkdir()
    os.chdir(elsewhere)                 # as a Tune trial does
    assert resolve_teacher(ctx.cfg, ctx.run)["source"] == str(home / "latest_net_G.pth")
