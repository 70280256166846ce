"""Online drift detection: the per-window level, no alarm on in-distribution digits, an alarm within one
window on rotated or noisy digits, the false-alarm rate under the null, and the background thread."""

from __future__ import annotations

import math
import time

import pytest
import torch

from bastion.data import load_dataset
from bastion.errors import GatewayError
from bastion.loading import load_model
from bastion.serve.alerts import Alerter
from bastion.serve.drift import DriftMonitor, window_alpha
from bastion.serve.metrics import Metrics

WINDOW = 50


@pytest.fixture(scope="module")
def digits() -> dict[str, torch.Tensor]:
    model = load_model("zoo:digits-cnn")
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    g = torch.Generator().manual_seed(1)
    shifted = {
        "rotated": test.x.rot90(1, (2, 3)),
        "noisy": (test.x + 0.3 * torch.randn(test.x.shape, generator=g)).clamp(0, 1),
    }

    def conf(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x).softmax(1).amax(1)

    out = {"ref": train.x, "ref_conf": conf(train.x), "live": test.x, "live_conf": conf(test.x)}
    for name, x in shifted.items():
        out[name], out[f"{name}_conf"] = x, conf(x)
    return out


class Recorder:
    def __init__(self) -> None:
        self.alerts: list[tuple[str, str, dict]] = []
        self.metrics = None

    def alert(self, kind: str, message: str, **details: object) -> None:
        self.alerts.append((kind, message, details))


def monitor(d: dict[str, torch.Tensor], **kw: object) -> DriftMonitor:
    alpha = window_alpha(0.01, hours=24, rows_per_second=10, window=WINDOW)
    return DriftMonitor(d["ref"], d["ref_conf"], alpha=alpha, window=WINDOW, name="digits", **kw)  # type: ignore[arg-type]


def test_window_alpha_spreads_the_false_alarm_budget_over_the_expected_windows() -> None:
    # 24 h at 10 rows/s in windows of 200 rows: 4320 windows
    assert window_alpha(0.01, 24, 10, 200) == pytest.approx(0.01 / 4320)
    assert window_alpha(0.01, 1, 10, 200) == pytest.approx(0.01 / 180)
    assert window_alpha(0.05, 0.001, 1, 1000) == 0.05  # fewer than one window expected: one
    with pytest.raises(GatewayError):
        window_alpha(1.5, 24, 10, 200)


def test_in_distribution_windows_raise_no_alarm(digits: dict[str, torch.Tensor]) -> None:
    alerts = Recorder()
    mon = monitor(digits, alerter=alerts)
    n = len(digits["live"]) // WINDOW
    assert n >= 8
    for i in range(n):
        rows = slice(i * WINDOW, (i + 1) * WINDOW)
        mon.record(mon.test(mon._features(digits["live"][rows], digits["live_conf"][rows])))
    assert mon.windows == n and mon.alarms == 0 and alerts.alerts == []
    assert all(r.q_value > mon.alpha for r in mon.results)


@pytest.mark.parametrize("shift", ["rotated", "noisy"])
def test_shifted_inputs_alarm_within_one_window(digits: dict[str, torch.Tensor], shift: str) -> None:
    alerts, metrics = Recorder(), Metrics()
    mon = monitor(digits, alerter=alerts, metrics=metrics)
    mon.record(mon.test(mon._features(digits["live"][:WINDOW], digits["live_conf"][:WINDOW])))
    assert not mon.in_alarm
    for i in range(3):  # the first shifted window alarms; the next ones keep the alarm without re-alerting
        rows = slice(i * WINDOW, (i + 1) * WINDOW)
        result = mon.test(mon._features(digits[shift][rows], digits[f"{shift}_conf"][rows]))
        mon.record(result)
        assert result.drift and result.q_value < mon.alpha and result.features_drifting > 0
    assert mon.alarms == 3 and [a[0] for a in alerts.alerts] == ["drift"]
    assert "digits" in alerts.alerts[0][1]
    assert metrics.drift_alarm.labels("digits")._value.get() == 1.0
    assert metrics.drift_statistic.labels("digits")._value.get() == pytest.approx(result.statistic)


def test_false_alarm_rate_under_the_null_is_at_most_alpha() -> None:
    # 200 windows from the reference's own distribution at alpha 0.1: about 20 alarms at most
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(1000, 6, generator=g)
    mon = DriftMonitor(ref, torch.rand(1000, generator=g), alpha=0.1, window=40, max_permutations=10)
    assert not mon.uses_mmd  # 1/11 is above 0.05: the permutation test could not reach the level
    alarms = sum(
        mon.test(mon._features(torch.randn(40, 6, generator=g), torch.rand(40, generator=g))).drift
        for _ in range(200)
    )
    assert alarms <= 200 * 0.1 + 3 * math.sqrt(200 * 0.1 * 0.9)
    shifted = mon.test(mon._features(torch.randn(40, 6, generator=g) + 1.0, torch.rand(40, generator=g)))
    assert shifted.drift


def test_mmd_joins_when_the_level_allows_it(digits: dict[str, torch.Tensor]) -> None:
    mon = DriftMonitor(digits["ref"], digits["ref_conf"], alpha=0.05, window=WINDOW, max_permutations=200)
    assert mon.uses_mmd
    calm = mon.test(mon._features(digits["live"][:WINDOW], digits["live_conf"][:WINDOW]))
    moved = mon.test(mon._features(digits["rotated"][:WINDOW], digits["rotated_conf"][:WINDOW]))
    assert calm.mmd_p_value is not None and moved.mmd_p_value is not None
    assert moved.mmd_p_value < 0.025 < calm.mmd_p_value


def test_observe_is_cheap_and_tests_full_windows_in_the_background(digits: dict[str, torch.Tensor]) -> None:
    alerter = Alerter()
    mon = monitor(digits, alerter=alerter)
    start = time.perf_counter()
    sent = 0
    for i in range(0, 2 * WINDOW + 7, 7):  # uneven request sizes straddle the window boundary
        mon.observe(digits["noisy"][i : i + 7], digits["noisy_conf"][i : i + 7])
        sent += 7
    took = time.perf_counter() - start
    mon.flush()
    assert mon.windows == 2 and mon.alarms == 2 and mon.status()["pending_rows"] == sent - 2 * WINDOW
    assert mon.status()["drift"] is True
    assert took < 0.5  # the tests ran in the monitor's thread, not in observe
    mon.close()
