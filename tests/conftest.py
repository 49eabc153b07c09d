"""Shared test set-up: a fixed, small thread count (oversubscribed OpenMP was 10-25x slower here)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch

torch.set_num_threads(2)
