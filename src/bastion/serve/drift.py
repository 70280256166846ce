"""Online drift detection: do the live inputs and the model's confidences still look like the reference?

Rows are collected into windows of ``window`` input rows. Each full window is tested against the reference
set in a background thread (the request path only appends rows) with the provenance module's tests
(:mod:`bastion.provenance.ks`, :mod:`bastion.provenance.mmd`, combined as in
:func:`bastion.provenance.drift.drift_test`): one KS test per feature, the features being every input
coordinate plus the model's top-class probability, Benjamini–Hochberg across them (with no drift, BH
bounds the chance of any rejection by its level); and, where the window's significance allows it, an MMD
permutation test on the inputs, the level then split evenly between the two (Bonferroni).

**The false-alarm rate is set by an expected run time.** Over ``hours`` of traffic at ``rows_per_second``
the monitor tests ``windows = ceil(hours * 3600 * rows_per_second / window)`` windows; each is tested at
``alpha_window = false_alarm / windows`` so that, by the union bound (Bonferroni), the chance of *any*
false alarm over the whole run is at most ``false_alarm`` (1 % by default). The KS p-values are
asymptotic and can be as small as that needs; a permutation p-value cannot go below ``1 / (1 +
permutations)``, so the MMD test joins only when ``alpha_window / 2`` is above that floor (short runs,
large windows). A run longer than expected keeps testing at the same level: the bound then grows in
proportion.

An alert goes out when a window drifts after one that did not (not once per drifting window); the gauges
``bastion_gateway_drift_statistic`` (largest KS statistic) and ``bastion_gateway_drift_alarm`` follow
every window.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bastion.errors import GatewayError
from bastion.provenance.ks import benjamini_hochberg, ks_p_values, ks_statistics
from bastion.provenance.mmd import mmd_test

if TYPE_CHECKING:
    from bastion.serve.alerts import Alerter
    from bastion.serve.metrics import Metrics

__all__ = ["DriftMonitor", "WindowResult", "window_alpha"]

logger = logging.getLogger(__name__)


def window_alpha(false_alarm: float, hours: float, rows_per_second: float, window: int) -> float:
    """The per-window significance that keeps the chance of any false alarm over ``hours`` of traffic at
    ``rows_per_second`` input rows, tested in windows of ``window`` rows, at most ``false_alarm``."""
    if not 0.0 < false_alarm < 1.0 or hours <= 0 or rows_per_second <= 0 or window < 1:
        raise GatewayError("drift: false_alarm in (0, 1), hours > 0, rows per second > 0 and window >= 1")
    windows = max(1, math.ceil(hours * 3600.0 * rows_per_second / window))
    return false_alarm / windows


@dataclass(frozen=True)
class WindowResult:
    """One window's test: ``drift`` (rejected at ``alpha``), the largest KS ``statistic`` and the
    smallest BH-adjusted ``q_value`` over ``features`` tested, how many drift, and the MMD p-value (None
    when the level was below the permutation floor)."""

    drift: bool
    alpha: float
    statistic: float
    q_value: float
    features: int
    features_drifting: int
    mmd_p_value: float | None
    rows: int
    time: float


class DriftMonitor:
    """Windows of live rows tested against ``reference`` inputs (N, ...) and the model's top-class
    probabilities on them, ``reference_confidence`` (N,). Cheap :meth:`observe` on the request path;
    the tests run in one background thread (windows that arrive while it is busy wait in a short queue;
    past it they are dropped and counted, never blocking a request)."""

    def __init__(
        self,
        reference: torch.Tensor,
        reference_confidence: torch.Tensor,
        *,
        alpha: float,
        window: int = 200,
        name: str = "model",
        metrics: Metrics | None = None,
        alerter: Alerter | None = None,
        max_reference: int = 5000,
        mmd_samples: int = 300,
        max_permutations: int = 500,
        seed: int = 0,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise GatewayError(f"drift: alpha must be in (0, 1), got {alpha}")
        if window < 2 or reference.shape[0] < 2 or reference.shape[0] != reference_confidence.shape[0]:
            raise GatewayError("drift: need a window >= 2 and >= 2 reference rows with one confidence each")
        self.alpha, self.window, self.name = alpha, window, name
        self.metrics, self.alerter = metrics, alerter
        self._g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(reference.shape[0], generator=self._g)[:max_reference]
        self._reference = self._features(reference[keep], reference_confidence[keep])
        self._mmd_reference = reference[keep[:mmd_samples]].flatten(1).float()
        self._permutations = max_permutations
        self.uses_mmd = 1.0 / (1 + max_permutations) < alpha / 2
        self._pending: list[torch.Tensor] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[torch.Tensor | None] = queue.Queue(maxsize=4)
        self._thread: threading.Thread | None = None
        self.results: list[WindowResult] = []  # the last few, newest last
        self.windows = self.alarms = self.dropped = 0
        self.in_alarm = False

    @staticmethod
    def _features(x: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.flatten(1).float(), confidence.reshape(-1, 1).float()], dim=1).cpu()

    def observe(self, x: torch.Tensor, confidence: torch.Tensor) -> None:
        """Add a request's validated inputs (N, ...) and the model's top-class probabilities (N,)."""
        rows = self._features(x.detach(), confidence.detach())
        full = []
        with self._lock:
            self._pending.append(rows)
            self._pending_rows += rows.shape[0]
            if self._pending_rows >= self.window:
                joined = torch.cat(self._pending)
                n_full = joined.shape[0] // self.window
                full = [joined[i * self.window : (i + 1) * self.window] for i in range(n_full)]
                rest = joined[n_full * self.window :]
                self._pending, self._pending_rows = ([rest] if rest.shape[0] else []), rest.shape[0]
        for window in full:
            self._submit(window)

    def _submit(self, window: torch.Tensor) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"drift-{self.name}", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(window)
        except queue.Full:
            self.dropped += 1
            logger.warning(
                "drift monitor %s is behind; a window of %d rows was not tested", self.name, len(window)
            )

    def _run(self) -> None:
        while (window := self._queue.get()) is not None:
            try:
                self.record(self.test(window))
            except Exception:  # a failed test must not stop the monitor
                logger.exception("drift test of model %s failed", self.name)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def test(self, window: torch.Tensor) -> WindowResult:
        """Test one window of feature rows (inputs flattened, then the confidence) against the reference."""
        a, b = self._reference, window
        tested = torch.nonzero(torch.maximum(a.amax(0), b.amax(0)) > torch.minimum(a.amin(0), b.amin(0)))
        columns = tested.flatten()
        ks_alpha = self.alpha / 2 if self.uses_mmd else self.alpha
        if columns.numel():
            stats = ks_statistics(a[:, columns], b[:, columns])
            q = benjamini_hochberg(ks_p_values(stats, a.shape[0], b.shape[0]))
        else:  # every feature constant on both sides: nothing can have moved
            stats, q = np.zeros(1), np.ones(1)
        drifting = int((q < ks_alpha).sum())
        mmd_p = None
        if self.uses_mmd:
            mmd = mmd_test(self._mmd_reference, b[:, :-1], permutations=self._permutations, generator=self._g)
            mmd_p = mmd.p_value
        drift = drifting > 0 or (mmd_p is not None and mmd_p < self.alpha / 2)
        return WindowResult(
            drift,
            self.alpha,
            float(stats.max()),
            float(q.min()),
            int(columns.numel()),
            drifting,
            mmd_p,
            int(b.shape[0]),
            time.time(),
        )

    def record(self, result: WindowResult) -> None:
        """Count a tested window, update the gauges, and alert when the verdict turns to drift."""
        self.windows += 1
        self.results = [*self.results[-19:], result]
        if self.metrics is not None:
            self.metrics.drift_statistic.labels(self.name).set(result.statistic)
            self.metrics.drift_alarm.labels(self.name).set(1.0 if result.drift else 0.0)
            self.metrics.drift_windows.labels(self.name, "drift" if result.drift else "ok").inc()
        started = result.drift and not self.in_alarm
        self.in_alarm = result.drift
        if not result.drift:
            return
        self.alarms += 1
        message = (
            f"inputs to model {self.name} drifted from the reference: {result.features_drifting} of "
            f"{result.features} features (KS statistic up to {result.statistic:.3f}, q = {result.q_value:.2g}"
            f" < alpha {self.alpha:.2g}) over the last {result.rows} rows"
        )
        if started and self.alerter is not None:
            self.alerter.alert(
                "drift", message, model=self.name, statistic=result.statistic, q_value=result.q_value
            )
        elif started:
            logger.warning("drift: %s", message)

    def status(self) -> dict[str, Any]:
        """What the dashboard shows: windows tested, alarms, the last window's verdict and statistic."""
        last = self.results[-1] if self.results else None
        return {
            "model": self.name,
            "window": self.window,
            "alpha": self.alpha,
            "windows": self.windows,
            "alarms": self.alarms,
            "dropped": self.dropped,
            "pending_rows": self._pending_rows,
            "drift": bool(last and last.drift),
            "statistic": None if last is None else last.statistic,
        }

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every submitted window is tested (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30.0)
            self._thread = None
