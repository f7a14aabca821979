"""The word-level vocabulary of the primitives captions and tokenizers built from it.

Every caption of :mod:`studio_primitives.data` (``"a red cube, front view"``) and every prompt the
DreamFusion prompt processor derives from one (view suffixes, the empty negative prompt) consists of
:data:`WORDS` and ``","``. Both tokenizers map each of those words to exactly one token and pad to
:data:`MAX_LENGTH` (77, what the prompt processors ask for):

* :func:`build_clip_tokenizer` -- a ``CLIPTokenizer`` (byte-level BPE files ``vocab.json`` and
  ``merges.txt``) whose merges assemble each word, letter by letter, into one token. Single letters
  are in the vocabulary too, so an unknown word becomes letters instead of failing.
* :func:`build_t5_tokenizer` -- a ``T5TokenizerFast`` over a ``tokenizers`` Unigram model
  (sentencepiece-style ``"\\u2581word"`` pieces) that appends ``</s>`` like T5.
"""

from __future__ import annotations

import itertools
import json
import string
import tempfile
from pathlib import Path
from typing import Any

from studio_primitives.colors import COLORS
from studio_primitives.shapes import SHAPES

#: Sequence length of both tokenizers (the prompt processors pad every prompt to it).
MAX_LENGTH = 77

#: Words of the view suffixes and articles the prompt processors may add.
VIEW_WORDS = ("a", "the", "of", "view", "side", "front", "back", "backside", "overhead")

#: Every word of the captions, in a fixed order (views, shapes, colours).
WORDS: tuple[str, ...] = (*VIEW_WORDS, *SHAPES, *COLORS)

#: Punctuation the captions use; one token of its own.
PUNCTUATION = (",",)

_SPACE = "\u2581"  # sentencepiece's word-start marker


def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """``(vocab, merges)`` of the CLIP tokenizer: specials, ``","``, letters, then every word.

    A CLIP BPE token ends a word with ``"</w>"``; the merges for ``"red"`` are
    ``"r e"`` then ``"re d</w>"``, so ``"red"`` becomes the single token ``"red</w>"``.
    """
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", ",", ",</w>"]:
        vocab[token] = len(vocab)
    for letter in string.ascii_lowercase:
        vocab[letter] = len(vocab)
        vocab[letter + "</w>"] = len(vocab)
    merges: list[str] = []
    for word in WORDS:
        # what the merges so far make of the word ("backside" -> "back", "side</w>"), then
        # merges that join those pieces left to right into one token
        pieces = apply_merges([*word[:-1], word[-1] + "</w>"], merges)
        current = pieces[0]
        for piece in pieces[1:]:
            merges.append(f"{current} {piece}")
            current += piece
            vocab.setdefault(current, len(vocab))
    return vocab, merges


def apply_merges(pieces: list[str], merges: list[str]) -> list[str]:
    """BPE: repeatedly merge the adjacent pair of lowest rank in ``merges`` (as CLIP does)."""
    ranks = {tuple(rule.split(" ")): rank for rank, rule in enumerate(merges)}
    pieces = list(pieces)
    while len(pieces) > 1:
        pairs = [
            (ranks.get(pair, len(ranks)), i) for i, pair in enumerate(itertools.pairwise(pieces))
        ]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def build_clip_tokenizer() -> Any:
    """A word-level ``CLIPTokenizer`` (``model_max_length`` :data:`MAX_LENGTH`)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (folder / "merges.txt").write_text(
            "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
        )
        return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_LENGTH)


def t5_pieces() -> list[tuple[str, float]]:
    """The Unigram pieces ``(piece, log-probability)``: specials, words, ``","``, letters.

    Whole words score higher than any split into letters, so each word is one piece.
    """
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), (_SPACE, -2.0)]
    pieces += [(p, -3.0) for p in PUNCTUATION]
    pieces += [(_SPACE + word, -1.0) for word in WORDS]
    pieces += [(letter, -5.0) for letter in string.ascii_lowercase]
    return pieces


def build_t5_tokenizer() -> Any:
    """A word-level ``T5TokenizerFast`` (``</s>`` appended, ``model_max_length`` 77)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    backend = Tokenizer(models.Unigram(t5_pieces(), unk_id=2))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",  # noqa: S106 (a token name, not a password)
        unk_token="<unk>",  # noqa: S106
        pad_token="<pad>",  # noqa: S106
        extra_ids=0,
        model_max_length=MAX_LENGTH,
    )
