"""Word-level tokenizers for closed-vocabulary priors (the bundled prior, tests).

Stable Diffusion ships a CLIP BPE tokenizer; a prior trained on a procedural
world only ever sees a few dozen words, so it uses one token per word. The
tokenizer is a ``transformers.PreTrainedTokenizerFast`` saved with
``save_pretrained`` and loaded with ``AutoTokenizer.from_pretrained`` -- the
same call that loads Stable Diffusion's -- and maps any unknown word to
``UNKNOWN_TOKEN`` so :func:`unknown_words` can name it.
"""

from __future__ import annotations

import re
from typing import Iterable, List

PAD_TOKEN, UNKNOWN_TOKEN, START_TOKEN, END_TOKEN = "<pad>", "<unk>", "<start>", "<end>"
SPECIAL_TOKENS = (PAD_TOKEN, UNKNOWN_TOKEN, START_TOKEN, END_TOKEN)
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def split_words(text: str) -> List[str]:
    """Lower-cased words and single punctuation marks: ``"A red cone, front view"`` ->
    ``["a", "red", "cone", ",", "front", "view"]``."""
    return _WORD.findall(text.lower())


def word_tokenizer(words: Iterable[str], max_length: int = 32):
    """A fast word-level tokenizer over ``words`` (+ special tokens), padding to ``max_length``.

    Ids: 0 pad, 1 unknown, 2 start, 3 end, then the words in sorted order.
    """
    from tokenizers import pre_tokenizers

    words = sorted(set(words) - set(SPECIAL_TOKENS))
    splitter = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                        pre_tokenizers.Punctuation()])
    return _fast_tokenizer(words, splitter, max_length)


def _fast_tokenizer(tokens: List[str], pre_tokenizer, max_length: int):
    """A lower-casing WordLevel tokenizer: ids 0-3 special, then ``tokens`` in order."""
    from tokenizers import Tokenizer, normalizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocabulary = list(SPECIAL_TOKENS) + list(tokens)
    tokenizer = Tokenizer(WordLevel({token: i for i, token in enumerate(vocabulary)},
                                    unk_token=UNKNOWN_TOKEN))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{START_TOKEN} $A {END_TOKEN}",
        special_tokens=[(START_TOKEN, 2), (END_TOKEN, 3)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=max_length, pad_token=PAD_TOKEN,
        unk_token=UNKNOWN_TOKEN, bos_token=START_TOKEN, eos_token=END_TOKEN)


def unknown_words(tokenizer, text: str) -> List[str]:
    """Words of ``text`` that ``tokenizer`` maps to its unknown token (none for BPE tokenizers)."""
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    if normalizer is not None:  # e.g. the bundled prior's synonyms ("grey-blue" -> "slate")
        text = normalizer.normalize_str(text)
    words = [w for w in split_words(text) if w.strip()]
    return [w for w in words
            if unk_id in tokenizer(w, add_special_tokens=False)["input_ids"]]


def character_tokenizer(max_length: int = 77):
    """A fast tokenizer with one token per printable ASCII character: any English
    prompt tokenizes without unknown words.  Random-weight priors use it in place of
    CLIP's BPE tokenizer, whose vocabulary files cannot be downloaded here."""
    from tokenizers import Regex, pre_tokenizers

    characters = [chr(code) for code in range(32, 127)]
    return _fast_tokenizer(characters, pre_tokenizers.Split(Regex("."), behavior="isolated"),
                           max_length)
