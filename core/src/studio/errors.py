"""User-facing error types.

Every error a user can cause derives from :class:`StudioError`; the CLI prints its message as one
paragraph (no traceback) and exits with :attr:`StudioError.exit_code`.
"""

from __future__ import annotations


def one_line(text: object, limit: int = 300) -> str:
    """``text`` (e.g. a library's exception) as one line for a message: whitespace runs and line
    breaks collapsed to single spaces, cut to ``limit`` characters with "..." when longer."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StudioError(Exception):
    """An error caused by input the user controls; its message says what to change."""

    exit_code = 2


class ConfigError(StudioError):
    """A configuration value is unknown, mistyped, missing or inconsistent."""


class PluginError(StudioError):
    """Plugins disagree (duplicate names) or a requested component is not registered."""


class RunDirError(StudioError):
    """A run directory is missing, incomplete or not a studio run."""


class ModelNotAvailableError(StudioError):
    """A pretrained model is neither a local folder nor cached, and cannot be downloaded now."""


class NotCapturable(Exception):
    """A training step cannot be captured as a CUDA graph; the message says why (one line the
    run log shows before the step falls back to eager). Not an error: nothing is wrong with the
    run, it only runs its steps one kernel launch at a time."""
