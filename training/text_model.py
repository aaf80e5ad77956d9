"""The demo's text encoder: a tiny T5EncoderModel over the word-level caption tokenizer.

It stands in for flan-t5-xl and is saved the way a Hugging Face T5 folder is (config.json,
model.safetensors, tokenizer.json + tokenizer_config.json), so `infinity_core.text_encoder.
load_text_encoder` reads it through exactly the path the published models use. It is trained jointly
with the transformer (gradients flow from the bit loss into the T5 weights); features are the
encoder's `last_hidden_state` at the valid positions, as `T5TextEncoder.encode_ids` returns them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .caption_tokenizer import EOS_TOKEN, PAD_TOKEN, build_tokenizer, save_tokenizer, token_vocabulary


@dataclass(frozen=True)
class TextModelConfig:
    d_model: int = 64          # = the transformer's text_channels
    num_layers: int = 2
    num_heads: int = 4
    d_kv: int = 16
    d_ff: int = 128
    relative_attention_num_buckets: int = 8
    relative_attention_max_distance: int = 32


def build_text_model(config: TextModelConfig):
    """A randomly initialised T5 encoder (transformers' own T5 init) over the caption vocabulary."""
    from transformers import T5Config, T5EncoderModel

    vocab = token_vocabulary()
    t5_config = T5Config(vocab_size=len(vocab), d_model=config.d_model, d_kv=config.d_kv, d_ff=config.d_ff,
                         num_layers=config.num_layers, num_heads=config.num_heads,
                         relative_attention_num_buckets=config.relative_attention_num_buckets,
                         relative_attention_max_distance=config.relative_attention_max_distance,
                         dropout_rate=0.0, feed_forward_proj="relu", is_encoder_decoder=False,
                         pad_token_id=vocab[PAD_TOKEN], eos_token_id=vocab[EOS_TOKEN], decoder_start_token_id=vocab[PAD_TOKEN])
    return T5EncoderModel(t5_config)


class CaptionTokenizer:
    """Captions -> token ids (ending with </s>), the ids `AutoTokenizer` gives for the saved tokenizer.json."""

    def __init__(self):
        self._tokenizer = build_tokenizer()

    def __call__(self, captions: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(list(captions))]


def caption_features(model, ids: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Differentiable T5 features, one [len_i, d_model] tensor per caption (padding masked out, then cut)."""
    lengths = [len(row) for row in ids]
    longest = max(lengths)
    input_ids = torch.zeros(len(ids), longest, dtype=torch.long)           # [B, Lt], pad id 0
    attention_mask = torch.zeros(len(ids), longest, dtype=torch.long)      # [B, Lt]
    for row, tokens in enumerate(ids):
        input_ids[row, :len(tokens)] = torch.tensor(tokens)
        attention_mask[row, :len(tokens)] = 1
    hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state   # [B, Lt, d_model]
    return [hidden[row, :n] for row, n in enumerate(lengths)]


def save_text_encoder(model, folder: str | Path) -> Path:
    """Write the T5 weights (safetensors) and config, plus the tokenizer files, into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    save_tokenizer(folder)
    return folder
