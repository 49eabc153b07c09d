"""Argument types with bounds for every count, size and limit flag, and an argparse that errs in one line.

Each type function raises ``argparse.ArgumentTypeError`` with a message that says what the bound is;
argparse prefixes it with ``argument --flag:``, and ``OneLineParser.error`` prints that as one
``error: ...`` line on stderr with exit status 2 (the CLI contract), instead of argparse's usage block.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

__all__ = [
    "DATAFLOW_CHOICES",
    "MAX_COUNT",
    "MAX_SEED",
    "OneLineParser",
    "add_calibration_argument",
    "add_dataflow_argument",
    "add_images_argument",
    "add_json_argument",
    "add_plan_argument",
    "add_seed_argument",
    "attach_dash_values",
    "bounded_int",
    "positive_float",
]

MAX_COUNT = 10**9
"""Upper bound of image, draw and point counts: far above any real use, low enough to refuse typos."""

MAX_SEED = 2**32 - 1
"""numpy's seed range; torch takes more, but seeds are shared by both."""

# ASCII digits only: str.isdigit() passes '²' (which int() then rejects), and int() takes other scripts' digits
_INT = re.compile(r"[+-]?[0-9]+")


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --flag: reason`` on stderr, exit status 2.

    ``--help`` is unchanged. Subparsers made by ``add_subparsers`` inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())  # argparse messages may wrap; the contract wants one line
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)


def bounded_int(low: int, high: int, *, what: str = "") -> Callable[[str], int]:
    """An argparse type: a base-10 integer (ASCII digits) with ``low <= value <= high``."""

    def parse(text: str) -> int:
        if not _INT.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected an integer{what}, got {text!r}")
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}{what}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}{what}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in some messages
    return parse


def positive_float(high: float = 1e30, *, what: str = "") -> Callable[[str], float]:
    """An argparse type: a finite float with ``0 < value <= high`` (limits and budgets)."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number{what}, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a finite number above 0{what}, got {text!r}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}{what}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


DATAFLOW_CHOICES = ("os", "ws", "is", "per-layer")
"""What ``--dataflow`` takes: one array dataflow for every layer, or ``per-layer`` (the array switches)."""


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json``: every command prints its result as one JSON object on stdout."""
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_seed_argument(parser: argparse.ArgumentParser, help: str | None = "data split and random-weight seed") -> None:
    """``--seed`` in numpy's seed range, default 0; ``help`` names what the command seeds."""
    parser.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=0, help=help)


def add_dataflow_argument(parser: argparse.ArgumentParser, *, per_layer: str) -> None:
    """``--dataflow`` overriding the target's; ``per_layer`` tells what ``per-layer`` means to this command."""
    parser.add_argument(
        "--dataflow", choices=DATAFLOW_CHOICES, help=f"override the array's dataflow; per-layer: {per_layer}"
    )


def add_plan_argument(parser: argparse.ArgumentParser) -> None:
    """``--bits PLAN.json``, required: the bit plan a command quantizes the model with."""
    parser.add_argument("--bits", required=True, metavar="PLAN.json", help="bit plan (JSON) to quantize with")


def add_images_argument(parser: argparse.ArgumentParser, *, default: int, help: str) -> None:
    """``--images N``: how many test images a check runs on."""
    parser.add_argument("--images", type=bounded_int(1, MAX_COUNT), default=default, metavar="N", help=help)


def add_calibration_argument(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--calibration N``: training images to calibrate on, default 256."""
    parser.add_argument("--calibration", type=bounded_int(1, MAX_COUNT), default=256, metavar="N", help=help)


def attach_dash_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``--flag -1,1,1`` as ``--flag=-1,1,1``, so that the flag's own check names the problem.

    argparse takes a token that starts with '-' and is not a plain negative number for an option, and then
    says "expected one argument". A token after a flag that takes one value, which is no known option, is
    glued to the flag here. ``--`` and known options are left alone.
    """
    takes_value: set[str] = set()
    known: set[str] = set()
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        for action in current._actions:
            known.update(action.option_strings)
            if action.option_strings and action.nargs is None and not isinstance(action, _FLAG_ACTIONS):
                takes_value.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    out: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if token == "--":
            out.extend(argv[i:])
            break
        following = argv[i + 1] if i + 1 < len(argv) else None
        if (
            token in takes_value
            and following is not None
            and following.startswith("-")
            and following != "--"
            and following.split("=", 1)[0] not in known
        ):
            out.append(f"{token}={following}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


_FLAG_ACTIONS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._CountAction,
    argparse._HelpAction,
    argparse._VersionAction,
)
