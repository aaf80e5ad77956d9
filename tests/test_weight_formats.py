"""Quantized weight files as the ecosystem writes them (tests/quant_files.py: ComfyUI's layout by hand, GGUF
through the gguf package's own writer and quantizer) load through `load_transformer`, stay packed in memory,
and agree with the fp32 model; the torch GGUF expansion equals the gguf package's numpy reference."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants
from safetensors.torch import load_file, save_file

from infinity_core import load_transformer
from infinity_core.errors import InfinityError
from infinity_core.text import TextCondition
from infinity_core.weight_formats import QuantizedLinear, detect_format
from infinity_core.weight_formats.gguf_blocks import BLOCK_LAYOUTS, dequantize_blocks, quantize_k
from infinity_core.weight_formats.quantized import quantized_bytes

from conftest import FIXTURES, generate_case
import quant_files

SOURCE = FIXTURES / "infinity_tiny.safetensors"
CASE = "gen_h0.5_cfg4_greedy"


# --- GGUF blocks against the gguf package's numpy reference ----------------------------------------

def _valid_random_blocks(kind: str, blocks: int, rng) -> np.ndarray:
    """Random bytes with finite fp16 scales in the places the layout keeps them (valid by construction)."""
    _, size = BLOCK_LAYOUTS[kind]
    raw = rng.integers(0, 256, (blocks, size), dtype=np.uint8)
    for offset in ((0,) if kind == "Q8_0" else (0, 2)):
        raw[:, offset:offset + 2] = rng.uniform(-3, 3, (blocks, 1)).astype(np.float16).view(np.uint8)
    return raw


@pytest.mark.parametrize("kind", sorted(BLOCK_LAYOUTS))
def test_block_expansion_equals_the_gguf_reference(kind):
    rng = np.random.default_rng(7)
    values_per_block, _ = BLOCK_LAYOUTS[kind]
    raw = _valid_random_blocks(kind, 12, rng).reshape(3, -1)        # 3 rows of 4 blocks
    expected = quants.dequantize(raw, GGMLQuantizationType[kind])
    assert expected.shape == (3, 4 * values_per_block)
    got = dequantize_blocks(torch.from_numpy(raw), kind, expected.shape, torch.float32)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_q8_0_of_the_gguf_quantizer_expands_to_its_reference():
    values = np.random.default_rng(1).standard_normal((4, 128)).astype(np.float32)
    packed = quants.quantize(values, GGMLQuantizationType.Q8_0)
    got = dequantize_blocks(torch.from_numpy(packed), "Q8_0", values.shape, torch.float32)
    np.testing.assert_array_equal(got.numpy(), quants.dequantize(packed, GGMLQuantizationType.Q8_0))


@pytest.mark.parametrize("kind, levels", [("Q4_K", 15), ("Q5_K", 31)])
def test_k_quantizer_round_trips_through_the_gguf_reference(kind, levels):
    """Our numpy K-quant writer, read back by gguf's dequantize: every value within one step of its sub-block
    (range / levels, plus the 6-bit rounding of scale and min) of the original."""
    values = np.random.default_rng(3).standard_normal((6, 512)).astype(np.float32)
    back = quants.dequantize(quantize_k(values, kind), GGMLQuantizationType[kind])
    sub = values.reshape(-1, 32)
    step = (sub.max(1) - np.minimum(sub.min(1), 0)) / levels
    assert (np.abs(back - values).reshape(-1, 32) <= step[:, None] * 1.0 + 1e-6).all()
    assert np.sqrt(((back - values) ** 2).mean()) < (0.09 if kind == "Q4_K" else 0.045)


def test_expansion_runs_in_the_compute_dtype():
    raw = _valid_random_blocks("Q4_K", 2, np.random.default_rng(0)).reshape(1, -1)
    fp32 = dequantize_blocks(torch.from_numpy(raw), "Q4_K", (1, 512), torch.float32)
    bf16 = dequantize_blocks(torch.from_numpy(raw), "Q4_K", (1, 512), torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16, fp32.to(torch.bfloat16), atol=0, rtol=0)


# --- files of every format, loaded and compared with fp32 --------------------------------------------

def _k_blocks(kind):
    return lambda rows: quantize_k(rows, kind)


WRITERS = {
    "comfy_fp8.safetensors": lambda src, dst: quant_files.write_comfy_fp8(src, dst),
    "comfy_int8_rows.safetensors": lambda src, dst: quant_files.write_comfy_int8_rows(src, dst),
    "comfy_scaled_fp8_old.safetensors": lambda src, dst: quant_files.write_scaled_fp8_old_form(src, dst),
    "q8_0.gguf": lambda src, dst: quant_files.write_gguf(src, dst, "Q8_0"),
    "q5_k.gguf": lambda src, dst: quant_files.write_gguf(src, dst, "Q5_K", raw_blocks=_k_blocks("Q5_K")),
    "q4_k.gguf": lambda src, dst: quant_files.write_gguf(src, dst, "Q4_K", raw_blocks=_k_blocks("Q4_K")),
    "f16.gguf": lambda src, dst: quant_files.write_gguf(src, dst, "F16"),
    "bf16.gguf": lambda src, dst: quant_files.write_gguf(src, dst, "BF16"),
}
# least share of greedy bits equal to fp32's on the fixture case (the tiny model is more sensitive than a
# trained one: its width-64 rows give 1-byte scales few values each)
MIN_AGREEMENT = {"comfy_fp8.safetensors": 0.95, "comfy_int8_rows.safetensors": 0.98,
                 "comfy_scaled_fp8_old.safetensors": 0.95, "q8_0.gguf": 0.98, "q5_k.gguf": 0.9,
                 "q4_k.gguf": 0.9, "f16.gguf": 0.995, "bf16.gguf": 0.99}
PACKED = {"comfy_fp8.safetensors", "comfy_int8_rows.safetensors", "comfy_scaled_fp8_old.safetensors", "q8_0.gguf",
          "q5_k.gguf", "q4_k.gguf"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    for name, write in WRITERS.items():
        write(SOURCE, folder / name)
    return folder


@pytest.fixture(scope="module")
def case(manifest, prompt_features):
    settings = manifest["cases"][CASE]["settings"]
    return settings, TextCondition.from_features([prompt_features[settings["prompt"]]])


@pytest.fixture(scope="module")
def fp32_bytes():
    return quantized_bytes(load_transformer(SOURCE, "cpu", torch.float32, prepack=False))


@pytest.fixture(scope="module")
def fp32_result(transformer, case):
    settings, cond = case
    return generate_case(transformer, cond, settings)


def _agreement(a, b) -> float:
    return sum(int((x == y).sum()) for x, y in zip(a.bits, b.bits)) / sum(x.numel() for x in a.bits)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_file_loads_agrees_with_fp32_and_saves_memory(name, files, case, fp32_result, fp32_bytes):
    settings, cond = case
    model = load_transformer(files / name, "cpu", torch.float32)
    quantized_layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    if name in PACKED:
        assert len(quantized_layers) == 7 * model.config.depth
        assert quantized_bytes(model) < 0.7 * fp32_bytes
    else:
        assert not quantized_layers
    assert _agreement(generate_case(model, cond, settings), fp32_result) >= MIN_AGREEMENT[name]


def test_format_is_read_from_the_contents_not_the_name(files, tmp_path):
    disguised = tmp_path / "looks_plain.safetensors"
    shutil.copy(files / "q8_0.gguf", disguised)
    assert detect_format(disguised) == "gguf"
    shutil.copy(files / "comfy_int8_rows.safetensors", tmp_path / "model.bin")
    assert detect_format(tmp_path / "model.bin") == "comfy_quant"
    assert detect_format(SOURCE) == "safetensors"
    assert type(load_transformer(disguised, "cpu").blocks[0].ffn.fc1) is QuantizedLinear


def test_int8_rows_expand_to_the_stored_values_times_their_row_scale(files):
    stored = load_file(str(files / "comfy_int8_rows.safetensors"))
    layer = load_transformer(files / "comfy_int8_rows.safetensors", "cpu").blocks[1].sa.mat_qkv
    key = "block_chunks.0.module.1.sa.mat_qkv"
    expected = stored[f"{key}.weight"].float() * stored[f"{key}.weight_scale"]
    assert layer.weight_data.dtype == torch.int8 and layer.weight_scale.shape == (192, 1)
    torch.testing.assert_close(layer.weight, expected, atol=0, rtol=0)


def test_gguf_layer_expands_to_the_gguf_reference(files):
    from gguf import GGUFReader
    stored = {t.name: t for t in GGUFReader(str(files / "q4_k.gguf")).tensors}
    info = stored["block_chunks.1.module.0.ffn.fc2.weight"]
    assert info.tensor_type.name == "Q4_K"
    expected = quants.dequantize(np.array(info.data), info.tensor_type)
    layer = load_transformer(files / "q4_k.gguf", "cpu").blocks[2].ffn.fc2
    np.testing.assert_array_equal(layer.weight.numpy(), expected)


def test_unknown_comfy_format_is_refused_naming_the_layer(tmp_path):
    state = load_file(str(SOURCE))
    state["head.comfy_quant"] = torch.tensor(list(json.dumps({"format": "nvfp4"}).encode()), dtype=torch.uint8)
    save_file(state, str(tmp_path / "nvfp4.safetensors"))
    with pytest.raises(InfinityError, match=r"nvfp4\.safetensors.*layer 'head' is quantized as 'nvfp4'.*int8_tensorwise"):
        load_transformer(tmp_path / "nvfp4.safetensors", "cpu")


def test_gguf_of_another_architecture_is_refused(tmp_path):
    from gguf import GGUFWriter
    writer = GGUFWriter(str(tmp_path / "llama.gguf"), "llama")
    writer.add_tensor("w", np.ones((2, 2), dtype=np.float32))
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    with pytest.raises(InfinityError, match=r"llama\.gguf' is a GGUF file for 'llama', not an Infinity model"):
        load_transformer(tmp_path / "llama.gguf", "cpu")
