"""The text encoder: flan-t5-xl's encoder (or any T5 encoder) from a local folder, via transformers.

Port of FoundationVision/Infinity `tools/run_infinity.py:load_tokenizer` / `encode_prompt`: tokenizer
loaded with `legacy=True`, at most 512 tokens, T5 appends `</s>`; the features are `last_hidden_state`
in fp32 at the valid positions. Prompts are padded to the longest prompt of the call rather than to
512: T5 masks padding out of every attention, so the valid rows come out the same (a test checks it)
and a short prompt costs a few tokens of compute instead of 512. transformers is imported only here,
when a text encoder is actually loaded.
"""
from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Sequence

import torch

from .errors import InfinityError
from .weight_formats.pickle_checkpoint import PICKLE_SUFFIXES, code_globals
from .text import TextCondition
from .user_text import quoted

log = logging.getLogger(__name__)

MAX_TEXT_TOKENS = 512   # tokenizer.model_max_length in run_infinity.py:152
SMALL_VOCABULARY = 100  # a vocabulary this small is listed in the unknown-word warning (the demo's has 27 words)
QUOTED_WORD = 30        # characters of an unknown word quoted in the warning


class T5TextEncoder:
    """Tokenizer + T5 encoder; `encode(prompts)` gives a `TextCondition`."""

    def __init__(self, tokenizer, model, max_length: int = MAX_TEXT_TOKENS):
        self.tokenizer = tokenizer
        self.model = model
        self.max_length = max_length

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def channels(self) -> int:
        return self.model.config.d_model

    def to(self, device: torch.device | str) -> "T5TextEncoder":
        self.model.to(device)
        return self

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids per prompt, `</s>` included, truncated to `max_length`."""
        batch = self.tokenizer(list(prompts), max_length=self.max_length, truncation=True)
        return [list(ids) for ids in batch["input_ids"]]

    def encode_ids(self, ids: Sequence[Sequence[int]]) -> TextCondition:
        """Features of already tokenized prompts (each a list of ids ending with `</s>`)."""
        lengths = [len(row) for row in ids]
        if not lengths or min(lengths) == 0:
            raise InfinityError("every prompt must have at least one token")
        longest = max(lengths)
        input_ids = torch.zeros(len(ids), longest, dtype=torch.long)      # pad id 0
        attention_mask = torch.zeros(len(ids), longest, dtype=torch.long)
        for row, tokens in enumerate(ids):
            input_ids[row, :len(tokens)] = torch.tensor(tokens)
            attention_mask[row, :len(tokens)] = 1
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids.to(self.device),
                                attention_mask=attention_mask.to(self.device)).last_hidden_state.float()
        return TextCondition.from_features([hidden[row, :n].cpu() for row, n in enumerate(lengths)])

    def prompt_warnings(self, prompt: str) -> list[str]:
        """What encoding `prompt` silently loses: words with pieces the tokenizer does not know (they become
        `<unk>`), and the text past `max_length` tokens (cut). Empty when nothing is lost."""
        words = prompt.split()
        if not words:
            return []
        fast = getattr(self.tokenizer, "is_fast", False)     # fast tokenizers say which characters each id covers
        batch = self.tokenizer(words, add_special_tokens=False, return_offsets_mapping=fast)
        pieces = batch["input_ids"]                          # one list of ids per word
        spans = batch["offset_mapping"] if fast else [[(0, len(word))] * len(ids) for word, ids in zip(words, pieces)]
        unk = self.tokenizer.unk_token_id
        unknown = list(dict.fromkeys(word[start:end] or word for word, ids, word_spans in zip(words, pieces, spans)
                                     for token, (start, end) in zip(ids, word_spans) if token == unk))
        warnings = []
        if unknown:
            shown = ", ".join(quoted(word, QUOTED_WORD) for word in unknown[:10]) + (f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else "")
            warnings.append(f"the text encoder does not know {shown}: {'they are' if len(unknown) > 1 else 'it is'} "
                            f"ignored{self._vocabulary_hint()}")
        room = self.max_length - 1                                              # one place is `</s>`'s
        counts = [len(ids) for ids in pieces]
        if sum(counts) > room:
            first_cut = next(i for i, total in enumerate(itertools.accumulate(counts)) if total > room)
            warnings.append(f"the prompt is {sum(counts) + 1} tokens long and only the first {self.max_length} are "
                            f"used: the text from {quoted(' '.join(words[first_cut:first_cut + 5]))} on is ignored")
        return warnings

    def _vocabulary_hint(self) -> str:
        vocabulary = [token for token in self.tokenizer.get_vocab() if token not in self.tokenizer.all_special_tokens]
        if len(vocabulary) > SMALL_VOCABULARY:
            return ""
        return f" (it knows only: {', '.join(sorted(vocabulary))})"

    def encode(self, prompts: str | Sequence[str]) -> TextCondition:
        """Encode one prompt or a list of prompts (an empty prompt still yields `</s>`); what `prompt_warnings`
        finds is logged as a warning."""
        prompts = checked_prompts(prompts)
        for prompt in prompts:
            for warning in self.prompt_warnings(prompt):
                log.warning("prompt %s: %s", quoted(prompt), warning)
        return self.encode_ids(self.tokenize(prompts))


def checked_prompts(prompts) -> list[str]:
    """One prompt or a non-empty list of them, as a list of strings; anything else refused naming it."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, (list, tuple)):
        raise InfinityError(f"prompt: expected a string or a list of strings, got {type(prompts).__name__}")
    if not prompts:
        raise InfinityError("prompt: the list of prompts is empty; give at least one prompt (an empty string "
                            "'' is a valid prompt)")
    for position, prompt in enumerate(prompts, start=1):
        if not isinstance(prompt, str):
            raise InfinityError(f"prompt {position}: expected a string, got {type(prompt).__name__} {quoted(prompt)}")
    return list(prompts)


