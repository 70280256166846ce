import torch
from torch import nn

from bastion.audit.prechecks import check_data, check_model
from bastion.model import TorchClassifier


def codes(findings):
    return {f.code for f in findings}


def test_a_sound_model_passes(digits_model, digits_batch):
    x, y = digits_batch
    facts, found = check_model(digits_model, x, y)
    assert found == []
    assert facts.differentiable and not facts.randomised and not facts.probabilities
    assert facts.zero_gradient_fraction == 0.0


def test_masked_models_are_flagged(masked_models, digits_batch):
    x, y = digits_batch
    assert "BA103" in codes(check_model(masked_models["quantised"], x, y)[1])
    assert {"BA101", "BA103"} <= codes(check_model(masked_models["saturated"], x, y)[1])


class Noisy(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + 0.05 * torch.randn_like(x))


class Detached(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.detach())


class Unstable(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + torch.sqrt(x - x).flatten(1).sum(1, keepdim=True)  # d sqrt(0) = inf


def test_randomised_non_differentiable_and_unstable_models(digits_mlp_module, digits_batch):
    x, y = digits_batch
    for wrapper, code in ((Noisy, "BA102"), (Detached, "BA105"), (Unstable, "BA104")):
        clf = TorchClassifier(wrapper(digits_mlp_module), num_classes=10)
        assert code in codes(check_model(clf, x, y)[1]), wrapper.__name__


def test_data_outside_bounds_and_standardised_data():
    x = torch.rand(20, 1, 8, 8)
    assert check_data(x, (0.0, 1.0)) == []
    found = check_data(x * 2, (0.0, 1.0))
    assert codes(found) == {"BA106"} and found[0].evidence["inputs_outside"] == 20
    z = torch.randn(200, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert "BA107" in codes(check_data(z, (-5.0, 5.0)))


# --- audits that measure nothing: chance accuracy (BA108), random weights (BA109), guessed bounds (BA110)


def test_binomial_tail_is_the_closed_form():
    import math

    from bastion.audit.prechecks import binomial_tail

    for n, p in ((1, 0.5), (12, 0.1), (40, 0.3)):
        for k in range(n + 2):
            exact = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
            assert abs(binomial_tail(k, n, p) - exact) < 1e-12, (n, p, k)
    assert binomial_tail(0, 5, 0.3) == 1.0 and binomial_tail(6, 5, 0.3) == 0.0


def test_clean_accuracy_at_chance():
    from bastion.audit.prechecks import check_clean_accuracy

    y = torch.arange(10).repeat(10)  # 100 inputs, 10 balanced classes: chance is 10%
    assert check_clean_accuracy(y == y, y) is None
    assert check_clean_accuracy(y < 2, y) is None  # 20% against 10% on 100 inputs: p = 0.002
    noisy = check_clean_accuracy(torch.arange(100) < 15, y)  # 15%: p = 0.07, not told from chance
    assert noisy is not None and "p = 0.07" in noisy.detail
    at_chance = check_clean_accuracy(y == 0, y)  # exactly the majority share
    assert at_chance is not None and at_chance.code == "BA108" and at_chance.severity.name == "HIGH"
    assert at_chance.evidence["accuracy"] == 0.1 and at_chance.evidence["chance"] == 0.1
    zero = check_clean_accuracy(torch.zeros(100, dtype=torch.bool), y)
    assert zero is not None and zero.evidence["accuracy"] == 0.0
    assert check_clean_accuracy(y < 4, y) is None  # 40% against 10% on 100 inputs: p ~ 1e-12


def test_chance_on_a_sample_too_small_to_test():
    from bastion.audit.prechecks import check_clean_accuracy

    y = torch.tensor([0, 0, 1])  # chance 2/3: even 3 of 3 is not significant, so only <= chance fires
    assert check_clean_accuracy(torch.tensor([True, True, True]), y) is None
    assert check_clean_accuracy(torch.tensor([True, True, False]), y) is not None
    assert check_clean_accuracy(torch.tensor([True, True]), torch.tensor([1, 1])) is None  # one class


FACTORIES = """
import torch
from torch import nn


def random_init():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def seeded():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
"""


def test_a_factory_without_weights_is_flagged(tmp_path):
    from safetensors.torch import save_file

    from bastion.audit.prechecks import check_provenance, provenance
    from bastion.data.dataset import Dataset
    from bastion.loading import load_model, model_source

    (tmp_path / "nets.py").write_text(FACTORIES)
    data = Dataset(torch.rand(4, 1, 8, 8), torch.arange(4), num_classes=10)
    random_model = load_model(f"{tmp_path / 'nets.py'}:random_init")
    source = provenance(random_model, data)
    assert source["kind"] == "factory" and source["weights_loaded"] is False
    assert source["bounds_source"] == "declared"
    assert [f.code for f in check_provenance(source, random_model.bounds)] == ["BA109"]
    seeded = load_model(f"{tmp_path / 'nets.py'}:seeded")  # builds the same weights twice: loaded
    assert provenance(seeded, data)["weights_loaded"] is True
    save_file(random_model.module.state_dict(), str(tmp_path / "w.safetensors"))
    with_weights = load_model(f"{tmp_path / 'nets.py'}:random_init", weights=tmp_path / "w.safetensors")
    src = model_source(with_weights)
    assert src is not None and src.weights_loaded and src.weights_file == str(tmp_path / "w.safetensors")
    assert check_provenance(provenance(with_weights, data), with_weights.bounds) == []
    zoo = provenance(load_model("zoo:digits-mlp"), data)
    assert zoo["kind"] == "zoo" and zoo["weights_loaded"] is True
    unknown = provenance(TorchClassifier(nn.Flatten()), data)  # not loaded by bastion: nothing known
    assert unknown["weights_loaded"] is None and check_provenance(unknown, (0.0, 1.0)) == []


def test_the_second_build_leaves_the_global_rng_alone(tmp_path):
    from bastion.loading import _build, load_model

    (tmp_path / "nets.py").write_text(FACTORIES)
    torch.manual_seed(123)
    _build(str(tmp_path / "nets.py"), "random_init")
    after_one_build = torch.get_rng_state()
    torch.manual_seed(123)
    load_model(f"{tmp_path / 'nets.py'}:random_init")
    assert torch.equal(torch.get_rng_state(), after_one_build)


def test_bounds_inferred_from_the_data_are_flagged(tmp_path):
    import numpy as np

    from bastion.audit.prechecks import check_provenance, provenance
    from bastion.data.npz import load_npz

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 1, 8, 8)).astype(np.float32)  # float images in [0, 255]
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 255.0
    np.savez(tmp_path / "raw.npz", x=x, y=np.arange(20) % 10)
    np.savez(tmp_path / "unit.npz", x=x / 255.0, y=np.arange(20) % 10)
    raw, unit = load_npz(tmp_path / "raw.npz"), load_npz(tmp_path / "unit.npz")
    assert raw.bounds == (0.0, 255.0) and raw.meta["bounds_source"] == "data"
    assert "bounds_source" not in unit.meta  # [0, 1] is the images' convention, not a guess
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    guessed = provenance(TorchClassifier(net, bounds=raw.bounds), raw)
    assert guessed["bounds_source"] == "data"
    (found,) = check_provenance(guessed, raw.bounds, [0.03, 0.1])
    assert found.code == "BA110" and found.evidence["bounds"] == [0.0, 255.0]
    assert "0.039% of that range" in found.detail  # 0.1 / 255
    declared = provenance(TorchClassifier(net, bounds=(-1.0, 300.0)), raw)  # not the data's range
    assert declared["bounds_source"] == "declared"
    from dataclasses import replace

    marked = replace(raw, meta={**raw.meta, "bounds_source": "declared"})  # what audit --bounds does
    assert provenance(TorchClassifier(net, bounds=raw.bounds), marked)["bounds_source"] == "declared"
    assert provenance(net, raw)["bounds_source"] == "data"  # a bare module takes the data's bounds


READY_FACTORY = """
from torch import nn

from bastion.model import TorchClassifier


def make():
    return TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), bounds=(0.0, 255.0), std=255.0)
"""


def test_bounds_a_factory_chose_are_declared(tmp_path):
    from bastion.audit.prechecks import provenance
    from bastion.data.dataset import Dataset
    from bastion.loading import load_model

    (tmp_path / "ready.py").write_text(READY_FACTORY)
    raw = Dataset(
        torch.rand(4, 1, 8, 8) * 255, torch.arange(4), 10, (0.0, 255.0), meta={"bounds_source": "data"}
    )
    clf = load_model(f"{tmp_path / 'ready.py'}:make")  # its bounds equal the data's range, by choice
    source = provenance(clf, raw)
    assert source["bounds_source"] == "declared" and source["weights_loaded"] is False
