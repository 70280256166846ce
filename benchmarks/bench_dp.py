"""DP-SGD on MNIST through ``bastion.harden(method="dp-sgd")``: test accuracy and epoch time against
non-private training of the same model.

Targets (issue 14): (ε, δ=1e-5) ≈ 1.2 / 3 / 7 at >= 94.5 / 96.5 / 97% test accuracy. Opacus' published
MNIST table (examples/mnist_README.md, mean of 10 runs) reaches 94.63 / 96.78 / 97.09% with its
``SampleConvNet``, plain SGD, sample rate 0.004 (expected batch 240 of 60,000), and these recipes:

    ε 1.19: 15 epochs, lr 0.25, C 1.5 (σ 1.3)   ε 3.01: 60 epochs, lr 0.15, C 1.0 (σ 1.1)
    ε 7.10: 45 epochs, lr 0.25, C 1.5 (σ 0.7)   no DP: 20 epochs, lr 0.1

Here the budget is the input (``--target-epsilon``): Opacus picks σ for it over the planned steps, with
the ``prv`` accountant by default (Opacus' README used RDP, which needs more noise for the same ε).
The full run is 120 private epochs plus 20 non-private; on 2 shared CPU cores pick what fits with
``--epsilons``/``--epochs``/``--baseline-epochs`` (the table says what ran):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dp.py                      # the full run
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dp.py --epsilons 3 --epochs 5 --baseline-epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

DATA_ROOT = os.environ.get("BASTION_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
# Opacus' README recipes by target epsilon: (epochs, lr, max grad norm); the baseline's (epochs, lr).
RECIPES = {1.2: (15, 0.25, 1.5), 3.0: (60, 0.15, 1.0), 7.0: (45, 0.25, 1.5)}
TARGETS = {1.2: 0.945, 3.0: 0.965, 7.0: 0.97}
PUBLISHED = {1.2: 0.9463, 3.0: 0.9678, 7.0: 0.9709}
BASELINE = (20, 0.1)
BATCH = 240  # sample rate 0.004 of 60,000


class SampleConvNet(nn.Module):
    """Opacus' MNIST example network (26,010 parameters): (N, 1, 28, 28) normalised → logits (N, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 8, 2, padding=3)
        self.conv2 = nn.Conv2d(16, 32, 4, 2)
        self.fc1 = nn.Linear(32 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 1)  # (N, 16, 13, 13)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 1)  # (N, 32, 4, 4)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _run(
    train: Any, test: Any, method: str, epochs: int, lr: float, seed: int, **options: Any
) -> dict[str, Any]:
    from bastion.defenses.training import TrainingConfig, harden
    from bastion.model import TorchClassifier

    torch.manual_seed(seed)
    clf = TorchClassifier(SampleConvNet(), mean=0.1307, std=0.3081, name="SampleConvNet")
    cfg = TrainingConfig(
        epochs=epochs, batch_size=BATCH, optimizer="sgd", momentum=0.0, lr=lr, schedule="constant",
        validation=0.0, seed=seed,
    )  # fmt: skip
    start = time.perf_counter()
    result = harden(clf, train, method, config=cfg, eval_data=test, eval_limit=len(test), **options)
    per_epoch = [h["seconds"] for h in result.card["history"]]
    return {
        "method": method,
        "epochs": epochs,
        "lr": lr,
        "seed": seed,
        "accuracy": result.card["evaluation"]["clean_accuracy"],
        "epoch_seconds": statistics.median(per_epoch),
        "wall_seconds": time.perf_counter() - start,
        "privacy": result.card.get("privacy"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epsilons", default="1.2,3,7", help="target epsilons (of 1.2, 3, 7)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs for every private run (default: recipe)"
    )
    parser.add_argument(
        "--baseline-epochs", type=int, default=BASELINE[0], help="non-private epochs (0: skip)"
    )
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--accountant", default="prv", choices=("prv", "rdp"))
    parser.add_argument("--limit", type=int, default=None, help="train on the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here too")
    parser.add_argument(
        "--overhead", type=int, default=0, metavar="R",
        help="only time: R alternating one-epoch runs, non-private then private (ε 3), on --limit images",
    )  # fmt: skip
    args = parser.parse_args()

    from bastion.data import load_dataset

    spec = f"mnist:{os.path.join(DATA_ROOT, 'mnist')}"
    train, test = load_dataset(spec, split="train"), load_dataset(spec, split="test")
    if args.limit:
        train = train.subset(slice(0, args.limit))
    if args.overhead:
        _overhead(train, test.subset(slice(0, 1000)), args)
        return
    rows = []
    if args.baseline_epochs:
        rows.append(_run(train, test, "standard", args.baseline_epochs, BASELINE[1], args.seed))
        print(json.dumps(rows[-1]), flush=True)
    for eps in (float(e) for e in args.epsilons.split(",")):
        epochs, lr, clip = RECIPES[eps]
        row = _run(
            train, test, "dp-sgd", args.epochs or epochs, lr, args.seed, target_epsilon=eps, delta=args.delta,
            max_grad_norm=clip, accountant=args.accountant,
        )  # fmt: skip
        rows.append(row | {"recipe_epochs": epochs, "target_epsilon": eps})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    _table(rows, len(train), args)


def _overhead(train: Any, test: Any, args: argparse.Namespace) -> None:
    """Epoch time of the same model and batch, non-private against private, alternated so that a shared
    machine's changing load falls on both alike; medians over the repeats."""
    times: dict[str, list[float]] = {"standard": [], "dp-sgd": []}
    for _ in range(args.overhead):
        times["standard"].append(_run(train, test, "standard", 1, 0.1, args.seed)["epoch_seconds"])
        dp = _run(train, test, "dp-sgd", 1, 0.15, args.seed, target_epsilon=3.0, delta=args.delta)
        times["dp-sgd"].append(dp["epoch_seconds"])
        print(json.dumps({k: v[-1] for k, v in times.items()}), flush=True)
    plain, private = (statistics.median(times[k]) for k in ("standard", "dp-sgd"))
    print(f"\n{len(train)} images, batch {BATCH}, {torch.get_num_threads()} thread(s), {args.overhead} "
          f"repeats: non-private {plain:.2f} s/epoch, dp-sgd {private:.2f} s/epoch: "
          f"{private / plain:.2f}x")  # fmt: skip


def _table(rows: list[dict[str, Any]], n: int, args: argparse.Namespace) -> None:
    base = next((r for r in rows if r["method"] == "standard"), None)
    print(f"\nMNIST, SampleConvNet, {n} training images, expected batch {BATCH}, SGD (no momentum), "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), seed {args.seed}\n")  # fmt: skip
    print("| training | target ε | ε spent (accountant) | σ | C | epochs (recipe) | lr | test acc "
          "| target / Opacus' table | s/epoch | × non-private |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = r["privacy"]
        ratio = f"{r['epoch_seconds'] / base['epoch_seconds']:.1f}×" if base else "-"
        if p is None:
            print(f"| non-private | - | - | - | - | {r['epochs']} (20) | {r['lr']} | {r['accuracy']:.2%} "
                  f"| - / 98.94% | {r['epoch_seconds']:.1f} | 1.0× |")  # fmt: skip
            continue
        eps = r["target_epsilon"]
        met = "met" if r["accuracy"] >= TARGETS[eps] else "not met"
        cells = [
            "dp-sgd", f"{eps:g}", f"{p['epsilon']:.3f} ({p['accountant']})", f"{p['noise_multiplier']:.3f}",
            f"{p['max_grad_norm']:g}", f"{r['epochs']} ({r['recipe_epochs']})", str(r["lr"]),
            f"{r['accuracy']:.2%}",
            f"{TARGETS[eps]:.1%} ({met}) / {PUBLISHED[eps]:.2%}", f"{r['epoch_seconds']:.1f}", ratio,
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
