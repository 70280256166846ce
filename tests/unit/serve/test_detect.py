"""Per-key attack detection: bastion's own attacks are flagged, benign traffic is not, memory is bounded.

Streams are recorded from the real attacks against the zoo's digits CNN (a recording victim keeps every
batch an attack sends) and replayed into the detectors 16 rows a request, as a gateway would see them.
The MNIST versions (the issue's numbers) are marked slow.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bastion.attacks.evasion.hopskipjump import HopSkipJump
from bastion.attacks.evasion.square import Square
from bastion.attacks.extraction import CloneTraining, JacobianAugmentation, KnockoffNets
from bastion.data import load_dataset
from bastion.errors import GatewayError
from bastion.serve.detect import PRADA, Flag, OODRateDetector, QueryDetector, StatefulDetector
from bastion.serve.detect._base import KEY_OVERHEAD_BYTES, KeyStates, Ring
from bastion.serve.detect.prada import CLASS_OVERHEAD_BYTES
from bastion.threat import ThreatModel
from bastion.zoo import load

MNIST = Path("/work/shared/data/mnist")
FASHION = Path("/work/shared/data/fashion-mnist")
BATCH = 16  # rows per request when a recorded stream is replayed
TINY = CloneTraining(steps=20)  # the clones do not matter here, only the queries


class Recorder:
    """A victim that answers like ``model`` and keeps every input row it was sent, in order."""

    def __init__(self, model) -> None:
        self.model, self.bounds, self.num_classes = model, model.bounds, model.num_classes
        self.xs: list[torch.Tensor] = []
        self.ps: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.xs.append(x.detach().clone())
        self.ps.append(torch.softmax(out.detach(), dim=1))
        return out

    def stream(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat(self.xs), torch.cat(self.ps)


def first_flag(det: QueryDetector, x: torch.Tensor, p: torch.Tensor, key: str = "attacker") -> int | None:
    """Queries the key had sent when its first flag came (None: never flagged)."""
    for i in range(0, len(x), BATCH):
        flags = det.observe(key, x[i : i + BATCH], p[i : i + BATCH])
        if flags:
            assert all(isinstance(f, Flag) and f.detector == det.name for f in flags)
            return min(i + BATCH, len(x))
    return None


def flagged_benign_keys(det: QueryDetector, x: torch.Tensor, p: torch.Tensor, keys: int, per_key: int) -> int:
    """Keys flagged among ``keys`` benign keys, each sending ``per_key`` of ``x`` in its own order."""
    flagged = 0
    for k in range(keys):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(100 + k))[:per_key]
        flagged += first_flag(det, x[order], p[order], key=f"benign-{k}") is not None
    return flagged


def softmax_of(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)


class Victim:
    def __init__(self, model, train, test) -> None:
        self.model, self.train, self.test = model, train, test
        self.train_p, self.test_p = softmax_of(model, train.x), softmax_of(model, test.x)

    def record(self, attack) -> tuple[torch.Tensor, torch.Tensor]:
        recorder = Recorder(self.model)
        attack(recorder)
        return recorder.stream()


@pytest.fixture(scope="module")
def digits() -> Victim:
    return Victim(
        load("digits-cnn"), load_dataset("digits", split="train"), load_dataset("digits", split="test")
    )


def fashion_pool(side: int, n: int) -> torch.Tensor:
    if not FASHION.exists():
        pytest.skip(f"Fashion-MNIST is not at {FASHION}")
    x = load_dataset(f"fashion-mnist:{FASHION}", split="test").x[:n]
    if side != x.shape[-1]:  # a natural pool for 8x8 digits: clothes shrunk and rescaled to [0, 1]
        x = F.adaptive_avg_pool2d(x, side)
        x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return x


def evasion_streams(v: Victim, n_images: int = 1) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    # small budgets the attacks do not reach at once, so they keep probing (a quick success needs no
    # detector: the attacker already won)
    x, y = v.test.x[:n_images], v.test.y[:n_images]
    return {
        "square-linf": v.record(lambda r: Square(n_queries=300)(r, x, y, ThreatModel("linf", 0.05))),
        "square-l2": v.record(lambda r: Square(n_queries=300)(r, x, y, ThreatModel("l2", 0.3))),
        "hopskipjump": v.record(lambda r: HopSkipJump(max_queries=400)(r, x, y, ThreatModel("l2", math.inf))),
    }


# --- the contract ------------------------------------------------------------------------------


def test_detectors_follow_the_protocol(digits):
    ood = OODRateDetector().calibrate(digits.train.x, digits.train_p)
    for det in (PRADA(), StatefulDetector(), ood):
        assert isinstance(det, QueryDetector)
        assert det.observe("k", digits.test.x[:3], digits.test_p[:3]) == []
        assert det.memory_bytes() > 0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: PRADA(delta=1.5), "delta"),
        (lambda: PRADA(min_samples=50, window=20), "window"),
        (lambda: StatefulDetector(k=0), "k must"),
        (lambda: StatefulDetector(k=20, history=10), "history"),
        (lambda: StatefulDetector(threshold=0.0), "threshold"),
        (lambda: OODRateDetector(quantile=0.3), "quantile"),
        (lambda: OODRateDetector(max_keys=0), "max_keys"),
    ],
)
def test_bad_settings_name_the_fix(make, match):
    with pytest.raises(GatewayError, match=match):
        make()


def test_ood_needs_calibration_and_one_input_shape(digits):
    with pytest.raises(GatewayError, match="calibrate"):
        OODRateDetector().observe("k", digits.test.x[:2], digits.test_p[:2])
    det = StatefulDetector()
    det.observe("k", digits.test.x[:2], digits.test_p[:2])
    with pytest.raises(GatewayError, match="one detector per model input shape"):
        det.observe("k", torch.rand(2, 1, 28, 28), digits.test_p[:2])


def test_ring_keeps_the_most_recent_rows():
    ring = Ring(5)
    for i in range(12):
        ring.append(torch.full((3,), float(i)))
    assert ring.count == 5 and ring.nbytes() == 5 * 3 * 4
    assert sorted(ring.rows()[:, 0].tolist()) == [7.0, 8.0, 9.0, 10.0, 11.0]
    small = Ring(1000)
    small.append(torch.zeros(3))
    assert small.nbytes() < 100  # grows with use, not allocated at capacity


def test_key_lru_drops_the_stalest():
    states: KeyStates[list[int]] = KeyStates(list, max_keys=3)
    for key in ("a", "b", "c"):
        states.get(key)
    states.get("a")  # touch: "b" is now the stalest
    states.get("d")
    assert "b" not in states and all(k in states for k in "acd") and len(states) == 3


# --- stateful detection: Square and HopSkipJump --------------------------------------------------


def test_stateful_flags_square_and_hopskipjump_within_tens_of_queries(digits):
    for name, (x, p) in evasion_streams(digits).items():
        det = StatefulDetector().calibrate(digits.train.x)
        delay = first_flag(det, x, p)
        assert delay is not None and delay <= 48, (name, delay, len(x))


@pytest.mark.parametrize(
    ("attack", "threat"),
    [
        (Square(n_queries=100), ThreatModel("linf", 0.05)),
        (HopSkipJump(max_queries=150), ThreatModel("l2", math.inf)),
    ],
    ids=["square", "hopskipjump"],
)
def test_stateful_flags_a_batch_of_eight_images(digits, attack, threat):
    # eight images attacked together interleave their probes: each needs k of its own before a score
    x, y = digits.test.x[:8], digits.test.y[:8]
    stream = digits.record(lambda r: attack(r, x, y, threat))
    delay = first_flag(StatefulDetector().calibrate(digits.train.x), *stream)
    assert delay is not None and delay <= 200, delay


def test_stateful_quiet_on_benign_keys(digits):
    det = StatefulDetector().calibrate(digits.train.x)
    # the threshold sits well below every benign score, calibrated on the training split only
    assert 0.03 < det.threshold < 0.12
    assert flagged_benign_keys(det, digits.test.x, digits.test_p, keys=20, per_key=450) == 0
    assert flagged_benign_keys(StatefulDetector(), digits.test.x, digits.test_p, keys=20, per_key=450) == 0


def test_stateful_clears_after_a_flag_and_repeats_are_caught():
    det = StatefulDetector(k=3, history=10, threshold=0.01)
    x = torch.rand(1, 1, 8, 8).repeat(4, 1, 1, 1)
    p = torch.full((4, 10), 0.1)
    (flag,) = det.observe("k", x, p)
    assert flag.score == 0.0 and flag.threshold == 0.01 and "1 of 4" in flag.message
    # the buffer was cleared and holds only the flagged query: k buffered queries again before a score
    assert det.observe("k", x[:2], p[:2]) == []
    assert det.observe("k", x[:1], p[:1])


def test_stateful_is_evaded_by_spreading_queries_over_keys(digits):
    # the documented limit: each key sees at most k queries, so no k-NN score is ever computed
    x, p = evasion_streams(digits)["square-linf"]
    det = StatefulDetector().calibrate(digits.train.x)
    flags = [det.observe(f"sybil-{i % 40}", x[i : i + 1], p[i : i + 1]) for i in range(min(len(x), 400))]
    assert not any(flags)


# --- PRADA: Jacobian augmentation ----------------------------------------------------------------


def test_prada_flags_jacobian_augmentation_within_500_queries(digits):
    # 50 seeds: on 8x8 digits the synthetic steps (lambda 0.1) are only about half a natural nearest
    # distance, so the default 150 seeds stay above delta (W 0.94, see DEFAULT_DELTA); MNIST's slow test
    # uses the attack's defaults
    attack = JacobianAugmentation("labels", seed_size=50, budgets=(), training=TINY)
    x, p = digits.record(lambda r: attack.run(r, digits.test.x, 500, seed=0))
    delay = first_flag(PRADA(), x, p)
    assert delay is not None and delay <= 500


def test_prada_quiet_on_benign_keys_and_calibrates_below_them(digits):
    assert flagged_benign_keys(PRADA(), digits.test.x, digits.test_p, keys=20, per_key=450) == 0
    det = PRADA().calibrate(digits.train.x, digits.train_p, keys=5, margin=0.0, seed=100)
    assert 0.85 < det.delta < 0.99
    # with no margin, delta is the lowest W those very keys reached (same orders, same requests):
    # replaying them raises no flag, and a delta a hair above it flags the key that reached it
    assert flagged_benign_keys(det, digits.train.x, digits.train_p, keys=5, per_key=1000) == 0
    det = PRADA(delta=det.delta + 1e-6)
    assert flagged_benign_keys(det, digits.train.x, digits.train_p, keys=5, per_key=1000) == 1


def test_prada_flags_exact_repeats():
    det = PRADA(min_samples=10)
    x, p = torch.rand(1, 1, 8, 8).repeat(30, 1, 1, 1), torch.eye(10)[[3] * 30]
    (flag,) = det.observe("k", x, p)
    assert flag.score == 0.0 and flag.detector == "prada"
    assert det.statistic("k") == 0.0 and det.statistic("unknown") is None


# --- out-of-distribution rate: Knockoff from a natural pool --------------------------------------


def test_ood_flags_knockoff_with_a_natural_pool(digits):
    pool = fashion_pool(8, 1000)
    x, p = digits.record(
        lambda r: KnockoffNets("random", "probs", budgets=(), training=TINY).run(r, pool, 500)
    )
    det = OODRateDetector().calibrate(digits.train.x, digits.train_p)
    delay = first_flag(det, x, p)
    assert delay is not None and delay <= 100


def test_ood_sees_inputs_even_when_the_key_gets_labels_only(digits):
    pool = fashion_pool(8, 300)
    one_hot = torch.eye(10)[softmax_of(digits.model, pool).argmax(1)]
    det = OODRateDetector().calibrate(digits.train.x, digits.train_p)
    assert first_flag(det, pool, one_hot) is not None


def test_ood_quiet_on_benign_keys(digits):
    det = OODRateDetector().calibrate(digits.train.x, digits.train_p)
    assert det.benign_rate is not None and 0.01 <= det.benign_rate < 0.2
    assert flagged_benign_keys(det, digits.test.x, digits.test_p, keys=20, per_key=450) == 0


# --- memory ---------------------------------------------------------------------------------------


def test_memory_stays_bounded_over_many_keys(digits):
    g = torch.Generator().manual_seed(0)
    ood = OODRateDetector(max_keys=200).calibrate(digits.train.x, digits.train_p)
    dets = [PRADA(max_keys=200), StatefulDetector(max_keys=200), ood]
    for step in range(100):  # 10,000 queries over 1,000 keys, 10 per request
        rows = torch.randint(0, len(digits.test.x), (100,), generator=g)
        for det in dets:
            for j in range(10):
                key = f"key-{(step * 10 + j) % 1000}"
                det.observe(
                    key, digits.test.x[rows[10 * j : 10 * j + 10]], digits.test_p[rows[10 * j : 10 * j + 10]]
                )
    prada, stateful, _ = dets
    # stated caps: per key, the stored codes at capacity (float32) plus bookkeeping
    per_key = {
        "prada": 10 * (prada.max_per_class * (64 * 4 + 32) + CLASS_OVERHEAD_BYTES) + 32 * prada.window,
        "stateful": stateful.history * 64 * 4,
        "ood": 8 * (ood.window + 64),
    }
    for det in dets:
        assert len(det.keys) == 200
        cap = 200 * (per_key[det.name] + KEY_OVERHEAD_BYTES) + 2**20
        assert det.memory_bytes() <= cap, (det.name, det.memory_bytes(), cap)
    assert dets[1].memory_bytes() < 8 * 2**20


# --- MNIST, the setting (slow) -----------------------------------------------------------


@pytest.fixture(scope="module")
def mnist() -> Victim:
    if not MNIST.exists():
        pytest.skip(f"MNIST is not at {MNIST}")
    train = load_dataset(f"mnist:{MNIST}", split="train")
    train = type(train)(train.x[:5000], train.y[:5000], train.num_classes, name="mnist-5k")
    return Victim(load("mnist-cnn"), train, load_dataset(f"mnist:{MNIST}", split="test"))


@pytest.mark.slow
def test_mnist_attacks_flagged_and_10k_benign_queries_raise_no_alert(mnist):
    stateful = StatefulDetector().calibrate(mnist.train.x)
    for name, (x, p) in evasion_streams(mnist).items():
        delay = first_flag(StatefulDetector().calibrate(mnist.train.x), x, p)
        assert delay is not None and delay <= 200, (name, delay)
    jacobian = JacobianAugmentation("labels", budgets=(), training=TINY)
    x, p = mnist.record(lambda r: jacobian.run(r, mnist.test.x, 500, seed=0))
    delay = first_flag(PRADA(), x, p)
    assert delay is not None and delay <= 500
    pool = fashion_pool(28, 1000)
    x, p = mnist.record(
        lambda r: KnockoffNets("random", "probs", budgets=(), training=TINY).run(r, pool, 1000)
    )
    ood = OODRateDetector().calibrate(mnist.train.x, mnist.train_p)
    delay = first_flag(ood, x, p)
    assert delay is not None and delay <= 100
    # 20 keys x 500 test images: 10,000 benign queries, no alert from any detector
    for det in (
        PRADA(),
        stateful,
        StatefulDetector(),
        OODRateDetector().calibrate(mnist.train.x, mnist.train_p),
    ):
        assert flagged_benign_keys(det, mnist.test.x, mnist.test_p, keys=20, per_key=500) == 0, det.name
