"""In-line defenses of the gateway: input transforms before the model and adversarial-input detectors
calibrated on reference data, with each key's ``flag`` / ``reject`` policy; through the real app
(TestClient), key store and audit log (SQLite in tmp_path) and the in-memory limiter."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import bastion.cli.keys_cmd
import bastion.cli.serve_cmd
from bastion.attacks.evasion.pgd import PGD
from bastion.cli.app import app as cli
from bastion.data import load_dataset
from bastion.defenses import BitDepth
from bastion.errors import GatewayError
from bastion.loading import load_model
from bastion.serve.app import create_app
from bastion.serve.audit_log import AuditLog
from bastion.serve.config import GatewayConfig, check_config, load_config
from bastion.serve.keys import KeyStore, Scope
from bastion.serve.limits import MemoryLimiter
from bastion.threat import ThreatModel

FAST = {"rate": 1000.0, "burst": 1000, "daily_quota": None}
FPR = 0.01
DETECTOR = "feature-squeezing:bits:2"  # Xu et al.'s 1-bit squeezer erases 8x8 digits: 2 bits here
runner = CliRunner()


@dataclass
class Data:
    reference: str  # npz spec of the calibration rows
    clean: torch.Tensor  # held-out clean rows (not in the reference)
    adversarial: torch.Tensor  # successful PGD adversarials crafted from other held-out rows


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """The digits test split (rows zoo:digits-cnn did not train on), shuffled: 250 calibrate the
    detectors, 100 stay clean, 100 become linf 0.15 PGD adversarials."""
    test = load_dataset("digits", split="test")
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))
    x, y = test.x[perm], test.y[perm]
    path = tmp_path_factory.mktemp("ref") / "reference.npz"
    np.savez(path, x=x[:250, 0].numpy(), y=y[:250].numpy())
    model = load_model("zoo:digits-cnn")
    attack = PGD(steps=20)(model, x[350:450], y[350:450], ThreatModel("linf", 0.15))
    return Data(f"npz:{path}", x[250:350], attack.x_adv[attack.success])


class Counting:
    """zoo:digits-cnn counting its calls and keeping what it was given."""

    def __init__(self) -> None:
        self.inner = load_model("zoo:digits-cnn")
        self.bounds, self.name, self.num_classes = self.inner.bounds, self.inner.name, 10
        self.seen: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.inner(x)


class Gateway:
    def __init__(self, tmp_path: Path, **config: Any) -> None:
        db = f"sqlite:///{tmp_path}/gw-{time.monotonic_ns()}.db"
        self.model = Counting()
        self.keys, self.log = KeyStore(db), AuditLog(db)
        self.config = GatewayConfig(models={"digits": "zoo:digits-cnn"}, db=db, **config)
        self.app = create_app(
            self.config, models={"digits": self.model}, keys=self.keys, limiter=MemoryLimiter(), log=self.log
        )
        self.client = TestClient(self.app)

    def key(self, **scope: Any) -> tuple[str, str]:
        key, token = self.keys.create("k", Scope(**{**FAST, **scope}))
        return key.key_id, token

    def infer(self, token: str, x: torch.Tensor) -> Any:
        tensor = {"name": "input-0", "shape": list(x.shape), "datatype": "FP32", "data": x.flatten().tolist()}
        return self.client.post(
            "/v2/models/digits/infer", json={"inputs": [tensor]}, headers={"X-API-Key": token}
        )


def flagged_rows(flags: tuple[str, ...]) -> int:
    """Rows the input detector flagged, read from a request's audit flags."""
    hits = [re.match(r"input:feature-squeezing: (\d+) of (\d+) rows", f) for f in flags]
    return sum(int(m[1]) for m in hits if m)


def detecting(tmp_path: Path, data: Data) -> Gateway:
    return Gateway(tmp_path, reference=data.reference, input_detectors=(DETECTOR,), input_detector_fpr=FPR)


# -- transforms -------------------------------------------------------------------------------------------


