"""The U-Net family (pix2pix's default generator): the teachers in pytorch-CycleGAN-and-
pix2pix's layout, the mobile / super / sub U-Nets, the closed-form cost, ONNX, the family."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn

from ganc import nn as gnn
from ganc.errors import ConfigError, WeightsError
from ganc.families import UNET, check_prunable, family_of
from ganc.families.unet_cost import UnetCostModel
from ganc.nn.unet import UnetGenerator, reference_test_mode
from ganc.nn.unet_mobile import SubMobileUnetGenerator, SuperMobileUnetGenerator
from ganc.profile import FLOPCOUNTER, count_macs, count_params
from ganc.space import PRESETS, SearchSpace
from ganc.weights import load_weights


# ---------------------------------------------------------------- the reference's structure
# Written here from pytorch-CycleGAN-and-pix2pix's published description of
# UnetGenerator / UnetSkipConnectionBlock (models/networks.py), in place activations
# included, to save checkpoints in its layout.
class RefSkipBlock(nn.Module):
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False,
                 innermost=False, norm_layer=nn.BatchNorm2d, use_dropout=False):
        super().__init__()
        self.outermost = outermost
        use_bias = norm_layer == nn.InstanceNorm2d
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1,
                             bias=use_bias)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2,
                                        padding=1)
            model = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2,
                                        padding=1, bias=use_bias)
            model = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv,
                     norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2,
                                        padding=1, bias=use_bias)
            model = [nn.LeakyReLU(0.2, True), downconv, norm_layer(inner_nc), submodule,
                     nn.ReLU(True), upconv, norm_layer(outer_nc)]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm_layer=nn.BatchNorm2d,
                 use_dropout=False):
        super().__init__()
        block = RefSkipBlock(ngf * 8, ngf * 8, innermost=True, norm_layer=norm_layer)
        for _ in range(num_downs - 5):
            block = RefSkipBlock(ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer,
                                 use_dropout=use_dropout)
        for mult in (4, 2, 1):
            block = RefSkipBlock(ngf * mult, ngf * mult * 2, submodule=block,
                                 norm_layer=norm_layer)
        self.model = RefSkipBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                  outermost=True, norm_layer=norm_layer)

    def forward(self, x):
        return self.model(x)


def _randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and batch-norm statistics, so that any misplaced tensor shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + (0.9 if "var" in name
                                                                  else -0.1))
    return net


def test_unet_256_params_and_macs_as_published(capsys):
    net = gnn.build("unet_256")
    assert count_params(net) == 54_413_955
    with torch.device("meta"):
        meta = UnetGenerator(levels=8)
    field = count_macs(meta, (1, 3, 256, 256))
    per_input = count_macs(meta, (1, 3, 256, 256), FLOPCOUNTER)
    with capsys.disabled():
        print(f"\nunet_256 at 256x256: {count_params(net):,} params, {field / 1e9:.3f}G MACs "
              f"(torchprofile), {per_input / 1e9:.3f}G (FlopCounterMode)")
    assert round(field / 1e9, 1) == 18.1 and round(per_input / 1e9, 2) == 6.05
    assert UnetCostModel(256, 8, separable=False).macs([64] * 8) == field
    assert UnetCostModel(256, 8, separable=False).params([64] * 8) == 54_413_955


@pytest.mark.parametrize("name,levels,dropout", [("unet_256", 8, 3), ("unet_128", 7, 2)])
def test_reference_checkpoint_loads_and_matches(tmp_path, name, levels, dropout):
    ref = _randomise(RefUnet(3, 3, levels, ngf=4, use_dropout=True))
    assert sum(isinstance(m, nn.Dropout) for m in ref.modules()) == dropout
    path = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert "model.model.0.weight" in state and "model.model.1.model.1.weight" in state
    net = gnn.build(name, ngf=4)
    net.load_state_dict(state, strict=True)
    net = load_weights(gnn.build(name, ngf=4), path)           # ganc's loader, strict
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == dropout
    x = torch.rand(2, 3, 2 ** levels, 2 ** levels) * 2 - 1
    with torch.no_grad():
        diff = (net.eval()(x) - ref.eval()(x)).abs().max()
        assert diff <= 1e-5
        reference_test_mode(net), ref.train()     # pix2pix's test.py default
        torch.manual_seed(1)
        a = net(x)
        torch.manual_seed(1)
        b = ref(x)
    assert (a - b).abs().max() <= 1e-5 and net.training
    assert (a - net.eval()(x)).abs().max() > 1e-3     # train mode is another mode


def test_released_unet_checkpoint_is_a_teacher(tmp_path):
    """``model.teacher_weights`` naming pix2pix's latest_net_G.pth: loaded strictly before
    a run writes anything, and the pipeline's teacher gives the reference's outputs."""
    from ganc.config import from_dict
    from ganc.train.teacher import check_given_teacher
    from ganc.train.supernet import load_teacher
    ref = _randomise(RefUnet(3, 3, 7, ngf=4, use_dropout=True)).eval()
    path = tmp_path / "latest_net_G.pth"
    torch.save(ref.state_dict(), path)
    model = {"teacher": "unet_128", "teacher_ngf": 4, "teacher_weights": str(path),
             "norm": "batch", "dropout": 0.5}
    teacher = load_teacher(check_given_teacher(from_dict({"model": model}))).eval()
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        assert (teacher(x) - ref(x)).abs().max() <= 1e-5
    model["norm"] = "instance"                       # trained with batch norm: one line
    with pytest.raises(WeightsError) as e:
        check_given_teacher(from_dict({"model": model}))
    assert "\n" not in str(e.value) and "latest_net_G.pth" in str(e.value)


def test_feature_points_are_named_decoder_outputs():
    net = gnn.build("unet_128", ngf=4).eval()
    assert list(net.feature_points) == ["up7", "up6", "up5", "up4", "up3", "up2"]
    out, feats = net.forward_features(torch.zeros(1, 3, 128, 128), ["up2", "up5"])
    assert set(feats) == {"up2", "up5"} and feats["up2"].shape == (1, 4, 64, 64)
    assert feats["up5"].shape == (1, 32, 8, 8) and out.shape == (1, 3, 128, 128)
    sub = SubMobileUnetGenerator("2_2_2_2_2_2_2").eval()
    _, sf = sub.forward_features(torch.zeros(1, 3, 128, 128), ["up3"])
    assert sf["up3"].shape == (1, 4, 32, 32)
    with pytest.raises(ConfigError, match="unknown U-Net feature points"):
        net.forward_features(torch.zeros(1, 3, 128, 128), ["block3"])
    with pytest.raises(ConfigError, match="divisible by 128"):
        net(torch.zeros(1, 3, 64, 64))


def _configs(levels: int, n: int, seed: int = 0):
    rng = random.Random(seed)
    return [[rng.choice((8, 6, 4, 2)) for _ in range(levels)] for _ in range(n)]


@pytest.mark.parametrize("levels,ngf", [(7, 8), (8, 4)])
def test_extracted_subnet_equals_supernet_slice(levels, ngf):
    sup = _randomise(SuperMobileUnetGenerator(ngf=ngf, levels=levels)).eval()
    x = torch.rand(1, 3, 2 ** levels, 2 ** levels) * 2 - 1
    for cfg in [[min(c, ngf) for c in cfg] for cfg in _configs(levels, 3)] + [[ngf] * levels]:
        sub = gnn.extract_subnet(sup, cfg)
        assert isinstance(sub, SubMobileUnetGenerator) and not sub.training
        with torch.no_grad():
            assert (sub(x) - sup(x, cfg)).abs().max() <= 1e-5
        _, sf = sub.forward_features(x, ["up2", "up4"])
        _, pf = sup.forward_features(x, cfg, ["up2", "up4"])
        assert all((sf[p] - pf[p]).abs().max() <= 1e-5 for p in sf)
    with pytest.raises(ConfigError, match=f"exceeds the supernet's ngf {ngf}"):
        sup(x, [16] * levels)
    with pytest.raises(ConfigError, match=f"expected {levels}"):
        sup.parse_config([8] * (15 - levels))


def test_supernet_trains_every_width_of_its_shared_weights():
    sup = SuperMobileUnetGenerator(ngf=4, levels=7).train()
    x = torch.rand(2, 3, 128, 128)
    sup(x, [2] * 7).mean().backward()
    # level 3's decoder: pointwise (8 <- [skip 16, up 16]); the sub-network: (4 <- [8, 8])
    grad = sup.up[2][1].weight.grad
    assert grad.shape[:2] == (8, 32)
    assert grad[:4, :8].abs().sum() > 0 and grad[:4, 16:24].abs().sum() > 0
    assert grad[:, 8:16].abs().sum() == 0 and grad[:, 24:].abs().sum() == 0
    assert grad[4:].abs().sum() == 0


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_cost_model_matches_profiler(norm):
    cost = UnetCostModel(size=128, levels=7, norm=norm)
    for cfg in _configs(7, 4, seed=1) + [[64] * 7]:
        with torch.device("meta"):
            net = SubMobileUnetGenerator(cfg, norm=norm)
        assert cost.macs(cfg) == count_macs(net, (1, 3, 128, 128)), cfg
        assert cost.params(cfg) == count_params(net)
    plain = UnetCostModel(size=128, levels=7, norm=norm, separable=False)
    with torch.device("meta"):
        teacher = UnetGenerator(ngf=16, norm=norm, levels=7)
    assert plain.macs([16] * 7) == count_macs(teacher, (1, 3, 128, 128))
    assert cost.macs([64] * 7) < plain.macs([64] * 7) / 3      # separable pays
    with pytest.raises(ConfigError):
        UnetCostModel(size=96, levels=7)


def _exported_subnet():
    sup = _randomise(SuperMobileUnetGenerator(ngf=4, levels=7)).eval()
    return gnn.extract_subnet(sup, "4_2_4_2_4_2_4")


def test_onnx_of_a_subnet_matches_eager():
    from ganc.deploy import onnx_bytes
    from ganc.onnxrun import OnnxModule
    sub = _exported_subnet()
    onnx = OnnxModule(onnx_bytes(sub, 3, 128, dynamic=False), threads=1)
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        assert (onnx(x) - sub(x)).abs().max() <= 1e-4


@pytest.mark.slow
def test_deployed_subnet_is_dynamic_and_matches_eager():
    """The export stage's files: batch and sides dynamic (multiples of 128), the native
    size (a 1x1 innermost level) included."""
    from ganc.deploy import deploy_artifacts
    from ganc.onnxrun import OnnxModule
    sub = _exported_subnet()
    art = deploy_artifacts(sub, 3, 128)
    card = art["card"]
    assert card["onnx"]["max_abs_diff_vs_eager"] <= 1e-4
    assert card["pt2"]["max_abs_diff_vs_eager"] <= 1e-4
    assert card["onnx"]["dynamic_axes"]["2"] == "height (128*k)"
    onnx = OnnxModule(art["onnx"], threads=1)
    for shape in [(1, 3, 128, 128), (3, 3, 384, 256)]:
        x = torch.rand(*shape) * 2 - 1
        with torch.no_grad():
            assert (onnx(x) - sub(x)).abs().max() <= 1e-4


def test_family_registry_and_spaces():
    assert UNET.spaces() == ["unet128-channels-64", "unet256-channels-64"]
    assert len(PRESETS["unet128-channels-64"].choices) == 7
    assert PRESETS["unet256-channels-64"].positions[-1] == "level8"
    assert UNET.config_length("super_mobile_unet_128") == 7
    assert UNET.probe_size("unet_128") == 128 and UNET.probe_size("unet_256") == 256
    assert str(UNET.parse_config("8_8_8_8_8_8_8")) == "8_8_8_8_8_8_8"
    with pytest.raises(ConfigError):
        UNET.parse_config("8_8_8_8_8_8")                # 6 levels, no legacy form
    cost = UNET.cost_model({"netG": "super_mobile_unet_128", "norm": "batch"}, 128)
    assert (cost.size, cost.levels, cost.norm) == (128, 7, "batch")
    assert UNET.export_arch(None) == {"netG": "sub_mobile_unet"}
    assert UNET.supports_onnx and not UNET.supports_pruning and not UNET.supports_latency
    assert family_of("sub_mobile_unet") is UNET and UNET.norm == "batch"
    with pytest.raises(ConfigError, match="7 or 8 non-empty positions"):
        SearchSpace.uniform("x", [8], "unet", 6)


def test_prune_refuses_a_unet_run_in_one_line(tmp_path):
    from ganc.config import from_dict
    from ganc.prune.driver import run_prune
    cfg = from_dict({"name": "u", "model": {"teacher": "unet_128", "norm": "batch",
                                            "student": "super_mobile_unet_128",
                                            "search_space": "unet128-channels-64"},
                     "store": {"url": str(tmp_path / "store")}})
    with pytest.raises(ConfigError) as e:
        run_prune(cfg, str(tmp_path / "store"))
    msg = str(e.value)
    assert "\n" not in msg and "U-Net" in msg and "unet_128" in msg
    assert not (tmp_path / "store").exists()           # refused before anything was written
    from ganc.preflight import check_run
    cfg.pipeline.stages = ["teacher", "supernet", "prune"]
    found = check_run(cfg, write=False)                # ganc compress: before Ray starts
    assert [str(p) for p in found.problems
            if "pruning agents do not handle the U-Net" in str(p)], found.problems
    cfg.pipeline.stages = ["teacher"]
    cfg.model.teacher = "resnet_9blocks"
    check_prunable(cfg.model.teacher)                  # ResNets prune
