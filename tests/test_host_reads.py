"""The scale loop never waits on the device: no tensor value is read by the host between the callback before
the first scale and the one after the last, counted at the dispatcher through the public `generate`."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from infinity_core import generate

# the ops through which a tensor's value reaches Python (`.item()`, `bool(t)`, `.tolist()`, printing, ...)
HOST_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default,
              torch.ops.aten.item.default, torch.ops.aten.equal.default}

SETTINGS = dict(pixels="0.06M", cfg=3.0, tau=1.0, seed=3)


class HostReads(TorchDispatchMode):
    """Counts host reads while `counting` is on (the callback turns it on and off)."""

    def __init__(self):
        super().__init__()
        self.counting, self.reads = False, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.counting and func in HOST_READS:
            self.reads.append(func)
        return func(*args, **(kwargs or {}))


def reads_inside_the_loop(transformer, cond, **settings) -> list:
    mode = HostReads()

    def callback(done, total, codes):
        mode.counting = done < total

    with mode:
        generate(transformer, cond, callback=callback, **settings)
    return mode.reads


@pytest.fixture(scope="module")
def picture_bits(transformer, fox):
    return generate(transformer, fox, **SETTINGS | {"seed": 100}).bits


def test_the_counter_sees_a_host_read(transformer, fox):
    """The counter works: a callback that reads a value is seen."""
    mode = HostReads()

    def callback(done, total, codes):
        mode.counting = True
        float(codes.sum())
        mode.counting = False

    with mode:
        generate(transformer, fox, callback=callback, **SETTINGS)
    assert len(mode.reads) == 8                       # one per callback: before the first scale, after each of 7


@pytest.mark.parametrize("speed", ["exact", "balanced", "fast"])
@pytest.mark.parametrize("case", ["text to image", "per-scale cfg", "img2img", "inpainting"])
def test_no_host_read_inside_the_scale_loop(transformer, fox, picture_bits, case, speed):
    extra = {"text to image": {}, "per-scale cfg": {"cfg": (3.0, 3.0, 4.0, 2.0, 1.0)},
             "img2img": {"init_bits": picture_bits, "init_scales": 2}}.get(case)
    if case == "inpainting":
        mask = torch.zeros(256, 256)
        mask[64:192, :128] = 1
        extra = {"init_bits": picture_bits, "init_scales": 1, "mask": mask}
    assert reads_inside_the_loop(transformer, fox, **SETTINGS | extra, speed=speed) == []
