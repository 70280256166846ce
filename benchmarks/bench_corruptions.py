"""Corruption robustness of the zoo's models, plain and hardened (issue 18).

Per model: clean accuracy and the mean accuracy over the CIFAR-10-C-style corruptions of
:mod:`bastion.corruptions` at each severity (1-5), with the per-family means (noise, blur, digital) at
severity 3 and the worst corruption at severity 5. ``--n`` test inputs (a seeded subset); one seed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_corruptions.py
"""

from __future__ import annotations

import argparse
import time

from _common import data_spec, environment, markdown
from bastion import zoo
from bastion.corruptions import CORRUPTIONS, corruption_accuracy
from bastion.data import load_dataset

MODELS = [
    "cifar10-cnn",
    "cifar10-cnn-noise-0.25",
    "mnist-strided",
    "mnist-strided-pgd",
    "mnist-strided-noise-0.25",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    print(environment())
    rows = []
    for name in args.models:
        clf = zoo.load(name)
        ds = load_dataset(data_spec(name), split="test").take(args.n, seed=0)
        t0 = time.perf_counter()
        rep = corruption_accuracy(clf, ds.x, ds.y, seed=0)
        by_sev = {s: [r.accuracy for r in rep.rows if r.severity == s] for s in range(1, 6)}
        fam = {}
        for r in rep.rows:
            if r.severity == 3:
                fam.setdefault(CORRUPTIONS[r.corruption].family, []).append(r.accuracy)
        worst = min((r for r in rep.rows if r.severity == 5), key=lambda r: r.accuracy)
        families = [
            f"{sum(fam[f]) / len(fam[f]):.1%}" if f in fam else "-" for f in ("noise", "blur", "digital")
        ]
        rows.append([name, f"{rep.clean_accuracy:.1%}"]
                    + [f"{sum(v) / len(v):.1%}" for v in by_sev.values()] + families
                    + [f"{worst.corruption} {worst.accuracy:.1%}", len(rep.per_corruption),
                       f"{time.perf_counter() - t0:.0f}"])  # fmt: skip
    print(f"\n### Corruption accuracy ({args.n} test inputs per model)\n")
    headers = ["model", "clean", "sev 1", "sev 2", "sev 3", "sev 4", "sev 5", "noise (3)", "blur (3)",
               "digital (3)", "worst at 5", "corruptions", "seconds"]  # fmt: skip
    print(markdown(headers, rows))


if __name__ == "__main__":
    main()
