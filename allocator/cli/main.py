"""The ``mixbit`` command line. Each subcommand lives in ``allocator/cli/commands/<name>.py`` with
``register(subparsers)``; its handler returns the JSON-able result object and prints text itself when not --json.

Errors in user input end with exit status 2 and one line ``error: <what and where>`` on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import io
import json
import os
import stat
import sys
from collections.abc import Sequence
from typing import Any

from allocator.cli.args import OneLineParser, attach_dash_values, bounded_int
from allocator.serialize import json_default

__all__ = ["build_parser", "emit_json", "main"]

COMMANDS = ("targets", "simulate", "allocate", "verify", "export", "sweep", "train")
MAX_THREADS = 4096
"""More torch threads than this is a typo."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from sim.errors import InputError as SimInputError

    errors: tuple[type[BaseException], ...] = (SimInputError, FileNotFoundError, IsADirectoryError, PermissionError)
    # quant's error can only have been raised if quant was imported; importing it here would pull in torch (~2 s)
    if "quant.errors" in sys.modules:
        errors += (sys.modules["quant.errors"].InputError,)
    return errors


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mixbit",
        description="What a quantized ViT costs on an FPGA or accelerator, and per-layer bits that fit its budget.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"allocator.cli.commands.{name}")
        module.register(sub)
    for command in sub.choices.values():  # one flag, one meaning, set once in main() for every command
        command.add_argument(
            "--threads",
            type=bounded_int(1, MAX_THREADS),
            metavar="N",
            help="torch threads (default: OMP_NUM_THREADS if set, else min(cores, 4))",
        )
    return parser


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (the --json contract: nothing else goes to stdout).

    The whole text is built before anything is written, so a value JSON cannot hold (an infinite float)
    raises before stdout sees half an object; it is then an input error naming the value.
    """
    try:
        text = json.dumps(obj, indent=None, default=json_default, allow_nan=False)
    except ValueError as exc:  # allow_nan=False: an inf or nan somewhere in the result
        from sim.errors import InputError

        where = _nonfinite_path(obj) or "?"
        raise InputError(f"result field {where} is not finite ({exc}); check the input values behind it") from None
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _nonfinite_path(obj: Any, path: str = "") -> str | None:
    """Dotted path of the first infinite or NaN float in a JSON-able object, or None."""
    import math

    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path or "(top level)")
    items: Any = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for key, value in items:
        found = _nonfinite_path(
            json_default(value) if _is_numpy(value) else value, f"{path}.{key}" if path else str(key)
        )
        if found:
            return found
    return None


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy"


_DEV_FULL = (1, 7)
"""Linux's /dev/full (major 1, minor 7, devices.txt): every write to it fails with ENOSPC."""


def _stdout_usable() -> str | None:
    """Why stdout cannot take the output (closed, or /dev/full), or None. Checked before any work starts; other
    write failures (a pipe's disk filling up) are found when the output is written, and are exit status 2 too."""
    if sys.stdout is None:
        return "stdout is closed; nothing could be printed"
    try:
        status = os.fstat(sys.stdout.fileno())
    except io.UnsupportedOperation:  # an in-memory stdout (tests): usable
        return None
    except (OSError, ValueError):
        return "stdout is closed; nothing could be printed"
    if stat.S_ISCHR(status.st_mode) and (os.major(status.st_rdev), os.minor(status.st_rdev)) == _DEV_FULL:
        return f"cannot write to stdout: {os.strerror(errno.ENOSPC)}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # usage errors exit with status 2 and one `error: argument --flag: ...` line (OneLineParser)
    try:
        args = parser.parse_args(attach_dash_values(parser, argv))
    except SystemExit as exc:  # --help (0) or a usage error (2, its one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    closed = _stdout_usable()
    if closed:
        print(f"error: {closed}", file=sys.stderr)
        return 2
    from allocator.torchenv import configure_threads

    configure_threads(args.threads)  # the one place torch's thread count is set, before any command imports torch
    # Handlers print into memory; stdout gets the whole text once the command has succeeded, so an error
    # never follows half an output, and a stdout that cannot take it (/dev/full) is an error, not exit 0.
    real_stdout, captured = sys.stdout, io.StringIO()
    sys.stdout = captured
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
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = real_stdout
    return _flush_output(captured.getvalue(), int(status or 0))


def _flush_output(text: str, status: int) -> int:
    """Write the command's stdout text; a failed write is exit status 2 with one error line."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`mixbit targets | head`): not an error; keep Python from reporting it at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        # stdout on a full device (/dev/full) or an I/O error: the output is lost, so this must not exit 0;
        # stdout is pointed at /dev/null so the interpreter's exit flush cannot raise again
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"error: cannot write to stdout: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())
