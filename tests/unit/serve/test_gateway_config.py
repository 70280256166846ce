"""GatewayConfig from TOML, check_config, and the ``bastion serve`` command (uvicorn replaced)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bastion.cli.serve_cmd as serve_cmd
from bastion.cli.app import app
from bastion.errors import GatewayError
from bastion.serve.config import DEFAULT_DB, GatewayConfig, check_config, load_config

runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_serve_on_loopback_with_sqlite() -> None:
    cfg = GatewayConfig(models={"digits": "zoo:digits-cnn"})
    assert cfg.host == "127.0.0.1" and cfg.port == 8000 and cfg.limits == "memory"
    assert cfg.db == DEFAULT_DB == "sqlite:///bastion-gateway.db"
    assert check_config(cfg) == []


def test_default_db_is_the_storage_default() -> None:
    db = pytest.importorskip("bastion.serve.db")
    assert db.DEFAULT_DB == DEFAULT_DB


def test_load_config_reads_every_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
host = "0.0.0.0"
port = 9001
db = "sqlite:///g.db"
limits = "redis://127.0.0.1:6379/0"
global_rate = 100
global_burst = 50
max_batch = 8
max_body_bytes = 100000
detectors = ["prada"]
on_detection = "throttle"
[models]
digits = "zoo:digits-cnn"
[input_shapes]
digits = [1, 8, 8]
""",
    )
    cfg = load_config(path)
    assert cfg == GatewayConfig(
        models={"digits": "zoo:digits-cnn"},
        host="0.0.0.0",
        port=9001,
        db="sqlite:///g.db",
        limits="redis://127.0.0.1:6379/0",
        global_rate=100.0,
        global_burst=50,
        max_batch=8,
        max_body_bytes=100_000,
        detectors=("prada",),
        on_detection="throttle",
        input_shapes={"digits": (1, 8, 8)},
    )
    assert check_config(cfg) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1", "unknown key 'prot'"),
        ("max-batch = 3", "did you mean 'max_batch'"),
        ("port = '80'", "port = '80' is not valid; write a whole number"),
        ("port = true", "is not valid"),
        ("detectors = 'prada'", "detectors"),
        ("detectors = [1]", "list of names"),
        ("[models]\nd = 3", "models.d must be a model spec string"),
        ("[input_shapes]\nd = 'x'", "input_shapes.d must be a list of sizes"),
        ("port = ", "not valid TOML"),
    ],
)
def test_load_config_refuses_unknown_keys_and_wrong_types(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(GatewayError, match=re.escape(message)):
        load_config(write(tmp_path, text))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(GatewayError, match="not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"models": {}}, "no models to serve"),
        ({"models": {"a/b": "zoo:digits-cnn"}}, "model name 'a/b'"),
        ({"models": {"d": "zoo:nope"}}, "unknown zoo model 'nope'"),
        ({"models": {"d": "oip:ftp://x/models/d"}}, "models.d"),
        ({"models": {"d": "missing.py:build"}}, "file missing.py not found"),
        ({"port": 0}, "port = 0"),
        ({"host": ""}, "host is empty"),
        ({"limits": "mongodb://x"}, "limits = 'mongodb://x'"),
        ({"global_rate": 5.0}, "global_rate and global_burst go together"),
        ({"global_rate": -1.0, "global_burst": 1}, "global_rate = -1.0"),
        ({"tls_cert": "cert.pem"}, "tls_cert and tls_key go together"),
        ({"tls_cert": "nope.pem", "tls_key": "nope.key"}, "tls_cert = nope.pem: file not found"),
        ({"max_batch": 0}, "max_batch = 0"),
        ({"max_body_bytes": 10}, "max_body_bytes = 10"),
        ({"on_detection": "shout"}, "on_detection = 'shout'"),
        ({"detectors": ("prada", "prada")}, "names one twice"),
        ({"input_shapes": {"other": (1, 8, 8)}}, "input_shapes.other: no such model"),
        ({"input_shapes": {"d": (0, 8)}}, "sizes must be >= 1"),
    ],
)
def test_check_config_names_each_problem(changes: dict, message: str) -> None:
    cfg = GatewayConfig(**{"models": {"d": "zoo:digits-cnn"}, **changes})
    problems = check_config(cfg)
    assert any(message in p for p in problems), problems


