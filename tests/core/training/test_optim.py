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


def learning_rates(optimizer, scheduler, steps: int) -> list[float]:
    """The first group's learning rate before each of ``steps`` steps and after the last."""
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return [*lrs, optimizer.param_groups[0]["lr"]]


WARMUP_THEN_DECAY = {
    "name": "SequentialLR",
    "args": {
        "milestones": [100],
        "schedulers": [
            {
                "name": "LinearLR",
                "args": {"start_factor": 0.1, "end_factor": 1.0, "total_iters": 100},
            },
            {"name": "ExponentialLR", "args": {"final_factor": 0.1}},
        ],
    },
}


def test_exponential_decay_to_a_final_factor_at_the_last_step() -> None:
    """Latent-NeRF's schedule: warm-up over 100 steps, then gamma = 0.1^(1/(max_steps - 100)),
    computed from the run's max_steps (the reference writes the number for 10000 steps)."""
    from studio.training.optim import build_scheduler

    for max_steps in (1000, 300):
        optimizer = build_optimizer(TwoParts(), config())
        scheduler = build_scheduler(optimizer, WARMUP_THEN_DECAY, max_steps=max_steps)
        lrs = learning_rates(optimizer, scheduler, max_steps)
        assert lrs[0] == pytest.approx(0.001) and lrs[100] == pytest.approx(0.01)
        assert lrs[max_steps] == pytest.approx(0.001, rel=1e-6)  # 0.1x at the end
        gamma = 0.1 ** (1 / (max_steps - 100))
        assert lrs[150] == pytest.approx(0.01 * gamma**50, rel=1e-9)


def test_final_factor_needs_the_run_length_and_excludes_gamma() -> None:
    from studio.training.optim import build_scheduler

    optimizer = build_optimizer(TwoParts(), config())
    with pytest.raises(ConfigError, match=r"final_factor needs the run's trainer\.max_steps"):
        build_scheduler(optimizer, {"name": "ExponentialLR", "args": {"final_factor": 0.1}})
    both = {"name": "ExponentialLR", "args": {"final_factor": 0.1, "gamma": 0.9}}
    with pytest.raises(ConfigError, match="either gamma or final_factor"):
        build_scheduler(optimizer, both, max_steps=100)
    with pytest.raises(ConfigError, match="steps left"):
        build_scheduler(optimizer, WARMUP_THEN_DECAY, max_steps=100)  # nothing after warm-up


class ParticleParts(TwoParts):
    """A system whose ``geometry`` group names the geometry of two more particles too."""

    def __init__(self) -> None:
        super().__init__()
        self.others = nn.ModuleList([TwoParts(), TwoParts()])

    def optimizer_targets(self, dotted: str) -> list:
        from studio.training.optim import resolve_attribute

        extra = [resolve_attribute(o, dotted) for o in self.others] if dotted == "geometry" else []
        return [resolve_attribute(self, dotted), *extra]


def test_a_group_covers_every_target_the_system_resolves_its_name_to() -> None:
    system = ParticleParts()
    optimizer = build_optimizer(system, config(params={"geometry": {"lr": 0.1}, "background": {}}))
    groups = {group["name"]: group["params"] for group in optimizer.param_groups}
    expected = [system.geometry, *(o.geometry for o in system.others)]
    assert [id(p) for p in groups["geometry"]] == [
        id(p) for module in expected for p in module.parameters()
    ]
    assert [id(p) for p in groups["background"]] == [id(p) for p in system.background.parameters()]
