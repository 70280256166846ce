"""Networks whose forward is not the plain composition of their layers: each is refused by name, or
(where IBP can follow it) bounded soundly; what the static rules miss, the runtime self-check catches.

Before these rules every trap below was "certified" with a margin bound above the true margin at
the centre of a 1e-4 box (a false certificate).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.utils import parametrizations, parametrize

from bastion.certify import IntervalBoundPropagation, interval_bounds, margin_lower_bounds
from bastion.certify import _ibp_rules as rules
from bastion.certify import ibp as ibp_module
from bastion.errors import CertificationError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

TINY = ThreatModel("linf", 1e-4)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


class Residual(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


class Doubled(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


class Plain(nn.Sequential):
    """A subclass that only builds its layers: IBP follows it."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


class Negate(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return -3 * w


def _hooked(where: int, pre: bool) -> nn.Module:
    net = _net()
    if pre:
        net[where].register_forward_pre_hook(lambda m, args: (args[0] * -4,))
    else:
        net[where].register_forward_hook(lambda m, args, out: out * 5 - 3)
    return net


def _patched() -> nn.Module:
    net = _net()
    net[1].forward = lambda x: -x
    return net


def _conv_patched() -> nn.Module:
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(4, 3)).eval()
    conv = net[0]
    conv._conv_forward = lambda x, w, b: -nn.Conv1d._conv_forward(conv, x, w, b)
    return net


def _compiled() -> nn.Module:
    net = _net()
    net[2]._compiled_call_impl = lambda x: -nn.Linear.forward(net[2], x)  # what module.compile() sets
    return net


def _parametrized() -> nn.Module:
    net = _net()
    parametrize.register_parametrization(net[2], "weight", Negate())
    return net


def _weight_normed() -> nn.Module:
    net = _net()
    parametrizations.weight_norm(net[2])
    return net


TRAPS = [
    (lambda: nn.Sequential(nn.Linear(4, 4), Residual(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 3)),
     r"layer '1' \(Residual\).*subclass of Sequential defines forward"),
    (lambda: nn.Sequential(Doubled(4, 3)), r"layer '0' \(Doubled\).*subclass of Linear defines forward"),
    (lambda: _hooked(1, pre=False), r"layer '1' \(ReLU\): it has a forward hook"),
    (lambda: _hooked(2, pre=True), r"layer '2' \(Linear\): it has a forward pre-hook"),
    (_parametrized, r"layer '2' \(ParametrizedLinear\): it is parametrized"),
    (_weight_normed, r"layer '2' \(ParametrizedLinear\): it is parametrized"),
    (_patched, r"layer '1' \(ReLU\): its 'forward' is replaced on the instance"),
    (_conv_patched, r"layer '0' \(Conv1d\): its '_conv_forward' is replaced"),
    (lambda: nn.Sequential(nn.Linear(4, 3), nn.ELU(alpha=-1.0)), "negative alpha is not monotone"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.LeakyReLU(-0.5)), "negative slope"),
    (lambda: nn.Sequential(nn.Unflatten(1, (1, 4)), nn.MaxPool1d(2, return_indices=True)), "return_indices"),
    (lambda: nn.Sequential(nn.Unflatten(1, (1, 2, 2)), nn.AvgPool2d(2, divisor_override=-2)),
     "divisor_override"),
    (lambda: nn.Sequential(nn.Linear(4, 3), nn.GELU()), r"layer '1' \(GELU\); IBP bounds only: .*Linear"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "match"), TRAPS)
def test_each_trap_is_refused_by_name_everywhere(make, match: str) -> None:
    net = make().eval()
    x = torch.rand(5, 4)
    with pytest.raises(CertificationError, match=match):
        IntervalBoundPropagation().certify(net, x, TINY)
    with pytest.raises(CertificationError, match=match):
        interval_bounds(net, x, x + 0.1)
    with pytest.raises(CertificationError, match=match):
        margin_lower_bounds(TorchClassifier(net), x, x + 0.1, torch.zeros(5, dtype=torch.long))


