import random

import pytest
import torch

from ganc import nn as gnn
from ganc.data.camvid import one_hot
from ganc.errors import ConfigError, WeightsError
from ganc.families import SPADE, UNET
from ganc.space import PRESETS
from ganc.weights import load_weights, read_state_dict

from .helpers import H2Z_MODEL, needs_shared

SMALL = dict(ngf=8)


@pytest.mark.parametrize("name", gnn.names())
def test_every_registered_model_builds_and_runs(name):
    kw = dict(SMALL)
    if name == "sub_mobile_resnet_9blocks":
        kw["config"] = "8_8_8_8_8_8_8_8"
    if name == "sub_mobile_spade":
        kw["config"] = "4_4_4_4_4_4_4_4"
    if name == "sub_mobile_unet":
        kw["config"] = "4_4_4_4_4_4_4"
    if name in SPADE.generators or name in UNET.generators:
        kw["ngf"] = 4
    if name == "sub_mobile_munit":
        kw["config"] = "8_8_8_8_8_8_8_8_8_8"
    if name == "pruned_resnet":
        kw["widths"] = {"stem": 4, "down1": 8, "trunk": 12, "blocks": [3] * 9, "up1": 6,
                        "up2": 5}
    m = gnn.build(name, **kw).eval()
    if name in SPADE.generators:          # one-hot label maps, sides divisible by 32
        x = one_hot(torch.randint(0, gnn.LABEL_NC, (1, 32, 64)))
    elif name == "multi_scale":            # (one-hot label map, image) pairs
        x = torch.randn(1, gnn.LABEL_NC + 3, 64, 64)
    elif name == "ms_image":               # 3 scales of 4 stride-2 convs: 64 px at least
        x = torch.randn(1, 3, 64, 64)
    elif name in UNET.generators:          # sides divisible by 2 ** levels
        x = torch.randn(1, 3, 2 ** m.levels, 2 ** m.levels)
    else:
        x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = m(x)
    if name in gnn.GENERATORS:
        assert y.shape == (1, 3, *x.shape[2:]) and y.abs().max() <= 1
    elif name == "multi_scale":
        assert len(y) == 2 and all(len(scale) == 5 for scale in y)
        assert y[0][-1].shape[1] == 1 and y[1][-1].shape[-1] < y[0][-1].shape[-1]
    elif name == "ms_image":
        assert [o.shape[-1] for o in y] == [4, 2, 1]
    else:
        assert y.shape[1] == 1


def test_unknown_name_lists_available():
    with pytest.raises(ConfigError, match="available: .*resnet_9blocks"):
        gnn.build("stylegan2")


def test_resnet_keys_follow_released_layout():
    sd = gnn.build("resnet_9blocks").state_dict()
    assert "model.1.weight" in sd and "model.10.conv_block.1.weight" in sd
    assert "model.10.conv_block.5.weight" in sd and "model.26.weight" in sd
    assert sum(v.numel() for v in gnn.build("resnet_9blocks").parameters()) == 11_378_179
    bn = gnn.build("resnet_9blocks", norm="batch").state_dict()
    assert "model.2.running_mean" in bn and "model.1.bias" not in bn
    drop = gnn.build("resnet_6blocks", dropout=0.5).state_dict()
    assert "model.10.conv_block.6.weight" in drop and "model.16.conv_block.1.weight" not in drop


def test_mobile_is_sub_at_uniform_width():
    mob = gnn.build("mobile_resnet_9blocks", ngf=16)
    sub = gnn.build("sub_mobile_resnet_9blocks", config="16_16_16_16_16_16_16_16")
    assert {k: v.shape for k, v in mob.state_dict().items()} == \
        {k: v.shape for k, v in sub.state_dict().items()}


@pytest.mark.parametrize("space", ["channels-64-cycleGAN", "channels-64-pix2pix"])
def test_extract_subnet_equals_supernet(space):
    torch.manual_seed(0)
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=64).eval()
    # non-trivial biases so slicing errors show
    for p in sup.parameters():
        p.data.normal_(0, 0.05)
    sp = PRESETS[space]
    x = torch.randn(2, 3, 32, 32)
    configs = [sp.largest(), sp.smallest(), sp.sample(random.Random(1))]
    for cfg in configs:
        sub = gnn.extract_subnet(sup, cfg).eval()
        assert isinstance(sub, gnn.SubMobileResnetGenerator) and sub.config == cfg
        with torch.no_grad():
            diff = (sub(x) - sup(x, cfg)).abs().max().item()
        assert diff < 1e-5, (str(cfg), diff)
    small = sum(p.numel() for p in gnn.extract_subnet(sup, sp.smallest()).parameters())
    assert small < sum(p.numel() for p in sup.parameters()) / 10


def test_supernet_batchnorm_slices_equal_subnet():
    torch.manual_seed(0)
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=16, norm="batch")
    x = torch.randn(4, 3, 32, 32)
    sup.train()
    sup(x, "8_16_8_16_8_16_8_16")  # updates the sliced running stats
    sup.eval()
    sub = gnn.extract_subnet(sup, "8_16_8_16_8_16_8_16").eval()
    with torch.no_grad():
        assert (sub(x) - sup(x, "8_16_8_16_8_16_8_16")).abs().max() < 1e-5


