"""The model-family registry (ganc.families): names, lookups, one-line errors, builders,
and no family-name tests outside it."""
import pathlib
import re

import pytest

from ganc import families
from ganc import nn as gnn
from ganc.errors import ConfigError
from ganc.families import MUNIT, RESNET, SPADE, UNET, family_names, family_of, get_family
from ganc.nn.mobile import SuperMobileResnetGenerator
from ganc.nn.resnet import ResnetGenerator
from ganc.nn.spade import SPADEGenerator, SubMobileSPADEGenerator
from ganc.profile import count_params
from ganc.space import PRESETS

GANC = pathlib.Path(__file__).resolve().parent.parent / "ganc"


def test_registry_lists_resnet_spade_unet_and_munit():
    assert family_names() == ["resnet", "spade", "unet", "munit"]
    assert get_family("resnet") is RESNET and get_family("spade") is SPADE
    assert get_family("unet") is UNET and get_family("munit") is MUNIT


def test_unknown_family_is_one_line_naming_the_known():
    with pytest.raises(ConfigError) as e:
        get_family("stylegan")
    msg = str(e.value)
    assert "\n" not in msg and "'stylegan'" in msg and "resnet" in msg and "munit" in msg


def test_unknown_net_is_one_line_not_resnet():
    with pytest.raises(ConfigError) as e:
        family_of("stylegan2")
    msg = str(e.value)
    assert "\n" not in msg and "'stylegan2'" in msg and "resnet, spade, unet, munit" in msg


def test_every_registered_generator_maps_to_its_family():
    assert sorted(families.generator_names()) == sorted(gnn.GENERATORS)
    for name in gnn.GENERATORS:
        fam = family_of(name)
        assert name in fam.generators
    assert family_of("resnet_9blocks") is RESNET and family_of("pruned_resnet") is RESNET
    for name in ("spade", "mobile_spade", "super_mobile_spade", "sub_mobile_spade"):
        assert family_of(name) is SPADE
    for name in ("unet_256", "unet_128", "super_mobile_unet_128", "sub_mobile_unet"):
        assert family_of(name) is UNET
    for name in ("munit", "mobile_munit", "super_munit", "sub_mobile_munit"):
        assert family_of(name) is MUNIT
    for fam in (RESNET, SPADE, UNET, MUNIT):
        assert set(fam.teachers) <= set(fam.generators) and fam.subnet in fam.generators
        assert set(fam.supernets) <= set(fam.generators)
    for name in gnn.DISCRIMINATORS:
        with pytest.raises(ConfigError):
            family_of(name)


def test_family_defaults_and_spaces():
    assert RESNET.defaults() == {"input_nc": 3, "norm": "instance"}
    assert SPADE.defaults() == {"input_nc": gnn.LABEL_NC, "norm": "batch"}
    assert SPADE.spaces() == ["spade-channels-48", "spade-channels-64"]
    assert all(PRESETS[s].family == "resnet" for s in RESNET.spaces())
    assert str(RESNET.parse_config("16_16_32_16_32_16")) == "16_16_32_16_16_16_32_16"
    with pytest.raises(ConfigError):
        SPADE.parse_config("16_16_32_16_32_16")       # no legacy form
    assert RESNET.supports_onnx and not SPADE.supports_onnx
    assert SPADE.default_metric == "miou" and RESNET.default_metric == "fid"


def _build(name, **kw):
    """A generator built the registry's way: the family's defaults, then ganc.nn."""
    return gnn.build(name, **{**family_of(name).defaults(), **kw})


def test_registry_builders_match_the_nets_directly():
    assert count_params(_build("resnet_9blocks", ngf=8)) == \
        count_params(ResnetGenerator(3, 3, 8, "instance", 0.0, n_blocks=9))
    assert count_params(_build("super_mobile_resnet_9blocks", ngf=8)) == \
        count_params(SuperMobileResnetGenerator(3, 3, 8, "instance", 0.0, n_blocks=9))
    assert count_params(_build("spade", ngf=4)) == \
        count_params(SPADEGenerator(gnn.LABEL_NC, 3, 4, "batch", "normal"))
    cfg = "4_4_4_4_4_4_4_4"
    assert count_params(_build("sub_mobile_spade", config=cfg)) == \
        count_params(SubMobileSPADEGenerator(cfg, gnn.LABEL_NC, 3, "batch", "normal"))


def test_cost_models_and_export_fields():
    cost = RESNET.cost_model({"netG": "super_mobile_resnet_9blocks"}, 64)
    assert (cost.size, cost.input_nc, cost.norm) == (64, 3, "instance")
    cost = SPADE.cost_model({"netG": "super_mobile_spade"}, 128, 96)
    assert (cost.height, cost.width, cost.input_nc, cost.norm) == (96, 128, gnn.LABEL_NC,
                                                                  "batch")
    assert RESNET.export_arch(None) == {"netG": "sub_mobile_resnet_9blocks", "n_blocks": 9}
    assert SPADE.export_arch(8)["bn_calibration_images"] == 8
    assert SPADE.export_files() == {"weights": "model.pt"}
    assert SPADE.card_arch({"upsampling": "more", "x": 1}) == {"upsampling": "more"}
    assert RESNET.card_arch({"upsampling": "more"}) == {}


# a comparison with, or membership test in, a literal family name
_FAMILY_TEST = re.compile(r"""(==|!=|\bin\s*[(\[{])\s*["'](spade|resnet|unet|munit)["']""")


def family_name_tests(root: pathlib.Path) -> list[str]:
    """``path:line: text`` of every family-name test in ``root`` outside ``families/``.
    A pruned generator's block ``kind`` (resnet | mobile, ganc.prune.gated) is not a family."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        if "families" in path.relative_to(root).parts:
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _FAMILY_TEST.search(line) and not re.search(r"\bkind\b", line):
                hits.append(f"{path.relative_to(root.parent)}:{i}: {line.strip()}")
    return hits


def test_no_family_name_tests_outside_families(tmp_path):
    assert family_name_tests(GANC) == []
    # the check itself finds one
    (tmp_path / "ganc").mkdir()
    (tmp_path / "ganc" / "x.py").write_text('if fam == "spade":\n    pass\n'
                                            'ok = name in ("resnet", "mobile")\n')
    assert len(family_name_tests(tmp_path / "ganc")) == 2
