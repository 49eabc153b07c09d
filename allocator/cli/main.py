"""The ``mixbit`` command line. Each subcommand lives in ``allocator/cli/commands/<name>.py`` with
``register(subparsers)``; its handler returns the JSON-able result object and prints text itself when not --json.

Errors in user input end with exit status 2 and one line ``error: <what and where>`` on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from allocator.serialize import json_default

__all__ = ["build_parser", "emit_json", "main"]

COMMANDS = ("targets", "simulate", "allocate", "verify", "sweep", "train")


def _user_errors() -> tuple[type[BaseException], ...]:
    from sim.errors import InputError as SimInputError

    errors: tuple[type[BaseException], ...] = (SimInputError, FileNotFoundError, IsADirectoryError, PermissionError)
    # quant's error can only have been raised if quant was imported; importing it here would pull in torch (~2 s)
    if "quant.errors" in sys.modules:
        errors += (sys.modules["quant.errors"].InputError,)
    return errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixbit",
        description="What a quantized ViT costs on an FPGA or accelerator, and per-layer bits that fit its budget.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"allocator.cli.commands.{name}")
        module.register(sub)
    return parser


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (the --json contract: nothing else goes to stdout)."""
    json.dump(obj, sys.stdout, indent=None, default=json_default, allow_nan=False)
    sys.stdout.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # argparse's own usage errors already exit with status 2 and a one-line message on stderr
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except _user_errors() as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, OSError) and exc.filename is not None:
            message = f"{exc.strerror or 'cannot open'}: {exc.filename}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`mixbit targets | head`): not an error; keep Python from reporting it at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    raise SystemExit(main())
