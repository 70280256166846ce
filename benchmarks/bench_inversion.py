"""MI-Face on the Olivetti / AT&T faces (the dataset of Fredrikson et al., CCS 2015): how much a face
recognition model's outputs leak, under full probabilities, rounding and label-only release.

Victim: softmax regression (Fredrikson et al.'s "Softmax" model; ``--victim mlp`` for a one-hidden-layer
MLP) trained on the seeded 7-per-person training split through ``bastion.harden`` (method "standard").
Evaluator: a small CNN trained separately (another architecture and seed) on the same split; it labels
the reconstructions (evaluator accuracy = share recognised as their person). SSIM (Wang et al. 2004)
is to the person's mean training image. Reference rows: the class means themselves (what a perfect
"average face" reconstruction scores) and the zero start (no attack).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_inversion.py --out-dir /tmp/inversion
    OMP_NUM_THREADS=1 benchmarks/.bench-venv/bin/python benchmarks/bench_inversion.py --art

The reconstruction grid PNG goes to ``--out-dir`` (not committed: these are real people's faces;
the data README asks not to publish reconstructions beyond research use).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from _common import DATA_ROOT, environment, markdown
from bastion import harden
from bastion.attacks.inference.inversion_metrics import class_means, inversion_quality
from bastion.attacks.inference.mi_face import MIFace
from bastion.data.faces import load_faces
from bastion.defenses.training.config import TrainingConfig
from bastion.model import TorchClassifier


def victim_module(kind: str) -> nn.Module:
    if kind == "softmax":
        return nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 40))
    return nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 300), nn.Sigmoid(), nn.Linear(300, 40))


def evaluator_module() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 40),
    )


def train(module: nn.Module, train_set, test_set, *, seed: int, epochs: int) -> tuple[TorchClassifier, float]:
    torch.manual_seed(seed)
    config = TrainingConfig(epochs=epochs, batch_size=32, lr=3e-3, seed=seed, validation=0.0)
    result = harden(module, train_set, "standard", config=config, from_scratch=True, eval_data=test_set)
    return result.classifier, float(result.card["evaluation"]["clean_accuracy"])


def art_miface(
    model: TorchClassifier, classes: torch.Tensor, steps: int, patience: int
) -> tuple[torch.Tensor, float]:
    import numpy as np
    from art.attacks.inference.model_inversion import MIFace as ArtMIFace
    from art.estimators.classification import PyTorchClassifier

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model.module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return model(x)

    clf = PyTorchClassifier(
        model=Plain(),
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 64, 64),
        nb_classes=40,
        clip_values=(0.0, 1.0),
    )
    attack = ArtMIFace(
        clf,
        max_iter=steps,
        window_length=patience,
        threshold=0.99,
        learning_rate=0.1,
        batch_size=40,
        verbose=False,
    )
    t = time.perf_counter()
    x = attack.infer(None, np.asarray(classes))
    return torch.from_numpy(x).float(), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", default=os.path.join(DATA_ROOT, "faces"))
    ap.add_argument("--victim", choices=("softmax", "mlp"), default="softmax")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--white-steps", type=int, default=5000, help="alpha for white-box (the paper's 5000)")
    ap.add_argument("--black-steps", type=int, default=500, help="alpha for the NES runs")
    ap.add_argument("--patience", type=int, default=100)
    ap.add_argument("--step-size", type=float, default=0.1, help="lambda (the paper's 0.1)")
    ap.add_argument("--threshold", type=float, default=0.01, help="gamma in cost units (confidence 0.99)")
    ap.add_argument("--black-start", choices=("grey", "average"), default="grey")
    ap.add_argument("--black-raw-step", type=float, default=None, help="NES runs with the paper's raw step")
    ap.add_argument(
        "--normalized-step", type=float, default=0.02, help="RMS pixel change per normalised step"
    )
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--sigma", type=float, default=0.01)
    ap.add_argument("--policies", default="probs,round3,round2,labels")
    ap.add_argument("--wide-sigma", default="round2,labels", help="policies rerun with 10x sigma")
    ap.add_argument("--art", action="store_true", help="add ART's MIFace (white-box), needs the bench venv")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/bastion-inversion"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--section", choices=("inversion", "attribute", "all"), default="all")
    ap.add_argument("--tabular", default=os.path.join(DATA_ROOT, "tabular"))
    args = ap.parse_args()
    if args.section in ("attribute", "all"):
        table = attribute_section(args.tabular, args.seed)
        print(f"\nattribute inference; {environment()}\n\n{table}\n", flush=True)
    if args.section == "attribute":
        return

    from bastion.defenses.output_policy import PolicyClassifier

    train_set, test_set = load_faces(args.faces, "train"), load_faces(args.faces, "test")
    t0 = time.perf_counter()
    victim, victim_acc = train(
        victim_module(args.victim), train_set, test_set, seed=args.seed, epochs=args.epochs
    )
    evaluator, eval_acc = train(
        evaluator_module(), train_set, test_set, seed=args.seed + 101, epochs=args.epochs
    )
    print(
        f"victim {args.victim}: test accuracy {victim_acc:.3f}; evaluator CNN: {eval_acc:.3f} "
        f"({time.perf_counter() - t0:.1f} s)",
        flush=True,
    )
    classes = torch.arange(40)
    shape = (1, 64, 64)
    rows, images = [], {}

    def record(name: str, recon: torch.Tensor, queries: int | str, seconds: float, note: str = "") -> None:
        q = inversion_quality(recon, classes, evaluator, train_set)
        rows.append([name, q.evaluator_accuracy, q.mean_ssim, queries, f"{seconds:.1f}", note])
        images[name] = recon
        print(rows[-1], flush=True)

    # The attacker's auxiliary knowledge for the "average face" start: the mean of the held-out test
    # images (other photos, not the training ones). The paper starts at zero.
    average = test_set.x.mean(0)
    grey = torch.full(shape, 0.5)  # the centre of the bounds [0, 1]
    record("class means (reference)", class_means(train_set, classes), "-", 0.0)
    record("zero start (no attack)", torch.zeros(40, *shape), "-", 0.0)
    record("mid-grey start (no attack)", grey.expand(40, *shape).clone(), "-", 0.0)
    record("average-face start (no attack)", average.expand(40, *shape).clone(), "-", 0.0)

    def stops(res) -> str:
        counts = {s: res.stop_reason.count(s) for s in sorted(set(res.stop_reason))}
        return f"mean p_k {float(res.confidence.mean()):.3f}; stops {counts}"

    white_runs = [
        ("zero start, raw step (the paper)", None, False, args.step_size),
        ("average-face start, raw step", average, False, args.step_size),
        ("mid-grey start, normalised step", grey, True, args.normalized_step),
    ]
    for label, start, normalize, step_size in white_runs:
        white = MIFace(
            steps=args.white_steps,
            patience=args.patience,
            step_size=step_size,
            threshold=args.threshold,
            gradient="white-box",
            normalize=normalize,
        )
        t = time.perf_counter()
        res = white.run(victim, classes, shape=shape, start=start, seed=args.seed)
        record(
            f"MI-Face white-box, {label}",
            res.reconstructions,
            res.queries,
            time.perf_counter() - t,
            stops(res),
        )
    if args.art:
        recon, seconds = art_miface(victim, classes, args.white_steps, args.patience)
        record(
            "ART MIFace white-box, zero start",
            recon,
            "-",
            seconds,
            "ART 1.20.1: ascends the class output's gradient (the logit here), returns the last iterate",
        )
    runs = [(p, args.sigma) for p in args.policies.split(",")]
    runs += [(p, args.sigma * 10) for p in args.wide_sigma.split(",") if p]
    for policy, sigma in runs:
        released = PolicyClassifier(victim, policy)
        raw = args.black_raw_step is not None
        black = MIFace(
            steps=args.black_steps,
            patience=args.patience,
            threshold=args.threshold,
            step_size=args.black_raw_step if raw else args.normalized_step,
            samples=args.samples,
            sigma=sigma,
            normalize=not raw,
        )
        t = time.perf_counter()
        begin = average if args.black_start == "average" else grey
        res = black.run(released, classes, start=begin, seed=args.seed)
        how = f"{args.black_start} start, " + (f"raw step {args.black_raw_step:g}" if raw else "normalised")
        record(
            f"MI-Face NES, {policy}, sigma {sigma:g}, {how}",
            res.reconstructions,
            res.queries,
            time.perf_counter() - t,
            stops(res),
        )

    headers = ["reconstruction", "evaluator acc", "SSIM to class mean", "queries (40 classes)", "s", "note"]
    table = markdown(headers, rows)
    print(
        f"\nvictim {args.victim} test acc {victim_acc:.3f}, evaluator CNN test acc {eval_acc:.3f}; "
        f"{environment()}\n\n{table}"
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "inversion.json").write_text(json.dumps({"headers": headers, "rows": rows}, indent=2))
    grid(images, args.out_dir / "reconstructions.png")
    print(f"grid: {args.out_dir / 'reconstructions.png'}")


def _encode(
    train_rows: list[dict[str, str]], rows: list[dict[str, str]], sensitive: str
) -> tuple[torch.Tensor, torch.Tensor, list[int], int]:
    """One-hot categorical columns (levels from the training rows), z-scored numeric columns; returns
    x (N, D), y (N,), the sensitive one-hot group's columns and D."""
    names = [c for c in train_rows[0] if c != "label"]
    numeric = [c for c in names if all(_is_number(r[c]) for r in train_rows[:200])]
    levels = {c: sorted({r[c] for r in train_rows}) for c in names if c not in numeric}
    stats = {}
    for c in numeric:
        v = torch.tensor([float(r[c]) for r in train_rows], dtype=torch.float64)
        stats[c] = (float(v.mean()), float(v.std()) or 1.0)
    columns: list[int] = []
    x = []
    for r in rows:
        feats: list[float] = []
        for c in names:
            if c in numeric:
                mean, std = stats[c]
                feats.append((float(r[c]) - mean) / std)
            else:
                if c == sensitive:
                    columns = list(range(len(feats), len(feats) + len(levels[c])))
                feats.extend(1.0 if r[c] == level else 0.0 for level in levels[c])
        x.append(feats)
    y = torch.tensor([int(r["label"]) for r in rows])
    return torch.tensor(x, dtype=torch.float32), y, columns, len(levels[sensitive])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read(path: str) -> list[dict[str, str]]:
    import csv
    import gzip

    with gzip.open(path, "rt", newline="") as fh:
        return list(csv.DictReader(fh))


