"""The error users see when their input is wrong (a target file, a workload, a bit plan)."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input. The message is one line naming what is wrong and where (file, key, layer).

    The CLI prints it as ``error: <message>`` and exits with status 2.
    """
