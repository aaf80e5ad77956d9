"""Block streaming (infinity_core/offload.py): the official bits, one block on the device at a time, and a model
left as it was after a run, a failed one included."""
import pytest
import torch

from infinity_core import InfinityError, InfinityPipeline, generate, load_transformer
from infinity_core.compiled import CompileConfig
from infinity_core.offload import BlockStreaming, block_bytes, streamed_resident_bytes
from infinity_core.text import TextCondition

from conftest import FIXTURES, generate_case

CASE = "gen_1x1_cfg3_tau05_greedy"


@pytest.fixture
def plain_transformer():
    """A fresh fixture transformer with plain (not prepacked) weights: these tests rebind its tensors."""
    return load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float32, prepack=False)


def _tensors(model) -> dict[str, int]:
    return {name: tensor.data_ptr() for name, tensor in model.state_dict(keep_vars=True).items()}


def _official(manifest, fixture_tensors, prompt_features):
    case = manifest["cases"][CASE]
    settings = case["settings"]
    return settings, TextCondition.from_features([prompt_features[settings["prompt"]]]), fixture_tensors(case["file"])


def test_streamed_run_gives_the_official_bits_with_one_block_resident(plain_transformer, manifest, fixture_tensors,
                                                                      prompt_features):
    settings, cond, expected = _official(manifest, fixture_tensors, prompt_features)
    resident_during_blocks = []
    watch = [block.register_forward_hook(lambda *_: resident_during_blocks.append(set(streaming.resident_blocks)))
             for block in plain_transformer.blocks]
    streaming = BlockStreaming(plain_transformer, "cpu")
    with streaming:
        result = generate_case(plain_transformer, cond, settings)
    for hook in watch:
        hook.remove()
    for scale, bits in enumerate(result.bits):
        assert torch.equal(bits, expected[f"bits_s{scale}"][:, 0]), f"scale {scale} bits differ"
    depth = len(plain_transformer.blocks)
    # the watcher runs after the block and before its own leave hook: exactly that block is on the device
    assert len(resident_during_blocks) == depth * len(result.bits)
    assert resident_during_blocks == [{i % depth} for i in range(len(resident_during_blocks))]
    assert streaming.resident_blocks == set()


def test_a_failed_run_leaves_the_model_as_it_was(plain_transformer, manifest, fixture_tensors, prompt_features):
    settings, cond, expected = _official(manifest, fixture_tensors, prompt_features)
    before = _tensors(plain_transformer)

    def cancel(done, total, codes):
        if done == 3:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt), BlockStreaming(plain_transformer, "cpu"):
        generate(plain_transformer, cond, h_div_w=settings["h_div_w_template"], pixels=settings["pn"],
                 cfg=settings["cfg"], tau=settings["tau"], top_k=settings["top_k"], top_p=settings["top_p"],
                 seed=settings["g_seed"], callback=cancel)
    assert _tensors(plain_transformer) == before
    assert all("context" not in vars(block) and not block._forward_pre_hooks and not block._forward_hooks
               for block in plain_transformer.blocks)
    result = generate_case(plain_transformer, cond, settings)
    assert all(torch.equal(bits, expected[f"bits_s{s}"][:, 0]) for s, bits in enumerate(result.bits))


def test_resident_bytes_count_one_block(plain_transformer):
    total = sum(t.nbytes for t in plain_transformer.state_dict().values())
    blocks = [block_bytes(block) for block in plain_transformer.blocks]
    assert len(set(blocks)) == 1                      # every block has the same shapes
    assert streamed_resident_bytes(plain_transformer) == total - (len(blocks) - 1) * blocks[0]


def test_a_prepacked_model_cannot_stream_to_another_device(transformer):
    with pytest.raises(InfinityError, match="prepack=False"):
        BlockStreaming(transformer, "meta").__enter__()
    assert not transformer.blocks[0]._forward_pre_hooks


def test_compile_refuses_a_streamed_model(plain_transformer, fox):
    with BlockStreaming(plain_transformer, "cpu"), pytest.raises(InfinityError, match="streamed"):
        generate(plain_transformer, fox, pixels="0.06M", compile=CompileConfig(backend="eager"))


def test_a_pipeline_with_a_stream_device_streams_and_gives_the_official_bits(plain_transformer, vae, manifest,
                                                                             fixture_tensors, prompt_features):
    settings, cond, expected = _official(manifest, fixture_tensors, prompt_features)
    pipe = InfinityPipeline(plain_transformer, vae, stream_device=torch.device("cpu"))
    streamed_blocks = []
    watch = plain_transformer.blocks[0].register_forward_pre_hook(
        lambda block, args: streamed_blocks.append(len(block._forward_pre_hooks)))
    result = pipe.sample(cond, h_div_w=settings["h_div_w_template"], pixels=settings["pn"], cfg=settings["cfg"],
                         tau=settings["tau"], top_k=settings["top_k"], top_p=settings["top_p"], seed=settings["g_seed"])
    watch.remove()
    assert streamed_blocks and all(count == 2 for count in streamed_blocks)   # the watcher and the streaming hook
    assert all(torch.equal(bits, expected[f"bits_s{s}"][:, 0]) for s, bits in enumerate(result.bits))
