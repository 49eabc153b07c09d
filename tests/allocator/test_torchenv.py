"""Torch threads set in one place, and a device checked before any work."""

from __future__ import annotations

import os

import pytest
import torch

from allocator import torchenv
from sim.errors import InputError


@pytest.fixture
def restore_threads() -> object:
    before = torch.get_num_threads(), {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    yield
    torch.set_num_threads(before[0])
    for key, value in before[1].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_threads_given_are_set_for_torch_and_children(restore_threads: object) -> None:
    assert torchenv.configure_threads(1) == 1
    assert torch.get_num_threads() == 1 and torchenv.threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
    with pytest.raises(InputError, match="--threads must be at least 1, got 0"):
        torchenv.configure_threads(0)


def test_default_is_the_users_omp_setting_else_few_cores(
    restore_threads: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torchenv.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(torchenv, "_usable_cores", lambda: 64)
    assert torchenv.default_threads() == torchenv.DEFAULT_MAX_THREADS
    monkeypatch.setattr(torchenv, "_usable_cores", lambda: 1)
    assert torchenv.default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "zero")  # not a count: ignored
    assert torchenv.default_threads() == 1


def test_devices() -> None:
    assert torchenv.check_device("cpu") == "cpu"
    for bad in ("tpu", "cpu:0", "cuda:x"):
        with pytest.raises(InputError, match=f"--device {bad}: unknown device"):
            torchenv.check_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU is visible"):
            torchenv.check_device("cuda")
