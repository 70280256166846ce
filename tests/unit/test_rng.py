"""Per-example random streams (bastion.rng): the generator against SplitMix64's published output, the
distributions, and the property the scale-out rests on: every registered attack gives each input the
same result whether it runs in one batch or in pieces under its ids."""

from __future__ import annotations

import math

import pytest
import torch

from bastion import attacks
from bastion.rng import ExampleRNG, Pieces, integers, mix, normal, stream_seed, uniform
from bastion.threat import ThreatModel


def _splitmix64(state: int, k: int) -> list[int]:
    """The reference SplitMix64 (Steele, Lea, Flood 2014) as plain integers: k outputs from ``state``."""
    out, m = [], (1 << 64) - 1
    for _ in range(k):
        state = (state + 0x9E3779B97F4A7C15) & m
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        out.append(z ^ (z >> 31))
    return out


def test_mix_is_splitmix64_on_tensors_with_wraparound() -> None:
    # published first output of SplitMix64 from state 0
    assert _splitmix64(0, 1) == [0xE220A8397B1DCDAF]
    states = [(i * 0x9E3779B97F4A7C15) & ((1 << 64) - 1) for i in range(1, 2001)]
    want = _splitmix64(0, 2000)
    signed = [s - (1 << 64) if s >= 1 << 63 else s for s in states]
    got = [v & ((1 << 64) - 1) for v in mix(torch.tensor(signed, dtype=torch.int64)).tolist()]
    assert got == want


def test_a_slice_under_its_ids_draws_what_the_whole_batch_draws() -> None:
    whole = ExampleRNG(7, torch.arange(10))
    part = ExampleRNG(7, torch.arange(4, 10))
    for draw in (lambda g: g.rand((3, 2)), lambda g: g.randn((5,)), lambda g: g.randint(0, 9, (4,))):
        a, b = draw(whole), draw(part)
        assert torch.equal(a[4:], b)
    # another seed, other numbers
    assert not torch.equal(
        ExampleRNG(8, torch.arange(10)).rand((3,)), ExampleRNG(7, torch.arange(10)).rand((3,))
    )


def test_counters_are_per_example_so_an_active_subset_keeps_its_streams() -> None:
    a = ExampleRNG(0, torch.arange(6))
    b = ExampleRNG(0, torch.arange(6))
    a.rand((2,))  # every row's first draw
    first = b.rand((2,))
    # in b, rows 1 and 4 draw again alone, then everyone: rows 1 and 4 are one draw ahead of the rest
    sub = b.rows(torch.tensor([1, 4]))
    second_14 = sub.rand((2,))
    third = b.rand((2,))
    second = a.rand((2,))
    assert torch.equal(second[[1, 4]], second_14)
    keep = torch.tensor([0, 2, 3, 5])
    assert torch.equal(third[keep], second[keep])
    assert not torch.equal(third[[1, 4]], second[[1, 4]])
    assert not torch.equal(first, second)


def test_distributions_are_what_they_say() -> None:
    g = ExampleRNG(1, torch.arange(50))
    u = g.rand((4000,), torch.float64)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    z = g.randn((4000,), torch.float64)
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1.0) < 0.01
    assert abs(float((z.abs() < 1.96).double().mean()) - 0.95) < 0.005
    k = g.randint(3, 8, (2000,))
    counts = torch.bincount(k.flatten() - 3, minlength=5).double() / k.numel()
    assert int(k.min()) == 3 and int(k.max()) == 7 and float((counts - 0.2).abs().max()) < 0.01
    half = g.rand((5000,), torch.float16)
    assert half.dtype == torch.float16 and float(half.max()) < 1.0


def test_pieces_equal_the_whole_draw_however_cut() -> None:
    like = torch.zeros(1)
    whole = Pieces(ExampleRNG(3, torch.arange(4)), 4).normal(0, 10, (6,), like=like)
    cut = Pieces(ExampleRNG(3, torch.arange(4)), 4)
    pieces = [cut.normal(lo, hi - lo, (6,), like=like) for lo, hi in ((0, 3), (3, 4), (4, 10))]
    assert torch.equal(whole, torch.cat(pieces, dim=1))


