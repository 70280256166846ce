"""Model loading: safe weight formats round-trip; pickles that carry code are refused before they run."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import textwrap
import types

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bastion.errors import DataError, ModelContractError, UnsafeArtifactError
from bastion.loading import load_model, read_state_dict, sha256_file
from bastion.model import TorchClassifier

NET_SOURCE = textwrap.dedent(
    """
    import torch
    from torch import nn
    from helper_layers import WIDTH  # a sibling file: the model file's folder is importable

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, WIDTH)
            self.fc2 = nn.Linear(WIDTH, 3)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    def make():
        return Net()

    def not_a_module():
        return 42

    CONSTANT = 3
    """
)


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


class _Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpenEvil(_Evil):
    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture()
def model_file(tmp_path):
    (tmp_path / "helper_layers.py").write_text("WIDTH = 8\n")
    path = tmp_path / "net.py"
    path.write_text(NET_SOURCE)
    return path


def test_sha256_file(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"bastion" * 300_000)
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth", ".bin"])
def test_state_dict_round_trip(tmp_path, suffix):
    state = make_net().state_dict()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    loaded = read_state_dict(path)
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value) and loaded[key].device.type == "cpu"


def test_checkpoint_dict_unwrapped(tmp_path):
    state = make_net().state_dict()
    torch.save({"epoch": 3, "state_dict": state, "lr": 0.1}, tmp_path / "ckpt.pt")
    assert read_state_dict(tmp_path / "ckpt.pt").keys() == state.keys()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("payload", [_Evil, _OpenEvil])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_refused_and_not_run(tmp_path, payload, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    obj = {"weight": torch.ones(2), "payload": payload(marker)}
    if writer == "torch.save":
        torch.save(obj, path)
    else:
        with path.open("wb") as fh:
            pickle.dump(obj, fh)
    with pytest.raises(
        UnsafeArtifactError, match=r"evil\.pt: refusing to unpickle.*safetensors.*TorchScript"
    ):
        read_state_dict(path)
    with pytest.raises(UnsafeArtifactError):
        load_model(str(path))
    assert not marker.exists()
    # Control: the file really is dangerous; an ordinary unpickle would have run the payload.
    control = tmp_path / "control"
    with (tmp_path / "control.pkl").open("wb") as fh:
        pickle.dump(payload(control), fh)
    pickle.loads((tmp_path / "control.pkl").read_bytes())
    assert control.exists()


def test_malicious_weights_refused_for_factory(tmp_path, model_file):
    marker = tmp_path / "pwned"
    torch.save({"fc1.weight": _Evil(marker)}, tmp_path / "w.pth")
    with pytest.raises(UnsafeArtifactError):
        load_model(f"{model_file}:make", weights=str(tmp_path / "w.pth"))
    assert not marker.exists()


def test_full_module_pickle_refused(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(make_net(), path)
    with pytest.raises(UnsafeArtifactError, match=r"torch\.nn\.modules.*save_file"):
        read_state_dict(path)
    with pytest.raises(UnsafeArtifactError, match=r"torch\.jit\.save"):
        load_model(str(path))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch 2.13 deprecates torch.jit
@pytest.mark.parametrize("suffix", [".pt", ".ts", ".torchscript"])
def test_torchscript_round_trip(tmp_path, suffix):
    net = make_net().eval()
    path = tmp_path / f"scripted{suffix}"
    torch.jit.save(torch.jit.script(net), str(path))
    clf = load_model(str(path), bounds=(0.0, 1.0), num_classes=3)
    assert isinstance(clf, TorchClassifier) and clf.name == "scripted"
    x = torch.rand(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), net(x))
    x.requires_grad_(True)  # attacks need input gradients through the scripted model
    clf(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if suffix == ".pt":
        assert read_state_dict(path).keys() == net.state_dict().keys()


@pytest.mark.parametrize("weights_name", ["w.safetensors", "w.pt"])
def test_file_factory_with_weights_and_normalisation(tmp_path, model_file, weights_name):
    path_before = list(sys.path)
    clf = load_model(f"{model_file}:make", num_classes=3, mean=0.5, std=0.25)
    assert sys.path == path_before  # the model file's folder was on sys.path only while it ran
    trained = clf.module
    torch.manual_seed(1)
    for p in trained.parameters():
        p.add_(torch.randn_like(p))  # weights that differ from a fresh factory() result
    weights = tmp_path / weights_name
    if weights.suffix == ".pt":
        torch.save(trained.state_dict(), weights)
    else:
        save_file(trained.state_dict(), str(weights))

    loaded = load_model(f"{model_file}:make", weights=str(weights), mean=0.5, std=0.25)
    assert loaded.name == "net:make"
    x = torch.rand(6, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained((x - 0.5) / 0.25))


def test_package_module_factory(tmp_path, monkeypatch):
    package = tmp_path / "bastion_fixture_models"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "from torch import nn\n\ndef tiny():\n    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        clf = load_model("bastion_fixture_models.nets:tiny", bounds=(-1.0, 1.0))
    finally:
        for name in ("bastion_fixture_models.nets", "bastion_fixture_models"):
            sys.modules.pop(name, None)
    assert clf.bounds == (-1.0, 1.0) and clf(torch.zeros(3, 4)).shape == (3, 2)


def test_unknown_factory_lists_callables(model_file):
    with pytest.raises(
        ModelContractError, match=r"no callable 'build'; it defines: Net, make, not_a_module$"
    ):
        load_model(f"{model_file}:build")


def test_factory_must_return_module(model_file):
    with pytest.raises(ModelContractError, match=r"not_a_module\(\) returned int"):
        load_model(f"{model_file}:not_a_module")


def test_missing_files_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.py does not exist"):
        load_model(f"{tmp_path / 'nope.py'}:make")
    with pytest.raises(DataError, match=r"model\.pt does not exist"):
        load_model(str(tmp_path / "model.pt"))
    with pytest.raises(DataError, match=r"w\.safetensors does not exist"):
        read_state_dict(tmp_path / "w.safetensors")
    with pytest.raises(DataError, match=r"cannot import module 'no_such_pkg_xyz\.mod'"):
        load_model("no_such_pkg_xyz.mod:make")


def test_strict_weights_name_the_keys(tmp_path, model_file):
    state = {"fc1.weight": torch.zeros(8, 4), "fc1.bias": torch.zeros(8), "head.weight": torch.zeros(3, 8)}
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(
        ModelContractError, match=r"missing keys: fc2\.bias, fc2\.weight; unexpected keys: head\.weight"
    ):
        load_model(f"{model_file}:make", weights=str(tmp_path / "bad.safetensors"))


def test_shape_mismatch(tmp_path, model_file):
    clf = load_model(f"{model_file}:make")
    state = {
        k: torch.zeros(*v.shape, 2) if k == "fc2.weight" else v for k, v in clf.module.state_dict().items()
    }
    save_file(state, str(tmp_path / "shape.safetensors"))
    with pytest.raises(ModelContractError, match=r"size mismatch for fc2\.weight"):
        load_model(f"{model_file}:make", weights=str(tmp_path / "shape.safetensors"))


def test_weights_only_files_are_not_models(tmp_path):
    state = make_net().state_dict()
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ModelContractError, match="weights only, not an architecture"):
        load_model(str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelContractError, match="is a state dict"):
        load_model(str(tmp_path / "w.pt"))


def test_unreadable_weights(tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable safetensors file"):
        read_state_dict(tmp_path / "w.safetensors")
    (tmp_path / "w.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"unknown weights format '\.npy'"):
        read_state_dict(tmp_path / "w.npy")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(DataError, match="holds a list, not a state_dict"):
        read_state_dict(tmp_path / "list.pt")


def test_zoo_spec_uses_zoo_load(tmp_path, monkeypatch):
    calls = []
    net = make_net()

    def fake_load(name: str) -> TorchClassifier:
        calls.append(name)
        return TorchClassifier(net, num_classes=3, name=f"zoo-{name}")

    monkeypatch.setitem(sys.modules, "bastion.zoo", types.SimpleNamespace(load=fake_load))
    clf = load_model("zoo:digits-mlp")
    assert calls == ["digits-mlp"] and clf.name == "zoo-digits-mlp"

    other = make_net()
    with torch.no_grad():
        for p in other.parameters():
            p.fill_(0.5)
    save_file(other.state_dict(), str(tmp_path / "ft.safetensors"))
    tuned = load_model("zoo:digits-mlp", weights=str(tmp_path / "ft.safetensors"))
    x = torch.rand(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(tuned(x), other(x))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def make(width):\n    return None\n", "needs argument(s) width"),
        ("def make(*, depth, width=3):\n    return None\n", "needs argument(s) depth"),
        ("def make():\n    raise RuntimeError('no GPU here')\n", "make() raised RuntimeError: no GPU here"),
        ("import not_a_real_module_xyz\ndef make():\n    pass\n", "importing it failed: ModuleNotFoundError"),
        ("def make(:\n", "importing it failed: SyntaxError"),
        ("def make():\n    return 42\n", "returned int, not a torch.nn.Module"),
    ],
)
def test_user_factory_failures_are_one_line_contract_errors(tmp_path, source, message):
    path = tmp_path / "user_model.py"
    path.write_text(source)
    with pytest.raises(ModelContractError, match=re.escape(message)) as info:
        load_model(f"{path}:make")
    assert "\n" not in str(info.value)


def test_factory_may_return_a_ready_classifier(tmp_path):
    path = tmp_path / "ready.py"
    path.write_text(
        "from torch import nn\nfrom bastion.model import TorchClassifier\n\n"
        "def make():\n"
        "    return TorchClassifier(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), bounds=(-1.0, 1.0),"
        " mean=0.5, std=0.25, name='mine')\n"
    )
    clf = load_model(f"{path}:make", bounds=(0.0, 1.0))
    assert isinstance(clf, TorchClassifier) and clf.bounds == (-1.0, 1.0) and clf.name == "mine"
    x = torch.rand(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), clf.module((x - 0.5) / 0.25))
    # Weights load into its module; a second normalisation is refused, not stacked.
    state = {k: torch.ones_like(v) for k, v in clf.module.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    loaded = load_model(f"{path}:make", weights=str(tmp_path / "w.safetensors"))
    assert all(bool((v == 1).all()) for v in loaded.module.state_dict().values())
    with pytest.raises(ModelContractError, match="normalises its inputs itself"):
        load_model(f"{path}:make", mean=0.5)
    with pytest.raises(ModelContractError, match="normalises its inputs itself"):
        load_model("zoo:digits-mlp", std=0.3)
