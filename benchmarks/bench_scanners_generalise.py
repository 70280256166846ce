"""Do the training-data scanners work beyond the zoo's architectures and the default BadNets patch?

Architectures the scanners were not developed on: a LeNet-style CNN with max-pooling and a three-layer
MLP, trained from scratch (Adam, batch 64, 2 epochs) on a seeded MNIST subset. Triggers the code had not
seen: a 5x5 "X" in the top-left corner, a 4x4 "L" in the bottom-left, and a blended noise image (alpha
0.2). The poison is relabelled to class 3 and makes up 1% to 50% of that class. Per run: the attack's
success on triggered test images of the other classes, clean accuracy, and for activation clustering and
spectral signatures at the ``penultimate`` and ``features`` layers (the input of the first ``nn.Linear``:
the CNN's pooled convolutional features, the MLP's pixels) recall of the poison and false-positive rate
among clean samples; the scanners without the whitening (``whiten=False``: Chen et al.'s top principal
components, Tran et al.'s top direction) for comparison; STRIP (fitted on 500 clean test images at 5%
FRR) on 500 triggered test images of other classes and 500 held-out clean ones; and which classes the
scans disagree on
(:func:`bastion.detect.scan_disagreement`). Poison share 0%: the clean model, where every flag is false.

    cd benchmarks && OMP_NUM_THREADS=1 ../.venv/bin/python bench_scanners_generalise.py \
        --n 10000 --triggers 0 1 2 --shares 0.01 0.1 0.25 0.5
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from _common import DATA_ROOT, environment, markdown
from bastion.attacks.poisoning import Backdoor, BlendTrigger, PatchTrigger, Trigger, attack_success_rate
from bastion.data import Dataset, load_dataset
from bastion.detect import STRIP, ActivationClustering, DataScanResult, SpectralSignatures, scan_disagreement
from bastion.model import TorchClassifier

TARGET = 3


def lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )


ARCHS = {"lenet-maxpool": lenet, "mlp": mlp}


def _x(s: int) -> torch.Tensor:
    eye = torch.eye(s)
    return torch.maximum(eye, eye.flip(1))


def _l(s: int) -> torch.Tensor:
    p = torch.zeros(s, s)
    p[:, 0] = 1.0
    p[-1, :] = 1.0
    return p


TRIGGERS: dict[str, Trigger] = {
    "X 5x5 top-left": PatchTrigger(pattern=_x(5), position="top-left"),
    "L 4x4 bottom-left": PatchTrigger(pattern=_l(4), position="bottom-left"),
    "blend noise 0.2": BlendTrigger(alpha=0.2, seed=1),
}


def train(arch: str, data: Dataset, epochs: int, seed: int) -> TorchClassifier:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the initialisation's seed without touching the caller's RNG
        torch.manual_seed(seed)
        net = ARCHS[arch]()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(data), generator=g)
        for i in range(0, len(data), 64):
            b = perm[i : i + 64]
            loss = nn.functional.cross_entropy(net(data.x[b]), data.y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return TorchClassifier(net, bounds=data.bounds, name=arch)


def rate_for(share: float, train_set: Dataset) -> float:
    """Backdoor rate (of the whole set) that makes the poison ``share`` of the target class."""
    n_target = int((train_set.y == TARGET).sum())
    return share * n_target / (1 - share) / len(train_set)


def cell(result: DataScanResult, truth: torch.Tensor) -> str:
    stat = result.classes[TARGET].statistic or 0.0
    others = max((c.statistic or 0.0) for c in result.classes if c.label != TARGET)
    if not bool(truth.any()):
        return f"{int(result.flagged.sum())} flagged (max {max(stat, others):.1f})"
    recall = result.precision_recall(truth)[1]
    fpr = result.false_positive_rate(truth)
    mark = "**" if recall >= 0.9 and fpr <= 0.01 else ""
    return f"{mark}{recall:.0%}{mark} / {fpr:.2%} ({stat:.1f} vs {others:.1f})"


def scanners() -> dict[str, object]:
    return {
        "AC pen": ActivationClustering(),
        "AC feat": ActivationClustering(layer="features"),
        "spectral pen": SpectralSignatures(),
        "spectral feat": SpectralSignatures(layer="features"),
        "plain AC feat": ActivationClustering(layer="features", whiten=False),
        "plain spectral pen": SpectralSignatures(whiten=False),
        "plain spectral feat": SpectralSignatures(layer="features", whiten=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="MNIST training images (a seeded subset)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--triggers", nargs="+", type=int, default=list(range(len(TRIGGERS))))
    parser.add_argument("--shares", nargs="+", type=float, default=[0.01, 0.05, 0.2, 0.5])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = f"mnist:{DATA_ROOT}/mnist"
    train_set = load_dataset(root, split="train").take(args.n, seed=args.seed)
    test_set = load_dataset(root, split="test")
    keep = test_set.y != TARGET
    others, others_y = test_set.x[keep][:500], test_set.y[keep][:500]
    fit_x, held = test_set.x[:500], test_set.x[5000:5500]
    names = list(scanners())
    rows, disagreements = [], []
    trigger_items = [list(TRIGGERS.items())[i] for i in args.triggers]
    for arch in args.archs:
        runs: list[tuple[str, float, Trigger | None]] = [("none (clean)", 0.0, None)]
        runs += [(tname, share, trig) for tname, trig in trigger_items for share in args.shares]
        for tname, share, trig in runs:
            start = time.perf_counter()
            if trig is None:
                data, truth = train_set, torch.zeros(len(train_set), dtype=torch.bool)
            else:
                poison = Backdoor(trig, TARGET, rate_for(share, train_set))(train_set, seed=args.seed)
                data, truth = poison.dataset, poison.poisoned
            model = train(arch, data, args.epochs, args.seed)
            acc = float((model(test_set.x).argmax(1) == test_set.y).double().mean())
            asr = "" if trig is None else f"{attack_success_rate(model, others, others_y, trig, TARGET):.1%}"
            results = {name: s.scan(model, data) for name, s in scanners().items()}  # type: ignore[attr-defined]
            strip = ""
            if trig is not None:
                det = STRIP(fpr=0.05).fit(model, fit_x)
                tpr = float(det.detect(trig.apply(others)).double().mean())
                frr = float(det.detect(held).double().mean())
                strip = f"{tpr:.1%} / {frr:.1%}"
            n_poison = int(truth.sum())
            share_text = "0%" if trig is None else f"{share:.0%} ({n_poison})"
            rows.append(
                [arch, tname, share_text, f"{acc:.1%}", asr]
                + [cell(results[n], truth) for n in names]
                + [strip, f"{time.perf_counter() - start:.0f}"]
            )
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
            new = {n: r for n, r in results.items() if not n.startswith("plain")}
            for d in scan_disagreement(new):
                disagreements.append([arch, tname, share_text, d.message])
    head = ["arch", "trigger", "poison share of class 3 (n)", "clean acc", "ASR", *names, "STRIP TPR / FRR"]
    head.append("s")
    print(environment())
    print(f"\nMNIST subset of {args.n:,} training images, {args.epochs} epochs, seed {args.seed}. "
          "Scanner cells: recall / FPR (target-class statistic vs the largest other class's).\n")  # fmt: skip
    print(markdown(head, rows))
    print("\n### Where the scans disagree (scan_disagreement, whitened scanners only)\n")
    print(markdown(["arch", "trigger", "share", "finding"], disagreements) if disagreements else "none")


if __name__ == "__main__":
    main()