def test_a_replaced_compiled_call_is_refused() -> None:
    """(A TorchClassifier's deep copy drops _compiled_call_impl, so only the module itself is tested.)"""
    match = r"layer '2' \(Linear\): its '_compiled_call_impl' is replaced"
    with pytest.raises(CertificationError, match=match):
        IntervalBoundPropagation().certify(_compiled(), torch.rand(3, 4), TINY)


def test_a_hook_on_the_whole_network_is_refused() -> None:
    net = _net()
    handle = net.register_forward_hook(lambda m, args, out: -out)
    with pytest.raises(CertificationError, match=r"Sequential: it has a forward hook"):
        IntervalBoundPropagation().certify(net, torch.rand(3, 4), TINY)
    handle.remove()
    IntervalBoundPropagation().certify(net, torch.rand(3, 4), TINY)  # and accepted once removed


@pytest.mark.parametrize(
    "register", [torch_module.register_module_forward_hook, torch_module.register_module_forward_pre_hook]
)
def test_global_hooks_are_refused(register) -> None:
    hook = (lambda m, args, out: out) if "pre" not in register.__name__ else (lambda m, args: None)
    handle = register(hook)
    try:
        with pytest.raises(CertificationError, match="global forward hook"):
            IntervalBoundPropagation().certify(_net(), torch.rand(3, 4), TINY)
    finally:
        handle.remove()


@pytest.mark.parametrize(("owner", "name"), [(nn.ReLU, "forward"), (nn.Sequential, "__iter__")])
def test_a_patched_torch_method_is_refused(owner: type, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda self, *args: original(self, *args))
    match = rf"{owner.__name__}.{name} has been replaced.*test_ibp_traps"
    with pytest.raises(CertificationError, match=match):
        IntervalBoundPropagation().certify(_net(), torch.rand(3, 4), TINY)


def test_a_classifier_that_overrides_its_call_is_refused() -> None:
    class Shifted(TorchClassifier):
        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            return super().__call__(x) + torch.tensor([5.0, 0.0, 0.0])

    with pytest.raises(CertificationError, match=r"Shifted.*subclass of TorchClassifier defines __call__"):
        IntervalBoundPropagation().certify(Shifted(_net()), torch.rand(3, 4), TINY)
    patched = TorchClassifier(_net(), mean=0.5, std=0.2)
    patched._normalise = lambda x: x  # type: ignore[method-assign]
    with pytest.raises(CertificationError, match="'_normalise' is replaced on the instance"):
        IntervalBoundPropagation().certify(patched, torch.rand(3, 4), TINY)


def test_an_arbitrary_normalise_callable_is_refused() -> None:
    x = torch.rand(3, 4)
    with pytest.raises(CertificationError, match="cannot follow normalise="):
        interval_bounds(_net(), x, x + 0.1, normalise=lambda t: t * 2)


def _true_margins_and_bounds(
    net: nn.Module, x: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = net(x)
        pred = out.argmax(1)
        bounds = margin_lower_bounds(net, (x - eps).clamp(0, 1), (x + eps).clamp(0, 1), pred)
        return out.gather(1, pred[:, None]) - out, bounds


def test_a_layer_repeated_in_a_sequential_is_bounded_as_often_as_it_runs() -> None:
    torch.manual_seed(3)
    shared = nn.Linear(4, 4)
    net = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 3)).eval()  # named_children() lists it once
    x = torch.rand(64, 4)
    true, bound = _true_margins_and_bounds(net, x, 1e-4)
    assert bool((bound <= true + 1e-5).all())
    result = IntervalBoundPropagation().certify(net, x, TINY)
    assert bool((result.radius > 0).any())


