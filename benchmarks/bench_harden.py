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

from _common import data_spec, environment, markdown

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


def _row(card: dict[str, Any]) -> list[Any]:
    """A table row from a harden card: total training time, and the time of the training steps alone
    (the held-out checks excluded: the same fixed cost for every method, it weighs more in short runs)."""
    ev = card["evaluation"]
    steps = sum(h["seconds"] for h in card["history"])
    return [card["name"], card["method"], f"{card['train_seconds']:.0f}", f"{steps:.0f}",
            f"{ev['clean_accuracy']:.1%}", f"{ev['robust_accuracy']:.1%}", ev["n"]]  # fmt: skip


def comparison(rows: list[list[Any]], prefix: str) -> list[str]:
    """One line per fast method: its time and robust accuracy against PGD training's (issue 4's target:
    at most a quarter of the time, within 3 points)."""
    by = {r[0]: r for r in rows}
    pgd = by.get(f"{prefix}-pgd")
    lines = []
    for fast in (by.get(f"{prefix}-fgsm"), by.get(f"{prefix}-atta")):
        if fast is None or pgd is None:
            continue
        total, steps = (float(fast[i]) / max(float(pgd[i]), 1e-9) for i in (2, 3))
        gap = float(pgd[5].rstrip("%")) - float(fast[5].rstrip("%"))
        missed = [what for what, ok in (("time", total <= 0.25), ("accuracy", gap <= 3)) if not ok]
        verdict = f"not met ({', '.join(missed)})" if missed else "met"
        lines.append(
            f"- {fast[0]} / {pgd[0]}: {total:.2f}x the training time ({steps:.2f}x without the held-out "
            f"checks), {abs(gap):.1f} points {'below' if gap >= 0 else 'above'} in robust accuracy: {verdict}"
        )
    return lines


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
    rows.append(["digits-cnn (zoo)", "standard", "–", "–", f"{base.clean_accuracy:.1%}",
                 f"{base.robust_accuracy:.1%}", len(test_set)])  # fmt: skip
    print(f"evaluated zoo digits-cnn in {time.perf_counter() - start:.0f} s", flush=True)
    for name in ("digits-cnn-fgsm", "digits-cnn-atta", "digits-cnn-pgd", "digits-cnn-trades"):
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
        rows.append(_row({**result.card, "name": name}))
        print(f"done {name}", flush=True)
    return rows


STRIDED_MODELS = ("mnist-strided-fgsm", "mnist-strided-atta", "mnist-strided-pgd")
MNIST_MODELS = (*STRIDED_MODELS, "mnist-cnn-fgsm")


def mnist_rows() -> list[list[Any]]:
    rows = []
    for name in MNIST_MODELS:
        path = ROOT / "src" / "bastion" / "zoo" / "weights" / f"{name}.json"
        if path.is_file():
            rows.append(_row(json.loads(path.read_text())))
    return rows


def thorough_rows(limit: int) -> list[list[Any]]:
    """The strided MNIST zoo models under the ``thorough`` preset on the first ``limit`` images of a
    seeded shuffle of the test set: the stronger attack must not reorder them (slow: ~12 minutes per
    model for 300)."""
    from bastion import zoo
    from bastion.data import load_dataset
    from bastion.evaluation import evaluate
    from bastion.threat import ThreatModel

    test = load_dataset(data_spec("mnist-strided"), split="test").take(limit, seed=0)
    rows = []
    for name in STRIDED_MODELS:
        start = time.perf_counter()
        res = evaluate(zoo.load(name), test.x, test.y, ThreatModel("linf", 0.3), "thorough", seed=0)
        rows.append([name, f"{res.clean_accuracy:.1%}", f"{res.robust_accuracy:.1%}", limit,
                     f"{time.perf_counter() - start:.0f}"])  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-limit", type=int, default=450, help="digits test images evaluated (450 = all)")
    p.add_argument("--thorough", type=int, default=0, metavar="N",
                   help="also evaluate the MNIST zoo models under `thorough` on N test images")  # fmt: skip
    args = p.parse_args()
    header = ["model", "method", "train s", "steps s", "clean", "robust (standard)", "n"]
    rows = digits_rows(args.eval_limit)
    print(f"\n### Training defenses, digits, linf ε=0.2 ({environment()})\n")
    print(markdown(header, rows))
    print("\n" + "\n".join(comparison(rows, "digits-cnn")))
    mnist = mnist_rows()
    if mnist:
        print("\n### Training defenses, MNIST, linf ε=0.3 (from the zoo's model cards)\n")
        print(markdown(header, mnist))
        print("\n" + "\n".join(comparison(mnist, "mnist-strided")))
    if args.thorough:
        print("\n### MNIST zoo models under `thorough`, linf ε=0.3\n")
        print(markdown(["model", "clean", "robust (thorough)", "n", "eval s"], thorough_rows(args.thorough)))


if __name__ == "__main__":
    main()
