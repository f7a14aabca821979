"""Start one worker process per device (torchrun-style) and supervise them.

The launcher puts the workers in their own process group and forwards SIGINT/SIGTERM to them, so
one Ctrl+C reaches each worker exactly once. If a worker dies with an error, the others are sent
SIGTERM, then SIGKILL after a grace period (a rank stuck in a collective cannot react), and the
launcher exits with the failing worker's code: no hang.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

GRACE_SECONDS = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_command(run_root: Path, stage: str, resume: bool, label: str = "") -> list[str]:
    cmd = [sys.executable, "-m", "studio.worker", str(run_root), "--stage", stage]
    if resume:
        cmd.append("--resume")
    if label:
        cmd += ["--label", label]
    return cmd


def launch(
    run_root: Path,
    stage: str,
    resume: bool,
    nproc: int,
    gpus: list[str] | None = None,
    label: str = "",
) -> int:
    """Run ``nproc`` workers on ``run_root``; return the exit code the CLI should use."""
    port = free_port()
    procs: list[subprocess.Popen] = []
    for rank in range(nproc):
        env = dict(os.environ)
        env.update(
            RANK=str(rank),
            WORLD_SIZE=str(nproc),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(nproc),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        if gpus is not None:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        else:
            env["STUDIO_FORCE_CPU"] = "1"
        procs.append(
            subprocess.Popen(
                worker_command(run_root, stage, resume, label), env=env, start_new_session=True
            )
        )

    def forward(signum: int, _frame) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _supervise(procs)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _supervise(procs: list[subprocess.Popen]) -> int:
    failed_code: int | None = None
    deadline: float | None = None
    while True:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            break
        bad = [c for c in codes if c not in (None, 0)]
        if bad and failed_code is None:
            failed_code = bad[0]
            deadline = time.monotonic() + GRACE_SECONDS
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        if deadline is not None and time.monotonic() > deadline:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        time.sleep(0.1)
    codes = [p.returncode for p in procs]
    if failed_code is not None:
        return _exit_code(failed_code)
    return _exit_code(max(codes, key=abs))


def _exit_code(code: int) -> int:
    return 128 - code if code < 0 else code
