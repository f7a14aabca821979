"""One process per run directory: a lock file holding the PID of the process using the run.

``studio run``, ``resume``, ``test``, ``export`` and ``eval`` hold ``<run>/run.lock`` while they
work on a run (a pipeline's root for a pipeline). A second command on the same run is refused
with a message naming the first one's PID and command. A lock left by a process that no longer
exists (killed) is stale: it is taken over, and said so.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from studio.errors import RunDirError

LOCK_FILE = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_lock(root: Path) -> Optional[dict[str, Any]]:
    """The holder recorded in ``root``'s lock file (None when there is none or it is unreadable)."""
    try:
        return json.loads((root / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def holder(root: Path) -> Optional[dict[str, Any]]:
    """The live process holding ``root`` (None when unlocked or the lock is stale)."""
    info = read_lock(root)
    if not info:
        return None
    same_host = info.get("host") == socket.gethostname()
    if same_host and not _alive(int(info.get("pid", -1))):
        return None
    if int(info.get("pid", -1)) == os.getpid() and same_host:
        return None
    return info


def describe(info: dict[str, Any]) -> str:
    return f"process {info.get('pid')} on {info.get('host')} ({info.get('command', '?')})"


class RunLock:
    """``with RunLock(root):`` holds ``root/run.lock`` (``RunDirError`` if another process does)."""

    def __init__(self, root: Path, say: Any = None):
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self.say = say
        self.held = False

    def acquire(self) -> RunLock:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv[1:4]) or "studio",
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for _attempt in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                current = holder(self.root)
                if current is not None:
                    raise RunDirError(
                        f"{self.root} is in use by {describe(current)}. Wait for it to finish, "
                        "stop it, or start another run; two processes must not write one run."
                    ) from None
                stale = read_lock(self.root)
                self.path.unlink(missing_ok=True)
                if stale and self.say is not None:
                    self.say(f"Took over the stale lock of {describe(stale)} on {self.root}.")
                continue
            except OSError as exc:
                raise RunDirError(
                    f"Cannot write {self.path} ({exc.strerror or exc}). The run directory must "
                    "be writable; check its permissions or use another exp_root_dir."
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
            self.held = True
            return self
        raise RunDirError(f"Could not lock {self.root}; another process keeps taking it.")

    def release(self) -> None:
        if self.held:
            info = read_lock(self.root)
            if info and int(info.get("pid", -1)) == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
