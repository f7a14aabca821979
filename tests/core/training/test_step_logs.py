"""Logged scalars read back a step late: exact values, one copy, no wait on later work."""

from __future__ import annotations

import time

import pytest
import torch

from studio.training.step_logs import StepLogs


def test_values_are_exact_and_keep_numbers():
    loss = torch.tensor(0.25, requires_grad=True) * 2
    logs = StepLogs(7, {"train/loss": loss, "train/sds": torch.tensor([3.0]), "lr/geo": 0.01})
    assert logs.step == 7
    assert logs.values() == {"train/loss": 0.5, "train/sds": 3.0, "lr/geo": 0.01}


def test_non_scalars_and_flags_are_not_logged():
    logs = StepLogs(1, {"image": torch.zeros(2, 2), "flag": True, "name": "x", "n": 3})
    assert logs.values() == {"n": 3.0}


def test_values_do_not_change_when_the_tensor_does():
    value = torch.tensor(1.0)
    logs = StepLogs(1, {"train/loss": value})
    value.add_(1.0)  # e.g. a buffer reused by the next step
    assert logs.values() == {"train/loss": 1.0}


@pytest.mark.gpu
def test_cuda_values_are_read_through_one_pinned_copy():
    loss = torch.tensor(2.5, device="cuda")
    logs = StepLogs(
        3, {"train/loss": loss, "train/reg": loss * 2, "lr": 1e-3, "guidance/t": torch.tensor(0.5)}
    )
    torch.cuda._sleep(1_000_000_000)  # ~0.5 s of later work: values() must not wait for it
    started = time.perf_counter()
    values = logs.values()
    assert time.perf_counter() - started < 0.1
    assert values == {"train/loss": 2.5, "train/reg": 5.0, "lr": 1e-3, "guidance/t": 0.5}
    assert logs._host is not None and logs._host.is_pinned()
