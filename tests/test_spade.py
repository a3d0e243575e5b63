"""The SPADE (GauGAN) family: layout, super/sub equality, MACs, cost model, recalibration."""
import json
import random

import pytest
import torch

from ganc import nn as gnn
from ganc.data.camvid import (CamVidDataset, calibration_batches, make_camvid_like, one_hot)
from ganc.errors import ConfigError
from ganc.nn.calibrate import recalibrate_bn
from ganc.nn.spade import layout
from ganc.profile import count_macs, count_params
from ganc.families.spade_cost import SpadeCostModel
from ganc.space import PRESETS, SearchSpace

from .helpers import ESPNET_WEIGHTS, needs_shared

SPACE = PRESETS["spade-channels-48"]


def _labels(n=2, h=64, w=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return one_hot(torch.randint(0, gnn.LABEL_NC, (n, h, w), generator=g))


def _non_trivial(model, seed=0):
    """Random weights and batch-norm running statistics, so slicing errors show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model


def test_keys_follow_gan_compression_layout():
    sd = gnn.build("mobile_spade", ngf=8).state_dict()
    for key in ("fc.weight", "head_0.conv_0.weight", "head_0.norm_0.mlp_shared.0.weight",
                "head_0.norm_0.param_free_norm.running_mean", "head_0.norm_1.mlp_gamma.conv.0.weight",
                "head_0.norm_1.mlp_beta.conv.2.weight", "G_middle_1.conv_1.bias",
                "up_0.conv_s.weight", "up_3.norm_s.mlp_gamma.conv.2.bias", "conv_img.weight"):
        assert key in sd, key
    assert "head_0.conv_s.weight" not in sd and "up_0.conv_s.bias" not in sd
    teacher = gnn.build("spade", ngf=8).state_dict()
    assert teacher["head_0.norm_0.mlp_gamma.weight"].shape == (128, 16, 3, 3)
    assert teacher["fc.weight"].shape == (128, 12, 3, 3)
    assert teacher["up_3.conv_1.weight"].shape == (8, 8, 3, 3)
    # mobile at ngf == sub at the uniform config (same keys and shapes)
    sub = gnn.build("sub_mobile_spade", config="8_8_8_8_8_8_8_8").state_dict()
    assert {k: v.shape for k, v in sub.items()} == {k: v.shape for k, v in sd.items()}


def test_layout_widths():
    fc, blocks = layout("48_40_32_24_48_40_32_24")
    assert fc == 16 * 48
    b = {x.name: x for x in blocks}
    assert (b["head_0"].cin, b["head_0"].inner, b["head_0"].cout, b["head_0"].hidden) == \
        (768, 640, 768, 80)
    assert (b["up_0"].cin, b["up_0"].cout, b["up_0"].hidden) == (768, 384, 96)
    assert (b["up_1"].cin, b["up_1"].cout) == (384, 160)
    assert b["up_3"].cout == 24 and b["up_3"].learned_shortcut and not b["G_middle_1"].learned_shortcut
    assert [x.upsample_before for x in blocks] == [False, True, False, True, True, True, True]
    more = [x.upsample_before for x in layout("8_8_8_8_8_8_8_8", "more")[1]]
    assert more == [False, True, True, True, True, True, True]


def test_teacher_output_shape_and_bad_inputs():
    t = gnn.build("spade", ngf=4).eval()
    with torch.no_grad():
        assert t(_labels(1, 96, 128)).shape == (1, 3, 96, 128)
    with pytest.raises(ConfigError, match="divisible by 32"):
        t(_labels(1, 96, 100))
    with pytest.raises(ConfigError, match=r"\(N, 12, H, W\)"):
        t(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ConfigError, match="6 numbers"):
        gnn.build("sub_mobile_spade", config="16_16_32_16_16_16")     # no legacy form
    sup = gnn.build("super_mobile_spade", ngf=16)
    with pytest.raises(ConfigError, match=r"position 4 \(up_0\).*ngf 16"):
        sup(_labels(1), "16_16_16_16_24_16_16_16")
    with pytest.raises(ConfigError, match="param-free norm"):
        gnn.build("spade", ngf=4, norm="none")


@pytest.mark.parametrize("upsampling,size,space", [
    ("normal", (32, 64), SPACE),
    ("more", (64, 128), SearchSpace.uniform("small", [16, 12, 8], "spade"))])
def test_extract_subnet_equals_supernet(upsampling, size, space):
    """Largest, smallest and a random config: equal within 1e-5, in eval mode with
    non-trivial weights and batch-norm running statistics."""
    sup = gnn.build("super_mobile_spade", ngf=space.max_width, upsampling=upsampling)
    sup = _non_trivial(sup).eval()
    x = _labels(1, *size)
    outs = []
    for cfg in (space.largest(), space.smallest(), space.sample(random.Random(1))):
        sub = gnn.extract_subnet(sup, cfg).eval()
        assert isinstance(sub, gnn.SubMobileSPADEGenerator) and sub.config == cfg
        with torch.no_grad():
            a, b = sub(x), sup(x, cfg)
        assert (a - b).abs().max().item() < 1e-5, str(cfg)
        outs.append(b)
    assert (outs[0] - outs[1]).abs().max() > 1e-3          # the configs really differ
    n_small = count_params(gnn.extract_subnet(sup, space.smallest()))
    cost = SpadeCostModel(*size, upsampling=upsampling)
    assert n_small == cost.params(space.smallest()) < count_params(sup) / 2


def test_supernet_batchnorm_train_mode_updates_the_subnet_slice():
    sup = gnn.build("super_mobile_spade", ngf=16)
    cfg = "8_16_8_16_8_16_8_16"
    x = _labels(4, 32, 64)
    sup.train()
    with torch.no_grad():
        sup(x, cfg)                                 # updates the sliced running stats
    bn = sup.head_0.norm_1.param_free_norm          # inner width 16 * 16 = 256 of 256
    assert bn.running_mean[:128].abs().sum() > 0 and bn.num_batches_tracked == 1
    bn0 = sup.up_0.norm_1.param_free_norm           # 8 * 8 = 64 of 128 channels used
    assert bn0.running_mean[64:].abs().sum() == 0 and bn0.running_mean[:64].abs().sum() > 0
    sup.eval()
    sub = gnn.extract_subnet(sup, cfg).eval()
    with torch.no_grad():
        assert (sub(x) - sup(x, cfg)).abs().max() < 1e-5


def test_feature_points():
    sup = gnn.build("super_mobile_spade", ngf=8)
    out, feats = sup.forward_features(_labels(1, 32, 64), "8_8_8_8_4_4_4_4",
                                      ["head_0", "G_middle_1", "up_1"])
    assert list(feats) == ["head_0", "G_middle_1", "up_1"] and out.shape == (1, 3, 32, 64)
    assert feats["head_0"].shape == (1, 128, 1, 2) and feats["up_1"].shape == (1, 16, 8, 16)
    t = gnn.build("spade", ngf=8)
    _, tf = t.forward_features(_labels(1, 32, 64))
    assert list(tf) == list(gnn.spade.POINTS)
    with pytest.raises(ConfigError, match="unknown SPADE feature points"):
        t.forward_features(_labels(1, 32, 64), ["block3"])


def test_teacher_macs_against_the_published_281g(capsys):
    """GauGAN on Cityscapes (GAN Compression's table): 281G MACs, 93.0M params. The paper's
    teacher takes 35 label channels + 1 instance-edge channel at 256x512 and has
    num_upsampling_layers 'more'; ganc's default ('normal') runs head_0 and G_middle_1 at
    twice the resolution. Counted on the meta device: shapes only, no arithmetic."""
    with torch.device("meta"):
        more = gnn.build("spade", ngf=64, input_nc=36, upsampling="more")
        normal = gnn.build("spade", ngf=64, input_nc=36)
        camvid = gnn.build("spade", ngf=64)
    macs_more = count_macs(more, (1, 36, 256, 512))
    assert abs(macs_more - 281e9) / 281e9 < 0.005
    assert abs(count_params(more) - 93.0e6) / 93.0e6 < 0.005
    macs_normal = count_macs(normal, (1, 36, 256, 512))
    macs_camvid = {s: count_macs(camvid, (1, 12, *s)) for s in ((352, 480), (96, 128))}
    with capsys.disabled():
        print(f"\nspade MACs: Cityscapes 256x512 36ch 'more' {macs_more / 1e9:.2f}G (paper 281G),"
              f" 'normal' {macs_normal / 1e9:.2f}G; CamVid 12ch 'normal' "
              + ", ".join(f"{h}x{w} {m / 1e9:.2f}G" for (h, w), m in macs_camvid.items()))
    assert macs_normal > macs_more
    # the closed form agrees with the profiler on the teacher's layout too
    cost = SpadeCostModel(256, 512, input_nc=36, upsampling="more", separable=False)
    assert cost.macs("64_64_64_64_64_64_64_64") == macs_more


@pytest.mark.parametrize("upsampling,size", [("normal", (64, 96)), ("more", (64, 128))])
def test_cost_model_matches_profiler(upsampling, size):
    """The closed form against the profiler on real modules (on the meta device: the
    profiler sees every op and its shapes, without the arithmetic)."""
    cost = SpadeCostModel(*size, upsampling=upsampling)
    for cfg in (SPACE.largest(), SPACE.smallest(), SPACE.sample(random.Random(7))):
        with torch.device("meta"):
            net = gnn.build("sub_mobile_spade", config=cfg, upsampling=upsampling)
        assert cost.macs(cfg) == count_macs(net, (1, 12, *size)), str(cfg)
        assert cost.params(cfg) == count_params(net)
    with torch.device("meta"):
        sup = gnn.build("super_mobile_spade", ngf=48, upsampling=upsampling)
    cfg = SPACE.smallest()
    assert count_macs(sup, (1, 12, *size), config=cfg) == cost.macs(cfg)
    small = gnn.build("sub_mobile_spade", config="8_8_8_8_8_8_8_8", upsampling=upsampling)
    assert SpadeCostModel(*size, upsampling=upsampling).macs("8_8_8_8_8_8_8_8") == \
        count_macs(small, (1, 12, *size))                 # and on a real CPU forward
    with pytest.raises(ConfigError, match="divisible by"):
        SpadeCostModel(60, 96)


# ---------------------------------------------------------------- recalibration
@pytest.fixture(scope="module")
def camvid_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid") / "data"
    make_camvid_like(root, n_train=16, n_val=2, size=(64, 96), seed=3)
    return root


def test_recalibrate_resets_and_reestimates(camvid_like):
    train = CamVidDataset(camvid_like, "train", size=(64, 96))
    batches = calibration_batches(train, n=12, batch_size=4)
    assert sum(b.shape[0] for b in batches) == 12
    assert [b.shape for b in calibration_batches(train, n=12, batch_size=4)] == \
        [b.shape for b in batches]
    sub = gnn.build("sub_mobile_spade", config="8_8_8_8_8_8_8_8")
    bn = sub.up_2.norm_0.param_free_norm
    bn.running_mean.fill_(5.0)
    sub.eval()
    assert recalibrate_bn(sub, batches) == 12
    assert not sub.training and bn.momentum == 0.1 and bn.num_batches_tracked == 3
    assert bn.running_mean.abs().max() < 5.0
    # the cumulative average does not depend on the batch order
    first = bn.running_var.clone()
    recalibrate_bn(sub, list(reversed(batches)))
    assert torch.allclose(first, bn.running_var, rtol=1e-4, atol=1e-6)
    # on the supernet at a config: same statistics as on the extracted sub-network
    sup = _non_trivial(gnn.build("super_mobile_spade", ngf=8))
    cfg = "4_8_4_8_4_8_4_8"
    sub = gnn.extract_subnet(sup, cfg)
    recalibrate_bn(sub, batches)
    recalibrate_bn(sup, batches, config=cfg)
    sup.eval(), sub.eval()
    with torch.no_grad():
        assert (sub(batches[0]) - sup(batches[0], cfg)).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="no batches"):
        recalibrate_bn(sub, [])


@needs_shared(ESPNET_WEIGHTS)
def test_recalibration_changes_the_score_and_scoring_is_deterministic(camvid_like):
    """A small sub-network of a supernet whose statistics come from training its largest
    config: its ESPNet-CamVid mIoU moves once its batch norms are recalibrated, and two
    recalibrate-then-score runs agree exactly."""
    from torch.utils.data import DataLoader

    from ganc.metrics.miou import Segmenter, score_generator
    torch.manual_seed(0)
    sup = gnn.build("super_mobile_spade", ngf=16)
    train = CamVidDataset(camvid_like, "train", size=(64, 96))
    sup.train()
    with torch.no_grad():                              # "training" at the largest width only
        for batch in DataLoader(train, batch_size=4):
            sup(batch["A"])
    sup.eval()
    seg = Segmenter.load(ESPNET_WEIGHTS)
    val = CamVidDataset(camvid_like, "val", size=(64, 96), native_gt=True)
    cfg = "8_8_8_8_8_8_8_8"

    def score(calibrate: bool):
        sub = gnn.extract_subnet(sup, cfg)
        if calibrate:
            recalibrate_bn(sub, calibration_batches(train, n=16, batch_size=4))
        return score_generator(sub.eval(), DataLoader(val, batch_size=2), seg)

    before = {k: v.clone() for k, v in sup.state_dict().items()}
    stale, first, second = score(False), score(True), score(True)
    assert first["miou"] == second["miou"] and first["pixel_acc"] == second["pixel_acc"]
    assert first["iou"] == second["iou"]
    assert first["miou"] != stale["miou"]
    # the supernet itself was left alone (its sub-networks were recalibrated as copies)
    assert all(torch.equal(v, sup.state_dict()[k]) for k, v in before.items())


# ---------------------------------------------------------------- spaces, model cards, CLI
def test_spade_search_spaces():
    sp = PRESETS["spade-channels-48"]
    assert sp.family == "spade" and sp.positions[4] == "up_0" and sp.size == 3 ** 5 * 4 ** 3
    assert str(sp.smallest()) == "32_32_32_32_32_24_24_24"
    with pytest.raises(ConfigError, match=r"position 4 \(up_0\).*allowed: 48, 40, 32"):
        sp.validate("48_48_48_48_24_24_24_24")
    with pytest.raises(ConfigError, match="6 numbers; expected 8$"):
        sp.validate("48_48_48_48_48_48")
    assert type(sp).from_dict(sp.to_dict()) == sp
    assert "family" not in PRESETS["channels-64-pix2pix"].to_dict()   # resnet dicts unchanged
    with torch.device("meta"):
        assert PRESETS["spade-channels-64"].largest() == gnn.build(
            "super_mobile_spade", ngf=64).largest


def test_model_card_defaults_and_profile_cli(capsys):
    from ganc.cli import main
    from ganc.modelio import build_generator, resolve_spec
    spec = resolve_spec("sub_mobile_spade", "32_32_32_32_32_24_24_24")
    assert (spec.input_nc, spec.norm) == (12, "batch")
    assert isinstance(build_generator(spec).up_0.norm_0.param_free_norm, torch.nn.BatchNorm2d)
    with pytest.raises(ConfigError, match="--config is required for sub_mobile_spade"):
        resolve_spec("sub_mobile_spade")
    code = main(["profile", "--netG", "super_mobile_spade", "--config", "32_32_32_32_32_24_24_24",
                 "--ngf", "32", "--space", "spade-channels-48", "--size", "64x96", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["input_size"] == [1, 12, 64, 96]
    assert res["macs"] == SpadeCostModel(64, 96).macs("32_32_32_32_32_24_24_24")
    assert res["params"] == SpadeCostModel().params("32_32_32_32_32_24_24_24")
    code = main(["profile", "--netG", "resnet_9blocks", "--upsampling", "more"])
    err = capsys.readouterr().err
    assert code == 2 and "--upsampling applies to SPADE generators" in err
    code = main(["profile", "--netG", "spade", "--ngf", "4", "--size", "64x80"])
    err = capsys.readouterr().err
    assert code == 2 and "divisible by 32" in err and len(err.strip().splitlines()) == 1
