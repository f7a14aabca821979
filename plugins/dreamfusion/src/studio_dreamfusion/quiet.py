"""Loading pretrained models without third-party noise: :func:`quiet_loading`.

Importing diffusers' pipelines and loading them print lines that are neither ours nor actionable
for a user of studio:

* transformers' notice that ``CLIPImageProcessor`` / ``SiglipImageProcessor`` fall back to their
  PIL backends because torchvision is not installed (diffusers' pipeline modules import them; we
  never use an image processor from there);
* bitsandbytes' ``Failed to load CPU gemm_4bit_forward from kernels-community`` at import, on
  CPUs with AVX512-BF16: diffusers imports bitsandbytes whenever it is installed (its quantizer
  module does, at pipeline import), not because we use it -- we load it only for
  ``load_in_8bit`` of the deep-floyd prompt processor -- and its 4-bit CPU kernel is never used;
* the loading bars of diffusers (``Loading pipeline components...``) and transformers
  (``Loading weights``, ``Writing model shards``), which flash by in well under a second for the
  models we load and break the lines of our own output.

:func:`quiet_loading` switches the two libraries' progress bars off through their own logging
modules and drops exactly those notices (a :class:`logging.Filter` on the logger that emits each,
matching the message), for the duration of a ``with`` block around the imports and
``from_pretrained`` calls; everything else those libraries log (a missing weight, a deprecation)
still shows. An explicit ``HF_HUB_DISABLE_PROGRESS_BARS=0`` keeps the bars.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

#: ``(logger name, text the message contains)`` of every notice :func:`quiet_loading` drops.
NOTICES: tuple[tuple[str, str], ...] = (
    ("transformers.utils.import_utils", "requires torchvision (not installed); falling back"),
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-"),
)


class _DropNotice(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def _bars_wanted() -> bool:
    """True when the user asked for the hub's progress bars (``HF_HUB_DISABLE_PROGRESS_BARS=0``)."""
    value = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    return value is not None and value.strip().lower() in ("0", "false", "no", "off")


@contextlib.contextmanager
def _progress_bars_off() -> Iterator[None]:
    """transformers' and diffusers' progress bars off; each restored as it was."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    switches = [
        (transformers_logging, transformers_logging.is_progress_bar_enabled()),
        (diffusers_logging, diffusers_logging.is_progress_bar_enabled()),
    ]
    for module, enabled in switches:
        if enabled:
            module.disable_progress_bar()
    try:
        yield
    finally:
        for module, enabled in switches:
            if enabled:
                module.enable_progress_bar()


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Within the block: no third-party loading bars and none of the :data:`NOTICES` (see the
    module doc). Wrap the imports of diffusers/transformers classes and their
    ``from_pretrained`` / ``save_pretrained`` calls."""
    filters = [(logging.getLogger(name), _DropNotice(text)) for name, text in NOTICES]
    for logger, notice in filters:
        logger.addFilter(notice)
    try:
        with contextlib.ExitStack() as stack:
            if not _bars_wanted():
                stack.enter_context(_progress_bars_off())
            yield
    finally:
        for logger, notice in filters:
            logger.removeFilter(notice)
