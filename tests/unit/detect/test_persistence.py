"""Label persistence tells which group of a suspicious class is the poison, also when it is the larger."""

from __future__ import annotations

import torch
from torch import nn

from bastion.detect.persistence import label_persistence
from bastion.detect.spectral import SpectralSignatures
from bastion.model import TorchClassifier


class CornerBackdoor(nn.Module):
    """Class 0 when the top-left pixel is lit (the trigger survives any additive overlay), else the class of
    the brightest of pixels 1..3 (which an overlay easily changes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        logits = torch.zeros(x.shape[0], 4)
        logits[:, 1:] = flat[:, 1:4]
        logits[:, 0] = 10.0 * (flat[:, 0] > 0.5).float()
        return logits


def test_a_trigger_persists_and_clean_inputs_do_not() -> None:
    model = TorchClassifier(CornerBackdoor())
    triggered = torch.zeros(50, 1, 2, 2)
    triggered[:, 0, 0, 0] = 1.0
    clean = torch.zeros(50, 1, 2, 2)
    clean[:, 0, 0, 1] = 0.6  # class 1
    overlays = torch.zeros(8, 1, 2, 2)
    overlays[:, 0, 1, 0] = 0.9  # class 2: outshines the clean inputs' pixel
    assert label_persistence(model, triggered, 0, overlays) == 1.0
    assert label_persistence(model, clean, 1, overlays) == 0.0
    assert label_persistence(model, clean[:0], 1, overlays) == 0.0
    g = torch.Generator().manual_seed(0)
    assert label_persistence(model, clean, 1, overlays, max_inputs=7, generator=g) == 0.0


def test_orient_flags_the_majority_when_asked() -> None:
    # Class 0: 60 planted samples far from 40 clean ones along one direction; the planted group is larger.
    g = torch.Generator().manual_seed(0)
    features = torch.randn(200, 8, generator=g)
    labels = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    features[:60, 0] += 30.0
    scanner = SpectralSignatures()
    minority_rule = scanner.scan_features(features, labels, 2)
    assert minority_rule.flagged[60:100].all() and not minority_rule.flagged[:60].any()
    calls = []

    def orient(label: int, index: torch.Tensor, minority: torch.Tensor) -> tuple[bool, str]:
        calls.append(label)
        return True, "the majority keeps its label"

    oriented = scanner.scan_features(features, labels, 2, orient=orient)
    assert calls == [0]  # asked only for the suspicious class
    assert oriented.flagged[:60].all() and not oriented.flagged[60:].any()
    assert oriented.classes[0].note == "the majority keeps its label"
    assert oriented.classes[0].statistic == minority_rule.classes[0].statistic  # the separation is symmetric
    assert (oriented.scores[:60] > 0).all()  # positive = towards the flagged group
