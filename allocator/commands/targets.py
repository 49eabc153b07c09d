"""`mixbit targets`: list the shipped targets with their budgets."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("targets", help="list shipped targets with their budgets")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sim.errors import InputError

    raise InputError("`mixbit targets` is not implemented yet")
