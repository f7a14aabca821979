"""What the primitives models can be asked: :func:`check_prompt`, the ``prompt_check`` of the
``primitives-sd`` / ``primitives-if`` registrations.

The models were trained on captions ``"a {colour} {shape}"`` plus DreamFusion's view suffixes, in
a word-level vocabulary (:data:`~studio_primitives.models.vocabulary.WORDS`). A prompt is accepted
in the forms a person types for that vocabulary: an optional article (a, an, the), one known colour
and one known shape, in any case, with surrounding whitespace and a trailing period (``"an orange
sphere"``, ``"A Red Cube."``, ``"black pyramid"``); :func:`check_prompt` returns the canonical
caption (``"a orange sphere"``, ``"a red cube"``), which is what reaches the text encoder (the
DreamFusion prompt processors encode what an embedded model's ``prompt_check`` returns). A
negative prompt may only use known words. Anything else would be spelled letter by letter by the
tokenizer (the IF form's tokenizer does not even fold case) and followed by nothing the model
learned, so it is refused with the known shapes and colours.
"""

from __future__ import annotations

import re

from studio.api import ConfigError
from studio_primitives.colors import COLORS
from studio_primitives.models.vocabulary import WORDS
from studio_primitives.shapes import SHAPES

_WORD = re.compile(r"[a-z]+")

#: Articles a prompt may start with; the captions always say "a".
ARTICLES = ("a", "an", "the")


def unknown_words(text: str) -> list[str]:
    """Words of ``text`` (lower-cased) outside the models' vocabulary, in order, once each."""
    known = set(WORDS)
    return list(dict.fromkeys(w for w in _WORD.findall(text.lower()) if w not in known))


def named_shapes_and_colours(text: str) -> tuple[list[str], list[str]]:
    """The distinct known shapes and colours ``text`` names as whole words (case-insensitive),
    each list sorted."""
    words = _WORD.findall(text.lower())
    return sorted({w for w in words if w in SHAPES}), sorted({w for w in words if w in COLORS})


def canonical_caption(shape: str, color: str) -> str:
    """The caption the models were trained on for a shape and colour (before view suffixes)."""
    return f"a {color} {shape}"


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    """``(shape, colour)`` of a prompt in a natural form for the vocabulary (see the module doc:
    ``[a|an|the] <colour> <shape>[.]``, any case and whitespace); None for anything else."""
    text = prompt.strip()
    text = text[:-1] if text.endswith(".") else text
    words = text.lower().split()
    if words and words[0] in ARTICLES:
        words = words[1:]
    if len(words) == 2 and words[0] in COLORS and words[1] in SHAPES:
        return words[1], words[0]
    return None


def vocabulary_sentence() -> str:
    """``"Known shapes: ... Known colours: ..."`` for messages."""
    return f"Known shapes: {', '.join(SHAPES)}. Known colours: {', '.join(COLORS)}."


def check_prompt(prompt: str, negative_prompt: str = "") -> str:
    """The canonical caption of ``prompt`` (:func:`canonical_caption`: ``"a red cube"`` for
    ``"A Red Cube."``); raises :class:`ConfigError` unless ``prompt`` is one known colour and one
    known shape in a natural form and ``negative_prompt`` uses known words only (see the module
    doc)."""
    parsed = parse_prompt(prompt)
    if parsed is None:
        shapes, colors = named_shapes_and_colours(prompt)
        unknown = [w for w in unknown_words(prompt) if w not in ARTICLES]
        problems = []
        if unknown:
            problems.append(f"unknown words {', '.join(repr(w) for w in unknown)}")
        if len(shapes) != 1:
            problems.append(f"{len(shapes)} shapes instead of one")
        if len(colors) != 1:
            problems.append(f"{len(colors)} colours instead of one")
        if not problems:
            problems.append(
                "words outside the form '[a|an|the] <colour> <shape>' (the prompt processor adds "
                "the view words itself)"
            )
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
    return canonical_caption(*parsed)
