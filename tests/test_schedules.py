"""Scale schedules: the official table's invariants and the lookup's refusals."""
import pytest

from infinity_core import ASPECT_PRESETS, PIXEL_BUDGETS, InfinityError, get_schedule, parse_aspect
from infinity_core.schedules import describe
from infinity_core.schedules import ASPECT_TEMPLATES, PIXELS_PER_TOKEN

# (h/w, total tokens at 1M, image size) from the reference table (docs: dynamic_resolution.py at 1M)
OFFICIAL_1M = {1.0: (10521, (1024, 1024)), 1.25: (10774, (1120, 896)), 1.333: (10973, (1152, 864)),
               1.5: (10997, (1248, 832)), 1.75: (11252, (1344, 768)), 2.0: (11269, (1440, 720)),
               2.5: (10805, (1600, 640)), 3.0: (11123, (1776, 592))}


def test_fifteen_templates_with_transposes():
    assert len(ASPECT_TEMPLATES) == 15
    for ratio, grids in ASPECT_TEMPLATES.items():
        assert len(grids) == 13
        if ratio > 1:
            assert ASPECT_TEMPLATES[int(1 / ratio * 1000) / 1000] == tuple((w, h) for h, w in grids)


@pytest.mark.parametrize("ratio", sorted(ASPECT_TEMPLATES))
@pytest.mark.parametrize("pixels", sorted(PIXEL_BUDGETS))
def test_grids_grow_and_end_at_the_image(ratio, pixels):
    schedule = get_schedule(ratio, pixels)
    assert schedule.num_scales == PIXEL_BUDGETS[pixels]
    areas = [h * w for h, w in schedule.grids]
    assert areas == sorted(areas) and schedule.grids[0] == (1, 1)
    h, w = schedule.final_grid
    assert schedule.image_size == (h * PIXELS_PER_TOKEN, w * PIXELS_PER_TOKEN)
    assert abs(h / w - ratio) < 0.01 * ratio + 0.02       # the final grid has the template's ratio
    assert schedule.rope_grid == ASPECT_TEMPLATES[schedule.h_div_w][-1]


@pytest.mark.parametrize("ratio, expected", sorted(OFFICIAL_1M.items()))
def test_official_1m_sizes_and_lengths(ratio, expected):
    tokens, size = expected
    schedule = get_schedule(ratio, "1M")
    assert (schedule.num_tokens, schedule.image_size) == (tokens, size)
    transposed = get_schedule(int(1 / ratio * 1000) / 1000, "1M")
    assert transposed.image_size == size[::-1]


def test_fixture_schedules(manifest):
    for case in manifest["cases"].values():
        if case["kind"] == "generation":
            settings = case["settings"]
            schedule = get_schedule(settings["h_div_w_template"], settings["pn"])
            assert [list(g) for g in schedule.grids] == [s[1:] for s in case["scale_schedule"]]
            assert list(schedule.image_size) == case["image_hw"] and schedule.num_tokens == case["n_tokens"]


def test_nearest_template_and_presets():
    assert get_schedule(16 / 9, "1M").h_div_w == 1.75        # snapped to the nearest template
    assert get_schedule(0.5625, "1M").h_div_w == 0.571
    for name, ratio in ASPECT_PRESETS.items():
        assert parse_aspect(name) == ratio and ratio in ASPECT_TEMPLATES
    # one convention: width to height, as text or as a number
    assert parse_aspect("16:9") == 9 / 16 and parse_aspect("3:4") == parse_aspect(0.75) == parse_aspect("0.75")
    assert parse_aspect("3:4") == pytest.approx(ASPECT_PRESETS["3:4 (portrait)"], rel=1e-3)
    assert parse_aspect(2) == 0.5 and parse_aspect("1.5") == pytest.approx(2 / 3)


def test_refusals_name_the_argument_and_valid_values():
    with pytest.raises(InfinityError, match=r"pixel budget '2M'.*0\.06M.*1M"):
        get_schedule(1.0, "2M")
    with pytest.raises(InfinityError, match=r"h/w = 10.*no schedule"):
        get_schedule(10.0, "1M")
    with pytest.raises(InfinityError, match="positive"):
        get_schedule(-1.0, "1M")
    with pytest.raises(InfinityError, match="aspect 'wide'"):
        parse_aspect("wide")
    for bad in ("0:1", "1:0", "-1:2", "0", "nan", "inf:1"):
        with pytest.raises(InfinityError, match="aspect"):
            parse_aspect(bad)


def test_describe_says_the_snapped_shape():
    """16:9 is not a trained shape: the nearest template is 7:4, and that is what a run reports."""
    assert describe(get_schedule(parse_aspect("16:9"), "0.06M")).startswith("7:4 (h/w 0.571), 336 x 192 px, 7 scales")
