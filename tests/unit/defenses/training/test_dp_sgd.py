"""DP-SGD through Opacus, and the other training-time privacy defenses (label smoothing of either
sign, weight decay, early stopping), on sklearn digits with a small MLP."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bastion.data import load_dataset
from bastion.defenses.training import TrainingConfig, harden, make_objective
from bastion.defenses.training.dp_sgd import DPSGD
from bastion.defenses.training.label_smoothing import LabelSmoothing
from bastion.defenses.training.objective import Batch
from bastion.errors import DefenseError

# RDP's search for the largest order warns when that order is optimal: expected at these budgets.
pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")

DP = TrainingConfig(epochs=1, batch_size=64, optimizer="sgd", momentum=0.0, lr=0.5, schedule="constant")


def _mlp(norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(64, 32)]
    if norm:
        layers.append(nn.BatchNorm1d(32))
    return nn.Sequential(*layers, nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", split="train"), load_dataset("digits", split="test")


@pytest.fixture(scope="module", params=["prv", "rdp"])
def private_run(request, digits):
    pytest.importorskip("opacus")
    train, test = digits
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = harden(
        model, train, "dp-sgd", config=DP, eval_data=test, target_epsilon=2.0, delta=1e-5,
        accountant=request.param,
    )  # fmt: skip
    return model, before, result


def test_card_epsilon_is_the_accountants_recomputed_independently(private_run):
    from opacus.accountants import create_accountant
    from opacus.accountants.utils import get_noise_multiplier

    _, _, result = private_run
    p = result.card["privacy"]
    assert p["poisson_sampling"] is True and p["max_grad_norm"] == 1.0 and p["delta"] == 1e-5
    # Steps really taken: one epoch of ceil(N / batch) Poisson batches, none lost.
    n = p["n_records"]
    assert p["steps"] == p["planned_steps"] == -(-n // 64)
    assert p["sample_rate"] == pytest.approx(1 / p["steps"])
    assert p["expected_batch_size"] == pytest.approx(64, abs=64 / p["steps"])
    accountant = create_accountant(mechanism=p["accountant"])
    accountant.history = [(p["noise_multiplier"], p["sample_rate"], p["steps"])]
    assert p["epsilon"] == pytest.approx(accountant.get_epsilon(delta=p["delta"]), rel=1e-9)
    # The noise is what Opacus needs for the target over those steps, and the spend meets the target
    # within get_noise_multiplier's tolerance (0.01) without exceeding it.
    sigma = get_noise_multiplier(
        target_epsilon=2.0, target_delta=1e-5, sample_rate=p["sample_rate"], epochs=1,
        accountant=p["accountant"],
    )  # fmt: skip
    assert p["noise_multiplier"] == pytest.approx(sigma)
    assert 2.0 - 0.011 <= p["epsilon"] <= 2.0 + 1e-9
    # The recomputation can fail: twice the steps spend more.
    accountant.history = [(p["noise_multiplier"], p["sample_rate"], 2 * p["steps"])]
    assert accountant.get_epsilon(delta=p["delta"]) > p["epsilon"] + 0.1


def test_private_training_learns_and_leaves_the_callers_model_alone(private_run):
    model, before, result = private_run
    assert result.card["method"] == "dp-sgd" and result.card["evaluation"]["clean_accuracy"] > 0.3
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    for module in (model, result.module):  # no Opacus hooks or per-sample gradients left behind
        assert not any(hasattr(p, "grad_sample") for p in module.parameters())
        assert all(not m._forward_hooks and not m._backward_hooks for m in module.modules())


def test_poisson_sampling_draws_binomial_batches():
    pytest.importorskip("opacus")
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    session = DPSGD(target_epsilon=3.0).privatise(model, optimizer, 1000, 50, 5, seed=0)
    try:
        assert type(session.loader.batch_sampler) is UniformWithReplacementSampler
        sizes = torch.tensor([float(len(i)) for _ in range(5) for i in session.epoch()])
        q = session.record["sample_rate"]
        assert len(sizes) == 5 * session.steps_per_epoch == 100 and q == pytest.approx(1 / 20)
        # Binomial(1000, 1/20): mean 50, variance 47.5; fixed-size shuffled batches would have none.
        assert sizes.mean().item() == pytest.approx(50, abs=3) and 20 < sizes.var().item() < 90
        indices = torch.cat([session.epoch().__next__() for _ in range(3)])
        assert indices.min() >= 0 and indices.max() < 1000
    finally:
        session.close()


def test_empty_poisson_batches_still_step_and_count():
    pytest.importorskip("opacus")
    data = load_dataset("digits", split="train").take(20, seed=0)
    cfg = TrainingConfig(epochs=3, batch_size=2, validation=0.0, optimizer="sgd", lr=0.1)
    # q = 1/10 over 20 records: about one step in eight draws an empty batch.
    result = harden(_mlp(), data, "dp-sgd", config=cfg, target_epsilon=8.0, delta=1e-3, accountant="rdp")
    p = result.card["privacy"]
    assert p["steps"] == p["planned_steps"] == 30
    assert all(torch.isfinite(v).all() for v in result.module.state_dict().values())


def test_noise_is_planned_for_the_steps_really_taken():
    pytest.importorskip("opacus")
    from opacus.accountants.utils import get_noise_multiplier

    # 154 records in batches of 2: q = 1/77, and Opacus plans int(3 / q) = 230 steps for 3 epochs while
    # its sampler takes 3 x 77 = 231; with noise planned for 230 the spend would be 4.0015 > 4.
    assert int(3 / (1 / 77)) == 230
    data = load_dataset("digits", split="train").take(154, seed=0)
    cfg = TrainingConfig(epochs=3, batch_size=2, validation=0.0, optimizer="sgd", lr=0.05)
    result = harden(_mlp(), data, "dp-sgd", config=cfg, target_epsilon=4.0, delta=1e-3, accountant="rdp")
    p = result.card["privacy"]
    assert p["steps"] == p["planned_steps"] == 231
    assert 4.0 - 0.011 <= p["epsilon"] <= 4.0

    def sigma(**steps):
        return get_noise_multiplier(
            target_epsilon=4.0, target_delta=1e-3, sample_rate=1 / 77, accountant="rdp", **steps
        )

    assert p["noise_multiplier"] == pytest.approx(sigma(steps=231)) != pytest.approx(sigma(epochs=3))


def test_same_seed_same_weights(digits):
    pytest.importorskip("opacus")
    train, _ = digits
    runs = [
        harden(_mlp(), train, "dp-sgd", config=replace(DP, seed=s), target_epsilon=3.0, accountant="rdp")
        for s in (1, 1, 2)
    ]
    same, other = runs[0].module.state_dict(), runs[2].module.state_dict()
    assert all(torch.equal(v, runs[1].module.state_dict()[k]) for k, v in same.items())
    assert not all(torch.equal(v, other[k]) for k, v in same.items())


def test_batchnorm_is_refused_with_the_fix_and_fixed_on_request(digits):
    pytest.importorskip("opacus")
    train, _ = digits
    model = _mlp(norm=True)
    with pytest.raises(DefenseError, match=r"GroupNorm: opacus\.validators\.ModuleValidator\.fix\(model\)"):
        harden(model, train, "dp-sgd", config=DP, target_epsilon=3.0)
    result = harden(model, train, "dp-sgd", config=DP, target_epsilon=3.0, fix_model=True)
    assert result.card["privacy"]["fixed_model"] == ["2: BatchNorm1d -> GroupNorm"]
    assert any("--fix-model replaced" in note for note in result.notes)
    assert isinstance(result.module[2], nn.GroupNorm) and isinstance(model[2], nn.BatchNorm1d)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs a privacy budget: pass --target-epsilon"),
        ({"target_epsilon": -1.0}, "positive"),
        ({"target_epsilon": 3.0, "delta": 0.0}, "delta must lie in"),
        ({"target_epsilon": 3.0, "delta": 1.5}, "delta must lie in"),
        ({"target_epsilon": 3.0, "max_grad_norm": 0.0}, "max grad norm"),
        ({"target_epsilon": 3.0, "accountant": "gdp"}, "use one of: prv, rdp"),
    ],
)
def test_invalid_privacy_options_are_refused(options, message):
    with pytest.raises(DefenseError, match=message):
        make_objective("dp-sgd", options)


def test_delta_at_or_above_one_over_n_is_refused_with_the_fix(digits):
    train, _ = digits
    n = len(train) - round(0.1 * len(train))  # the records trained on (validation held out)
    with pytest.raises(DefenseError, match=rf"not below 1/N .* N = {n} .*pass --delta 1e-05"):
        harden(_mlp(), train, "dp-sgd", config=DP, target_epsilon=3.0, delta=1.0 / n)


def test_adversarial_training_and_privacy_options_elsewhere_are_refused():
    with pytest.raises(DefenseError, match=r"cannot be combined with adversarial training \(pgd\)"):
        make_objective("pgd", {"target_epsilon": 3.0})
    with pytest.raises(DefenseError, match="belong to --method dp-sgd"):
        make_objective("label-smoothing", {"delta": 1e-5})


def test_missing_opacus_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opacus", None)  # import opacus now raises ImportError
    with pytest.raises(DefenseError, match=r"pip install 'bastion\[privacy\]'"):
        DPSGD(target_epsilon=3.0).privatise(
            _mlp(), torch.optim.SGD(_mlp().parameters(), lr=0.1), 100, 10, 1, 0
        )


# Label smoothing of either sign (Struppek et al. 2024: negative smoothing as a privacy defense).


@pytest.mark.parametrize("alpha", [0.2, -0.1, -0.5])
def test_label_smoothing_matches_its_target_distribution(alpha):
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.randint(0, 4, (6,))
    batch = Batch(torch.zeros(6, 1), y, None, torch.Generator(), 0.0)
    loss, _ = LabelSmoothing(alpha).loss(lambda x: logits, lambda x: logits, batch)
    target = (1 - alpha) * F.one_hot(y, 4) + alpha / 4
    assert loss.item() == pytest.approx(-(target * logits.log_softmax(1)).sum(1).mean().item(), rel=1e-6)
    if alpha < 0:  # torch's label_smoothing silently treats a negative factor as 0: not what we train
        assert loss.item() != pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -1.0])
def test_label_smoothing_refuses_degenerate_factors(alpha):
    with pytest.raises(DefenseError, match="smoothing must lie in"):
        LabelSmoothing(alpha)


def test_smoothing_sign_orders_confidence_through_harden(digits):
    from bastion.model import predict

    train, test = digits
    cfg = TrainingConfig(epochs=3, batch_size=64, lr=5e-3)
    runs = {
        alpha: harden(_mlp(), train, *method, config=cfg, eval_data=test, **opts)
        for alpha, method, opts in [
            (0.0, ("standard",), {}),
            (0.1, ("label-smoothing",), {"smoothing": 0.1}),
            (-0.1, ("label-smoothing",), {"smoothing": -0.1}),
        ]
    }
    assert runs[-0.1].card["method_options"] == {"smoothing": -0.1}
    accuracy = {a: r.card["evaluation"]["clean_accuracy"] for a, r in runs.items()}
    assert accuracy[-0.1] > accuracy[0.0] - 0.05
    # Positive smoothing lowers the model's confidence, negative smoothing raises it (the mechanism
    # Struppek et al. tie to model-inversion leakage).
    confidence = {
        a: predict(r.classifier, test.x).softmax(1).max(1).values.mean().item() for a, r in runs.items()
    }
    assert confidence[0.1] < confidence[0.0] < confidence[-0.1]


def test_weight_decay_shrinks_the_weights(digits):
    train, _ = digits
    norms = []
    for decay in (0.0, 0.5):
        cfg = TrainingConfig(epochs=2, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=decay)
        module = harden(_mlp(), train, "standard", config=cfg).module
        norms.append(sum(p.norm() ** 2 for p in module.parameters()).item())
    assert norms[1] < 0.7 * norms[0]


def test_early_stopping_stops_on_a_plateau_and_keeps_the_best(digits):
    train, _ = digits
    cfg = TrainingConfig(epochs=10, batch_size=64, lr=1e-9, schedule="constant", patience=2)
    result = harden(_mlp(), train, "standard", config=cfg)
    # An lr of 1e-9 changes no prediction: the held-out accuracy never improves after the first check.
    assert len(result.history) == 3 and result.card["stopped_early"] is True
    assert any(n.startswith("early stopping at epoch 3") for n in result.notes)
    assert result.card["best_epoch"] is not None
    with pytest.raises(DefenseError, match="needs held-out data"):
        TrainingConfig(patience=2, validation=0.0)
