"""A model file's trained sizes: written and read back through the file's metadata, and the warning for a
run outside them names what is outside and what the model supports."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from infinity_core.errors import InfinityError
from infinity_core.schedules import get_schedule, parse_aspect
from infinity_core.trained_sizes import TrainedSizes, trained_sizes

SIZES = TrainedSizes(pixels=("0.06M", "0.25M"), aspects=(1.0, 0.75, 1.5))


def test_sizes_round_trip_through_a_model_files_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata=SIZES.to_metadata())
    assert trained_sizes(path) == SIZES


def test_a_file_without_sizes_has_none(tmp_path):
    path = tmp_path / "official.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"format": "pt"})
    assert trained_sizes(path) is None


@pytest.mark.parametrize("aspect, pixels", [("1:1", "0.06M"), ("4:3 (landscape)", "0.25M"), ("2:3", "0.06M")])
def test_no_warning_inside_the_trained_sizes(aspect, pixels):
    assert SIZES.warning(get_schedule(parse_aspect(aspect), pixels), pixels) is None


@pytest.mark.parametrize("aspect, pixels, named", [
    ("1:1", "1M", ["the pixel budget 1M"]),
    ("16:9", "0.06M", ["the aspect ratio 7:4 (landscape)"]),
    ("2:1 (landscape)", "0.60M", ["the pixel budget 0.60M", "the aspect ratio 2:1 (landscape)"]),
])
def test_a_run_outside_is_warned_with_what_the_model_supports(aspect, pixels, named):
    warning = SIZES.warning(get_schedule(parse_aspect(aspect), pixels), pixels)
    for part in named:
        assert part in warning
    assert "0.06M, 0.25M" in warning and "1:1, 4:3 (landscape), 2:3 (portrait)" in warning


@pytest.mark.parametrize("metadata", [
    {"infinity.trained_pixels": "0.06M,2M", "infinity.trained_aspects": "1"},
    {"infinity.trained_pixels": "0.06M", "infinity.trained_aspects": "1,wide"},
    {"infinity.trained_pixels": "0.06M", "infinity.trained_aspects": "1.1"},
    {"infinity.trained_pixels": "", "infinity.trained_aspects": "1"},
])
def test_unparsable_entries_are_refused_naming_the_file(metadata):
    with pytest.raises(InfinityError, match="model file 'm'.*trained sizes"):
        TrainedSizes.from_metadata(metadata, "model file 'm'")
