"""Cascade logic, checked with attacks whose outcome is scripted per sample."""

import pytest
import torch

from bastion import ThreatModel, evaluate
from bastion.attacks.base import Attack
from bastion.errors import AttackError, DataError
from bastion.evaluation import PRESETS, Focused, preset_attacks


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
        for stage in stages:
            assert stage.attack in available()


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


class Nudge(Scripted):
    """Fools nothing; moves the inputs tagged in ``hits`` towards the boundary (still class 0)."""

    def _run(self, model, x, y, threat, *, targets, generator):
        ids = (x[:, 0, 0, 0] * 1000).round().long().tolist()
        self.asked += ids
        x_adv = x.clone()
        for i, ident in enumerate(ids):
            if ident in self.hits:
                x_adv[i, :, 1:] += 0.25  # mean 0.2 -> ~0.43, pixel 0 (the tag) kept
        return x_adv


class Toy3(torch.nn.Module):
    """Toy's decision with a constant third logit, so the scale-free margin grows with the mean pixel."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5
        return torch.cat([-m, m, torch.full_like(m, -0.5)], dim=1) * 10


def test_focused_stage_attacks_only_the_survivors_closest_to_the_boundary():
    x, y = _data()
    nudged = {3, 7, 9, 12, 15}
    second = Scripted(set())
    res = evaluate(
        Toy3(),
        x,
        y,
        ThreatModel("linf", 1.0),
        attacks=[("nudge", Nudge(nudged)), ("focused", Focused(second, focus=0.25, min_inputs=1))],
    )
    assert sorted(second.asked) == sorted(nudged)  # ceil(0.25 * 18 survivors) = 5
    assert res.stages[1].n_attacked == 5 and res.stages[1].params["focus"] == 0.25


def test_focused_attack_on_its_own_ranks_by_the_margin_at_the_inputs():
    x, y = _data()
    x[[4, 8], :, 1:] += 0.25
    inner = Scripted(set())
    Focused(inner, focus=0.1, min_inputs=1)(Toy3(), x, y, ThreatModel("linf", 1.0))
    assert sorted(inner.asked) == [4, 8]  # ceil(0.1 * 18 correctly classified) = 2


def test_focused_validates_its_fraction():
    with pytest.raises(AttackError, match="focus"):
        Focused(Scripted(set()), focus=1.5)


def test_autoattack_preset_is_the_published_standard_protocol():
    stages = {name: atk.params() for name, atk in preset_attacks("autoattack")}
    assert list(stages) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert {k: stages["apgd-ce"][k] for k in ("loss", "steps", "restarts", "targeted")} == {
        "loss": "ce",
        "steps": 100,
        "restarts": 1,
        "targeted": False,
    }
    assert {
        k: stages["apgd-t"][k] for k in ("loss", "steps", "restarts", "targeted", "n_target_classes")
    } == {
        "loss": "dlr",
        "steps": 100,
        "restarts": 1,
        "targeted": True,
        "n_target_classes": 9,
    }
    assert {k: stages["fab-t"][k] for k in ("targeted", "steps", "restarts", "n_target_classes")} == {
        "targeted": True,
        "steps": 100,
        "restarts": 1,
        "n_target_classes": 9,
    }
    assert {k: stages["square"][k] for k in ("n_queries", "p_init", "restarts")} == {
        "n_queries": 5000,
        "p_init": 0.8,
        "restarts": 1,
    }


def _stream_case(digits_model, digits_batch):
    from bastion.attacks import get

    x, y = digits_batch
    attacks = [
        ("apgd-ce", get("apgd-ce", steps=5)),
        ("square", get("square", n_queries=30)),
        ("apgd-t", Focused(get("apgd-t", steps=5, n_target_classes=2), focus=0.5, min_inputs=1)),
    ]
    return x, y, attacks, ThreatModel("linf", 0.1)


def test_a_stream_of_batches_gives_the_result_of_the_concatenated_tensors(digits_model, digits_batch):
    x, y, attacks, threat = _stream_case(digits_model, digits_batch)
    whole = evaluate(digits_model, x, y, threat, attacks=attacks, seed=3, batch_size=7)
    batches = [(x[i : i + 5], y[i : i + 5]) for i in range(0, x.shape[0], 5)]  # not aligned with 7
    streamed = evaluate(digits_model, batches, threat, attacks=attacks, seed=3, batch_size=7)
    assert 0 < whole.robust_accuracy < 1
    assert torch.equal(whole.robust, streamed.robust)
    assert torch.equal(whole.x_adv, streamed.x_adv)
    assert torch.equal(whole.predictions, streamed.predictions)
    assert [s.to_dict() | {"seconds": 0} for s in whole.stages] == [
        s.to_dict() | {"seconds": 0} for s in streamed.stages
    ]


def test_a_dataloader_works_and_a_one_shot_generator_is_refused(digits_model, digits_batch):
    from torch.utils.data import DataLoader, TensorDataset

    x, y, attacks, threat = _stream_case(digits_model, digits_batch)
    whole = evaluate(digits_model, x, y, threat, attacks=attacks, seed=0, batch_size=8)
    loader = DataLoader(TensorDataset(x, y), batch_size=6, shuffle=False)
    assert torch.equal(
        evaluate(digits_model, loader, threat=threat, attacks=attacks, batch_size=8).robust, whole.robust
    )
    with pytest.raises(DataError, match="DataLoader"):
        evaluate(
            digits_model, ((x[i : i + 4], y[i : i + 4]) for i in range(0, 32, 4)), threat, attacks=attacks
        )


class _Reshuffles:
    """Yields the batches in a new order on every pass, like a DataLoader with shuffle=True."""

    def __init__(self, x, y):
        self.x, self.y, self.passes = x, y, 0

    def __iter__(self):
        self.passes += 1
        order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.passes))
        for i in range(0, len(order), 8):
            yield self.x[order[i : i + 8]], self.y[order[i : i + 8]]


def test_data_that_changes_between_passes_is_refused(digits_model, digits_batch):
    x, y, attacks, threat = _stream_case(digits_model, digits_batch)
    with pytest.raises(DataError, match="shuffle=False"):
        evaluate(digits_model, _Reshuffles(x, y), threat, attacks=attacks)
