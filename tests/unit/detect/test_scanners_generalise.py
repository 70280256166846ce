"""The scanners on architectures and triggers they were not developed on (issue 13, 3b).

A LeNet-style CNN with max-pooling and a three-layer MLP (neither in the zoo), trained briefly on an MNIST
subset where an "X" or an "L" patch in a corner the defaults never use is relabelled to class 3. The
benchmark ``benchmarks/bench_scanners_generalise.py`` measures the full grid; these runs pin its main
claims: the whitened scanners at the ``features`` layer find the poison where the unwhitened ones do
not (1% of the class is below what any scanner sees), clean models of both architectures come back
untouched, and :func:`scan_disagreement` reports the classes where the scanners part ways.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
from torch import nn

from bastion.attacks.poisoning import Backdoor, PatchTrigger, Trigger
from bastion.data import Dataset, load_dataset
from bastion.detect import STRIP, ActivationClustering, SpectralSignatures, scan_disagreement
from bastion.model import TorchClassifier

MNIST = Path(__file__).resolve().parents[4] / "shared" / "data" / "mnist"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MNIST.is_dir(), reason="MNIST not present in ../shared/data"),
]
TARGET = 3


def _lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def _x_shape() -> torch.Tensor:
    eye = torch.eye(5)
    return torch.maximum(eye, eye.flip(1))


def _l_shape() -> torch.Tensor:
    p = torch.zeros(4, 4)
    p[:, 0], p[-1, :] = 1.0, 1.0
    return p


TRIGGERS = {
    "x": lambda: PatchTrigger(pattern=_x_shape(), position="top-left"),
    "l": lambda: PatchTrigger(pattern=_l_shape(), position="bottom-left"),
}


@cache
def _data() -> Dataset:
    return load_dataset(f"mnist:{MNIST}", split="train").take(8000, seed=0)


@cache
def _run(arch: str, trigger: str | None, share: float) -> tuple[TorchClassifier, Dataset, torch.Tensor]:
    """The model trained (2 epochs, seed 0) on the subset with ``share`` of class 3 poisoned (0: clean)."""
    data, truth = _data(), torch.zeros(len(_data()), dtype=torch.bool)
    if trigger is not None:
        n_target = int((data.y == TARGET).sum())
        poison = Backdoor(TRIGGERS[trigger](), TARGET, share * n_target / (1 - share) / len(data))(
            data, seed=0
        )
        data, truth = poison.dataset, poison.poisoned
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = _lenet() if arch == "lenet" else _mlp()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        for b in torch.randperm(len(data), generator=g).split(64):
            loss = nn.functional.cross_entropy(net(data.x[b]), data.y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return TorchClassifier(net.eval(), bounds=data.bounds), data, truth


@pytest.mark.parametrize("arch", ["lenet", "mlp"])
def test_clean_models_of_other_architectures_stay_quiet(arch: str) -> None:
    model, data, _ = _run(arch, None, 0.0)
    for layer in ("penultimate", "features"):
        for scanner in (ActivationClustering(layer=layer), SpectralSignatures(layer=layer)):
            result = scanner.scan(model, data)
            assert not result.suspected and int(result.flagged.sum()) == 0, (layer, result.verdict)


@pytest.mark.parametrize(
    ("arch", "trigger", "share"),
    [("lenet", "x", 0.5), ("lenet", "l", 0.2), ("mlp", "x", 0.2), ("mlp", "l", 0.5)],
)
def test_whitened_scanners_find_unfamiliar_triggers(arch: str, trigger: str, share: float) -> None:
    model, data, truth = _run(arch, trigger, share)
    for scanner in (SpectralSignatures(layer="features"), ActivationClustering(layer="features")):
        result = scanner.scan(model, data)
        assert result.suspicious_classes == (TARGET,), (scanner, result.verdict)
        precision, recall = result.precision_recall(truth)
        assert recall >= 0.9 and result.false_positive_rate(truth) <= 0.01, (scanner, precision, recall)
    # The raw top direction / components on the same features: the class's own spread hides the poison.
    assert not SpectralSignatures(layer="features", whiten=False).scan(model, data).suspected
    assert not ActivationClustering(layer="features", whiten=False).scan(model, data).suspected


def test_strip_catches_the_x_trigger_on_lenet() -> None:
    model, _, _ = _run("lenet", "x", 0.5)
    test = load_dataset(f"mnist:{MNIST}", split="test")
    others = test.x[test.y != TARGET][:1000]
    strip = STRIP(fpr=0.05).fit(model, test.x[:1000])
    trigger: Trigger = TRIGGERS["x"]()
    assert float(strip.detect(trigger.apply(others)).double().mean()) >= 0.9
    assert float(strip.detect(test.x[5000:6000]).double().mean()) <= 0.1


def test_disagreement_is_reported_on_a_real_model() -> None:
    model, data, _ = _run("lenet", "x", 0.5)
    results = {
        "ac penultimate": ActivationClustering().scan(model, data),
        "spectral features": SpectralSignatures(layer="features").scan(model, data),
    }
    found = {d.label: d for d in scan_disagreement(results)}
    if results["ac penultimate"].suspicious_classes == (TARGET,):
        assert TARGET not in found  # both see it, and flag the same samples
    else:
        assert found[TARGET].flagged_by == ("spectral features",) and found[TARGET].kind == "one-sided"
    assert set(found) <= {TARGET}
