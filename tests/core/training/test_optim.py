"""Optimizers from config: parameter groups, arguments, fused Adam on CUDA by default."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from studio.config.experiment import OptimizerConfig
from studio.errors import ConfigError
from studio.training.optim import build_optimizer, wants_fused


class TwoParts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.geometry = nn.Linear(3, 4)
        self.background = nn.Linear(3, 3)


def config(**kwargs) -> OptimizerConfig:
    return OptimizerConfig(**{"name": "Adam", "args": {"lr": 0.01}, **kwargs})


def test_groups_take_their_own_arguments() -> None:
    system = TwoParts()
    cfg = config(params={"geometry": {"lr": 0.1}, "background": {"lr": 0.001}})
    optimizer = build_optimizer(system, cfg)
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs == {"geometry": 0.1, "background": 0.001}


def test_bad_arguments_and_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="rejected its args"):
        build_optimizer(TwoParts(), config(args={"lr": 0.01, "bogus": 1}))
    with pytest.raises(ConfigError, match="no attribute 'renderer'"):
        build_optimizer(TwoParts(), config(params={"renderer": {}}))


def test_fused_only_for_adam_on_cuda_unless_the_config_says() -> None:
    cpu = [{"params": list(TwoParts().parameters())}]
    assert not wants_fused("Adam", {}, cpu)  # CPU parameters: the default implementation
    optimizer = build_optimizer(TwoParts(), config())
    assert not optimizer.param_groups[0]["fused"]

    class FakeCuda:  # what wants_fused reads of a parameter
        is_cuda = True

        @staticmethod
        def is_floating_point() -> bool:
            return True

    cuda = [{"params": [FakeCuda()]}]
    assert wants_fused("Adam", {}, cuda) and wants_fused("AdamW", {}, cuda)
    assert not wants_fused("SGD", {}, cuda)
    assert not wants_fused("Adam", {"fused": False}, cuda)  # the user's choice stands
    assert not wants_fused("Adam", {"foreach": True}, cuda)


@pytest.mark.gpu
def test_cuda_adam_is_fused_and_steps_like_the_default() -> None:
    torch.manual_seed(0)
    fused_system = TwoParts().cuda()
    plain_system = TwoParts().cuda()
    plain_system.load_state_dict(fused_system.state_dict())
    fused = build_optimizer(fused_system, config())
    plain = build_optimizer(plain_system, config(args={"lr": 0.01, "foreach": True}))
    assert fused.param_groups[0]["fused"] and not plain.param_groups[0]["fused"]
    x = torch.randn(16, 3, device="cuda")
    for system, optimizer in ((fused_system, fused), (plain_system, plain)):
        for _ in range(5):
            (system.geometry(x).square().sum() + system.background(x).sum()).backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(fused_system.parameters(), plain_system.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
