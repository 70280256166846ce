"""Remote models through the loaders and the CLI: ``oip:`` specs reach black-box commands only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _oip_server import serve
from typer.testing import CliRunner

import bastion.cli.extract_cmd  # noqa: F401  (registers `extract`)
from bastion import zoo
from bastion.cli.app import app
from bastion.errors import ModelContractError
from bastion.loading import load_model, load_victim

pytest.importorskip("httpx")  # the remote extra: pip install 'bastion[remote]'


def test_white_box_loader_refuses_a_remote_model():
    with pytest.raises(ModelContractError, match=r"remote model.*black-box commands"):
        load_model("oip:http://127.0.0.1:9/models/m")


def test_load_victim_answers_like_the_local_model(digits_model, digits_batch):
    from bastion.remote import RemoteClassifier

    x = digits_batch[0][:20]
    with serve(digits_model) as server:
        remote = load_victim(server.spec() + "?max_rps=none")
        assert isinstance(remote, RemoteClassifier)
        with torch.no_grad():
            assert torch.allclose(remote(x), digits_model(x), atol=1e-5)
    with pytest.raises(Exception, match="weights"):
        load_victim("oip:http://127.0.0.1:9/models/m", weights="w.safetensors")


def test_the_api_key_comes_from_the_environment_never_the_spec(digits_model, digits_batch, monkeypatch):
    from bastion.errors import RemoteModelError

    x = digits_batch[0][:4]
    with serve(digits_model, token="s3cret") as server:
        monkeypatch.delenv("BASTION_API_KEY", raising=False)
        with pytest.raises(RemoteModelError, match=r"HTTP 401.*BASTION_API_KEY"):
            load_victim(server.spec() + "?max_rps=none&retries=0")(x)
        monkeypatch.setenv("BASTION_API_KEY", "wrong")
        with pytest.raises(RemoteModelError, match="HTTP 401"):
            load_victim(server.spec() + "?max_rps=none&retries=0")(x)
        monkeypatch.setenv("BASTION_API_KEY", "s3cret\n")  # as a shell's $(cat keyfile) may leave it
        with torch.no_grad():
            assert torch.allclose(load_victim(server.spec() + "?max_rps=none")(x), digits_model(x), atol=1e-5)


def test_a_server_stating_its_batch_limit_and_policy_is_believed(digits_model, digits_batch):
    """A bastion gateway states max_batch and that it releases probabilities: the client follows both."""
    x = digits_batch[0][:10]
    stated = {"max_batch": 4, "output_policy": "probs"}
    with serve(digits_model, parameters=stated, outputs="probabilities") as server:
        remote = load_victim(server.spec() + "?max_rps=none")
        assert remote.batch_size == 4 and remote.outputs == "probabilities"
        with torch.no_grad():
            assert torch.allclose(torch.softmax(remote(x), 1), torch.softmax(digits_model(x), 1), atol=1e-5)
        assert [rows for *_, rows in server.posts()] == [4, 4, 2]


def _attack(runner: CliRunner, model: str, out: Path, *extra: str) -> dict[str, object]:
    args = ["attack", model, "digits", "--norm", "linf", "--epsilon", "0.1", "--limit", "24", "--seed", "1"]
    result = runner.invoke(app, [*args, *extra, "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_cli_black_box_attack_on_a_remote_model_matches_local(tmp_path):
    runner = CliRunner()
    local_model = zoo.load("digits-cnn")
    local = _attack(
        runner, "zoo:digits-cnn", tmp_path / "local.json", "--attack", "square", "--queries", "60"
    )
    with serve(local_model) as server:
        remote = _attack(
            runner,
            server.spec() + "?max_rps=none",
            tmp_path / "r.json",
            "--attack",
            "square",
            "--queries",
            "60",
        )
        # a gradient attack cannot use a remote model: one line, exit 2
        refused = runner.invoke(
            app, ["attack", server.spec(), "digits", "--attack", "pgd", "--epsilon", "0.1", "--limit", "4"]
        )
    for key in ("clean_accuracy", "success_rate", "queries"):
        assert remote[key] == local[key], key
    assert refused.exit_code == 2 and "black-box" in refused.output


def test_cli_extraction_of_a_remote_model_matches_local(tmp_path):
    """The same seed, pool and budget against the served model and the local one: the same clone."""
    runner = CliRunner()
    common = ["--pool", "digits", "--budget", "80", "--output", "labels", "--steps", "30", "--seed", "2"]

    def extract(victim: str, name: str) -> dict[str, object]:
        res = runner.invoke(
            app, ["extract", victim, *common, "--test-data", "digits", "--json", str(tmp_path / name)]
        )
        assert res.exit_code == 0, res.output
        return json.loads((tmp_path / name).read_text())  # type: ignore[no-any-return]

    local = extract("zoo:digits-mlp", "local.json")
    with serve(zoo.load("digits-mlp")) as server:
        remote = extract(server.spec() + "?max_rps=none", "remote.json")
        posts = len(server.posts())
    assert remote["queries"] == local["queries"] == 80
    assert remote["fidelity"] == local["fidelity"] and remote["accuracy"] == local["accuracy"]
    assert posts >= 1
