"""Torch's thread count and device, chosen once for every command (``mixbit --threads N``, ``--device``).

Threads: oversubscribed OpenMP was 10-25x slower on the shared 2-core machine (DESIGN.md, environment facts),
so every command runs torch with a fixed count: ``--threads N`` when given, else ``OMP_NUM_THREADS`` when the
user set it, else ``min(usable cores, DEFAULT_MAX_THREADS)``. The count goes into ``OMP_NUM_THREADS`` and
``MKL_NUM_THREADS`` before torch is imported (torch reads them at start-up, and Dask workers and other child
processes inherit them), and into ``torch.set_num_threads`` when torch is already loaded. Commands that never
import torch (``mixbit targets``) do not pay for importing it here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sim.errors import InputError

__all__ = [
    "DEFAULT_MAX_THREADS",
    "DEVICES",
    "check_device",
    "configure_threads",
    "default_threads",
    "keep_threads",
    "threads",
]

DEFAULT_MAX_THREADS = 4
"""More intra-op threads than this gained little on ViT-sized GEMMs and cost the other users of a shared box."""
DEVICES: tuple[str, ...] = ("cpu", "cuda")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set to a positive integer, else min(usable cores, ``DEFAULT_MAX_THREADS``)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    return max(1, min(_usable_cores(), DEFAULT_MAX_THREADS))


def configure_threads(count: int | None = None) -> int:
    """Set torch's intra-op thread count for this process and its children; returns the count set.

    ``count``: threads (at least 1), None for ``default_threads()``. Raises ``InputError`` for a count below 1.
    """
    if count is not None and count < 1:
        raise InputError(f"--threads must be at least 1, got {count}")
    chosen = default_threads() if count is None else int(count)
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = str(chosen)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(chosen)
    return chosen


def threads() -> int:
    """The thread count torch runs with now (``torch.get_num_threads``; imports torch)."""
    import torch

    return int(torch.get_num_threads())


@contextmanager
def keep_threads() -> Iterator[None]:
    """Restore torch's thread count after the block. python-mip's CBC sets OpenMP to one thread when it solves,
    and torch then ran every later stage on one thread (seen here: ``allocate`` reported 1 thread after its
    budget check with 2 set)."""
    if "torch" not in sys.modules:
        yield
        return
    torch = sys.modules["torch"]
    count = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(count)


def check_device(device: str) -> str:
    """``device`` when torch can use it here, else ``InputError`` naming why: ``cpu``, or ``cuda``/``cuda:N`` with a
    visible CUDA GPU. Called before any expensive stage, so a missing GPU fails in seconds."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise InputError(f"--device {device}: unknown device; choose cpu or cuda (cuda:N for the N-th GPU)")
    if kind == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            f"--device {device}: no CUDA GPU is visible to torch here (torch.cuda.is_available() is False)"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    return device
