"""Encoder and classifier adapters: model space layout, torch path, scikit-learn black box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from bastion.errors import DataError, ModelContractError
from bastion.tabular import (
    CPGD,
    Encoder,
    Feature,
    SklearnTabularClassifier,
    TabularClassifier,
    TabularData,
    TabularSchema,
    TabularThreatModel,
    TorchTabularClassifier,
    train_mlp,
)

SCHEMA = TabularSchema(
    features=(
        Feature("amount", "numeric", low=0, high=100),
        Feature("rate", "ordinal", categories=("1", "2", "3")),
        Feature("housing", "categorical", categories=("own", "rent", "free")),
        Feature("count", "integer", low=0, high=9),
    ),
    classes=("0", "1"),
)


def toy(n: int = 300, seed: int = 0) -> TabularData:
    g = torch.Generator().manual_seed(seed)
    x = torch.stack(
        [
            torch.rand(n, generator=g, dtype=torch.float64) * 100,
            torch.randint(0, 3, (n,), generator=g).double(),
            torch.randint(0, 3, (n,), generator=g).double(),
            torch.randint(0, 10, (n,), generator=g).double(),
        ],
        dim=1,
    )
    y = ((x[:, 0] / 50 + (x[:, 2] == 1).double() - x[:, 1] / 2) > 0.6).long()
    return TabularData(x, y, SCHEMA, ("0", "1"))


def test_encoder_layout_standardises_and_one_hots() -> None:
    data = toy()
    enc = Encoder.fit(SCHEMA, data.x)
    assert enc.width == 1 + 1 + 3 + 1
    assert [(s.start, s.stop) for s in enc.slices] == [(0, 1), (1, 2), (2, 5), (5, 6)]
    z = enc.encode(data.x)
    assert z.dtype == torch.float32 and z.shape == (300, 6)
    assert torch.allclose(z[:, [0, 1, 5]].mean(dim=0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z[:, [0, 1, 5]].std(dim=0, unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.equal(z[:, 2:5].sum(dim=1), torch.ones(300))
    assert torch.equal(z[:, 2:5].argmax(dim=1).double(), data.x[:, 2])
    assert torch.allclose(enc.decode(z), data.x, atol=1e-3)


def test_encoder_is_differentiable_in_scalar_features() -> None:
    enc = Encoder.fit(SCHEMA, toy().x)
    x = toy(5).x.clone().requires_grad_(True)
    enc.encode(x)[:, 0].sum().backward()
    assert x.grad is not None and float(x.grad[0, 0]) == pytest.approx(1 / float(enc.std[0]), rel=1e-5)
    with pytest.raises(DataError, match=r"shape \(N, 4\)"):
        enc.encode(torch.zeros(2, 3, dtype=torch.float64))


def test_relaxed_encode_moves_categories_continuously() -> None:
    data = toy(8)
    enc = Encoder.fit(SCHEMA, toy().x)
    assert torch.allclose(enc.relaxed_encode(data.x).float(), enc.encode(data.x))
    probs = torch.full((8, 3), 1 / 3, dtype=torch.float64, requires_grad=True)
    z = enc.relaxed_encode(data.x, {"housing": probs})
    assert z.dtype == torch.float64 and torch.allclose(z[:, 2:5], probs)
    (z[:, 2:5] * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    assert probs.grad is not None and probs.grad[0].tolist() == [1.0, 2.0, 3.0]
    assert enc.decode(z)[:, 2].tolist() == [0.0] * 8  # ties break to the first category
    with pytest.raises(DataError, match=r"probs\['amount'\]"):
        enc.relaxed_encode(data.x, {"amount": probs})


def test_train_mlp_is_seeded_and_learns() -> None:
    data = toy()
    state = torch.random.get_rng_state()
    a = train_mlp(data, hidden=(16,), epochs=30, seed=1, lr=0.01)
    assert torch.equal(state, torch.random.get_rng_state()), "the caller's global RNG must be left alone"
    b = train_mlp(data, hidden=(16,), epochs=30, seed=1, lr=0.01)
    assert isinstance(a, TabularClassifier) and a.num_classes == 2 and a.differentiable
    assert torch.equal(a(data.x), b(data.x))
    acc = float((a(data.x).argmax(dim=1) == data.y).float().mean())
    assert acc > 0.85
    assert torch.allclose(a.logits_encoded(a.encoder.encode(data.x)), a(data.x))


@pytest.mark.parametrize("use_encoder", [True, False])
def test_sklearn_adapter_gives_log_probabilities_and_counts(use_encoder: bool) -> None:
    data = toy()
    enc = Encoder.fit(SCHEMA, data.x) if use_encoder else None
    feats = (enc.encode(data.x) if enc else data.x).numpy()
    est = (LogisticRegression() if use_encoder else HistGradientBoostingClassifier(max_iter=20)).fit(
        feats, data.y.numpy()
    )
    model = SklearnTabularClassifier(est, SCHEMA, enc)
    logits = model(data.x[:10])
    assert model.queries == 10 and model.num_classes == 2 and not model.differentiable
    assert np.allclose(logits.exp().numpy(), est.predict_proba(feats[:10]), atol=1e-6)
    threat = TabularThreatModel(SCHEMA)
    with pytest.raises(ModelContractError, match="gradient-free"):
        CPGD()(model, data.x[:5], data.y[:5], threat)


def test_sklearn_adapter_rejects_what_it_cannot_serve() -> None:
    data = toy()
    with pytest.raises(ModelContractError, match="no predict_proba"):
        SklearnTabularClassifier(object(), SCHEMA)
    est = LogisticRegression().fit(data.x.numpy(), np.where(data.y.numpy() == 1, "bad", "good"))
    with pytest.raises(ModelContractError, match="class indices"):
        SklearnTabularClassifier(est, SCHEMA)
    other = TabularSchema((Feature("z", "numeric"),))
    with pytest.raises(ModelContractError, match="another schema"):
        TorchTabularClassifier(torch.nn.Linear(6, 2), Encoder.fit(SCHEMA, data.x), other)
