"""The MUNIT family: registry, layout, style codes, super/sub equality, MACs (the reference's
77.3G), the closed-form cost model, ONNX export with the style code as an input."""
import json
import random

import pytest
import torch

from ganc import nn as gnn
from ganc.errors import ConfigError
from ganc.extras import draw, draw_for, extra_shapes
from ganc.families import family_of, get_family
from ganc.families.munit_cost import MunitCostModel
from ganc.nn.munit import POINTS, widths
from ganc.profile import count_macs, count_params
from ganc.space import PRESETS, SearchSpace

SPACE = PRESETS["munit-channels-64"]
SMALL = SearchSpace.uniform("munit-small", [16, 12, 8], "munit")
REFERENCE = "16_16_16_24_56_16_40_40_32_24"     # the released compressed edges2shoes-r
NAMES = ("munit", "mobile_munit", "super_munit", "super_mobile_munit", "sub_mobile_munit")


def _x(n=1, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def _non_trivial(model, seed=0):
    """Random weights (layer-norm scales too), so slicing errors show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def test_every_variant_registered_built_and_in_the_family():
    fam = get_family("munit")
    assert set(NAMES) <= set(gnn.GENERATORS) and set(fam.generators) == set(NAMES)
    assert "ms_image" in gnn.DISCRIMINATORS
    x, style = _x(1, 32), torch.randn(1, 8)
    for name in NAMES:
        kw = {"config": "8_8_8_8_8_8_8_8_8_8"} if name.startswith("sub_") else {"ngf": 8}
        net = gnn.build(name, **kw).eval()
        assert family_of(name) is fam
        assert extra_shapes(net) == {"style": (8,)}
        with torch.no_grad():
            assert net(x, style=style).shape == (1, 3, 32, 32)
            assert net(x).shape == (1, 3, 32, 32)             # style encoded from x
    for name in fam.supernets:
        assert isinstance(gnn.build(name, ngf=8), gnn.SUPERNETS)
    D = gnn.build("ms_image", ndf=8)
    assert [o.shape[-1] for o in D(_x(1, 64))] == [4, 2, 1]
    with pytest.raises(ConfigError, match="too small"):
        D(x)
    with pytest.raises(ConfigError, match="needs a channel config"):
        gnn.build("sub_mobile_munit")


def test_keys_follow_the_reference_layout_and_widths():
    sd = gnn.build("munit", ngf=8).state_dict()
    for key in ("enc_style.model.0.conv.weight", "enc_style.model.6.weight",
                "enc_content.model.0.conv.weight", "enc_content.model.2.conv.weight",
                "enc_content.model.3.model.3.model.1.conv.weight",
                "dec.model.0.model.0.model.0.conv.weight", "dec.model.2.norm.gamma",
                "dec.model.5.conv.weight", "mlp.model.2.fc.weight"):
        assert key in sd, key
    assert sd["enc_content.model.2.conv.weight"].shape == (32, 16, 4, 4)
    assert sd["dec.model.2.conv.weight"].shape == (16, 32, 5, 5)
    assert sd["mlp.model.2.fc.weight"].shape == (2 * 4 * (32 + 32), 256)
    mobile = gnn.build("mobile_munit", ngf=8).state_dict()
    assert mobile["dec.model.2.conv.conv.0.weight"].shape == (32, 1, 5, 5)   # depthwise
    assert mobile["enc_content.model.0.conv.weight"].shape == (8, 3, 7, 7)   # stem plain
    w = widths(REFERENCE)
    assert (w.style, w.stem, w.down1, w.trunk) == ((16, 32, 64, 64, 64), 16, 32, 96)
    assert w.enc_inner == (224, 224, 64, 64) and w.dec_inner == (160, 160, 160, 160)
    assert w.up == (64, 24)


def test_style_code_checks_and_the_seeded_draw():
    net = gnn.build("sub_mobile_munit", config="8_8_8_8_8_8_8_8_8_8").eval()
    x = _x(2)
    with pytest.raises(ConfigError, match=r"takes 8 numbers per image") as e:
        net(x, style=torch.zeros(2, 7))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="3 codes for 2 images"):
        net(x, style=torch.zeros(3, 8))
    with torch.no_grad():
        a = net(x, style=torch.ones(2, 8, 1, 1))
        b = net(x, style=torch.ones(1, 8))                   # one code for every image
        c = net(x, style=-torch.ones(2, 8))
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-3
    # the same seed: the same codes for any batch split, teacher and student alike
    d = draw_for(net, 4, seed=5)["style"]
    assert torch.equal(torch.cat([draw({"style": (8,)}, 2, 5)["style"],
                                  draw({"style": (8,)}, 2, 5, first=2)["style"]]), d)
    assert not torch.equal(d, draw_for(net, 4, seed=6)["style"])
    assert get_family("munit").draw_inputs(net, 4, 5)["style"].equal(d)
    assert get_family("resnet").draw_inputs(gnn.build("resnet_9blocks", ngf=4), 4, 5) == {}


@pytest.mark.parametrize("name,space", [("super_mobile_munit", SMALL),
                                        ("super_munit", SMALL)])
def test_extract_subnet_equals_supernet(name, space):
    """Largest, smallest, a random config: the sub-network equals the supernet's slice on
    the same input and style code (and on the style the encoder reads from the input)."""
    sup = _non_trivial(gnn.build(name, ngf=space.max_width)).eval()
    x, style = _x(1, 32, seed=1), torch.randn(1, 8, generator=torch.Generator().manual_seed(2))
    outs = []
    for k, cfg in enumerate((space.largest(), space.smallest(), space.sample(random.Random(3)))):
        sub = gnn.extract_subnet(sup, cfg).eval()
        assert isinstance(sub, gnn.SubMobileMunitGenerator) and sub.config == cfg
        assert sub.separable == sup.separable
        with torch.no_grad():
            a, b = sub(x, style=style), sup(x, cfg, style=style)
            if k == 2:                                 # the style encoder's slice too
                assert (sub(x) - sup(x, cfg)).abs().max().item() < 1e-5, str(cfg)
        assert (a - b).abs().max().item() < 1e-5, str(cfg)
        outs.append(b)
    assert (outs[0] - outs[1]).abs().max() > 1e-3          # the configs really differ
    with pytest.raises(ConfigError, match=r"position 9 \(up2\).*ngf 16"):
        sup(x, "16_16_16_16_16_16_16_16_16_24", style=style)
    with pytest.raises(ConfigError, match="10"):
        sup(x, "16_16_16_16_16_16_16_16", style=style)


def test_adain_parameters_are_the_first_k_of_each_norm():
    """As the reference's SuperAdaptiveInstanceNorm2d: each AdaIN of a sub-network takes the
    first k shifts and the first k scales of its full-width MLP outputs (checked against
    offsets written out here, not the code's index)."""
    sup = _non_trivial(gnn.build("super_mobile_munit", ngf=8)).eval()
    cfg = "8_8_8_4_8_8_6_2_8_8"          # trunk 16 of 32; AdaIN blocks inner 24, 24, 8, 8
    sub = gnn.extract_subnet(sup, cfg)
    style = torch.randn(3, 8)
    with torch.no_grad():
        full, part = sup._mlp(style), sub._mlp(style)
    at_full = at_sub = 0
    for inner in (24, 24, 8, 8):
        for f, c in ((32, inner), (32, 16)):           # (full, sub) width of each AdaIN
            assert torch.equal(part[:, at_sub:at_sub + c], full[:, at_full:at_full + c])
            assert torch.equal(part[:, at_sub + c:at_sub + 2 * c],
                               full[:, at_full + f:at_full + f + c])
            at_full, at_sub = at_full + 2 * f, at_sub + 2 * c
    assert (at_full, at_sub) == (full.shape[1], part.shape[1])


def test_feature_points():
    sup = gnn.build("super_mobile_munit", ngf=16)
    out, feats = sup.forward_features(_x(1), "8_8_8_12_8_8_8_8_8_8", ["content", "adain"],
                                      style=torch.zeros(1, 8))
    assert list(feats) == ["content", "adain"] and out.shape == (1, 3, 64, 64)
    assert feats["content"].shape == (1, 48, 16, 16) == feats["adain"].shape
    _, tf = gnn.build("munit", ngf=8).forward_features(_x(1))
    assert list(tf) == list(POINTS) and tf["down2"].shape == (1, 32, 16, 16)
    with pytest.raises(ConfigError, match="unknown MUNIT feature points"):
        sup.forward_features(_x(1), None, ["block3"])


def test_teacher_macs_against_the_published_77_3g(capsys):
    """GAN Compression's MUNIT on edges2shoes-r: 77.3G MACs at 256x256, counted as its
    profile counts them: G(x) with the style encoder. Meta device: shapes only."""
    with torch.device("meta"):
        teacher = gnn.build("munit", ngf=64)
        ref = gnn.build("sub_mobile_munit", config=REFERENCE)
    full = count_macs(teacher, (1, 3, 256, 256))
    translate = count_macs(teacher, (1, 3, 256, 256), style=torch.zeros(1, 8, device="meta"))
    small = count_macs(ref, (1, 3, 256, 256))
    with capsys.disabled():
        print(f"\nmunit MACs at 256x256: teacher {full / 1e9:.2f}G (paper 77.3G; "
              f"{translate / 1e9:.2f}G without the style encoder), params "
              f"{count_params(teacher) / 1e6:.2f}M; {REFERENCE} {small / 1e9:.3f}G "
              f"(paper 2.63G), params {count_params(ref) / 1e6:.3f}M")
    assert abs(full - 77.3e9) / 77.3e9 < 0.01
    assert translate < full - 5e9                    # the style encoder is ~6G of it
    assert abs(small - 2.63e9) / 2.63e9 < 0.05
    cost = MunitCostModel(256, 256, separable=False)
    assert cost.macs("64_" * 9 + "64") == full
    assert cost.translate_macs("64_" * 9 + "64") == translate


@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_cost_model_matches_profiler(size):
    """The closed form against the profiler on real modules (meta device)."""
    cost = MunitCostModel(*size)
    for cfg in (SPACE.largest(), SPACE.smallest(), SPACE.sample(random.Random(7)), REFERENCE):
        with torch.device("meta"):
            net = gnn.build("sub_mobile_munit", config=cfg)
        assert cost.macs(cfg) == count_macs(net, (1, 3, *size)), str(cfg)
        assert cost.params(cfg) == count_params(net)
        style = torch.zeros(1, 8, device="meta")
        assert cost.translate_macs(cfg) == count_macs(net, (1, 3, *size), style=style)
    with torch.device("meta"):
        sup = gnn.build("super_mobile_munit", ngf=64)
    cfg = SPACE.smallest()
    # the supernet runs its MLP at full width and picks the sliced AdaINs' outputs
    unused = 256 * (widths(SPACE.largest()).n_adain_params - widths(cfg).n_adain_params)
    assert count_macs(sup, (1, 3, *size), config=cfg) == cost.macs(cfg) + unused
    small = gnn.build("sub_mobile_munit", config="8_8_8_8_8_8_8_8_8_8")
    assert cost.macs("8_8_8_8_8_8_8_8_8_8") == count_macs(small, (1, 3, *size))   # real CPU
    fam = get_family("munit")
    assert fam.cost_model({"netG": "super_munit"}, 64).separable is False
    assert fam.cost_model({"netG": "super_mobile_munit"}, 64, 48).height == 48


def test_search_space_and_family_switches():
    assert SPACE.positions[0] == "style" and len(SPACE.largest()) == 10
    assert SPACE.choices[0] == (64, 56, 48, 40, 32, 24, 16) and SPACE.size == 7 ** 10
    assert SPACE.contains(REFERENCE) and not SPACE.contains("16_16_16_24_56_16_40_40_32_20")
    fam = get_family("munit")
    assert fam.spaces() == ["munit-channels-64"]
    assert str(fam.parse_config(REFERENCE)) == REFERENCE
    with pytest.raises(ConfigError, match="expected 10"):
        fam.parse_config("16_16_32_16_32_32_16_16")
    with pytest.raises(ConfigError, match="expected 8"):
        get_family("resnet").parse_config(REFERENCE)
    assert not fam.supports_pruning and get_family("resnet").supports_pruning
    assert fam.supports_onnx and fam.export_arch(None)["style_dim"] == 8


def test_onnx_parity_with_the_style_code():
    """ONNX of a sub-network with the style code as its second input (one static export):
    onnxruntime equals eager within 1e-4 on seeded style codes; a missing or wrong-length
    style code is one line."""
    from ganc.deploy import onnx_bytes
    from ganc.onnxrun import OnnxModule
    net = _non_trivial(gnn.build("sub_mobile_munit", config="8_8_8_8_8_8_8_8_8_8"), 4).eval()
    ort = OnnxModule(onnx_bytes(net, 3, 32, dynamic=False), threads=1)
    assert ort.input_names == ["input", "style"] and ort.extra_inputs == {"style": (8,)}
    x = _x(1, 32, seed=9)
    for seed in (0, 1):
        style = draw_for(net, 1, seed)["style"]
        with torch.no_grad():
            assert (ort(x, style=style) - net(x, style=style)).abs().max() <= 1e-4
    with pytest.raises(ConfigError, match="'style' not given"):
        ort(x)
    with pytest.raises(ConfigError, match=r"input 'style' of shape \(1, 7\)") as e:
        ort(x, style=torch.zeros(1, 7))
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_deploy_artifacts_take_the_style_code():
    """model.onnx and model.pt2 with a dynamic batch and image size, the style code a second
    input: both equal eager (<= 1e-4) on two shapes (~25 s: two exports)."""
    from ganc.deploy import deploy_artifacts
    net = _non_trivial(gnn.build("sub_mobile_munit", config="8_8_8_8_8_8_8_8_8_8"), 4).eval()
    art = deploy_artifacts(net, 3, 32)
    assert art["card"]["onnx"]["extra_inputs"] == {"style": [8]}
    assert art["card"]["onnx"]["max_abs_diff_vs_eager"] <= 1e-4
    assert art["card"]["pt2"]["max_abs_diff_vs_eager"] <= 1e-4


def test_profile_and_nets_cli(capsys):
    from ganc.cli import main
    code = main(["profile", "--netG", "sub_mobile_munit", "--config", REFERENCE,
                 "--space", "munit-channels-64", "--size", "64", "--json"])
    res = json.loads(capsys.readouterr().out)
    cost = MunitCostModel(64, 64)
    assert code == 0 and res["macs"] == cost.macs(REFERENCE)
    assert res["macs_given_extra"] == cost.translate_macs(REFERENCE)
    assert main(["profile", "--netG", "munit", "--ngf", "8", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "style code encoded from the input" in out and "translation, no style encoder" in out
    assert main(["nets"]) == 0
    out = capsys.readouterr().out
    assert "sub_mobile_munit" in out and "munit-channels-64 (munit)" in out and "ms_image" in out
    code = main(["profile", "--netG", "sub_mobile_munit", "--config", "16_16_16_16_16_16_16_16"])
    err = capsys.readouterr().err
    assert code == 2 and "expected 10" in err and len(err.strip().splitlines()) == 1


def test_prune_refused_in_one_line():
    from ganc.config import RunConfig
    from ganc.prune.driver import run_prune
    cfg = RunConfig()
    cfg.model.teacher = "munit"
    with pytest.raises(ConfigError, match="pruning agents do not handle the MUNIT") as e:
        run_prune(cfg)
    assert "\n" not in str(e.value)
    from ganc.preflight import check_run
    cfg.pipeline.stages = ["teacher", "supernet", "prune"]
    found = check_run(cfg, write=False)                # ganc compress: before Ray starts
    assert [str(p) for p in found.problems
            if "pruning agents do not handle the MUNIT" in str(p)], found.problems


def test_translate_with_style_seeds(tmp_path, capsys):
    """``ganc translate --style-seed``: one style per folder from the seed; another seed,
    another style; a generator without a style code refuses the flag in one line."""
    import numpy as np
    from PIL import Image
    from ganc.cli import main
    net = _non_trivial(gnn.build("sub_mobile_munit", config="8_8_8_8_8_8_8_8_8_8"), 5)
    weights = tmp_path / "g.pt"
    torch.save(net.state_dict(), weights)
    (tmp_path / "in").mkdir()
    for i in range(2):
        Image.fromarray((np.random.RandomState(i).rand(32, 32, 3) * 255).astype("uint8")).save(
            tmp_path / "in" / f"{i}.png")
    base = ["translate", "--netG", "sub_mobile_munit", "--config", "8_8_8_8_8_8_8_8_8_8",
            "--weights", str(weights), "--input", str(tmp_path / "in"), "--size", "32"]
    outs = {}
    for run, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(base + ["--output", str(tmp_path / run), "--style-seed", seed]) == 0
        outs[run] = np.asarray(Image.open(tmp_path / run / "0.png"), dtype=int)
    assert "style seed 1" in capsys.readouterr().out
    assert (outs["a"] == outs["b"]).all() and np.abs(outs["a"] - outs["c"]).max() > 0
    torch.save(gnn.build("resnet_9blocks", ngf=4).state_dict(), tmp_path / "r.pt")
    code = main(["translate", "--netG", "resnet_9blocks", "--ngf", "4", "--weights",
                 str(tmp_path / "r.pt"), "--input", str(tmp_path / "in"), "--output",
                 str(tmp_path / "r"), "--style-seed", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "takes no style code" in err and len(err.strip().splitlines()) == 1