def test_with_overrides_keeps_what_is_none() -> None:
    cfg = GatewayConfig(models={"d": "zoo:digits-cnn"}, port=9000)
    assert cfg.with_overrides(port=None, host="0.0.0.0") == GatewayConfig(
        models={"d": "zoo:digits-cnn"}, port=9000, host="0.0.0.0"
    )


# -- the CLI -----------------------------------------------------------------------------------------------


def test_served_name_from_spec() -> None:
    assert serve_cmd.served_name("zoo:digits-cnn") == "digits-cnn"
    assert serve_cmd.served_name("oip:http://h:1/models/up") == "up"
    assert serve_cmd.served_name("dir/my net.py:build") == "my-net"


def test_check_config_cli_loads_the_model(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["serve", "zoo:digits-cnn", "--check-config", "--db", f"sqlite:///{tmp_path}/g.db"]
    )
    assert result.exit_code == 0, result.output
    assert "config OK: serves digits-cnn [1, 8, 8] on 127.0.0.1:8000" in result.output
    assert not (tmp_path / "g.db").exists()  # checking creates nothing


def test_check_config_cli_lists_problems(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 0\non_detection = "shout"\n[models]\nd = "zoo:nope"\n')
    result = runner.invoke(app, ["serve", "--config", str(path), "--check-config"])
    assert result.exit_code == 1
    for text in ("port = 0", "on_detection", "unknown zoo model"):
        assert text in result.output


def test_check_config_cli_bad_file_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--config", str(write(tmp_path, "prot = 1")), "--check-config"])
    assert result.exit_code == 2 and "unknown key 'prot'" in result.output


def test_first_run_creates_one_key_prints_it_and_serves_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("bastion.serve.keys")
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: calls.append({"app": application, **kw}))
    db = f"sqlite:///{tmp_path}/g.db"
    result = runner.invoke(app, ["serve", "zoo:digits-cnn", "--db", db, "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8123
    assert calls[0]["ssl_certfile"] is None
    token = re.search(r"bst_[0-9a-f]+_\S+", result.output)
    assert token is not None
    assert "curl -s -H 'Authorization: Bearer " + token[0] in result.output
    assert "http://127.0.0.1:8123/v1/predict" in result.output and "docs/serve.md" in result.output

    from fastapi.testclient import TestClient

    client = TestClient(calls[0]["app"])
    body = {"model": "digits-cnn", "inputs": [[0.0] * 64]}
    answer = client.post("/v1/predict", json=body, headers={"Authorization": f"Bearer {token[0]}"})
    assert answer.status_code == 200 and "scores" not in answer.json()  # the first key releases labels

    again = runner.invoke(app, ["serve", "zoo:digits-cnn", "--db", db])
    assert again.exit_code == 0 and "bst_" not in again.output  # one key, shown once

    from bastion.serve.keys import KeyStore

    assert len(KeyStore(db).list()) == 1


def test_tls_flags_reach_uvicorn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("bastion.serve.keys")
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kw: calls.append(kw))
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x"), key.write_text("y")
    args = ["serve", "zoo:digits-cnn", "--db", f"sqlite:///{tmp_path}/g.db", "--tls-cert", str(cert)]
    result = runner.invoke(app, [*args, "--tls-key", str(key), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert calls[0]["ssl_certfile"] == str(cert) and calls[0]["ssl_keyfile"] == str(key)
    assert calls[0]["host"] == "0.0.0.0" and "https://127.0.0.1:8000" in result.output


def test_input_shape_flag_for_models_that_cannot_tell(tmp_path: Path) -> None:
    factory = tmp_path / "net.py"
    factory.write_text(
        "import torch\n\ndef build():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 3))\n"
    )
    result = runner.invoke(app, ["serve", f"{factory}:build", "--check-config"])
    assert result.exit_code == 2 and "--input-shape" in result.output
    result = runner.invoke(app, ["serve", f"{factory}:build", "--input-shape", "2,3", "--check-config"])
    assert result.exit_code == 0 and "net [2, 3]" in result.output


# -- workers, monitoring ---------------------------------------------------------------------------------


def test_monitoring_and_worker_keys_load_and_round_trip_through_json(tmp_path: Path) -> None:
    import json

    from bastion.serve.config import config_from_dict

    path = write(
        tmp_path,
        'workers = 3\nlimits = "redis://127.0.0.1:6379/0"\nlimits_prefix = "gw1:"\nreference = "digits"\n'
        "drift_window = 100\ndrift_hours = 2\ndrift_false_alarm = 0.05\ndrift_rate = 4\n"
        'alert_webhook = "https://hooks.example/x"\ndashboard = "admin"\nadmin_keys = ["abc"]\n'
        '[models]\nd = "zoo:digits-cnn"\n[input_shapes]\nd = [1, 8, 8]\n',
    )
    cfg = load_config(path)
    assert cfg.workers == 3 and cfg.limits_prefix == "gw1:" and cfg.reference == "digits"
    assert (
        cfg.drift_hours == 2.0 and isinstance(cfg.drift_hours, float) and cfg.expected_rows_per_second == 4.0
    )
    assert cfg.admin_keys == ("abc",) and check_config(cfg) == []
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert GatewayConfig(global_rate=7.0).expected_rows_per_second == 7.0
    assert GatewayConfig().expected_rows_per_second == 10.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("workers = 2", "limits = 'memory'"),
        ("workers = 0", "workers = 0"),
        ("drift_window = 5", "drift_window = 5"),
        ("drift_hours = 0", "drift_hours"),
        ("drift_false_alarm = 1.5", "drift_false_alarm"),
        ('alert_webhook = "ftp://x"', "alert_webhook"),
        ('dashboard = "public"', "dashboard = 'public'"),
        ('dashboard = "admin"', "admin_keys is empty"),
    ],
)
def test_monitoring_and_worker_problems_name_the_fix(tmp_path: Path, text: str, needle: str) -> None:
    cfg = load_config(write(tmp_path, f'{text}\n[models]\nd = "zoo:digits-cnn"\n'))
    problems = check_config(cfg)
    assert len(problems) == 1 and needle in problems[0], problems


def test_worker_config_reaches_uvicorn_as_a_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import uvicorn

    from bastion.serve.factory import CONFIG_ENV, app_from_env

    calls: list[tuple] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    monkeypatch.setenv(CONFIG_ENV, "")  # restored (unset) after the test; the command sets it
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # kept: the workers' metrics go there
    db = f"sqlite:///{tmp_path}/g.db"
    args = ["serve", "zoo:digits-cnn", "--db", db, "--workers", "2", "--limits", "redis://127.0.0.1:6379/0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ((target, kw),) = calls
    assert target == "bastion.serve.factory:app_from_env" and kw["factory"] is True and kw["workers"] == 2
    assert "bst_" in result.output  # the first key is made once, by the parent
    built = app_from_env()  # what each worker builds
    assert built.state.gateway.config.workers == 2 and sorted(built.state.gateway.served) == ["digits-cnn"]
    assert os.environ[CONFIG_ENV]


def test_check_config_builds_the_drift_monitor_and_states_its_level(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "zoo:digits-cnn", "--reference", "digits", "--check-config"])
    assert result.exit_code == 0, result.output
    assert "windows of 200 rows at alpha 2.3e-06" in result.output  # 0.01 / (24 h x 10 rows/s / 200)
    path = write(tmp_path, 'reference = "npz:nope.npz"\n[models]\nd = "zoo:digits-cnn"\n')
    result = runner.invoke(app, ["serve", "--config", str(path), "--check-config"])
    assert result.exit_code != 0 and "config OK" not in result.output
