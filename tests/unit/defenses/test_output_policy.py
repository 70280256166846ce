"""Output policies: each policy's released matrix, its invariants, no gradient through the wrapper."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bastion.attacks.evasion.pgd import PGD
from bastion.defenses.output_policy import FLOOR, OutputPolicy, PolicyClassifier
from bastion.errors import DefenseError, ModelContractError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

SPECS = [
    "probs",
    "labels",
    "top1",
    "top3",
    "round0",
    "round2",
    "reverse-sigmoid:0.5",
    "reverse-sigmoid:1:0.2",
]


@pytest.fixture()
def xs(digits_data) -> torch.Tensor:
    return digits_data[2][:100].clone()


@pytest.mark.parametrize("spec", SPECS)
def test_parse_round_trips(spec):
    policy = OutputPolicy.parse(spec)
    assert OutputPolicy.parse(str(policy)) == policy
    assert OutputPolicy.parse(policy) is policy


def test_parse_reads_the_numbers():
    assert OutputPolicy.parse("TOP3") == OutputPolicy("top", k=3)
    assert OutputPolicy.parse("round2") == OutputPolicy("round", decimals=2)
    assert OutputPolicy.parse("reverse-sigmoid:0.7") == OutputPolicy("reverse-sigmoid", beta=0.7, gamma=0.1)
    assert OutputPolicy.parse("reverse-sigmoid:0.7:0.3").gamma == 0.3


@pytest.mark.parametrize(
    "bad", ["", "top", "top0", "topx", "round", "round-1", "reverse-sigmoid", "reverse-sigmoid:0", "logits"]
)
def test_invalid_specs_raise_one_line_listing_valid_forms(bad):
    with pytest.raises(DefenseError) as info:
        OutputPolicy.parse(bad)
    message = str(info.value)
    assert "\n" not in message
    assert ("valid forms" in message and "top3" in message) or "e.g." in message


def test_probs_release_the_softmax_and_the_log_gives_it_back(digits_model, xs):
    wrapped = PolicyClassifier(digits_model, "probs")
    with torch.no_grad():
        p = torch.softmax(digits_model(xs), dim=1)
    assert torch.allclose(wrapped.released(xs), p)
    assert torch.allclose(torch.softmax(wrapped(xs), dim=1), p, atol=1e-6)
    assert wrapped.bounds == digits_model.bounds and wrapped.num_classes == 10


def test_labels_are_one_hot_at_the_models_argmax(digits_model, xs):
    wrapped = PolicyClassifier(digits_model, "labels")
    released = wrapped.released(xs)
    pred = digits_model(xs).argmax(1)
    assert torch.equal(released.argmax(1), pred)
    assert torch.equal(wrapped(xs).argmax(1), pred)
    assert torch.equal(released.sum(1), torch.ones(len(xs)))
    assert set(released.unique().tolist()) == {0.0, 1.0}
    # the attacker's scores carry nothing but the label
    assert torch.allclose(torch.softmax(wrapped(xs), 1), released, atol=1e-10)


@pytest.mark.parametrize("k", [1, 3, 10, 12])
def test_top_k_keeps_the_k_largest_unchanged_in_order(digits_model, xs, k):
    wrapped = PolicyClassifier(digits_model, f"top{k}")
    with torch.no_grad():
        p = torch.softmax(digits_model(xs), dim=1)
    released = wrapped.released(xs)
    kept = min(k, 10)
    top = p.topk(kept, dim=1)
    assert torch.equal((released > 0).sum(1), torch.full((len(xs),), kept))
    assert torch.equal(released.gather(1, top.indices), top.values)  # same values, same order
    assert torch.equal(released.argmax(1), p.argmax(1))
    assert bool((released.sum(1) <= 1 + 1e-6).all())
    # not renormalised: the withheld mass is missing from the released row ...
    if kept < 10:
        assert bool((released.sum(1) < p.sum(1)).any())
    # ... and softmax of the wrapper's output is the row-renormalised release
    renormalised = released.clamp_min(FLOOR) / released.clamp_min(FLOOR).sum(1, keepdim=True)
    assert torch.allclose(torch.softmax(wrapped(xs), 1), renormalised, atol=1e-6)


@pytest.mark.parametrize("decimals", [0, 1, 2])
def test_rounding_is_on_the_grid_and_keeps_a_unique_argmax(digits_model, xs, decimals):
    wrapped = PolicyClassifier(digits_model, f"round{decimals}")
    with torch.no_grad():
        p = torch.softmax(digits_model(xs), dim=1)
    released = wrapped.released(xs)
    scale = 10**decimals
    assert torch.allclose(released * scale, torch.round(released * scale), atol=1e-4)
    assert bool(((released - p).abs() <= 0.5 / scale + 1e-6).all())
    top = released.max(1, keepdim=True).values
    unique = (released == top).sum(1) == 1
    assert bool(unique.any())
    assert torch.equal(released.argmax(1)[unique], p.argmax(1)[unique])


def test_reverse_sigmoid_matches_the_papers_formula_by_hand():
    p = [0.7, 0.2, 0.09, 0.01]
    beta, gamma = 0.8, 0.3
    raw = [max(0.0, q - beta * (1 / (1 + math.exp(-gamma * math.log(q / (1 - q)))) - 0.5)) for q in p]
    expected = torch.tensor([v / sum(raw) for v in raw], dtype=torch.float64)
    logits = torch.tensor([p], dtype=torch.float64).log()
    released = OutputPolicy.parse(f"reverse-sigmoid:{beta}:{gamma}").apply(logits)
    assert torch.allclose(released[0], expected, atol=1e-12)


def test_reverse_sigmoid_rows_are_distributions_and_perturbed(digits_model, xs):
    with torch.no_grad():
        p = torch.softmax(digits_model(xs), dim=1)
    strong = PolicyClassifier(digits_model, "reverse-sigmoid:1.0").released(xs)
    assert bool((strong >= 0).all())
    assert torch.allclose(strong.sum(1), torch.ones(len(xs)), atol=1e-5)
    assert float((strong - p).abs().max()) > 0.05
    # the scores no longer rank the classes as the model does (what misleads a clone) ...
    assert not torch.equal(strong.argsort(1), p.argsort(1))
    # ... and a vanishing beta releases the probabilities
    weak = PolicyClassifier(digits_model, "reverse-sigmoid:1e-6").released(xs)
    assert torch.allclose(weak, p, atol=1e-5)


def _trainable_model(digits_mlp_module) -> tuple[TorchClassifier, nn.Module]:
    import copy

    module = copy.deepcopy(digits_mlp_module)
    for param in module.parameters():
        param.requires_grad_(True)
    return TorchClassifier(module, num_classes=10, copy=False), module


@pytest.mark.parametrize("spec", SPECS)
def test_no_gradient_reaches_the_model(digits_mlp_module, xs, spec):
    model, module = _trainable_model(digits_mlp_module)
    x = xs[:8].clone().requires_grad_(True)
    for out in (PolicyClassifier(model, spec)(x), PolicyClassifier(model, spec).released(x)):
        assert out.grad_fn is None and not out.requires_grad
        with pytest.raises(RuntimeError):
            torch.autograd.grad(out.sum(), [x, *module.parameters()], allow_unused=True)
    assert all(p.grad is None for p in module.parameters())


def test_gradient_attacks_are_refused_black_box_ones_run(digits_model, digits_batch):
    x, y = digits_batch[0][:8], digits_batch[1][:8]
    wrapped = PolicyClassifier(digits_model, "top3")
    with pytest.raises(ModelContractError):
        PGD(steps=3)(wrapped, x, y, ThreatModel("linf", 0.1))
    from bastion.attacks.evasion.square import Square

    result = Square(n_queries=30)(wrapped, x, y, ThreatModel("linf", 0.3), seed=0)
    assert result.success_rate > 0 and result.gradient_evals == 0


def test_inputs_and_model_are_not_mutated(digits_model, xs):
    before = xs.clone()
    wrapped = PolicyClassifier(digits_model, "round2")
    wrapped(xs)
    assert torch.equal(xs, before)
    assert wrapped.model is digits_model
    assert "round2" in repr(wrapped)


def test_wraps_a_bare_module(digits_mlp_module, xs):
    wrapped = PolicyClassifier(digits_mlp_module, "labels")
    assert wrapped.bounds == (0.0, 1.0)
    assert wrapped(xs).shape == (len(xs), 10)