def test_a_transform_changes_what_the_model_sees(tmp_path: Path, data: Data) -> None:
    gw = Gateway(tmp_path, transforms=("bit-depth:1",))
    _, token = gw.key(output="probs")
    x = data.clean[:40]
    response = gw.infer(token, x)
    assert response.status_code == 200, response.text
    released = torch.tensor(response.json()["outputs"][0]["data"]).view(40, 10)
    squeezed = BitDepth(bits=1)(x)
    with torch.no_grad():
        on_squeezed, on_raw = gw.model.inner(squeezed).softmax(1), gw.model.inner(x).softmax(1)
    torch.testing.assert_close(gw.model.seen[-1], squeezed)
    torch.testing.assert_close(released, on_squeezed, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(released, on_raw, atol=1e-3)  # the transform did something to the answers
    assert int((on_squeezed.argmax(1) != on_raw.argmax(1)).sum()) > 0
    (record,) = gw.log.records()
    assert record.input_digest == hashlib.sha256(x.numpy().tobytes()).hexdigest()  # what the client sent


def test_transforms_apply_in_order_and_accept_the_library_names(tmp_path: Path, data: Data) -> None:
    gw = Gateway(tmp_path, transforms=("median:2,bits:3",))
    _, token = gw.key()
    assert gw.infer(token, data.clean[:5]).status_code == 200
    expected = BitDepth(bits=3)(gw.app.state.gateway.inline.transforms[0](data.clean[:5]))
    torch.testing.assert_close(gw.model.seen[-1], expected)


# -- detectors --------------------------------------------------------------------------------------------


def test_feature_squeezing_flags_pgd_adversarials_and_about_the_fpr_of_clean_rows(
    tmp_path: Path, data: Data
) -> None:
    gw = detecting(tmp_path, data)

    def flagged_share(x: torch.Tensor) -> float:
        key_id, token = gw.key()
        for batch in x.split(50):
            assert gw.infer(token, batch).status_code == 200  # 'flag' keys are answered
        return sum(flagged_rows(r.flags) for r in gw.log.records(key_id=key_id)) / len(x)

    clean_rate, detected = flagged_share(data.clean), flagged_share(data.adversarial)
    print(
        f"\nfeature squeezing (bits:2) at fpr {FPR}: {detected:.1%} of {len(data.adversarial)} PGD "
        f"adversarials flagged, {clean_rate:.1%} of {len(data.clean)} held-out clean rows"
    )
    assert len(data.adversarial) >= 80
    # 82.5 % measured at linf 0.15 (35 % at 0.2: larger steps land far from the boundary, where
    # squeezing no longer moves the prediction; the detector's limit, not the gateway's)
    assert detected >= 0.75
    assert clean_rate <= 0.05  # 1 % asked; 100 held-out rows: a few points of noise


def test_a_reject_key_gets_422_and_nothing_released(tmp_path: Path, data: Data) -> None:
    gw = detecting(tmp_path, data)
    key_id, token = gw.key(on_input_flag="reject")
    answers = sum(len(x) == 8 for x in gw.model.seen)  # the detector's own calls hold 2 x 8 rows
    refused = gw.infer(token, data.adversarial[:8])
    assert refused.status_code == 422
    assert set(refused.json()) == {"error"}
    message = refused.json()["error"]
    assert "feature-squeezing" in message and "rejects flagged inputs" in message
    assert sum(len(x) == 8 for x in gw.model.seen) == answers  # the model never answered them
    (record,) = gw.log.records(key_id=key_id)
    assert record.status == 422 and record.output is None and record.rows == 8
    assert any(f.startswith("input:feature-squeezing") for f in record.flags)

    detector = gw.app.state.gateway.inline.detectors["digits"][0]
    clean = data.clean[~detector.detect(data.clean)][:10]  # rows it does not flag
    answered = gw.infer(token, clean)
    assert answered.status_code == 200
    torch.testing.assert_close(gw.model.seen[-1], clean)
    assert gw.log.records(key_id=key_id)[-1].flags == ()


def test_a_flag_key_is_answered_with_the_flag_in_its_audit_record_and_metrics(
    tmp_path: Path, data: Data
) -> None:
    gw = detecting(tmp_path, data)
    key_id, token = gw.key(on_input_flag="flag")
    response = gw.infer(token, data.adversarial[:8])
    assert response.status_code == 200 and len(response.json()["outputs"][0]["data"]) == 80
    (record,) = gw.log.records(key_id=key_id)
    assert record.status == 200 and record.output is not None
    assert flagged_rows(record.flags) >= 1
    metrics = gw.client.get("/metrics").text
    assert 'bastion_gateway_detector_flags_total{detector="input:feature-squeezing"} 1.0' in metrics


def test_strip_is_calibrated_and_runs_in_line(tmp_path: Path, data: Data) -> None:
    gw = Gateway(tmp_path, reference=data.reference, input_detectors=("strip:16",), input_detector_fpr=0.05)
    (detector,) = gw.app.state.gateway.inline.detectors["digits"]
    assert detector.name == "strip" and detector.calibration.n_clean == 250
    _, token = gw.key()
    assert gw.infer(token, data.clean[:10]).status_code == 200


# -- configuration ----------------------------------------------------------------------------------------


def test_check_config_refuses_bad_inline_settings_one_line_each() -> None:
    base = {"models": {"digits": "zoo:digits-cnn"}}
    assert check_config(GatewayConfig(**base, transforms=("bits:5", "jpeg:75"))) == []
    cases = {
        "transforms": ({"transforms": ("blur:3",)}, "unknown transform 'blur'"),
        "detector": ({"input_detectors": ("magnet",), "reference": "digits"}, "unknown detector 'magnet'"),
        "reference": ({"input_detectors": ("feature-squeezing",)}, "set reference"),
        "fpr": ({"input_detector_fpr": 1.5}, "input_detector_fpr = 1.5"),
        "squeezer": ({"input_detectors": ("feature-squeezing:bits:x",), "reference": "digits"}, "bits"),
        "twice": ({"input_detectors": ("strip", "strip:8"), "reference": "digits"}, "names one twice"),
    }
    for what, (extra, text) in cases.items():
        problems = check_config(GatewayConfig(**base, **extra))
        assert len(problems) == 1 and text in problems[0], (what, problems)
        assert "\n" not in problems[0]


def test_detectors_without_reference_are_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(GatewayError, match="set reference"):
        Gateway(tmp_path, input_detectors=("feature-squeezing",))


def test_toml_keys_are_the_flag_names(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        'transforms = ["bits:5"]\ninput_detectors = ["feature-squeezing:bits:2"]\n'
        'input_detector_fpr = 0.02\nreference = "digits"\n[models]\ndigits = "zoo:digits-cnn"\n'
    )
    cfg = load_config(path)
    assert cfg.transforms == ("bits:5",) and cfg.input_detectors == ("feature-squeezing:bits:2",)
    assert cfg.input_detector_fpr == 0.02 and check_config(cfg) == []
    path.write_text('transforms = "bits:5"\n')
    with pytest.raises(GatewayError, match="transforms"):
        load_config(path)


def test_serve_cli_flags(tmp_path: Path) -> None:
    assert bastion.cli.serve_cmd.serve  # importing the module registers 'bastion serve'
    db = ["--db", f"sqlite:///{tmp_path}/g.db"]
    ok = runner.invoke(
        cli,
        ["serve", "zoo:digits-cnn", *db, "--check-config", "--transform", "bits:5", "--transform", "median:2",
         "--input-detector", DETECTOR, "--reference", "digits", "--input-detector-fpr", "0.02"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "in-line defenses: transforms bits:5, median:2" in ok.output and "feature-squeezing" in ok.output
    no_reference = runner.invoke(
        cli, ["serve", "zoo:digits-cnn", *db, "--check-config", "--input-detector", "feature-squeezing"]
    )
    assert no_reference.exit_code == 1 and "set reference" in no_reference.output
    bad = runner.invoke(cli, ["serve", "zoo:digits-cnn", *db, "--check-config", "--transform", "bits:5,nope"])
    assert bad.exit_code == 1 and "unknown transform 'nope'" in bad.output


# -- keys -------------------------------------------------------------------------------------------------


def test_scope_policy_is_stored_and_old_scopes_read_as_flag(tmp_path: Path) -> None:
    assert Scope().on_input_flag == "flag"
    old = {"models": ["*"], "output": "labels", "rate": 5.0, "burst": 10, "daily_quota": 10000}
    assert Scope.from_dict(old) == Scope()
    reject = Scope(on_input_flag="reject")
    assert Scope.from_dict(reject.to_dict()) == reject and reject.to_dict()["on_input_flag"] == "reject"
    assert Scope().to_dict() == old  # the default is not written: stored JSON unchanged
    with pytest.raises(GatewayError, match="on_input_flag must be one of flag, reject"):
        Scope(on_input_flag="drop")

    db = f"sqlite:///{tmp_path}/k.db"
    assert bastion.cli.keys_cmd.keys_app  # importing the module registers 'bastion keys'
    made = runner.invoke(cli, ["keys", "create", "alice", "--on-input-flag", "reject", "--db", db])
    assert made.exit_code == 0, made.output
    (key,) = KeyStore(db).list()
    assert key.scope.on_input_flag == "reject"
    bad = runner.invoke(cli, ["keys", "create", "bob", "--on-input-flag", "maybe", "--db", db])
    assert bad.exit_code != 0 and "on_input_flag" in bad.output
