"""What the primitives models can be asked: :func:`check_prompt`, the ``prompt_check`` of the
``primitives-sd`` / ``primitives-if`` registrations.

The models were trained on captions ``"a {colour} {shape}"`` plus DreamFusion's view suffixes, in
a word-level vocabulary (:data:`~studio_primitives.models.vocabulary.WORDS`). A prompt must name
exactly one known shape and one known colour and use no other words; a negative prompt may only
use known words. Anything else would be spelled letter by letter by the tokenizer and followed by
nothing the model learned, so it is refused with the known shapes and colours.
"""

from __future__ import annotations

import re

from studio.api import ConfigError
from studio_primitives.colors import COLORS
from studio_primitives.models.vocabulary import WORDS
from studio_primitives.shapes import SHAPES

_WORD = re.compile(r"[a-z]+")


def unknown_words(text: str) -> list[str]:
    """Words of ``text`` (lower-cased) outside the models' vocabulary, in order, once each."""
    known = set(WORDS)
    return list(dict.fromkeys(w for w in _WORD.findall(text.lower()) if w not in known))


def named_shapes_and_colours(text: str) -> tuple[list[str], list[str]]:
    """The distinct known shapes and colours ``text`` names as whole words (case-insensitive),
    each list sorted."""
    words = _WORD.findall(text.lower())
    return sorted({w for w in words if w in SHAPES}), sorted({w for w in words if w in COLORS})


def vocabulary_sentence() -> str:
    """``"Known shapes: ... Known colours: ..."`` for messages."""
    return f"Known shapes: {', '.join(SHAPES)}. Known colours: {', '.join(COLORS)}."


def check_prompt(prompt: str, negative_prompt: str = "") -> None:
    """Raise :class:`ConfigError` unless ``prompt`` names one known shape and one known colour in
    known words only (``"a red cube"``, ``"the blue torus, side view"``) and ``negative_prompt``
    uses known words only (see the module doc)."""
    shapes, colors = named_shapes_and_colours(prompt)
    unknown = unknown_words(prompt)
    if unknown or len(shapes) != 1 or len(colors) != 1:
        problems = []
        if unknown:
            problems.append(f"unknown words {', '.join(repr(w) for w in unknown)}")
        if len(shapes) != 1:
            problems.append(f"{len(shapes)} shapes instead of one")
        if len(colors) != 1:
            problems.append(f"{len(colors)} colours instead of one")
        raise ConfigError(
            f"The prompt {prompt!r} has {'; '.join(problems)}: the primitives models know one "
            f"coloured shape per prompt, like 'a red cube'. {vocabulary_sentence()} Use a prompt like "
            'prompt="a blue torus", or a method with a full text-to-image model '
            "(dreamfusion-sd, dreamfusion-if)."
        )
    unknown = unknown_words(negative_prompt)
    if unknown:
        raise ConfigError(
            f"The negative prompt {negative_prompt!r} has unknown words "
            f"{', '.join(repr(w) for w in unknown)}; the primitives models know only the words of "
            f"their captions ({', '.join(WORDS)}). Leave it empty (the default)."
        )
