"""The transformer against the official implementation's teacher-forced outputs (fixtures)."""
import pytest
import torch

from infinity_core.config import transformer_config_from_state_dict
from infinity_core.schedules import get_schedule
from infinity_core.transformer.model import InfinityTransformer
from infinity_core.weights import official_to_internal_transformer, read_state_dict, strict_load

from conftest import FIXTURES

ATOL = 1e-4   # manifest checking_guide: teacher-forced logits/activations


@pytest.fixture(scope="module")
def model():
    state_dict, chunks = official_to_internal_transformer(read_state_dict(FIXTURES / "infinity_tiny.safetensors"))
    net = InfinityTransformer(transformer_config_from_state_dict(state_dict, block_chunks=chunks))
    strict_load(net, state_dict, "fixture")
    return net.eval()


def test_text_path_matches(model, fox, fixture_tensors):
    """text_norm, pooled start condition, text projection and shared AdaLN equal the official tensors."""
    expected = fixture_tensors("teacher_forced.safetensors")
    with torch.no_grad():
        normed = model.text_norm(fox.features)
        context = model.prepare_text(fox)
        torch.testing.assert_close(normed, expected["text_norm_out"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.text_proj(normed), expected["ca_kv_proj"], atol=1e-5, rtol=0)
        torch.testing.assert_close(context.cond, expected["cond_BD"], atol=1e-5, rtol=0)
        ada = model.shared_ada_lin(context.cond).view(1, 1, 6, -1)
        torch.testing.assert_close(ada, expected["shared_ada_lin_out"], atol=1e-5, rtol=0)
        # block 0's per-generation constants: its own offset on the official shared AdaLN, scales with +1
        gamma1, _, scale1, _, shift1, _ = (model.blocks[0].ada_gss + expected["shared_ada_lin_out"]).unbind(2)
        first = context.blocks[0]
        torch.testing.assert_close(first.gamma1, gamma1, atol=1e-5, rtol=0)
        torch.testing.assert_close(first.scale1, scale1 + 1, atol=1e-5, rtol=0)
        torch.testing.assert_close(first.shift1, shift1, atol=1e-5, rtol=0)


def test_every_block_output_matches(model, fox, fixture_tensors):
    """Each block's output in the block-causal teacher-forced pass equals the official activation."""
    expected = fixture_tensors("teacher_forced.safetensors")
    outputs = []
    hooks = [block.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for block in model.blocks]
    try:
        with torch.no_grad():
            model.forward_teacher(fox, expected["x_BLC_wo_prefix"], get_schedule(1.0, "0.06M"))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(outputs) == len(model.blocks) == 4
    for index, out in enumerate(outputs):
        torch.testing.assert_close(out, expected[f"block{index}_out"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("case, inputs, logits", [
    ("teacher_forced.safetensors", "x_BLC_wo_prefix", "logits_BLV"),
    ("teacher_forced_gt_bits.safetensors", "x_BLC_wo_prefix_from_gt_bits", "logits_BLV_from_gt_bits"),
])
def test_teacher_forced_logits(model, fox, fixture_tensors, case, inputs, logits):
    expected = fixture_tensors(case)
    with torch.no_grad():
        got = model.forward_teacher(fox, expected[inputs], get_schedule(1.0, "0.06M"))
    torch.testing.assert_close(got, expected[logits], atol=ATOL, rtol=0)
