"""Entry point of one worker process started by :mod:`studio.training.launch`."""

from __future__ import annotations

import argparse
import sys

from studio.errors import StudioError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--stage", choices=["fit", "test", "export"], default="fit")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)

    from studio.rundir import open_existing
    from studio.runner import execute

    try:
        return execute(open_existing(args.run_dir), args.stage, args.resume, args.label)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
