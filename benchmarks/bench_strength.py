"""Strength and wall time: bastion's ``standard`` and ``autoattack`` presets vs AutoAttack, and bastion's
Square vs torchattacks' Square at the same query budget, on the same models and samples.

Two peer AutoAttacks run: torchattacks' ``AutoAttack(version="standard")`` as shipped (``aa-shipped``),
whose APGD, APGD-T and FAB run 10 steps each, and the published standard version (``aa-published``;
Croce & Hein 2020: 100 steps, 9 target classes, FAB-T, Square 5,000 queries) assembled from the same
torchattacks components.

Targets (issues 2 and 13): ``standard``'s robust accuracy no higher than the published AutoAttack's, on
undefended and on adversarially trained models, in at most a fifth of its wall time; Square within 2
points of torchattacks' Square.

    benchmarks/.bench-venv/bin/python benchmarks/bench_strength.py [--n 500] [--cases digits-cnn:0.1 ...]
    benchmarks/.bench-venv/bin/python benchmarks/bench_strength.py --hardened --n 500 --no-square \\
        --cache /tmp/strength-cache

``--cache DIR`` keeps each (method, model, epsilon, n) result as JSON and reuses it, so the slow peer runs
can go in separate, parallel invocations (``--methods aa-published``) and the table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Callable

import torch

import bastion
from _common import Normalised, environment, load, markdown
from bastion import ThreatModel
from bastion.attacks import Square

DEFAULT_CASES = ["digits-cnn:0.1", "digits-cnn:0.2", "mnist-cnn:0.1", "mnist-cnn:0.2", "mnist-cnn:0.3"]
# the zoo's adversarially trained models at the epsilon they were trained for (docs/zoo.md)
HARDENED_CASES = [
    "mnist-strided-pgd:0.3",
    "mnist-strided-atta:0.3",
    "mnist-strided-fgsm:0.3",
    "mnist-cnn-fgsm:0.3",
    "digits-cnn-pgd:0.2",
    "digits-cnn-trades:0.2",
    "digits-cnn-atta:0.2",
    "digits-cnn-fgsm:0.2",
]
METHODS = ["standard", "autoattack", "aa-published", "aa-shipped"]
LABELS = {
    "standard": "bastion standard",
    "autoattack": "bastion autoattack",
    "aa-published": "AA published (torchattacks, 100 steps)",
    "aa-shipped": "AA shipped (torchattacks, 10 steps)",
}


def robust_mask(clf: bastion.TorchClassifier, adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([clf(adv[i : i + 500]).argmax(1) == y[i : i + 500] for i in range(0, len(y), 500)])


def peer_autoattack(clf: bastion.TorchClassifier, eps: float, published: bool) -> Callable[..., torch.Tensor]:
    import torchattacks

    peer = Normalised(clf).eval()
    k = clf.num_classes or 10
    if not published:
        return torchattacks.AutoAttack(peer, norm="Linf", eps=eps, version="standard", n_classes=k, seed=0)  # type: ignore[no-any-return]
    return torchattacks.MultiAttack(  # type: ignore[no-any-return]
        [
            torchattacks.APGD(peer, eps=eps, steps=100, loss="ce", n_restarts=1, seed=0),
            torchattacks.APGDT(peer, eps=eps, steps=100, n_classes=k, n_restarts=1, seed=0),
            torchattacks.FAB(
                peer, eps=eps, steps=100, multi_targeted=True, n_classes=k, n_restarts=1, seed=0
            ),
            torchattacks.Square(peer, eps=eps, n_queries=5000, n_restarts=1, seed=0),
        ]
    )


def run_method(method: str, model_name: str, eps: float, n: int) -> dict[str, object]:
    """Robust mask (over ``n`` correctly classified inputs), wall and CPU time of one method on one case."""
    clf, x, y = load(model_name, n)
    threat = ThreatModel("linf", eps, bounds=clf.bounds)
    t, cpu = time.perf_counter(), time.process_time()
    if method in ("standard", "autoattack"):
        robust = bastion.evaluate(clf, x, y, threat, preset=method, seed=0).robust
    else:
        robust = robust_mask(clf, peer_autoattack(clf, eps, method == "aa-published")(x, y), y)
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    # CPU time as well as wall time: on a shared machine the wall time carries the load of the moment,
    # while a one-thread process's CPU time is what the method itself cost.
    return {
        "n": int(y.numel()),
        "robust": robust.int().tolist(),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "env": environment(),
    }


def cached(
    cache: str | None, method: str, model_name: str, eps: float, n: int, run: bool = True
) -> dict[str, object] | None:
    path = None if cache is None else os.path.join(cache, f"{model_name}_{eps:g}_{n}_{method}.json")
    if path is not None and os.path.exists(path):
        with open(path) as f:
            return json.load(f)  # type: ignore[no-any-return]
    if not run:
        return None
    out = run_method(method, model_name, eps, n)
    if path is not None:
        os.makedirs(cache or ".", exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(out, f)
        os.replace(path + ".tmp", path)
    return out


def strength_row(
    model_name: str, eps: float, res: dict[str, dict[str, object]], methods: list[str]
) -> list[object]:
    """Robust accuracy per method, standard's gap to the published AutoAttack (and the inputs that AA
    broke but standard did not), and standard's time as a fraction of AA's."""
    acc = {m: sum(r["robust"]) / max(len(r["robust"]), 1) for m, r in res.items()}  # type: ignore[arg-type]
    row: list[object] = [model_name, eps, next(iter(res.values()))["n"]]
    row += [f"{acc[m]:.2%}" if m in acc else "–" for m in methods]
    ref = res.get("aa-published")
    for m in ("standard", "autoattack"):
        if m in res and ref is not None:
            missed = sum(a and not b for a, b in zip(res[m]["robust"], ref["robust"], strict=True))  # type: ignore[call-overload]
            row.append(f"{100 * (acc[m] - acc['aa-published']):+.1f} ({missed})")
        else:
            row.append("–")
    row += [res[m]["seconds"] if m in res else "–" for m in methods]
    for key in ("seconds", "cpu_seconds"):
        if "standard" in res and ref is not None and key in res["standard"] and key in ref:
            row.append(float(res["standard"][key]) / float(ref[key]))  # type: ignore[arg-type]
        else:
            row.append("–")
    return row


def square_row(model_name: str, eps: float, n: int, queries: int) -> list[object]:
    import torchattacks

    clf, x, y = load(model_name, n)
    threat = ThreatModel("linf", eps, bounds=clf.bounds)
    t = time.perf_counter()
    sq = Square(n_queries=queries)(clf, x, y, threat, seed=0)
    sq_s = time.perf_counter() - t
    ta_sq = torchattacks.Square(
        Normalised(clf).eval(), norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=0
    )
    t = time.perf_counter()
    ta_adv = ta_sq(x, y)
    ta_sq_s = time.perf_counter() - t
    ta_acc = float(robust_mask(clf, ta_adv, y).float().mean())
    sq_acc = 1 - sq.success_rate
    return [
        model_name,
        eps,
        len(y),
        f"{sq_acc:.2%}",
        f"{ta_acc:.2%}",
        f"{100 * (sq_acc - ta_acc):+.2f}",
        sq_s,
        ta_sq_s,
    ]


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=None, help="MODEL:EPS pairs (linf)")
    p.add_argument("--hardened", action="store_true", help="the zoo's adversarially trained models")
    p.add_argument("--n", type=int, default=500, help="correctly classified test samples per case")
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--cache", default=None, help="folder that keeps and reuses each method's result")
    p.add_argument("--cached-only", action="store_true", help="print what --cache holds, run nothing")
    p.add_argument("--square-queries", type=int, default=5000)
    p.add_argument("--no-square", action="store_true", help="skip the Square vs torchattacks comparison")
    args = p.parse_args()
    cases = args.cases or (HARDENED_CASES if args.hardened else DEFAULT_CASES)
    shown = [m for m in METHODS if m in args.methods]
    strength, square = [], []
    for case in cases:
        name, eps_s = case.split(":")
        eps = float(eps_s)
        found = {m: cached(args.cache, m, name, eps, args.n, not args.cached_only) for m in args.methods}
        res = {m: r for m in METHODS if (r := found.get(m)) is not None}
        if not res:
            continue
        strength.append(strength_row(name, eps, res, shown))
        print(f"done {case}: {strength[-1]}", flush=True)
        if not args.no_square:
            square.append(square_row(name, eps, args.n, args.square_queries))
    print(f"\n### `standard` and `autoattack` vs AutoAttack, linf ({environment()})\n")
    print(
        markdown(
            ["model", "epsilon", "n"]
            + [f"{LABELS[m]} robust acc" for m in shown]
            + ["standard Δ points (inputs AA broke, standard not)", "autoattack Δ points (same)"]
            + [f"{LABELS[m]} s" for m in shown]
            + ["standard / AA published wall time", "standard / AA published CPU time"],
            strength,
        )
    )
    if square:
        print(f"\n### Square, {args.square_queries} queries, linf: bastion vs torchattacks\n")
        print(
            markdown(
                [
                    "model",
                    "epsilon",
                    "n",
                    "bastion robust acc",
                    "torchattacks robust acc",
                    "Δ points",
                    "bastion s",
                    "torchattacks s",
                ],
                square,
            )
        )


if __name__ == "__main__":
    main()
