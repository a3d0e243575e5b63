import random

import pytest

from ganc.errors import ConfigError
from ganc.space import PRESETS, ChannelConfig, SearchSpace, get_space


def test_parse_and_format_roundtrip():
    c = ChannelConfig.parse("16_16_32_16_32_32_16_16")
    assert c.channels == (16, 16, 32, 16, 32, 32, 16, 16)
    assert str(c) == "16_16_32_16_32_32_16_16"
    assert ChannelConfig.parse(list(c)) == c
    assert ChannelConfig.parse(c) is c


def test_legacy_six_number_form_expands_block_width():
    c = ChannelConfig.parse("32_24_40_40_32_24")
    assert c.channels == (32, 24, 40, 40, 40, 40, 32, 24)


@pytest.mark.parametrize("bad", ["16_16_32", "16_16_32_16_32_32_16_16_8", "a_b", "16_0_32_16_32_32_16_16"])
def test_bad_strings_raise_one_line(bad):
    with pytest.raises(ConfigError) as e:
        ChannelConfig.parse(bad)
    assert "\n" not in str(e.value)


def test_validate_names_position_and_allowed_widths():
    sp = PRESETS["channels-64-cycleGAN"]
    assert sp.validate("16_16_32_16_32_32_16_16") == ChannelConfig.parse("16_16_32_16_32_32_16_16")
    with pytest.raises(ConfigError) as e:
        sp.validate("16_16_32_16_40_32_16_16")
    msg = str(e.value)
    assert "position 4" in msg and "40" in msg and "64, 48, 32, 24, 16" in msg


def test_presets_match_released_recipes():
    assert PRESETS["channels-64-cycleGAN"].choices[0] == (64, 48, 32, 24, 16)
    assert PRESETS["channels-64-pix2pix"].choices[0] == (64, 56, 48, 40, 32, 24, 16)
    assert get_space("channels-64-pix2pix").size == 7 ** 8
    with pytest.raises(ConfigError, match="unknown search space"):
        get_space("channels-32")


def test_sampling_stays_in_space_and_extremes():
    sp = PRESETS["channels-64-pix2pix"]
    rng = random.Random(0)
    for _ in range(50):
        assert sp.contains(sp.sample(rng))
    assert str(sp.largest()) == "_".join(["64"] * 8)
    assert str(sp.smallest()) == "_".join(["16"] * 8)
    assert SearchSpace.from_dict(sp.to_dict()) == sp
