"""Black-box evasion attacks run against a remote model exactly as against the local one (same seed)."""

from __future__ import annotations

import pytest
import torch
from _oip_server import serve

from bastion.attacks.evasion.hopskipjump import HopSkipJump
from bastion.attacks.evasion.square import Square
from bastion.blackbox import QueryCounter
from bastion.defenses.output_policy import PolicyClassifier
from bastion.remote import RemoteClassifier
from bastion.threat import ThreatModel

pytest.importorskip("httpx")  # the remote extra: pip install 'bastion[remote]'

FAST = {"max_rps": None, "trust_env": False, "batch_size": 1024}


@pytest.mark.parametrize(
    ("attack", "threat"),
    [
        (Square(n_queries=40), ThreatModel("linf", 0.15)),
        (
            HopSkipJump(max_queries=150, gradient_queries_init=10, max_num_evals=20, steps=4),
            ThreatModel("l2", 3.0),
        ),
    ],
    ids=["square", "hopskipjump"],
)
def test_same_result_remote_and_local(digits_model, digits_batch, attack, threat):
    x, y = digits_batch[0][:6], digits_batch[1][:6]
    local = attack(digits_model, x, y, threat, seed=3)
    with serve(digits_model) as server:
        remote_model = RemoteClassifier(server.spec(), **FAST)
        counter = QueryCounter(remote_model)
        remote = attack(counter, x, y, threat, seed=3)
    assert torch.allclose(remote.x_adv, local.x_adv, atol=1e-6)
    assert torch.equal(remote.success, local.success)
    assert remote.queries == local.queries
    # every row the attack sent (plus the base class's final check) went over HTTP, one request per call
    assert remote_model.queries == counter.queries == remote.queries + len(x)
    assert remote_model.requests == 1 + counter.calls
    assert local.success.any()


def test_label_only_policy_over_a_remote_model(digits_model, digits_batch):
    x, y = digits_batch[0][:4], digits_batch[1][:4]
    threat = ThreatModel("l2", 3.0)
    attack = HopSkipJump(max_queries=100, gradient_queries_init=10, max_num_evals=20, steps=3)
    local = attack(PolicyClassifier(digits_model, "labels"), x, y, threat, seed=1)
    with serve(digits_model) as server:
        remote = attack(
            PolicyClassifier(RemoteClassifier(server.spec(), **FAST), "labels"), x, y, threat, seed=1
        )
    assert torch.allclose(remote.x_adv, local.x_adv, atol=1e-6)
    assert torch.equal(remote.success, local.success)
