"""`mixbit allocate`: choose per-layer bits under a budget (the whole pipeline)"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("allocate", help="choose per-layer bits under a budget (the whole pipeline)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim.errors import InputError

    raise InputError("`mixbit allocate` is not implemented yet")
