"""oneDNN-prepacked block matmuls (the CPU fast path): same outputs as the plain path to fp32 rounding."""
import pytest
import torch

from infinity_core import generate, get_schedule, load_transformer, prepack_for_cpu
from infinity_core.text import TextCondition
from infinity_core.transformer.cpu_kernels import onednn_linear_available, onednn_linear_supports
from infinity_core.transformer.layers import ONEDNN_ROWS, matmul
from infinity_core.transformer.model import BLOCK_MATMULS

from conftest import FIXTURES, generate_case

pytestmark = pytest.mark.skipif(not onednn_linear_available(), reason="this PyTorch build has no oneDNN linear ops")


@pytest.fixture(scope="module")
def models():
    plain = load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float32, prepack=False)
    packed = load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float32)   # packed by default
    assert not prepack_for_cpu(packed)                                  # packs once
    return plain, packed


def test_opt_out_keeps_plain_weights_and_packs_on_request(models):
    plain, _ = models
    assert not plain.blocks[0].sa.mat_qkv.weight.is_mkldnn
    movable = load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float32, prepack=False)
    assert prepack_for_cpu(movable) and movable.blocks[0].sa.mat_qkv.weight.is_mkldnn


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_packs_only_where_the_cpu_runs_it(dtype, fixture_tensors):
    """oneDNN's bf16 / fp16 linears need CPU features (AVX-512, AVX-NE-CONVERT): without them the model loads
    unpacked and samples on the plain path instead of failing in the prepack."""
    model = load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", dtype)
    assert model.blocks[0].ffn.fc1.weight.is_mkldnn == onednn_linear_supports(dtype)
    fox = TextCondition.from_features([fixture_tensors("text_encoder.safetensors")["p1_kv_compact"]])
    bits = generate(model, fox, pixels="0.06M", seed=1).bits
    assert len(bits) == len(get_schedule(1.0, "0.06M").grids)


def test_every_block_matmul_is_packed_in_place(models):
    plain, packed = models
    for block_plain, block_packed in zip(plain.blocks, packed.blocks):
        for name in BLOCK_MATMULS:
            weight = block_packed.get_submodule(name).weight
            assert weight.is_mkldnn and weight.shape == block_plain.get_submodule(name).weight.shape
    assert not packed.head.weight.is_mkldnn


@pytest.mark.parametrize("rows", [1, 7, ONEDNN_ROWS, 3 * ONEDNN_ROWS + 5])
def test_packed_matmul_equals_linear(rows):
    weight, bias, x = torch.randn(96, 48), torch.randn(96), torch.randn(2, rows, 48)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, 2)
    torch.testing.assert_close(matmul(x, packed, bias), torch.nn.functional.linear(x, weight, bias),
                               atol=1e-4, rtol=1e-5)


def test_teacher_forced_logits_and_greedy_bits_unchanged(models, fixture_tensors, manifest, prompt_features):
    _, packed = models
    fox = TextCondition.from_features([fixture_tensors("text_encoder.safetensors")["p1_kv_compact"]])
    teacher = fixture_tensors("teacher_forced.safetensors")
    with torch.no_grad():
        logits = packed.forward_teacher(fox, teacher["x_BLC_wo_prefix"], get_schedule(1.0, "0.06M"))
    torch.testing.assert_close(logits, teacher["logits_BLV"], atol=1e-4, rtol=0)
    for case in manifest["cases"].values():
        if case["kind"] != "generation":
            continue
        settings, expected = case["settings"], fixture_tensors(case["file"])
        result = generate_case(packed, TextCondition.from_features([prompt_features[settings["prompt"]]]), settings)
        for scale, bits in enumerate(result.bits):
            assert torch.equal(bits, expected[f"bits_s{scale}"][:, 0]), (case["file"], scale)
