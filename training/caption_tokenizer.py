"""A tiny word-level, T5-style tokenizer for the shapes captions.

Ids follow T5's layout for its special tokens: ``<pad>`` = 0, ``</s>`` = 1,
``<unk>`` = 2, followed by the caption vocabulary. Text is lower-cased, split
on whitespace and punctuation, and every sequence gets ``</s>`` appended.

``save_tokenizer(folder)`` writes ``tokenizer.json`` plus the small config
files that let ``transformers.AutoTokenizer.from_pretrained(folder)`` load it,
also when the folder holds a T5 ``config.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

from training.shapes import vocabulary

logger = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
MODEL_MAX_LENGTH = 512


def token_vocabulary() -> dict[str, int]:
    """Token -> id: the special tokens first (0, 1, 2), then the caption words."""
    tokens = list(SPECIAL_TOKENS) + list(vocabulary())
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer() -> Tokenizer:
    """The word-level tokenizer as a ``tokenizers.Tokenizer``."""
    vocab = token_vocabulary()
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}",
        pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}",
        special_tokens=[(EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    # Joins tokens with single spaces (no caption word starts with the "##" prefix).
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def _tokenizer_config() -> dict:
    return {
        # Named explicitly so that a T5 config.json in the same folder does not
        # make AutoTokenizer pick T5Tokenizer, which would add sentinel tokens.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "right",
        "truncation_side": "right",
        "pad_token": PAD_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": UNK_TOKEN,
        "clean_up_tokenization_spaces": False,
    }


def _special_tokens_map() -> dict:
    return {"pad_token": PAD_TOKEN, "eos_token": EOS_TOKEN, "unk_token": UNK_TOKEN}


def save_tokenizer(folder: str | Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save(str(folder / "tokenizer.json"))
    for name, content in (
        ("tokenizer_config.json", _tokenizer_config()),
        ("special_tokens_map.json", _special_tokens_map()),
    ):
        (folder / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    logger.info("saved a %d-token word-level tokenizer to %s", len(token_vocabulary()), folder)
    return folder
