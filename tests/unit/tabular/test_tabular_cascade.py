"""The tabular cascade: CPGD then MoEvA on what CPGD left, merged from verified stages, counted."""

from __future__ import annotations

import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from bastion.errors import AttackError
from bastion.tabular import (
    CPGD,
    Feature,
    MoEvA,
    SklearnTabularClassifier,
    TabularCascade,
    TabularData,
    TabularSchema,
    TabularThreatModel,
    train_mlp,
)

SCHEMA = TabularSchema(
    features=(
        Feature("a", "numeric", low=0, high=10),
        Feature("b", "integer", low=0, high=20),
        Feature("c", "categorical", categories=("x", "y", "z")),
        Feature("d", "numeric", low=0, high=1, immutable=True),
    ),
    classes=("0", "1"),
)


def data(n: int = 300) -> TabularData:
    g = torch.Generator().manual_seed(0)
    a, b = 10 * torch.rand(n, generator=g), torch.randint(0, 21, (n,), generator=g).float()
    c, d = torch.randint(0, 3, (n,), generator=g).float(), torch.rand(n, generator=g)
    y = (a / 10 + b / 20 + (c == 1).float() * 0.5 + d > 1.6).long()
    return TabularData(torch.stack([a, b, c, d], 1).double(), y, SCHEMA, ("0", "1"))


THREAT = TabularThreatModel(SCHEMA, max_change={"a": 1.0, "b": 2}, budget=0.3)


def test_cascade_on_a_differentiable_model_merges_and_counts_both_stages() -> None:
    d = data()
    model = train_mlp(d, hidden=(16,), epochs=30, seed=0, lr=0.01)
    cpgd, moeva = CPGD(steps=2), MoEvA(population=12, generations=10)
    out = TabularCascade((cpgd, moeva))(model, d.x, d.y, THREAT, seed=5)
    first, second = out.stages
    assert (first.attack, second.attack) == ("cpgd", "moeva") and first.skipped is None
    # the same stages run by hand: CPGD on every record (seed 5), MoEvA on what it left (seed 6)
    r1 = cpgd(model, d.x, d.y, THREAT, seed=5)
    left = (~r1.success).nonzero().flatten()
    r2 = moeva(model, d.x[left], d.y[left], THREAT, seed=6, example_ids=left)  # each record its own draws
    assert first.attacked == len(d.x) and second.attacked == len(left)
    assert first.successes == int(r1.success.sum()) and second.successes == int(r2.success.sum())
    res = out.result
    assert res.queries == r1.queries + r2.queries == first.queries + second.queries
    assert res.gradient_evals == r1.gradient_evals > 0 and second.gradient_evals == 0
    assert int(res.success.sum()) == first.successes + second.successes
    wrong = int((model(d.x).argmax(dim=1) != d.y).sum())
    assert first.already_wrong == wrong > 0 and second.already_wrong == 0
    assert first.flipped == first.successes - wrong and second.flipped == second.successes
    expected = r1.x_adv.clone()
    expected[left] = r2.x_adv
    assert torch.equal(res.x_adv, expected) and res.valid.all()
    assert torch.equal(res.success, model(res.x_adv).argmax(dim=1) != d.y)
    assert res.attack == "cascade" and out.summary()["stages"][1]["successes"] == second.successes
    assert out.robust_accuracy == res.robust_accuracy <= r1.robust_accuracy


def test_cascade_on_a_black_box_model_runs_the_genetic_search_only() -> None:
    d = data()
    est = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(d.x.numpy(), d.y.numpy())
    model = SklearnTabularClassifier(est, SCHEMA)
    moeva = MoEvA(population=12, generations=10)
    out = TabularCascade((CPGD(steps=5), moeva))(model, d.x, d.y, THREAT, seed=0)
    assert out.stages[0].skipped == "model has no gradients" and out.stages[0].queries == 0
    alone = moeva(model, d.x, d.y, THREAT, seed=1)
    assert torch.equal(out.result.x_adv, alone.x_adv) and out.result.queries == alone.queries
    assert out.stages[1].successes == int(alone.success.sum())
    weak_first = TabularCascade((MoEvA(population=2, generations=0), moeva))(model, d.x, d.y, THREAT)
    assert weak_first.stages[1].successes > 0, "the second stage must flip what the first missed"
    assert weak_first.result.valid.all()
    assert weak_first.result.queries == sum(s.queries for s in weak_first.stages)
    with pytest.raises(AttackError, match="no stage"):
        TabularCascade((CPGD(),))(model, d.x, d.y, THREAT)
    with pytest.raises(AttackError, match="non-empty"):
        TabularCascade(())


def test_the_cascade_in_two_pieces_equals_one_pass() -> None:
    """Every record draws by its id, so the cascade (CPGD with random restarts, then MoEvA) on two pieces
    of the records under their ids gives the one-pass records row for row: what lets it run in shards."""
    d = data()
    model = train_mlp(d, hidden=(16,), epochs=30, seed=0, lr=0.01)
    cascade = TabularCascade((CPGD(steps=3, restarts=3), MoEvA(population=10, generations=6)))
    whole = cascade(model, d.x, d.y, THREAT, seed=2)
    half = len(d.x) // 2
    pieces = [cascade(model, d.x[s], d.y[s], THREAT, seed=2, example_ids=torch.arange(len(d.x))[s])
              for s in (slice(0, half), slice(half, None))]  # fmt: skip
    assert torch.equal(torch.cat([p.result.x_adv for p in pieces]), whole.result.x_adv)
    assert torch.equal(torch.cat([p.result.success for p in pieces]), whole.result.success)
    assert [sum(p.stages[k].successes for p in pieces) for k in (0, 1)] == [s.successes for s in whole.stages]
    second = cascade(model, d.x[half:], d.y[half:], THREAT, seed=2)  # positions as ids: other draws
    assert not torch.equal(second.result.x_adv, whole.result.x_adv[half:])


def test_the_cascade_on_the_shard_runner_equals_one_pass_and_resumes(tmp_path) -> None:
    from bastion.engine import LocalEngine, evaluate_tabular_sharded

    d = data()
    model = train_mlp(d, hidden=(16,), epochs=30, seed=0, lr=0.01)
    cascade = TabularCascade((CPGD(steps=3, restarts=2), MoEvA(population=10, generations=6)))
    one = cascade(model, d.x, d.y, THREAT, seed=4)
    runs = [
        evaluate_tabular_sharded(
            cascade,
            model,
            d.x,
            d.y,
            THREAT,
            seed=4,
            shard_size=70,
            engine=LocalEngine(threads=1),
            run_dir=tmp_path / "run",
        )
        for _ in range(2)
    ]
    for out in runs:
        for name in ("x_adv", "success", "valid", "predictions", "changed", "cost"):
            assert torch.equal(getattr(out.result, name), getattr(one.result, name)), name
        assert [s.to_dict() | {"seconds": 0} for s in out.stages] == [
            s.to_dict() | {"seconds": 0} for s in one.stages
        ]
        assert out.result.queries == one.result.queries and out.robust_accuracy == one.robust_accuracy
    assert runs[1].result.params["engine"]["resumed"] == [0, 1, 2, 3, 4]
