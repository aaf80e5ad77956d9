"""The evaluation tools' ASPECT@PIXELS sizes (`training.adherence.ImageSize`) read as the schedules do, and a
bad one is refused with a message naming it and what is valid."""
from __future__ import annotations

from argparse import ArgumentTypeError

import pytest

from infinity_core.schedules import get_schedule
from training.adherence import ImageSize


def test_a_size_reads_as_width_to_height_and_its_budget():
    size = ImageSize.parse("16:9@0.06M")
    assert (size.aspect, size.pixels, str(size)) == ("16:9", "0.06M", "16:9@0.06M")
    assert size.h_div_w == pytest.approx(9 / 16)
    height, width = get_schedule(size.h_div_w, size.pixels).grids[-1]
    assert width > height                                  # landscape, as a 16:9 picture is


@pytest.mark.parametrize("text, named", [("16:9", "ASPECT@PIXELS"), ("1:1@2M", "0.25M"), ("x:y@0.06M", "x:y")])
def test_a_bad_size_is_refused_with_what_is_valid(text, named):
    with pytest.raises(ArgumentTypeError) as refused:
        ImageSize.parse(text)
    assert text in str(refused.value) and named in str(refused.value)
