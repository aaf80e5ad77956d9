"""Tests for the tiny word-level T5-style tokenizer (training/caption_tokenizer.py)."""

import json

import pytest

from training import shapes
from training.caption_tokenizer import build_tokenizer, save_tokenizer

transformers = pytest.importorskip("transformers")

CAPTION = "a red circle at the top left on a blue background"


def test_special_token_ids_and_vocabulary():
    tokenizer = build_tokenizer()
    assert tokenizer.token_to_id("<pad>") == 0
    assert tokenizer.token_to_id("</s>") == 1
    assert tokenizer.token_to_id("<unk>") == 2
    assert tokenizer.get_vocab_size() == 3 + len(shapes.vocabulary())
    ids = {tokenizer.token_to_id(word) for word in shapes.vocabulary()}
    assert ids == set(range(3, 3 + len(shapes.vocabulary())))


def test_encoding_is_word_level_lowercased_and_ends_with_eos():
    tokenizer = build_tokenizer()
    encoding = tokenizer.encode("A RED Circle, at the top left!")
    assert encoding.tokens == ["a", "red", "circle", "<unk>", "at", "the", "top", "left", "<unk>", "</s>"]
    assert encoding.ids[-1] == 1
    assert tokenizer.decode(encoding.ids) == "a red circle at the top left"


def test_every_caption_word_is_known():
    tokenizer = build_tokenizer()
    for spec in shapes.heldout_specs(50):
        ids = tokenizer.encode(shapes.caption(spec)).ids
        assert 2 not in ids
        assert len(ids) == len(shapes.caption(spec).split()) + 1


@pytest.fixture
def saved_folder(tmp_path):
    folder = tmp_path / "text_encoder"
    save_tokenizer(folder)
    transformers.T5Config(
        vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2
    ).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "t5"
    return folder


def test_auto_tokenizer_pads_like_t5(saved_folder):
    tokenizer = transformers.AutoTokenizer.from_pretrained(saved_folder, legacy=True)
    batch = tokenizer(
        [CAPTION, "an orange square"],
        max_length=512,
        padding="max_length",
        truncation=True,
        return_tensors="pt",
    )
    ids = batch["input_ids"]
    mask = batch["attention_mask"]
    assert tuple(ids.shape) == (2, 512) and tuple(mask.shape) == (2, 512)

    words = CAPTION.split()
    expected = [build_tokenizer().token_to_id(word) for word in words] + [1]
    assert ids[0, : len(expected)].tolist() == expected
    assert ids[0, len(expected) :].eq(0).all()
    assert mask[0].tolist() == [1] * len(expected) + [0] * (512 - len(expected))

    assert ids[1, :4].tolist() == [build_tokenizer().token_to_id(w) for w in ("an", "orange", "square")] + [1]
    assert int(mask[1].sum()) == 4
    assert tokenizer.decode(ids[0], skip_special_tokens=True) == CAPTION


def test_auto_tokenizer_truncates_to_max_length(saved_folder):
    tokenizer = transformers.AutoTokenizer.from_pretrained(saved_folder, legacy=True)
    long_text = " ".join(["red"] * 20)
    batch = tokenizer([long_text], max_length=8, padding="max_length", truncation=True)
    assert len(batch["input_ids"][0]) == 8
    assert batch["input_ids"][0][-1] == 1
    assert batch["attention_mask"][0] == [1] * 8


def test_auto_tokenizer_special_tokens(saved_folder):
    tokenizer = transformers.AutoTokenizer.from_pretrained(saved_folder, legacy=True)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer) == 3 + len(shapes.vocabulary())
