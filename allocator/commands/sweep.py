"""`mixbit sweep`: design-space sweep on Dask"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sweep", help="design-space sweep on Dask")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim.errors import InputError

    raise InputError("`mixbit sweep` is not implemented yet")
