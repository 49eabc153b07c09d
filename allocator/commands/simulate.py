"""`mixbit simulate`: simulate a workload on a target"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("simulate", help="simulate a workload on a target")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim.errors import InputError

    raise InputError("`mixbit simulate` is not implemented yet")
