"""Per-example random streams (issue 17): what keying every draw by example costs, and what it buys.

1. Cost: each randomized attack on ``--model`` (``--n`` test inputs, linf ``--epsilon``) with bastion's
   per-example streams (``seed=``) and with one shared ``torch.Generator`` (``generator=``, the old way),
   interleaved ``--repeats`` times; medians, their ratio, and the success rates (equal in distribution,
   not bit for bit). Randomized smoothing likewise (per-input generators vs one shared).
2. What it buys: the same attack in batches of 200 and of 37, and certification in batches of 1000 and
   of 77: with per-example streams every input's result is the same (counted), with a shared generator
   it is not.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_rng.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch

from _common import environment, load, markdown
from bastion import attacks
from bastion.certify import RandomizedSmoothing
from bastion.threat import ThreatModel

ATTACKS = {
    "pgd (20 steps, 2 restarts)": ("pgd", {"steps": 20, "restarts": 2}),
    "apgd-ce (50 steps)": ("apgd-ce", {"steps": 50}),
    "square (1000 queries)": ("square", {"n_queries": 1000}),
    "hopskipjump (300 queries)": ("hopskipjump", {"max_queries": 300}),
    "noise (100 draws)": ("noise", {"draws": 100}),
}


def in_batches(fn: Any, x: torch.Tensor, y: torch.Tensor, size: int, shared: bool) -> torch.Tensor:
    out = []
    for lo in range(0, x.shape[0], size):
        sl = slice(lo, lo + size)
        if shared:
            res = fn(x[sl], y[sl], generator=torch.Generator().manual_seed(0))
        else:
            res = fn(x[sl], y[sl], seed=0, example_ids=range(lo, min(lo + size, x.shape[0])))
        out.append(res.x_adv)
    return torch.cat(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cifar10-cnn")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--epsilon", type=float, default=8 / 255)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    clf, x, y = load(args.model, args.n)
    threat = ThreatModel("linf", args.epsilon, bounds=clf.bounds)
    cost, same = [], []
    for label, (name, kw) in ATTACKS.items():
        attack = attacks.get(name, **kw)
        times: dict[str, list[float]] = {"streams": [], "shared": []}
        rates: dict[str, float] = {}
        for _ in range(args.repeats):
            for mode in ("streams", "shared"):
                extra: dict[str, Any] = (
                    {"seed": 0} if mode == "streams" else {"generator": torch.Generator().manual_seed(0)}
                )
                t = time.perf_counter()
                res = attack(clf, x, y, threat, **extra)
                times[mode].append(time.perf_counter() - t)
                rates[mode] = res.success_rate
        a, b = statistics.median(times["streams"]), statistics.median(times["shared"])
        cost.append([label, a, b, a / b, f"{rates['streams']:.1%}", f"{rates['shared']:.1%}"])

        def fn(xs: torch.Tensor, ys: torch.Tensor, attack: Any = attack, **k: Any) -> Any:
            return attack(clf, xs, ys, threat, **k)

        moved = {}
        for shared in (False, True):
            big, small = in_batches(fn, x, y, 200, shared), in_batches(fn, x, y, 37, shared)
            moved[shared] = int(((big - small).flatten(1).abs().amax(1) > 1e-6).sum())
        same.append([label, moved[False], moved[True], args.n])
        print(cost[-1], same[-1], file=sys.stderr, flush=True)  # partial results while it runs

    rs = RandomizedSmoothing(0.25, n_select=100, n_estimate=1000, batch_size=1000)
    xs = x[:50]
    t_stream, t_shared = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        a_res = rs.certify(clf, xs, seed=0)
        t_stream.append(time.perf_counter() - t)
        t = time.perf_counter()
        rs.certify(clf, xs, generator=torch.Generator().manual_seed(0))
        t_shared.append(time.perf_counter() - t)
    a, b = statistics.median(t_stream), statistics.median(t_shared)
    cost.append(["smoothing (50 inputs, N=1100)", a, b, a / b, "", ""])
    small_rs = RandomizedSmoothing(0.25, n_select=100, n_estimate=1000, batch_size=77)
    diff_stream = int((small_rs.certify(clf, xs, seed=0).radius != a_res.radius).sum())
    shared_a = rs.certify(clf, xs, generator=torch.Generator().manual_seed(0)).radius
    shared_b = small_rs.certify(clf, xs, generator=torch.Generator().manual_seed(0)).radius
    same.append(
        ["smoothing radius, batch 1000 vs 77", diff_stream, int((shared_a != shared_b).sum()), xs.shape[0]]
    )

    print(f"<!-- {environment()}; {args.model}, n={args.n}, linf eps={args.epsilon:.4f} -->\n")
    print("### The cost of per-example streams\n")
    print(
        markdown(
            ["attack", "streams s", "shared generator s", "ratio", "success (streams)", "success (shared)"],
            cost,
        )
    )
    print("\n### Inputs whose result changes with the batch size (200 vs 37)\n")
    print(markdown(["attack", "per-example streams", "shared generator", "inputs"], same))


if __name__ == "__main__":
    main()
