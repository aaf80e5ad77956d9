"""The opt-in compiled scale step (compiled.py): the eager bits, whole graphs, a bounded number of them, and
an error rather than a silent eager fallback."""
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from infinity_core import InfinityError, generate, load_transformer
from infinity_core.compiled import CompileConfig

from conftest import FIXTURES

SETTINGS = dict(cfg=3.0, tau=1.0, top_k=900, top_p=0.97, seed=3)
EAGER = CompileConfig(backend="eager")
MAX_GRAPHS = 6    # 1x1 scale, the stored scales, the last scale, a pruned scale, the unconditional rows dropped


@pytest.fixture(scope="module")
def plain_transformer():
    """The fixture transformer with plain (not prepacked) weights, which torch.compile can trace."""
    return load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float32, prepack=False)


@pytest.fixture(scope="module", autouse=True)
def fresh_dynamo():
    """One dynamo session for the module: the graph count is that of all its generations together."""
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _bits_equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("pixels", ["0.06M", "0.25M"])
def test_compiled_gives_the_eager_bits_in_whole_graphs(plain_transformer, fox, pixels):
    eager = generate(plain_transformer, fox, pixels=pixels, **SETTINGS)
    compiled = generate(plain_transformer, fox, pixels=pixels, **SETTINGS, compile=EAGER)
    assert _bits_equal(compiled.bits, eager.bits)
    torch.testing.assert_close(compiled.codes, eager.codes, rtol=0, atol=0)
    assert not counters["graph_break"]
    graphs = counters["stats"]["unique_graphs"]
    assert 0 < graphs <= MAX_GRAPHS     # over both sizes: the second compiles at most its last scale's graph
    again = generate(plain_transformer, fox, pixels=pixels, **SETTINGS, compile=EAGER)   # same shapes: no new graph
    assert counters["stats"]["unique_graphs"] == graphs
    assert _bits_equal(again.bits, eager.bits)


def test_compiled_speed_modes_stay_within_the_graph_bound(plain_transformer, fox):
    for speed in ("balanced", "fast"):
        eager = generate(plain_transformer, fox, pixels="0.06M", **SETTINGS, speed=speed)
        compiled = generate(plain_transformer, fox, pixels="0.06M", **SETTINGS, speed=speed, compile=EAGER)
        assert _bits_equal(compiled.bits, eager.bits), speed
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] <= MAX_GRAPHS


def test_past_the_recompile_limit_it_raises_instead_of_running_eager(plain_transformer, fox):
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=1), pytest.raises(Exception, match="(?i)recompil"):
        generate(plain_transformer, fox, pixels="0.06M", **SETTINGS, compile=EAGER)


def test_a_prepacked_model_is_refused_before_any_work(transformer, fox):
    with pytest.raises(InfinityError, match="^compile: .*prepacked.*prepack=False"):
        generate(transformer, fox, pixels="0.06M", **SETTINGS, compile=EAGER)


def test_a_bad_backend_is_refused_by_name():
    with pytest.raises(InfinityError, match="^compile backend must be one of"):
        CompileConfig(backend="tensorrt")
