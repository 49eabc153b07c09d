"""`mixbit verify`: check the integer-only model against the fake-quant model"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("verify", help="check the integer-only model against the fake-quant model")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim.errors import InputError

    raise InputError("`mixbit verify` is not implemented yet")
