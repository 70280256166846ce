"""The attack detectors a config builds: ``ood`` needs a reference and is calibrated on it, ``stateful``
takes its threshold from it; without one, ood is refused in one line naming the fix."""

from __future__ import annotations

import pytest
import torch

from bastion import zoo
from bastion.data import load_dataset
from bastion.errors import GatewayError
from bastion.serve.config import GatewayConfig
from bastion.serve.detect import PRADA, OODRateDetector, StatefulDetector
from bastion.serve.factory import build_detectors


@pytest.fixture(scope="module")
def models():
    return {"digits-cnn": zoo.load("digits-cnn")}


def test_ood_is_refused_without_a_reference(models):
    cfg = GatewayConfig(models={"digits-cnn": "zoo:digits-cnn"})
    with pytest.raises(GatewayError, match="set reference"):
        build_detectors(("prada", "ood"), cfg, models)
    with pytest.raises(GatewayError, match="unknown detector 'lof'"):
        build_detectors(("lof",), cfg, models)
    built = build_detectors(("prada", "stateful"), cfg, models)
    assert [type(d) for d in built] == [PRADA, StatefulDetector]
    assert built[1].threshold == StatefulDetector().threshold  # uncalibrated default


def test_with_a_reference_ood_and_stateful_are_calibrated_and_work(models):
    cfg = GatewayConfig(models={"digits-cnn": "zoo:digits-cnn"}, reference="digits")
    prada, stateful, ood = build_detectors(("prada", "stateful", "ood"), cfg, models)
    assert isinstance(prada, PRADA) and isinstance(ood, OODRateDetector)
    assert stateful.threshold != StatefulDetector().threshold
    model = models["digits-cnn"]
    test = load_dataset("digits", split="test").x
    noise = torch.rand(200, *test.shape[1:], generator=torch.Generator().manual_seed(0))
    flagged = {"benign": False, "noise": False}
    for name, x in (("benign", test[:200]), ("noise", noise)):
        for lo in range(0, 200, 16):
            rows = x[lo : lo + 16]
            with torch.no_grad():
                released = torch.softmax(model(rows), 1)
            flagged[name] |= bool(ood.observe(name, rows, released))
    assert flagged == {"benign": False, "noise": True}