def attribute_section(root: str, seed: int) -> str:
    """Attribute inference (Fredrikson et al. 2014 style) on German Credit (personal_status_sex, 4 values)
    and Adult (sex): training rows (members) and held-out rows, against the no-model baselines; and a
    control model trained with the attribute blanked (it cannot leak it)."""
    from bastion.attacks.inference.attribute import AttributeInference, attribute_leak
    from bastion.data.dataset import Dataset

    g = torch.Generator().manual_seed(seed)
    rows_out = []
    setups = [
        ("german_credit", "personal_status_sex", 200, 700, 1000),
        ("adult", "sex", 20, 2000, 2000),
    ]
    for name, sensitive, epochs, n_members, n_aux in setups:
        if name == "adult":
            train_rows = _read(os.path.join(root, "adult_train.csv.gz"))
            held_rows = _read(os.path.join(root, "adult_test.csv.gz"))
        else:
            everything = _read(os.path.join(root, "german_credit.csv.gz"))
            order = torch.randperm(len(everything), generator=g).tolist()
            train_rows = [everything[i] for i in order[:700]]
            held_rows = [everything[i] for i in order[700:]]
        x_tr, y_tr, cols, values = _encode(train_rows, train_rows, sensitive)
        x_held, y_held, _, _ = _encode(train_rows, held_rows, sensitive)
        half = x_held.shape[0] // 2
        aux = (x_held[:half][:n_aux], y_held[:half][:n_aux])  # the attacker's population data
        nonmem = (x_held[half:][:n_members], y_held[half:][:n_members])
        pick = torch.randperm(x_tr.shape[0], generator=g)[:n_members]
        members = (x_tr[pick], y_tr[pick])
        candidates = torch.eye(values)
        attack = AttributeInference(cols, candidates)
        for blank in (False, True):
            x_fit = x_tr.clone()
            if blank:
                x_fit[:, cols] = 0.0
            bounds = (float(min(x_tr.min(), x_held.min())), float(max(x_tr.max(), x_held.max())))
            data = Dataset(x_fit, y_tr, num_classes=2, bounds=bounds, name=name)
            module = nn.Sequential(nn.Linear(x_tr.shape[1], 64), nn.ReLU(), nn.Linear(64, 2))
            if blank:  # the control sees the attribute as a constant: its first layer ignores those inputs
                module = nn.Sequential(_Blank(cols), module)
            config = TrainingConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=seed, validation=0.0)
            model = harden(module, data, "standard", config=config, from_scratch=True).classifier
            with torch.no_grad():
                acc = float((model(x_held).argmax(1) == y_held).float().mean())
                train_acc = float((model(x_tr).argmax(1) == y_tr).float().mean())
            label = f"MLP{' (attribute blanked)' if blank else ''}, train/test acc {train_acc:.2f}/{acc:.2f}"
            for target, (x, y) in (("training rows", members), ("held-out rows", nonmem)):
                for kind in ("prior", "classifier"):
                    leak = attribute_leak(attack, model, x, y, aux, baseline=kind, seed=seed)
                    rows_out.append(
                        [
                            f"{name}: {sensitive}",
                            label,
                            target,
                            kind,
                            leak.baseline.accuracy,
                            leak.baseline.auc,
                            leak.attack.accuracy,
                            leak.attack.auc,
                            leak.queries,
                        ]
                    )
                    print(rows_out[-1], flush=True)
    headers = ["attribute", "model", "rows attacked", "baseline", "baseline acc", "baseline AUC",
               "attack acc", "attack AUC", "queries"]  # fmt: skip
    return markdown(headers, rows_out)


class _Blank(nn.Module):
    def __init__(self, columns: list[int]) -> None:
        super().__init__()
        self.columns = columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, self.columns] = 0.0
        return x


def grid(images: dict[str, torch.Tensor], path: Path, columns: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(images)
    fig, axes = plt.subplots(len(names) * 2, columns, figsize=(columns * 0.8, len(names) * 1.8))
    for r, name in enumerate(names):
        for c in range(2 * columns):
            ax = axes[2 * r + c // columns, c % columns]
            ax.imshow(images[name][c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