def test_supernet_rejects_too_wide_config():
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=16)
    with pytest.raises(ConfigError, match="position 2.*ngf 16"):
        sup(torch.zeros(1, 3, 16, 16), "16_16_32_16_16_16_16_16")


def test_feature_points_are_named_and_shaped():
    t = gnn.build("resnet_9blocks", ngf=8)
    out, feats = t.forward_features(torch.randn(1, 3, 32, 32))
    assert list(feats) == ["down2", "block3", "block6", "block9"]
    assert all(f.shape == (1, 32, 8, 8) for f in feats.values())
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=16)
    _, sf = sup.forward_features(torch.randn(1, 3, 32, 32), "8_8_8_8_8_8_8_8", ["block6"])
    assert list(sf) == ["block6"] and sf["block6"].shape == (1, 32, 8, 8)


def test_discriminator_widths_are_parameters():
    d = gnn.build("n_layers", input_nc=6)
    assert d.widths == [64, 128, 256, 512]
    assert d(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 PatchGAN
    small = gnn.NLayerDiscriminator(6, widths=[16, 24, 40, 8])
    logits, feats = small.forward_features(torch.randn(1, 6, 64, 64))
    assert [f.shape[1] for f in feats] == [16, 24, 40, 8] and logits.shape[1] == 1
    with pytest.raises(ConfigError):
        gnn.NLayerDiscriminator(3, widths=[16, 24])


def test_wrong_architecture_names_first_mismatch(tmp_path):
    torch.save(gnn.build("resnet_9blocks", ngf=8).state_dict(), tmp_path / "g.pth")
    with pytest.raises(WeightsError) as e:
        load_weights(gnn.build("resnet_9blocks", ngf=16), tmp_path / "g.pth")
    assert "model.1.weight" in str(e.value) and "(8, 3, 7, 7)" in str(e.value)


class Evil:
    """Anything that is not a tensor container must not be unpickled."""


class Payload:
    """A checkpoint payload that runs code when unpickled: ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weights_only_refuses_pickled_objects(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_weights(gnn.build("resnet_9blocks", ngf=8), tmp_path / "evil.pth")


def test_weights_only_never_runs_a_payload(tmp_path):
    """A state dict carrying a code-running payload: ganc's reader refuses it in one line
    and the payload never runs (with weights_only=False it would create the marker)."""
    marker = tmp_path / "pwned"
    state = gnn.build("resnet_9blocks", ngf=8).state_dict()
    state["model.1.weight"] = Payload(marker)
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    assert not marker.exists()
    with pytest.raises(WeightsError) as e:
        load_weights(gnn.build("resnet_9blocks", ngf=8), path)
    assert str(e.value).startswith(f"cannot read weights {path}") and "\n" not in str(e.value)
    assert not marker.exists(), "the payload ran while loading"
    with pytest.raises(WeightsError):
        read_state_dict(path.read_bytes())
    assert not marker.exists()
    # the payload is live: an unsafe load runs it (this is what the reader must not do)
    torch.load(path, weights_only=False)
    assert marker.exists()


@needs_shared(H2Z_MODEL)
def test_released_compressed_model_loads_strictly_from_legacy_format():
    path = H2Z_MODEL / "latest_net_G.pth"
    with open(path, "rb") as f:
        assert f.read(2) != b"PK"  # legacy, not the zip format
    m = gnn.build("sub_mobile_resnet_9blocks", config="16_16_32_16_32_32_16_16")
    load_weights(m, path)
    assert sum(p.numel() for p in m.parameters()) == 356_867
    assert m.model[1].weight.abs().sum() > 0


def _init_stats(net):
    convs = [m for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    biases = [m.bias for m in convs if m.bias is not None]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return convs, weights, biases, bns


def test_models_trained_from_scratch_get_the_reference_init():
    """init_type normal, init_gain 0.02 (GAN Compression / pytorch-CycleGAN-and-pix2pix):
    conv weights N(0, 0.02), batch-norm weights N(1, 0.02), biases 0, for every
    generator and discriminator ganc trains from scratch and the 1x1 distillation maps."""
    from ganc.config import from_dict
    from ganc.losses import FeatureDistiller
    from ganc.prune.models import build_teacher
    from ganc.train.teacher import build_discriminator, build_generator
    torch.manual_seed(0)
    cfg = from_dict({"model": {"teacher_ngf": 8, "ndf": 8, "norm_D": "batch"}})
    student = gnn.build_for_training("super_mobile_resnet_9blocks", ngf=8)
    G, D, _ = build_teacher(cfg)                     # no teacher: the random-init path
    nets = [build_generator(cfg), build_discriminator(cfg, 6), student, G, D,
            FeatureDistiller({"block3": 32}, {"block3": 64})]
    for net in nets:
        convs, weights, biases, bns = _init_stats(net)
        assert abs(weights.std().item() - 0.02) < 0.002 and abs(weights.mean().item()) < 0.002
        assert all(b.abs().max() == 0 for b in biases)
        for bn in bns:
            assert abs(bn.weight.mean().item() - 1) < 0.01 and bn.bias.abs().max() == 0
    # PyTorch's own default (kaiming-uniform weights, uniform biases) is not that:
    stem = gnn.build("resnet_9blocks", ngf=8).model[1]
    assert stem.weight.std() > 0.04 and stem.bias.abs().max() > 0
