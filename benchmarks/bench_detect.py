"""Detectors on the MNIST CNN: how many successful adversarials they catch at a fixed false-positive rate,
and how many an adaptive attack still gets past them.

Non-adaptive attacks (Xu et al. 2018's setting): PGD-40, linf eps = 0.3 (Madry et al.'s MNIST budget), and
Carlini-Wagner L2 (minimum norm, unbounded). Each runs through ``bastion.evaluate``; only successful
adversarials (clean-correct inputs the attack fooled) count. Detectors are fitted on ``--n-clean`` clean
test images, and TPR/AUC are measured against a disjoint set of ``--n-clean`` held-out clean images. Then
:class:`bastion.detect.AdaptiveAttack` (PGD-``--adaptive-steps`` on classifier + detector, BPDA through
the squeezers) attacks the same inputs at linf 0.3, l2 2.0 and l2 3.0, with detector weights 1 and 0.5 in
a cascade (an input counts as evading if either weight gets it past the detector).

Target (issue 4): feature squeezing detects at least 90% of successful non-adaptive PGD and C&W
adversarials at 5% FPR.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_detect.py [--n 500] [--n-clean 1000]
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch

from _common import data_spec, environment, markdown
from bastion import ThreatModel, evaluate, zoo
from bastion.attacks import PGD, CarliniWagner
from bastion.data import load_dataset
from bastion.defenses import BitDepth, MedianSmoothing
from bastion.detect import (
    AdaptiveAttack,
    ConfidenceDetector,
    Detector,
    FeatureSqueezing,
    evaluate_detector,
    joint_success,
    successful_adversarials,
)

LP = (("linf", 0.3), ("l2", 2.0), ("l2", 3.0))
ADAPTIVE = {f"adaptive PGD {norm} {eps:g}": ThreatModel(norm, eps) for norm, eps in LP}
DETECTOR_WEIGHTS = (1.0, 0.5)
ADAPTIVE_TARGETS = ("feature squeezing (1-bit + median 2x2)", "confidence (MSP)")


def split(model_name: str, n: int, n_clean: int, seed: int) -> dict[str, torch.Tensor]:
    """Disjoint, shuffled test subsets: fit / held-out clean, and ``n`` inputs the model gets right."""
    ds = load_dataset(data_spec(model_name), split="test")
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))  # file order is not iid
    x, y = ds.x[perm], ds.y[perm]
    model = zoo.load(model_name)
    pool_x, pool_y = x[2 * n_clean :], y[2 * n_clean :]
    with torch.no_grad():
        ok = model(pool_x[: 2 * n]).argmax(1) == pool_y[: 2 * n]
    return {
        "fit": x[:n_clean],
        "held_out": x[n_clean : 2 * n_clean],
        "x": pool_x[: 2 * n][ok][:n],
        "y": pool_y[: 2 * n][ok][:n],
    }


def adaptive(
    detector: Detector, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, steps: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fooled, evaded) (N,) of the adaptive attack, best of ``DETECTOR_WEIGHTS`` per input (a cascade: each
    weight attacks only the inputs the previous ones did not get past the detector)."""
    fooled = torch.zeros(len(y), dtype=torch.bool)
    evaded = torch.zeros(len(y), dtype=torch.bool)
    for weight in DETECTOR_WEIGHTS:
        idx = (~evaded).nonzero().flatten()
        if idx.numel() == 0:
            break
        a = AdaptiveAttack(steps=steps, detector_weight=weight)(detector, x[idx], y[idx], threat, seed=seed)
        fooled[idx] |= a.fooled
        evaded[idx] |= a.evaded
    return fooled, evaded


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist-cnn")
    p.add_argument("--n", type=int, default=500, help="correctly classified inputs to attack")
    p.add_argument("--n-clean", type=int, default=1000, help="clean inputs to fit on, and as many held out")
    p.add_argument("--adaptive-steps", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    model = zoo.load(args.model)
    data = split(args.model, args.n, args.n_clean, args.seed)
    x, y = data["x"], data["y"]

    attacks = {
        "PGD-40 linf 0.3": (ThreatModel("linf", 0.3), PGD(steps=40)),
        # Adam lr 0.1: the default 0.01 barely moves MNIST's saturated (0/1) pixels in 100 tanh-space steps.
        "C&W L2": (ThreatModel("l2", math.inf), CarliniWagner(learning_rate=0.1, binary_search_steps=5)),
    }
    adversarials: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # (all x_adv, successful ones)
    for name, (threat, attack) in attacks.items():
        t = time.perf_counter()
        result = evaluate(model, x, y, threat, attacks=[(name, attack)], seed=args.seed)
        adversarials[name] = (result.x_adv, successful_adversarials(result))
        n_ok = int((result.clean_correct & ~result.robust).sum())
        print(f"{name}: {n_ok}/{len(y)} successful in {time.perf_counter() - t:.1f}s", flush=True)

    detectors: dict[str, Detector] = {
        "feature squeezing (1-bit + median 2x2)": FeatureSqueezing(),
        "feature squeezing, 1-bit only": FeatureSqueezing([BitDepth(bits=1)]),
        "feature squeezing, median 2x2 only": FeatureSqueezing([MedianSmoothing(size=2)]),
        "confidence (MSP)": ConfidenceDetector("msp"),
        "confidence (energy)": ConfidenceDetector("energy"),
    }
    detection, evasion = [], []
    for det_name, detector in detectors.items():
        detector.fit(model, data["fit"])
        for atk_name, (x_adv, successful) in adversarials.items():
            r = evaluate_detector(detector, data["held_out"], successful)
            rates = [r.tpr_at_1pct, r.tpr_at_5pct, r.detection_rate, r.false_positive_rate]
            detection.append([det_name, atk_name, r.n_adv, r.auc, *(f"{v:.1%}" for v in rates)])
            f, e, _ = joint_success(detector, x_adv, y)
            evasion.append([det_name, atk_name, f"{f.float().mean():.1%}", f"{e.float().mean():.1%}", "-"])
        if det_name in ADAPTIVE_TARGETS:
            for atk_name, threat in ADAPTIVE.items():
                t = time.perf_counter()
                fooled, evaded = adaptive(detector, x, y, threat, args.adaptive_steps, args.seed)
                rates = [f"{fooled.float().mean():.1%}", f"{evaded.float().mean():.1%}"]
                row = [det_name, f"{atk_name}, {args.adaptive_steps} steps", *rates]
                evasion.append([*row, f"{time.perf_counter() - t:.0f}"])
                print(" | ".join(map(str, evasion[-1])), flush=True)

    print(f"\n### Detection of successful adversarials, {args.model} ({environment()})\n")
    print(
        f"{len(y)} correctly classified test inputs attacked; detectors fitted on {args.n_clean} clean test "
        f"inputs for 5% FPR, TPR/AUC against {args.n_clean} disjoint held-out clean inputs.\n"
    )
    headers = ["detector", "attack", "adversarials", "AUC", "TPR @1% FPR", "TPR @5% FPR"]
    print(markdown([*headers, "detected @ fitted threshold", "held-out FPR"], detection))
    print(f"\n### Non-adaptive vs adaptive: fraction of all {len(y)} attacked inputs\n")
    print(markdown(["detector", "attack", "fools classifier", "fools classifier and detector", "s"], evasion))


if __name__ == "__main__":
    main()
