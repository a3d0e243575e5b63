import pytest
import torch
import torch.nn as nn

from ganc import nn as gnn
from ganc.errors import ConfigError
from ganc.profile import count_macs, count_params, measure_latency, profile


def test_teacher_macs_match_published_convention():
    t = gnn.build("resnet_9blocks")
    macs = count_macs(t, (1, 3, 256, 256))
    assert abs(macs - 56.8e9) / 56.8e9 < 0.005
    other = count_macs(t, (1, 3, 256, 256), convention="flopcounter")
    assert abs(other - 49.6e9) / 49.6e9 < 0.005


def test_released_compressed_config_macs_and_params():
    m = gnn.build("sub_mobile_resnet_9blocks", config="16_16_32_16_32_32_16_16")
    assert abs(count_macs(m) - 2.55e9) / 2.55e9 < 0.005
    assert count_params(m) == 356_867


def test_hand_counted_layers():
    # conv: out elements * in/groups * k^2 ; transposed: per OUTPUT element ; norm: 1/output
    conv = nn.Conv2d(4, 6, 3, padding=1)
    assert count_macs(conv, (1, 4, 8, 8)) == 8 * 8 * 6 * 4 * 9
    dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    assert count_macs(dw, (1, 4, 8, 8)) == 8 * 8 * 4 * 1 * 9
    tconv = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    assert count_macs(tconv, (1, 4, 8, 8)) == 16 * 16 * 2 * 4 * 9
    assert count_macs(tconv, (1, 4, 8, 8), convention="flopcounter") == 8 * 8 * 4 * 2 * 9
    norm = nn.InstanceNorm2d(4)
    assert count_macs(norm, (1, 4, 8, 8)) == 4 * 8 * 8
    assert count_macs(nn.BatchNorm2d(4), (1, 4, 8, 8)) == 4 * 8 * 8
    assert count_macs(nn.Linear(10, 3), (1, 10)) == 30


def test_supernet_forward_with_config_counts_the_subnet():
    sup = gnn.build("super_mobile_resnet_9blocks")
    cfg = "16_16_32_16_32_32_16_16"
    sub = gnn.build("sub_mobile_resnet_9blocks", config=cfg)
    assert count_macs(sup, (1, 3, 64, 64), config=cfg) == count_macs(sub, (1, 3, 64, 64))


def test_profile_dict_and_latency():
    m = gnn.build("sub_mobile_resnet_9blocks", config="8_8_8_8_8_8_8_8")
    res = profile(m, size=32, latency=True)
    assert res["convention"] == "torchprofile" and res["params"] == count_params(m)
    assert res["input_size"] == [1, 3, 32, 32] and res["macs"] == count_macs(m, (1, 3, 32, 32))
    # the latency the dict asked for: measured at that input, on the model's device
    lat = res["latency"]
    assert set(lat) == {"median_ms", "min_ms", "repeats", "device", "threads"}
    assert lat["repeats"] == 10 and lat["device"] == "cpu" and lat["threads"] >= 1
    assert 0 < lat["min_ms"] <= lat["median_ms"]
    # (height, width) and another convention; no latency unless asked
    wide = profile(m, size=(32, 48), convention="flopcounter")
    assert wide["input_size"] == [1, 3, 32, 48] and "latency" not in wide
    assert wide["macs"] == count_macs(m, (1, 3, 32, 48), convention="flopcounter")
    assert wide["convention"] == "flopcounter" and wide["macs"] != res["macs"]
    lat = measure_latency(m, (1, 3, 32, 32), warmup=1, repeats=3)
    assert lat["repeats"] == 3 and lat["device"] == "cpu"
    assert 0 < lat["min_ms"] <= lat["median_ms"]
    with pytest.raises(ConfigError):
        count_macs(m, (1, 3, 32, 32), convention="flops")
    assert torch.is_grad_enabled()
