from __future__ import annotations

import pytest

from studio.errors import ConfigError
from studio.prompt_library import library, lookup


def test_library_is_shipped():
    assert len(library()) == 415


def test_unique_match():
    assert lookup("lib:delicious_hamburger") == "a delicious hamburger"
    assert lookup("lib:GHOST_hamburger") == "a DSLR photo of a ghost eating a hamburger"


def test_no_match_lists_keywords():
    with pytest.raises(ConfigError, match=r"no prompt .* \['zzzqqq'\]"):
        lookup("lib:zzzqqq", "system.prompt_processor.prompt")


def test_several_matches_list_candidates():
    with pytest.raises(ConfigError) as info:
        lookup("lib:a", "system.prompt_processor.prompt")
    message = str(info.value)
    assert message.startswith("system.prompt_processor.prompt: 'lib:a' matches")
    assert "Add keywords" in message
