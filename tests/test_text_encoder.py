"""The T5 path against the official encode_prompt features (tiny T5 fixture)."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from infinity_core.text import TextCondition
from infinity_core.text_encoder import MAX_TEXT_TOKENS, T5TextEncoder, load_text_encoder

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


DEMO_T5 = Path(__file__).resolve().parents[1] / "models" / "text_encoders" / "t5_demo_shapes"


@pytest.fixture(scope="module")
def demo_encoder():
    return load_text_encoder(DEMO_T5, "cpu")


def _demo_vocabulary() -> set[str]:
    return set(json.loads((DEMO_T5 / "tokenizer.json").read_text())["model"]["vocab"])


def test_unknown_words_are_named_and_logged(demo_encoder, caplog):
    """The demo tokenizer is word-level over its 27-entry vocabulary (tokenizer.json): every other word
    and punctuation mark becomes <unk>; each is named once, and encode logs it without failing."""
    vocabulary = _demo_vocabulary()
    prompt = "a purple giraffe, on the LEFT at a zebra giraffe!"
    unknown = ["giraffe", ",", "zebra", "!"]
    assert not set(unknown) & vocabulary and {"a", "purple", "on", "the", "left", "at"} <= vocabulary
    [warning] = demo_encoder.prompt_warnings(prompt)
    named = warning.split("does not know ")[1].split(":")[0]
    assert named == ", ".join(f"'{word}'" for word in unknown)
    assert demo_encoder.prompt_warnings("a red circle on the left") == []
    with caplog.at_level("WARNING", logger="infinity_core.text_encoder"):
        cond = demo_encoder.encode(prompt)
    assert "'zebra'" in caplog.text and cond.lengths == (len(demo_encoder.tokenize([prompt])[0]),)


def test_prompt_past_the_token_limit_is_reported_where_it_is_cut(demo_encoder):
    words = [f"{colour} circle" for colour in ("red", "blue", "green")] * 100    # 600 known words, one token each
    prompt = " ".join(words)
    [warning] = demo_encoder.prompt_warnings(prompt)
    assert f"is {600 + 1} tokens long and only the first {MAX_TEXT_TOKENS} are used" in warning
    ignored_from = prompt.split()[MAX_TEXT_TOKENS - 1:][:5]       # 511 words fit beside </s>
    assert f"the text from '{' '.join(ignored_from)}' on is ignored" in warning
    assert len(demo_encoder.tokenize([prompt])[0]) == MAX_TEXT_TOKENS
    assert demo_encoder.prompt_warnings(" ".join(prompt.split()[:MAX_TEXT_TOKENS - 1])) == []
