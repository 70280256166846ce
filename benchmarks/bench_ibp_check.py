"""What IBP's runtime self-check costs: ``IntervalBoundPropagation.certify`` with ``check_points`` 0
(the box centres only) against the default 4, on the IBP-trained MNIST zoo model at linf 0.1.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ibp_check.py [--limit 2000] [--repeats 3]

Prints a markdown table: seconds (median of interleaved repeats) and verified accuracy, which the
check must not change.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bastion import zoo
from bastion.certify import IntervalBoundPropagation
from bastion.data import load_dataset
from bastion.threat import ThreatModel

MODEL = "mnist-strided-ibp"
POINTS = (0, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default="../shared/data/mnist")
    args = parser.parse_args()
    model = zoo.load(MODEL)
    data = load_dataset(f"mnist:{args.data}", split="test")
    x, y = data.x[: args.limit], data.y[: args.limit]
    threat = ThreatModel("linf", 0.1)
    seconds: dict[int, list[float]] = {k: [] for k in POINTS}
    verified: dict[int, float] = {}
    for _ in range(args.repeats):  # interleaved: the load on a shared machine drifts
        for k in POINTS:
            start = time.perf_counter()
            result = IntervalBoundPropagation(check_points=k).certify(model, x, threat)
            seconds[k].append(time.perf_counter() - start)
            verified[k] = result.certified_accuracy(y, 0.1)
    print(f"{MODEL}, {len(x)} MNIST test images, linf 0.1, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)\n")  # fmt: skip
    print("| check_points | seconds (median) | verified at linf 0.1 |")
    print("|---|---|---|")
    for k in POINTS:
        print(f"| {k} | {statistics.median(seconds[k]):.2f} | {verified[k]:.2%} |")
    extra = statistics.median(seconds[4]) / statistics.median(seconds[0]) - 1
    print(f"\nThe default self-check (4 points) adds {extra:.0%}.")


if __name__ == "__main__":
    main()
