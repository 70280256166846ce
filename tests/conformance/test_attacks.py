"""One suite over every registered attack: the contract holds for each norm it supports."""

import math

import pytest
import torch

from bastion import ThreatModel, ThreatModelError
from bastion.attacks import available, get, info
from bastion.threat import Norm

# Small budgets so the whole suite runs in seconds; the algorithms are tested at full strength elsewhere.
FAST = {
    "fgsm": {},
    "pgd": {"steps": 5},
    "apgd-ce": {"steps": 5},
    "apgd-dlr": {"steps": 5},
    "apgd-t": {"steps": 5, "n_target_classes": 2},
    "cw-l2": {"steps": 10, "binary_search_steps": 2},
    "deepfool": {"steps": 5},
    "fab": {"steps": 5},
    "fab-t": {"steps": 5, "n_target_classes": 2},
    "fmn": {"steps": 10},
    "square": {"n_queries": 20},
    "hopskipjump": {"max_queries": 60},
    "noise": {"draws": 5},
    "transfer": {"steps": 5, "distil_steps": 20},
}
CASES = [(name, norm.value) for name in available() for norm in Norm if norm in info(name).cls.norms]
EPS = {"linf": 0.15, "l2": 1.0}


def test_every_attack_has_fast_settings():
    assert set(FAST) == set(available())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_contract(name, norm, digits_model, digits_batch):
    x, y = digits_batch
    x0, y0 = x.clone(), y.clone()
    params0 = [p.clone() for p in digits_model.module.parameters()]
    threat = ThreatModel(norm, EPS[norm])
    atk = get(name, **FAST[name])
    res = atk(digits_model, x, y, threat, seed=1)
    # inside ball and bounds
    assert bool(threat.contains(x, res.x_adv).all())
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    # success is the model's verdict on x_adv
    with torch.no_grad():
        pred = digits_model(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred != y)
    # inputs, labels, model parameters and mode untouched
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert all(torch.equal(a, b) for a, b in zip(params0, digits_model.module.parameters(), strict=True))
    assert not digits_model.module.training
    # costs are counted and consistent with the access the attack declares
    assert res.queries >= x.shape[0]
    if info(name).access == "gradient":
        assert res.gradient_evals > 0
    else:
        assert res.gradient_evals == 0
    # same seed, same result
    again = get(name, **FAST[name])(digits_model, x, y, threat, seed=1)
    assert torch.equal(res.x_adv, again.x_adv)
    # a batch of one works
    one = atk(digits_model, x[:1], y[:1], threat, seed=1)
    assert one.x_adv.shape == x[:1].shape and one.success.shape == (1,)


@pytest.mark.parametrize("name", available())
def test_unsupported_norms_raise(name, digits_model, digits_batch):
    x, y = digits_batch
    unsupported = [n for n in Norm if n not in info(name).cls.norms]
    for norm in unsupported:
        with pytest.raises(ThreatModelError, match="supports norms"):
            get(name, **FAST[name])(digits_model, x, y, ThreatModel(norm, 0.1))


@pytest.mark.parametrize("name", available())
def test_module_in_training_mode_is_not_mutated(name, digits_mlp_module, digits_batch):
    x, y = digits_batch
    digits_mlp_module.train()
    try:
        norm = sorted(info(name).cls.norms, key=lambda n: n.value)[0]
        get(name, **FAST[name])(digits_mlp_module, x[:4], y[:4], ThreatModel(norm, EPS[norm.value]))
        assert digits_mlp_module.training
        assert all(p.requires_grad for p in digits_mlp_module.parameters())
    finally:
        digits_mlp_module.eval()


@pytest.mark.parametrize(("name", "norm"), [c for c in CASES if c[0] != "deepfool"])
def test_targeted_success_means_target_hit(name, norm, digits_model, digits_batch):
    x, y = digits_batch
    targets = (y + 3) % 10
    threat = ThreatModel(norm, EPS[norm])
    res = get(name, **FAST[name])(digits_model, x, y, threat, targets=targets, seed=0)
    with torch.no_grad():
        pred = digits_model(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred == targets)


@pytest.mark.parametrize(("name", "norm"), [c for c in CASES if info(c[0]).minimum_norm])
def test_minimum_norm_attacks_accept_an_unbounded_threat(name, norm, digits_model, digits_batch):
    x, y = digits_batch
    res = get(name, **FAST[name])(digits_model, x, y, ThreatModel(norm, math.inf), seed=0)
    assert torch.allclose(res.distance, ThreatModel(norm, math.inf).distance(x, res.x_adv))
    assert bool((res.distance[res.success] > 0).all())


class _Detached(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.detach())


@pytest.mark.parametrize("name", [n for n in available() if info(n).access == "gradient"])
def test_gradient_attacks_explain_a_model_without_gradients(name, digits_mlp_module, digits_batch):
    from bastion import ModelContractError
    from bastion.model import TorchClassifier

    x, y = digits_batch
    model = TorchClassifier(_Detached(digits_mlp_module), num_classes=10)
    norm = sorted(info(name).cls.norms, key=lambda n: n.value)[0]
    with pytest.raises(ModelContractError, match="black-box attack"):
        get(name, **FAST[name])(model, x, y, ThreatModel(norm, 0.1))
