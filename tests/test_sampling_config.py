"""SamplingConfig: the one home of the sampling settings, their defaults and their checks."""
import inspect
import math

import pytest

from infinity_core import InfinityError, SamplingConfig, generate, parse_per_scale

BAD_SETTINGS = [
    ("cfg", math.nan), ("cfg", math.inf), ("cfg", -3.0), ("cfg", 1e30), ("cfg", None), ("cfg", "3"),
    ("cfg", [3.0] * 8), ("cfg", []), ("cfg", [3.0, math.nan]),
    ("tau", 0.0), ("tau", -1.0), ("tau", math.nan), ("tau", 6.0),
    ("top_k", -1), ("top_k", 1.5), ("top_k", 10 ** 6), ("top_k", True),
    ("top_p", 2.0), ("top_p", -0.1), ("top_p", math.nan),
    ("seed", -1), ("seed", 2 ** 64), ("seed", 0.5), ("seed", "7"),
    ("batch_size", 0), ("batch_size", 1000), ("batch_size", 2.5),
    ("pixels", "4K"), ("pixels", None), ("h_div_w", 0.0), ("h_div_w", math.nan), ("h_div_w", 100.0),
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS)
def test_a_bad_setting_is_refused_by_name(name, value):
    settings = {"pixels": "0.06M", name: value}
    with pytest.raises(InfinityError) as refused:
        SamplingConfig(**settings)
    assert str(refused.value).startswith(name), str(refused.value)


def test_per_scale_rule_the_last_value_repeats():
    config = SamplingConfig(pixels="0.06M", cfg=[4, 3], tau=(0.5,))
    assert config.cfg_per_scale == (4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0)
    assert config.tau_per_scale == (0.5,) * 7
    assert config.guided and SamplingConfig(cfg=1.0).guided is False
    assert SamplingConfig(pixels="0.06M", cfg=[3, 3, 1]).guided_until == 2


def test_parse_per_scale():
    assert parse_per_scale("3", "cfg") == 3.0
    assert parse_per_scale(" 3, 3 4 ", "cfg") == (3.0, 3.0, 4.0)
    with pytest.raises(InfinityError, match="cfg value 2 \\('x'\\) is not a number"):
        parse_per_scale("3, x", "cfg")
    with pytest.raises(InfinityError, match="^tau is empty"):
        parse_per_scale(" ", "tau")


def test_generate_keywords_are_the_configs_fields_with_its_defaults():
    generate_defaults = {name: p.default for name, p in inspect.signature(generate).parameters.items()}
    config_defaults = {name: p.default for name, p in inspect.signature(SamplingConfig).parameters.items()}
    assert set(config_defaults) == {"h_div_w", "pixels", "cfg", "tau", "top_k", "top_p", "seed", "batch_size",
                                    "speed"}
    assert all(generate_defaults[name] == default for name, default in config_defaults.items())
    assert {"callback", "init_bits", "init_scales", "mask", "config"} <= set(generate_defaults)


def test_image_seeds_wrap_at_the_top_of_the_range():
    config = SamplingConfig(seed=2 ** 64 - 1, batch_size=2)
    assert [config.image_seed(i) for i in range(2)] == [2 ** 64 - 1, 0]
