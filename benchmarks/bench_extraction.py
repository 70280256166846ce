"""Model extraction: bastion's Knockoff Nets against ART's KnockoffNets, same victim, pool, budget and clone.

Victim ``zoo:mnist-cnn`` behind an output policy (``probs``: full probabilities; ``labels``: top-1 only),
pool Fashion-MNIST (train split, never MNIST), clone accuracy and fidelity (agreement with the victim's
top-1) on the MNIST test set at each query budget. Both libraries train the same clone architecture
(bastion's default ``small_cnn``) for the same number of epochs at each budget with batch size 64;
bastion distils the released probabilities at temperature 4 (one training loop, one-cycle Adam); ART's
PyTorchClassifier keeps non-one-hot targets as soft labels for its cross-entropy (temperature 1), Adam
at 1e-3, and draws a random sample of the pool. bastion's run reuses its first 250/500/1k/2k queries for
the smaller budgets (5k queries in all; with ``--strategy uncertainty`` the later ones are chosen by
the clone's uncertainty); ART draws a fresh random subset for each budget (8,750 queries in all).

    OMP_NUM_THREADS=1 benchmarks/.bench-venv/bin/python benchmarks/bench_extraction.py \
        [--budgets 250 500 1000 2000 5000] [--outputs probs labels] [--no-art] [--dev]

``--dev`` measures on 2,000 MNIST *training* images instead of the test set (for choosing settings
without looking at the test set).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from torch import nn

from _common import DATA_ROOT, environment, markdown
from bastion import zoo
from bastion.attacks.extraction import CloneTraining, KnockoffNets, small_cnn
from bastion.data import load_dataset
from bastion.defenses.output_policy import PolicyClassifier
from bastion.model import predict


class Released(nn.Module):
    """The policy-wrapped victim as an nn.Module returning the released probabilities (for ART)."""

    def __init__(self, victim: PolicyClassifier) -> None:
        super().__init__()
        self.victim = victim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.victim.released(x)


def art_curve(
    victim: PolicyClassifier,
    pool: torch.Tensor,
    budgets: list[int],
    output: str,
    training: CloneTraining,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    truth: torch.Tensor,
    seed: int,
) -> list[tuple[float, float, float]]:
    from art.attacks.extraction import KnockoffNets as ArtKnockoff
    from art.estimators.classification import PyTorchClassifier

    shape = tuple(pool.shape[1:])
    art_victim = PyTorchClassifier(
        Released(victim), nn.CrossEntropyLoss(), shape, 10, clip_values=victim.bounds
    )
    pool_np = pool.numpy()
    rows = []
    for b in budgets:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        np.random.seed(seed)
        module = small_cnn(shape, 10)
        thief = PyTorchClassifier(
            module,
            nn.CrossEntropyLoss(),
            shape,
            10,
            optimizer=torch.optim.Adam(module.parameters(), lr=1e-3),
            clip_values=victim.bounds,
        )
        attack = ArtKnockoff(
            art_victim,
            batch_size_fit=training.batch_size,
            batch_size_query=512,
            nb_epochs=training.epochs_for(b),
            nb_stolen=b,
            sampling_strategy="random",
            use_probability=output == "probs",
            verbose=False,
        )
        stolen = attack.extract(pool_np, thieved_classifier=thief)
        pred = torch.from_numpy(stolen.predict(test_x.numpy(), batch_size=512)).argmax(1)
        acc = float((pred == test_y).float().mean())
        fid = float((pred == truth).float().mean())
        rows.append((acc, fid, time.perf_counter() - t0))
    return rows


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", type=int, nargs="+", default=[250, 500, 1000, 2000, 5000])
    p.add_argument("--outputs", nargs="+", default=["probs", "labels"])
    p.add_argument("--strategy", default="random", choices=["random", "adaptive", "uncertainty"])
    p.add_argument("--steps", type=int, default=CloneTraining().steps)
    p.add_argument("--temperature", type=float, default=CloneTraining().temperature)
    p.add_argument("--lr", type=float, default=CloneTraining().lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--libraries", nargs="+", default=["bastion", "ART"], choices=["bastion", "ART"])
    p.add_argument(
        "--dev", action="store_true", help="measure on 2,000 MNIST training images, not the test set"
    )
    args = p.parse_args()
    victim = zoo.load("mnist-cnn")
    pool = load_dataset(f"fashion-mnist:{os.path.join(DATA_ROOT, 'fashion-mnist')}", split="train")
    mnist = os.path.join(DATA_ROOT, "mnist")
    test = (
        load_dataset(f"mnist:{mnist}", split="train").take(2000, seed=1)
        if args.dev
        else load_dataset(f"mnist:{mnist}", split="test")
    )
    truth = predict(victim, test.x).argmax(1)
    victim_acc = float((truth == test.y).float().mean())
    budgets = sorted(args.budgets)
    training = CloneTraining(steps=args.steps, temperature=args.temperature, lr=args.lr)
    rows = []
    nan = float("nan")
    for output in args.outputs:
        released = PolicyClassifier(victim, output)
        t0 = time.perf_counter()
        ours: list[tuple[float, float]] = [(nan, nan)] * len(budgets)
        if "bastion" in args.libraries:
            attack = KnockoffNets(args.strategy, output, budgets=tuple(budgets), training=training)
            result = attack.run(released, pool, budgets[-1], test=test, reference=victim, seed=args.seed)
            ours = [(p.accuracy or nan, p.fidelity or nan) for p in result.curve]
            print(f"{output}: bastion queries {result.queries}", flush=True)
        ours_s = time.perf_counter() - t0
        art = [(nan, nan, 0.0)] * len(budgets)
        if "ART" in args.libraries:
            art = art_curve(released, pool.x, budgets, output, training, test.x, test.y, truth, args.seed)
        for b, (acc, fid), (art_acc, art_fid, _) in zip(budgets, ours, art, strict=True):
            rows.append([output, b, f"{acc:.2%}", f"{fid:.2%}", f"{art_acc:.2%}", f"{art_fid:.2%}"])
        rows.append(
            [output, "seconds", f"{ours_s:.0f} (all budgets)", "", f"{sum(r[2] for r in art):.0f}", ""]
        )
    where = "2,000 MNIST training images (dev)" if args.dev else f"the MNIST test set ({len(test):,})"
    print(
        f"### Extraction of zoo:mnist-cnn (accuracy {victim_acc:.2%} on {where}), Fashion-MNIST pool, "
        f"{args.strategy} selection, clone small_cnn ({environment()})\n"
    )
    headers = ["output", "queries", "bastion acc", "bastion fidelity", "ART acc", "ART fidelity"]
    print(markdown(headers, rows))


if __name__ == "__main__":
    main()
