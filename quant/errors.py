"""The error users see when their input is wrong (a model name, a bit plan, calibration data)."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input; one line naming what is wrong and where. The CLI exits with status 2 on it."""
