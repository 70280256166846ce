"""Cascade logic, checked with attacks whose outcome is scripted per sample."""

import pytest
import torch

from bastion import ThreatModel, evaluate
from bastion.attacks.base import Attack
from bastion.errors import AttackError
from bastion.evaluation import PRESETS


class Scripted(Attack):
    """Fools exactly the inputs whose first pixel is in ``hits``; records what it was asked to attack."""

    name = "scripted"

    def __init__(self, hits: set[int]) -> None:
        self.hits = hits
        self.asked: list[int] = []

    def _run(self, model, x, y, threat, *, targets, generator):
        ids = (x[:, 0, 0, 0] * 1000).round().long().tolist()
        self.asked += ids
        x_adv = x.clone()
        for i, ident in enumerate(ids):
            if ident in self.hits:
                x_adv[i] = 1.0 - x_adv[i]  # flips the toy model's decision, see below
        return x_adv


class Toy(torch.nn.Module):
    """Class 0 when the mean pixel is below 0.5, else class 1."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        return torch.cat([-m, m], dim=1) * 10


def _data(n: int = 20):
    x = torch.full((n, 1, 4, 4), 0.2)
    x[:, 0, 0, 0] = torch.arange(n) / 1000  # identity tag in pixel 0
    y = torch.zeros(n, dtype=torch.long)
    y[:2] = 1  # two clean errors
    return x, y


def test_cascade_attacks_only_robust_and_takes_worst_case():
    x, y = _data()
    first, second = Scripted({2, 3, 4}), Scripted({4, 5, 6})
    threat = ThreatModel("linf", 1.0)
    res = evaluate(Toy(), x, y, threat, attacks=[("a", first), ("b", second)], batch_size=7)
    assert sorted(first.asked) == list(range(2, 20))  # clean errors never attacked
    assert sorted(second.asked) == [i for i in range(2, 20) if i not in {2, 3, 4}]
    assert res.clean_accuracy == pytest.approx(18 / 20)
    assert res.robust_accuracy == pytest.approx((20 - 2 - 5) / 20)
    assert [s.n_attacked for s in res.stages] == [18, 15]
    assert [s.n_fooled for s in res.stages] == [3, 2]
    assert res.stages[0].robust_accuracy == pytest.approx(15 / 20)
    expected = torch.ones(20, dtype=torch.bool)
    expected[[0, 1, 2, 3, 4, 5, 6]] = False
    assert torch.equal(res.robust, expected)
    fooled = ~res.robust & res.clean_correct
    assert bool(threat.contains(x, res.x_adv).all())
    assert bool((Toy()(res.x_adv[fooled]).argmax(1) != y[fooled]).all())
    assert torch.equal(res.x_adv[res.robust], x[res.robust])


def test_to_dict_has_the_documented_keys():
    x, y = _data()
    res = evaluate(Toy(), x, y, ThreatModel("linf", 1.0), attacks=[("a", Scripted({5}))])
    d = res.to_dict()
    for key in ("clean_accuracy", "robust_accuracy", "n_samples", "threat", "stages", "seconds"):
        assert key in d
    assert set(d["stages"][0]) >= {"attack", "robust_accuracy", "queries", "gradient_evals", "seconds"}
    assert d["n_samples"] == 20 and d["threat"]["norm"] == "linf"


def test_unknown_preset():
    x, y = _data()
    with pytest.raises(AttackError, match="standard"):
        evaluate(Toy(), x, y, ThreatModel("linf", 0.1), preset="quick")


def test_presets_name_registered_attacks():
    from bastion.attacks import available

    for stages in PRESETS.values():
        for _, name, _ in stages:
            assert name in available()


def test_progress_callback_reports_each_stage():
    x, y = _data()
    seen = []
    evaluate(
        Toy(),
        x,
        y,
        ThreatModel("linf", 1.0),
        attacks=[("a", Scripted(set())), ("b", Scripted(set()))],
        batch_size=5,
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    assert seen[-1] == ("b", 18, 18) and ("a", 5, 18) in seen