def test_a_sequential_subclass_that_only_builds_its_layers_is_followed() -> None:
    torch.manual_seed(4)
    net = Plain().eval()
    x = torch.rand(32, 4)
    true, bound = _true_margins_and_bounds(net, x, 1e-4)
    assert bool((bound <= true + 1e-5).all())
    assert float((true - bound).abs().max()) < 1e-2  # and tightly: a 1e-4 box barely moves the margins
    assert bool((IntervalBoundPropagation().certify(net, x, TINY).radius > 0).all())


def test_softplus_across_its_linear_switch_is_bounded_soundly() -> None:
    """Torch's Softplus returns x where beta·x > threshold, which drops below the smooth curve at the
    switch: the function is not monotone there, and its corners alone do not bound it."""
    for beta in (2.0, -2.0):
        net = nn.Sequential(nn.Softplus(beta=beta, threshold=0.3)).double()
        lower = torch.full((1, 1), 0.1499 if beta > 0 else -0.1503, dtype=torch.float64)
        upper = lower + 4e-4  # the switch, x = 0.3 / beta, lies inside
        lo, hi = interval_bounds(net, lower, upper)
        z = net(lower + torch.linspace(0, 1, 1001, dtype=torch.float64)[:, None] * (upper - lower))
        corners = net(torch.cat([lower, upper]))
        assert float(z.min()) < float(corners.min())  # the trap is real
        assert float(z.min()) >= float(lo) and float(z.max()) <= float(hi)


def test_the_self_check_catches_what_the_static_rules_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the hook rule switched off, a forward hook goes unseen by the structure checks; the
    network's real outputs at the box centres then fall outside the bounds and nothing is certified."""
    monkeypatch.setattr(rules, "_check_hooks", lambda module, where: None)
    net = _hooked(1, pre=False)
    with pytest.raises(CertificationError, match="the network computes something IBP did not bound"):
        IntervalBoundPropagation().certify(net, torch.rand(8, 4), TINY)


def test_the_self_check_samples_inside_the_box_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook that is exact at the centre but not around it: only the sampled points expose it."""
    monkeypatch.setattr(rules, "_check_hooks", lambda module, where: None)
    x = torch.rand(8, 4)
    net = _net()
    centre = net[:2](x).detach()
    net[1].register_forward_hook(lambda m, args, out: out + 100 * (args[0].shape[0] != 8) * out.abs())
    with pytest.raises(CertificationError, match=r"at point \d+ of its box"):
        IntervalBoundPropagation().certify(net, x, ThreatModel("linf", 0.05))
    assert torch.equal(net[:2](x), centre)
    ok = IntervalBoundPropagation(check_points=0).certify(net, x, ThreatModel("linf", 0.05))
    assert ok.radius.shape == (8,)  # without sampled points the centre alone does not see it


def test_self_check_parameters_are_validated_and_reported() -> None:
    with pytest.raises(CertificationError, match="check_points"):
        IntervalBoundPropagation(check_points=-1)
    params = IntervalBoundPropagation(check_points=2, seed=7).params()
    assert params["check_points"] == 2 and params["seed"] == 7
    result = IntervalBoundPropagation().certify(_net(), torch.rand(3, 4), TINY)
    assert result.params["check_points"] == 4 and result.params["tolerance"] == 1e-5


def test_ibp_module_uses_the_checked_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """IBP runs the verified base class's forward, not whatever the instance's call resolves to."""
    calls: list[str] = []
    original = nn.ReLU.forward

    def spy(self: nn.ReLU, x: torch.Tensor) -> torch.Tensor:
        calls.append("forward")
        return original(self, x)

    spy.__module__ = "torch.nn.modules.activation"  # stands in for torch's own
    monkeypatch.setattr(nn.ReLU, "forward", spy)
    interval_bounds(_net(), torch.zeros(1, 4), torch.ones(1, 4))
    assert calls == ["forward"] * 4  # two ReLUs, two corners each
    assert ibp_module.check_network(_net()) is None