def test_it_is_a_torch_generator_for_code_written_for_one() -> None:
    g = ExampleRNG(0, torch.arange(3))
    assert isinstance(g, torch.Generator)
    a = torch.randn(4, generator=g)
    assert torch.equal(a, torch.randn(4, generator=ExampleRNG(0, torch.arange(3))))
    # the helpers take a plain generator too (one shared stream)
    plain = torch.Generator().manual_seed(0)
    assert uniform(plain, (2, 3), like=torch.zeros(1)).shape == (2, 3)
    assert normal(plain, (2, 3), like=torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    assert integers(plain, 0, 2, (5,), device=torch.device("cpu")).shape == (5,)


def test_wrong_use_is_refused() -> None:
    with pytest.raises(ValueError, match="distinct"):
        ExampleRNG(0, [1, 1])
    with pytest.raises(ValueError, match="first dimension"):
        uniform(ExampleRNG(0, torch.arange(3)), (4, 2), like=torch.zeros(1))
    with pytest.raises(ValueError, match="low < high"):
        ExampleRNG(0, [0]).randint(2, 2, (1,))


def test_stream_seeds_differ_by_key_and_fit_a_torch_generator() -> None:
    seeds = {stream_seed(0, i, s) for i in range(100) for s in range(3)}
    assert len(seeds) == 300 and all(0 <= v < 2**63 for v in seeds)
    assert stream_seed(0, 1, 2) == stream_seed(0, 1, 2) != stream_seed(1, 1, 2)


# Cheap settings for each registered attack; the property holds for the defaults as well.
CHEAP = {
    "apgd-ce": {"steps": 10, "restarts": 2},
    "apgd-dlr": {"steps": 10, "restarts": 2},
    "apgd-t": {"steps": 10, "n_target_classes": 2},
    "cw-l2": {"steps": 10, "binary_search_steps": 2},
    "deepfool": {"steps": 10},
    "fab": {"steps": 10, "restarts": 2},
    "fab-t": {"steps": 10, "n_target_classes": 2},
    "fgsm": {},
    "fmn": {"steps": 10},
    "hopskipjump": {"max_queries": 300, "gradient_queries_init": 20, "max_num_evals": 50, "steps": 4},
    "noise": {"draws": 20},
    "pgd": {"steps": 5, "restarts": 2},
    "square": {"n_queries": 60, "restarts": 2},
}
# A transfer attack distils one surrogate from the whole batch it is given: batch-level by construction.
BATCH_LEVEL = {"transfer"}


def test_every_registered_attack_is_listed() -> None:
    assert set(attacks.available()) == set(CHEAP) | BATCH_LEVEL


@pytest.mark.parametrize(
    ("name", "norm"), [(n, norm.value) for n in sorted(CHEAP) for norm in sorted(attacks.get(n).norms)]
)
def test_an_input_gets_the_same_attack_in_any_batch(name, norm, digits_model, digits_batch) -> None:
    attack = attacks.get(name, **CHEAP[name])
    x, y = digits_batch[0][:12], digits_batch[1][:12]
    threat = ThreatModel(norm, 0.15 if norm == "linf" else 1.0)
    whole = attack(digits_model, x, y, threat, seed=5)
    parts = [
        attack(digits_model, x[a:b], y[a:b], threat, seed=5, example_ids=range(a, b))
        for a, b in ((0, 5), (5, 12))
    ]
    success = torch.cat([p.success for p in parts])
    x_adv = torch.cat([p.x_adv for p in parts])
    assert torch.equal(whole.success, success), name
    assert math.isclose(float((whole.x_adv - x_adv).abs().max()), 0.0, abs_tol=1e-5), name


def test_hopskipjump_sums_its_probes_in_the_same_order_in_any_batch(
    monkeypatch, digits_model, digits_batch
) -> None:
    # small pieces, so that a chunk size following the batch (as it once did) would cut the sums differently
    from bastion.attacks.evasion import hopskipjump

    monkeypatch.setattr(hopskipjump, "_CHUNK", 4096)
    monkeypatch.setattr(hopskipjump, "_PROBE_FLOATS", 640)
    attack = attacks.get("hopskipjump", max_queries=400, gradient_queries_init=30, max_num_evals=60, steps=5)
    x, y = digits_batch[0][:12], digits_batch[1][:12]
    threat = ThreatModel("l2", 1.0)
    whole = attack(digits_model, x, y, threat, seed=2)
    parts = [
        attack(digits_model, x[a:b], y[a:b], threat, seed=2, example_ids=range(a, b))
        for a, b in ((0, 5), (5, 12))
    ]
    assert torch.equal(whole.x_adv, torch.cat([p.x_adv for p in parts]))


def test_example_ids_default_to_positions_and_must_be_one_per_example() -> None:
    from bastion.errors import DataError
    from bastion.rng import example_ids

    assert example_ids(3, None).tolist() == [0, 1, 2]
    assert example_ids(3, range(5, 8)).tolist() == [5, 6, 7]
    assert example_ids(2, torch.tensor([[4], [9]])).dtype == torch.int64  # flattened, int64
    with pytest.raises(DataError, match="3 texts but 2 example_ids; give one id per text"):
        example_ids(3, [1, 2], unit="text", error=DataError)