def check_text_encoder_folder(folder: str | os.PathLike) -> Path:
    """Refuse, naming it, a text encoder folder that cannot be loaded, from the files alone (no transformers
    import, nothing unpickled): not a folder, no config.json, or weights that are only pickles holding more
    than tensors (transformers would refuse them after minutes, suggesting to run their code)."""
    folder = Path(folder)
    hint = "it must be a local copy of google/flan-t5-xl (config.json, model weights, tokenizer files)"
    if folder.is_file():
        raise InfinityError(f"text encoder folder '{folder}' is a file, not a folder; {hint}")
    if not folder.is_dir():
        raise InfinityError(f"text encoder folder '{folder}' does not exist; {hint}")
    if not (folder / "config.json").is_file():
        raise InfinityError(f"text encoder folder '{folder}' has no config.json; expected a Hugging Face T5 folder "
                            "such as google/flan-t5-xl")
    if any(folder.glob("*.safetensors")):
        return folder
    for weights in sorted(p for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file()):
        code = code_globals(weights)
        if code:
            raise InfinityError(f"text encoder folder '{folder}': its weights '{weights.name}' hold objects other "
                                f"than tensors ({', '.join(code[:3])}), which are not loaded because unpickling "
                                "them could run code; use a folder with model.safetensors")
    return folder


def default_text_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA as upstream (run_infinity.py:153; transformers keeps T5's `wo` layers in fp32), else fp32."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def load_text_encoder(folder: str | os.PathLike, device=None, dtype: torch.dtype | None = None) -> T5TextEncoder:
    """A T5 encoder and its tokenizer from a local folder (config.json, weights, tokenizer files); no download."""
    folder = check_text_encoder_folder(folder)
    try:
        import transformers   # heavy import, only when a text encoder is used
    except ImportError as err:
        raise InfinityError(f"loading the text encoder needs the 'transformers' package, which cannot be "
                            f"imported ({err}); install it with `pip install transformers`") from None

    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype if dtype is not None else default_text_dtype(device)
    # transformers renamed `torch_dtype` to `dtype` in 4.56; ComfyUI installs may have either.
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    dtype_kwarg = {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), legacy=True, local_files_only=True)
        model = transformers.T5EncoderModel.from_pretrained(str(folder), local_files_only=True, **dtype_kwarg)
    except Exception as err:   # noqa: BLE001 -- transformers and torch raise many types on bad folders
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        if "weights_only" in str(err):   # torch's advice to unpickle untrusted code is never passed on
            detail = "its weights hold objects other than tensors, which are not loaded"
        raise InfinityError(f"text encoder folder '{folder}' could not be loaded as a T5 encoder with its "
                            f"tokenizer: {detail}") from None
    model.to(device).eval().requires_grad_(False)
    log.info("loaded text encoder '%s' (d_model %d) on %s in %s", folder, model.config.d_model, device, dtype)
    return T5TextEncoder(tokenizer, model)
