"""Primitives R-precision: the ``primitives-r-precision`` evaluator of ``studio eval RUN_DIR``.

The run's prompt (``system.prompt_processor.prompt``) must name exactly one known shape and one
known colour (``"a red cube"``); every test frame is classified by the shipped
:mod:`~studio_primitives.classifier`, and R-precision is the fraction of frames whose predicted
``(shape, colour)`` equals the prompt's. Shape and colour accuracies are reported alongside.
A prompt outside the vocabulary gives ``{"applicable": False, "reason": ...}`` naming the known
shapes and colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from studio_primitives.prompts import named_shapes_and_colours, vocabulary_sentence


def prompt_target(prompt: Optional[str]) -> tuple[Optional[tuple[str, str]], str]:
    """``((shape, colour), "")`` when ``prompt`` names exactly one known shape and one known
    colour as whole words (case-insensitive); else ``(None, reason)``."""
    shapes, colors = named_shapes_and_colours(prompt or "")
    if len(shapes) == 1 and len(colors) == 1:
        return (shapes[0], colors[0]), ""
    found = f"found shapes {shapes or 'none'} and colours {colors or 'none'}"
    return None, (
        f"The prompt {prompt!r} does not name exactly one primitive shape and one colour "
        f"({found}); primitives R-precision needs a prompt like 'a red cube'. "
        f"{vocabulary_sentence()}"
    )


def r_precision(
    frames: Sequence[np.ndarray], shape: str, color: str, model: Any = None
) -> dict[str, Any]:
    """Metrics of ``frames`` (``[H, W, 3]`` uint8 or float in ``[0, 1]``) against the target."""
    from studio_primitives.classifier import predict

    if not frames:
        return {"applicable": False, "reason": "The run has no test frames to classify."}
    predictions = predict(np.stack([np.asarray(f) for f in frames]), model)
    n = len(predictions)
    return {
        "applicable": True,
        "shape": shape,
        "color": color,
        "frames": n,
        "r_precision": sum(p == (shape, color) for p in predictions) / n,
        "shape_accuracy": sum(p[0] == shape for p in predictions) / n,
        "color_accuracy": sum(p[1] == color for p in predictions) / n,
    }


def evaluate(context: Any) -> dict[str, Any]:
    """The evaluator registered as ``primitives-r-precision`` (context: ``studio.eval.EvalContext``)."""
    target, reason = prompt_target(context.prompt)
    if target is None:
        return {"applicable": False, "reason": reason}
    return r_precision(context.frames, *target)
