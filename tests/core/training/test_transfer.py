"""Batches reach the device packed: same values, shapes, dtypes and structure as ``.to()``."""

from __future__ import annotations

import pytest
import torch

from studio.training.transfer import to_device


def batch() -> dict:
    grid = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    return {
        "rays": grid,
        "strided": grid.transpose(0, 2),  # not contiguous
        "index": torch.tensor([3, 1]),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "height": 64,
        "name": "front",
        "nested": [torch.ones(2), (torch.zeros(1, 1), None)],
    }


def assert_same(got, expected, device_type: str) -> None:
    if isinstance(expected, torch.Tensor):
        assert got.device.type == device_type
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert torch.equal(got.cpu(), expected)
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same(got[key], expected[key], device_type)
    elif isinstance(expected, (list, tuple)):
        assert type(got) is type(expected) and len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert_same(a, b, device_type)
    else:
        assert got == expected


def test_cpu_batch_is_unchanged():
    assert_same(to_device(batch(), torch.device("cpu")), batch(), "cpu")


@pytest.mark.gpu
def test_cuda_batch_equals_tensor_to():
    original = batch()
    trainable = torch.ones(3, requires_grad=True)
    moved = to_device({**original, "trainable": trainable}, torch.device("cuda"))
    assert_same({k: v for k, v in moved.items() if k != "trainable"}, original, "cuda")
    moved["trainable"].sum().backward()  # travelled on its own, still part of the graph
    assert torch.equal(trainable.grad, torch.ones(3))
    moved["rays"].add_(1.0)  # the views do not overlap
    assert torch.equal(moved["index"].cpu(), original["index"])
    assert torch.equal(moved["strided"].cpu(), original["strided"])
