"""The T5 path against the official encode_prompt features (tiny T5 fixture)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from infinity_core.text import TextCondition
from infinity_core.text_encoder import MAX_TEXT_TOKENS, T5TextEncoder

from conftest import FIXTURES

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def encoder():
    config = transformers.T5Config(**json.loads((FIXTURES / "t5_tiny_config.json").read_text()))
    model = transformers.T5EncoderModel(config)
    model.load_state_dict(load_file(str(FIXTURES / "t5_tiny.safetensors")), strict=False)
    return T5TextEncoder(tokenizer=None, model=model.eval())


def test_features_match_official(encoder, manifest, fixture_tensors):
    text = fixture_tensors("text_encoder.safetensors")
    keys = sorted(manifest["text_encoder"]["prompts"])
    ids = [text[f"{key}_input_ids"].tolist() for key in keys]
    cond = encoder.encode_ids(ids)
    assert cond.lengths == tuple(manifest["text_encoder"]["prompts"][k]["lens"][0] for k in keys)
    for key, features in zip(keys, cond.split()):
        torch.testing.assert_close(features, text[f"{key}_kv_compact"], atol=1e-5, rtol=0)
        single = TextCondition.from_features([features])
        assert torch.equal(single.cu_seqlens, text[f"{key}_cu_seqlens_k"])


def test_padding_to_longest_equals_padding_to_512(encoder, fixture_tensors):
    """T5 masks padding, so padding to the longest prompt gives the rows upstream's 512-padding gives
    (to fp32 summation noise, well inside the 1e-5 the checking guide allows for text features)."""
    ids = fixture_tensors("text_encoder.safetensors")["p1_input_ids"]
    padded = torch.zeros(1, MAX_TEXT_TOKENS, dtype=torch.long)
    padded[0, :len(ids)] = ids
    mask = (torch.arange(MAX_TEXT_TOKENS) < len(ids)).long()[None]
    with torch.no_grad():
        full = encoder.model(input_ids=padded, attention_mask=mask).last_hidden_state[0, :len(ids)]
    torch.testing.assert_close(encoder.encode_ids([ids.tolist()]).features, full, atol=1e-5, rtol=0)
