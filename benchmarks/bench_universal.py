"""Universal adversarial perturbations on the CIFAR-10 zoo model (issue 18), beside ART's.

One pattern per method and budget, fitted on ``--fit`` training images and judged on ``--test`` held-out
test images: the fooling rate (labels changed), the accuracy under the pattern, and the fooling rate of
random noise with the same linf norm (random signs), in the same run. ART's ``UniversalPerturbation``
(DeepFool inner attack, the paper's algorithm) runs on the same model and images when ART is installed
(``bash benchmarks/setup_env.sh``, then run this with benchmarks/.bench-venv/bin/python).

    OMP_NUM_THREADS=1 benchmarks/.bench-venv/bin/python benchmarks/bench_universal.py
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from _common import DATA_ROOT, Normalised, environment, markdown
from bastion import zoo
from bastion.attacks.physical.universal import UniversalDeepFool, UniversalGradient, fooling_rate
from bastion.attacks.physical.universal_eval import evaluate_universal, random_like
from bastion.data import load_dataset
from bastion.model import predict
from bastion.threat import ThreatModel


def art_row(clf: Any, x_fit: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, threat: ThreatModel,
            max_iter: int) -> list[Any] | None:  # fmt: skip
    try:
        from art.attacks.evasion import UniversalPerturbation
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return None
    net = Normalised(clf).eval()
    est = PyTorchClassifier(net, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x_fit.shape[1:]),
                            nb_classes=10, clip_values=threat.bounds)  # fmt: skip
    attack = UniversalPerturbation(est, attacker="deepfool", delta=0.2, max_iter=max_iter, eps=threat.epsilon,
                                   norm=np.inf, batch_size=128, verbose=False)  # fmt: skip
    t0 = time.perf_counter()
    attack.generate(x_fit.numpy())
    seconds = time.perf_counter() - t0
    v = torch.as_tensor(attack.noise[0]).float()
    return row("ART UniversalPerturbation (deepfool)", clf, v, x_fit, x_test, y_test, threat, seconds)


def row(name: str, clf: Any, v: torch.Tensor, x_fit: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
        threat: ThreatModel, seconds: float) -> list[Any]:  # fmt: skip
    moved = (x_test + v).clamp(*threat.bounds)
    acc = float((predict(clf, moved).argmax(1) == y_test).float().mean())
    g = torch.Generator().manual_seed(0)
    noise = np.mean([fooling_rate(clf, x_test, random_like(v, threat, g), threat) for _ in range(5)])
    fit_rate, test_rate = fooling_rate(clf, x_fit, v, threat), fooling_rate(clf, x_test, v, threat)
    linf = f"{float(v.abs().max()) * 255:.1f}/255"
    return [name, linf, f"{fit_rate:.1%}", f"{test_rate:.1%}", f"{noise:.1%}", f"{acc:.1%}", f"{seconds:.0f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--epsilons", default="8,10", help="linf budgets in 1/255")
    ap.add_argument("--passes", type=int, default=3, help="UniversalDeepFool passes and ART's max_iter")
    ap.add_argument("--epochs", type=int, default=10, help="UniversalGradient epochs")
    args = ap.parse_args()
    print(environment())
    clf = zoo.load("cifar10-cnn")
    fit = load_dataset(f"cifar10:{DATA_ROOT}/cifar10", split="train").take(args.fit, seed=0)
    test = load_dataset(f"cifar10:{DATA_ROOT}/cifar10", split="test").take(args.test, seed=0)
    clean = float((predict(clf, test.x).argmax(1) == test.y).float().mean())
    rows = []
    for e in (float(s) for s in args.epsilons.split(",")):
        threat = ThreatModel("linf", e / 255, bounds=clf.bounds)
        for attack in (
            UniversalGradient(epochs=args.epochs),
            UniversalDeepFool(passes=args.passes, target=0.8),
        ):
            res = evaluate_universal(clf, attack, fit.x, test.x, threat, y_test=test.y, seed=0)
            rows.append(row(f"bastion {attack.name}", clf, res.perturbation, fit.x, test.x, test.y, threat,
                            res.seconds))  # fmt: skip
        peer = art_row(clf, fit.x, test.x, test.y, threat, args.passes)
        rows.append(peer or ["ART UniversalPerturbation", "not installed", "", "", "", "", ""])
    print(f"\n### Universal perturbations: cifar10-cnn (clean {clean:.1%} on the {args.test} test images), "
          f"fitted on {args.fit} training images\n")  # fmt: skip
    print(markdown(["method", "linf", "fooling (fit)", "fooling (held-out)", "noise, same norm",
                    "accuracy under it", "seconds"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
