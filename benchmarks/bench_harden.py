"""Training defenses side by side: time, clean and robust accuracy under the ``standard`` preset.

Targets (issue 4): on MNIST at linf 0.3 fast FGSM training reaches >= 82% in <= 20 minutes on 2 CPU
cores and the best PGD/TRADES model >= 88%, clean >= 98%; on digits at linf 0.2 the same ordering in
minutes; fast training costs at most a quarter of PGD training's time for robust accuracy within 3
points of it.

Digits are trained here (from scratch, the recipes of ``scripts/train_hardened_zoo.py``); MNIST rows
are read from the zoo's model cards, which that script writes (MNIST training takes tens of minutes):

    benchmarks/.bench-venv/bin/python benchmarks/bench_harden.py [--eval-limit 450]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import environment, markdown

ROOT = Path(__file__).resolve().parent.parent


def _script() -> Any:
    spec = importlib.util.spec_from_file_location(
        "train_hardened_zoo", ROOT / "scripts" / "train_hardened_zoo.py"
    )
    if spec is None or spec.loader is None:
        raise SystemExit("scripts/train_hardened_zoo.py not found")
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_hardened_zoo"] = module
    spec.loader.exec_module(module)
    return module


def _row(name: str, method: str, seconds: float | None, clean: float, robust: float, n: int) -> list[Any]:
    return [name, method, "–" if seconds is None else f"{seconds:.0f}", f"{clean:.1%}", f"{robust:.1%}", n]


def digits_rows(eval_limit: int) -> list[list[Any]]:
    from bastion import zoo
    from bastion.data import load_dataset
    from bastion.defenses.training import harden
    from bastion.evaluation import evaluate
    from bastion.threat import ThreatModel

    script = _script()
    train_set = load_dataset("digits", split="train")
    test_set = load_dataset("digits", split="test").take(eval_limit, seed=0)
    threat = ThreatModel("linf", 0.2)
    rows = []
    start = time.perf_counter()
    base = evaluate(zoo.load("digits-cnn"), test_set.x, test_set.y, threat, "standard")
    rows.append(
        _row("digits-cnn (zoo)", "standard", 0, base.clean_accuracy, base.robust_accuracy, len(test_set))
    )
    print(f"evaluated zoo digits-cnn in {time.perf_counter() - start:.0f} s", flush=True)
    for name in ("digits-cnn-fgsm", "digits-cnn-pgd", "digits-cnn-trades"):
        recipe = script.RECIPES[name]
        result = harden(
            zoo.load(recipe.base),
            train_set,
            recipe.method,
            threat,
            recipe.config.epochs,
            config=recipe.config,
            from_scratch=True,
            eval_data=test_set,
            eval_limit=eval_limit,
            **recipe.options,
        )
        ev = result.card["evaluation"]
        rows.append(_row(name, recipe.method, result.card["train_seconds"], ev["clean_accuracy"],
                         ev["robust_accuracy"], ev["n"]))  # fmt: skip
        print(f"done {name}", flush=True)
    return rows


def mnist_rows() -> list[list[Any]]:
    rows = []
    for path in sorted((ROOT / "src" / "bastion" / "zoo" / "weights").glob("mnist-cnn-*.json")):
        card = json.loads(path.read_text())
        ev = card["evaluation"]
        rows.append(_row(card["name"], card["method"], card["train_seconds"], ev["clean_accuracy"],
                         ev["robust_accuracy"], ev["n"]))  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-limit", type=int, default=450, help="digits test images evaluated (450 = all)")
    args = p.parse_args()
    header = ["model", "method", "train s", "clean", "robust (standard)", "n"]
    rows = digits_rows(args.eval_limit)
    print(f"\n### Training defenses, digits, linf ε=0.2 ({environment()})\n")
    print(markdown(header, rows))
    by = {r[0]: r for r in rows}
    fast, pgd = by["digits-cnn-fgsm"], by["digits-cnn-pgd"]
    ratio = float(fast[2]) / max(float(pgd[2]), 1e-9)
    gap = float(pgd[4].rstrip("%")) - float(fast[4].rstrip("%"))
    print(f"\nfast / PGD training time: {ratio:.2f}; PGD − fast robust accuracy: {gap:+.1f} points")
    mnist = mnist_rows()
    if mnist:
        print("\n### Training defenses, MNIST, linf ε=0.3 (from the zoo's model cards)\n")
        print(markdown(header, mnist))


if __name__ == "__main__":
    main()
