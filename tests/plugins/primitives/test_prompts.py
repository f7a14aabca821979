"""What the primitives models accept as prompts (``studio_primitives.prompts.check_prompt``)."""

from __future__ import annotations

import pytest

from studio.errors import ConfigError
from studio_primitives.colors import COLORS
from studio_primitives.prompts import check_prompt, unknown_words
from studio_primitives.shapes import SHAPES


@pytest.mark.parametrize(
    "prompt", ["a red cube", "A Blue Torus", "the white sphere, side view", "black pyramid"]
)
def test_one_known_shape_and_colour_in_known_words_is_accepted(prompt: str) -> None:
    check_prompt(prompt, "")


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [
        ("a hamburger", "unknown words 'hamburger'"),
        ("a shiny red cube", "unknown words 'shiny'"),
        ("a red cube and a blue cube", "unknown words 'and'; 2 colours instead of one"),
        ("a red cube next to a sphere", "2 shapes instead of one"),
        ("a cube", "0 colours instead of one"),
        ("", "0 shapes instead of one"),
    ],
)
def test_other_prompts_are_refused_with_the_vocabulary(prompt: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_prompt(prompt, "")
    message = str(info.value)
    assert problem in message
    assert f"Known shapes: {', '.join(SHAPES)}." in message
    assert f"Known colours: {', '.join(COLORS)}." in message


def test_negative_prompt_may_only_use_known_words() -> None:
    check_prompt("a red cube", "a blue sphere")
    with pytest.raises(ConfigError, match="negative prompt 'blurry, ugly' has unknown words"):
        check_prompt("a red cube", "blurry, ugly")


def test_unknown_words_keeps_order_and_drops_repeats() -> None:
    assert unknown_words("Big big RED cube, tiny") == ["big", "tiny"]
