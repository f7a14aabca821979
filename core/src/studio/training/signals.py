"""Ctrl+C and SIGTERM during a run.

* first Ctrl+C (SIGINT): finish the current step, write the checkpoint, run the test stage;
* second Ctrl+C: quit now (``KeyboardInterrupt``, exit code 130);
* SIGTERM: finish the current step, write the checkpoint, exit with code 143 (resume later).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any


class StopRequests:
    """Flags set by signal handlers and read by the training loop between steps."""

    def __init__(self) -> None:
        self.stop_training = False
        self.terminate = False
        self.interrupts = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_interrupt)
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_terminate)

    def uninstall(self) -> None:
        """Restore the previous handlers; after a first Ctrl+C, keep the promise that the next one
        quits (KeyboardInterrupt) even where SIGINT was ignored before, as it is for a process
        started in the background by a non-interactive shell."""
        for signum, handler in self._previous.items():
            if signum == signal.SIGINT and self.interrupts:
                handler = signal.default_int_handler
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopRequests:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.stop_training = True
            print(
                "\nInterrupted: finishing this step, saving a checkpoint, then rendering the test "
                "video. Press Ctrl+C again to quit now.",
                file=sys.stderr,
                flush=True,
            )
            return
        raise KeyboardInterrupt

    def _on_terminate(self, signum: int, frame: FrameType | None) -> None:
        self.terminate = True
        self.stop_training = True
