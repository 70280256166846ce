"""Membership inference side by side: loss threshold, shadow models, LiRA (online/offline), RMIA, ART.

Protocol (LiRA paper, Section V): a pool T of target candidates; the target model trains on a seeded half
of T (the members). Online LiRA's references train on seeded halves of T + P (P: a disjoint population);
the offline attacks (LiRA offline, RMIA, shadow) use references trained on halves of P only, never on the
targets. Every model is trained by bastion.harden(method="standard") with the same recipe. ART's
MembershipInferenceBlackBox is supervised: it is fitted on the target's outputs for half of the members
and non-members (it knows their membership); so that every row is measured on the same examples, all
metrics are computed on the other half of T.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_membership.py                       # digits
    OMP_NUM_THREADS=1 benchmarks/.bench-venv/bin/python benchmarks/bench_membership.py --art   # + ART
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_membership.py --data mnist --targets 4000 \\
        --population 4000 --epochs 30
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_membership.py --data cifar10 --arch cnn \\
        --targets 50000 --population 10000 --population-split test --epochs 15 --lr 2e-3 \\
        --batch-size 128 --refs-dir DIR

The last is the LiRA paper's CIFAR-10 setting as far as 2 CPU cores allow: the target trains on a
seeded half of the whole training set, the population P is the test set (same distribution, never a
target), and ``--refs-dir`` keeps the references so that an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from _common import DATA_ROOT
from bastion.attacks.inference.label_only import BoundaryDistance
from bastion.attacks.inference.lira import LiRA
from bastion.attacks.inference.metrics import MembershipResult
from bastion.attacks.inference.references import (
    Assignment,
    ReferenceModels,
    train_reference,
    train_references,
)
from bastion.attacks.inference.rmia import RMIA
from bastion.attacks.inference.shadow import ShadowModels
from bastion.attacks.inference.threshold import LossThreshold
from bastion.data import Dataset, load_dataset
from bastion.defenses.training.config import TrainingConfig


def _data(name: str, split: str = "train") -> Dataset:
    if name == "digits":
        a, b = load_dataset("digits", split="train"), load_dataset("digits", split="test")
        return replace(a, x=torch.cat([a.x, b.x]), y=torch.cat([a.y, b.y]), name="digits")
    return load_dataset(f"{name}:{os.path.join(DATA_ROOT, name)}", split=split)


def _factory(shape: tuple[int, ...], hidden: int) -> Any:
    d = 1
    for s in shape:
        d *= s

    def build() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    return build


def _cnn(shape: tuple[int, ...]) -> Any:
    from bastion.attacks.extraction import small_cnn

    def build() -> nn.Module:
        return small_cnn(shape, 10)

    return build


def _subset(refs: ReferenceModels, k: int) -> ReferenceModels:
    a = Assignment(refs.assignment.keep[:k], refs.assignment.seed)
    return ReferenceModels(refs.models[:k], a, refs.population, refs.folder)


def _art_scores(
    target: Any, x: torch.Tensor, y: torch.Tensor, member: torch.Tensor, fit: torch.Tensor
) -> Any:
    import numpy as np
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification import PyTorchClassifier

    est = PyTorchClassifier(
        target.module,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    xn, yn = x.numpy(), y.numpy()
    mi = MembershipInferenceBlackBox(est, attack_model_type="rf")
    m, f = member.numpy(), fit.numpy()
    mi.fit(xn[f & m], yn[f & m], xn[f & ~m], yn[f & ~m])
    return torch.from_numpy(
        np.asarray(mi.infer(xn[~f], yn[~f], probabilities=True)).reshape(-1).astype("float64")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="digits, mnist or fashion-mnist")
    ap.add_argument(
        "--targets", type=int, default=1000, help="pool T of target candidates (half are members)"
    )
    ap.add_argument("--population", type=int, default=797, help="disjoint population P")
    ap.add_argument("--references", type=int, default=16, help="online LiRA's references")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--arch", choices=("mlp", "cnn"), default="mlp", help="cnn: bastion's small_cnn")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--population-split", choices=("train", "test"), default="train",
        help="test: P comes from the test split (T may then be the whole training set)",
    )  # fmt: skip
    ap.add_argument("--refs-dir", type=Path, default=None, help="keep the references here (resumable)")
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--label-only", action="store_true", help="add the label-only attack (slow)")
    ap.add_argument("--art", action="store_true", help="add ART's black-box attack (needs the bench venv)")
    ap.add_argument(
        "--dp-epsilon", type=float, default=None,
        help="train the target AND every reference with DP-SGD at this epsilon (delta 1e-5, prv accountant): "
        "the attacker knows the recipe",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    ds = _data(args.data)
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(ds), generator=g)
    n_t, n_p = args.targets, args.population
    if args.population_split == "test":
        held = _data(args.data, split="test")
        if n_t > len(ds) or n_p > len(held):
            raise SystemExit(f"{args.data} has {len(ds)} + {len(held)} examples, fewer than {n_t} + {n_p}")
        t_set = ds.subset(order[:n_t])
        p_set = held.subset(torch.randperm(len(held), generator=g)[:n_p])
    elif n_t + n_p > len(ds):
        raise SystemExit(f"{args.data} has {len(ds)} examples, fewer than {n_t} + {n_p}")
    else:
        t_set, p_set = ds.subset(order[:n_t]), ds.subset(order[n_t : n_t + n_p])
    pool = replace(t_set, x=torch.cat([t_set.x, p_set.x]), y=torch.cat([t_set.y, p_set.y]))
    member = torch.zeros(n_t, dtype=torch.bool)
    member[torch.randperm(n_t, generator=g)[: n_t // 2]] = True
    fit = torch.zeros(n_t, dtype=torch.bool)  # ART's supervised half; everything is measured on ~fit
    fit[torch.randperm(n_t, generator=g)[: n_t // 2]] = True
    shape = tuple(ds.x.shape[1:])
    factory = _cnn(shape) if args.arch == "cnn" else _factory(shape, args.hidden)
    cfg = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    method, options = "standard", dict[str, Any]()
    if args.dp_epsilon is not None:
        method = "dp-sgd"
        options = {
            "target_epsilon": args.dp_epsilon,
            "delta": 1e-5,
            "max_grad_norm": 1.0,
            "accountant": "prv",
        }

    t0 = time.perf_counter()
    trained = train_reference(
        factory, t_set, member, seed=10_000 + args.seed, config=cfg, method=method, options=options
    )
    target = trained.classifier
    privacy = trained.card.get("privacy")
    t_train = time.perf_counter() - t0
    with torch.no_grad():
        acc_in = float((target(t_set.x[member]).argmax(1) == t_set.y[member]).float().mean())
        acc_out = float((target(t_set.x[~member]).argmax(1) == t_set.y[~member]).float().mean())
    with tempfile.TemporaryDirectory() as tmp:
        root = args.refs_dir or Path(tmp)
        t0 = time.perf_counter()
        online = train_references(
            factory, pool, args.references, root / "on", seed=args.seed + 1, config=cfg, method=method,
            options=options,
            progress=lambda d, t: print(f"references {d}/{t} ({time.perf_counter() - t0:.0f} s)", flush=True),
        )  # fmt: skip
        t_online = time.perf_counter() - t0
        offline = train_references(
            factory, p_set, 4, root / "off", seed=args.seed + 2, config=cfg, method=method, options=options
        )
    ref_in = online.assignment.keep[:, :n_t]
    x, y = t_set.x, t_set.y
    rows: list[tuple[str, MembershipResult]] = []

    def add(label: str, res: MembershipResult) -> None:
        ev = ~fit
        sub = MembershipResult.from_scores(
            res.scores[ev],
            member[ev],
            attack=res.attack,
            queries=res.queries,
            params=res.params,
            seconds=res.seconds,
        )
        rows.append((label, sub))

    add("loss threshold (Yeom et al.)", LossThreshold().run(target, x, y, member))
    add("shadow models (Shokri et al.), 4 refs", ShadowModels().run(target, x, y, member, references=offline))
    r = args.references
    add(f"LiRA online, {r} refs", LiRA().run(target, x, y, member, references=online, ref_in=ref_in))
    add(
        f"LiRA online, {r} refs, per-example variance",
        LiRA(fixed_variance=False).run(target, x, y, member, references=online, ref_in=ref_in),
    )
    add(
        f"LiRA offline, OUT of {r} refs",
        LiRA(online=False).run(target, x, y, member, references=online, ref_in=ref_in),
    )
    for k in (1, 2, 4):
        sub = _subset(offline, k)
        add(f"LiRA offline, {k} ref(s)", LiRA(online=False).run(target, x, y, member, references=sub))
        add(f"RMIA offline, {k} ref(s)", RMIA().run(target, x, y, member, references=sub, seed=args.seed))
    if args.label_only:
        add(
            "label-only boundary distance",
            BoundaryDistance(max_queries=500).run(target, x, y, member, seed=args.seed),
        )
    if args.art:
        t0 = time.perf_counter()
        s = _art_scores(target, x, y, member, fit)
        rows.append(
            (
                "ART MembershipInferenceBlackBox (rf, supervised)",
                MembershipResult.from_scores(
                    s, member[~fit], attack="art", queries=n_t, seconds=time.perf_counter() - t0
                ),
            )
        )

    n_eval = int((~fit).sum())
    arch = "small_cnn" if args.arch == "cnn" else f"MLP {args.hidden} hidden"
    print(
        f"\n{args.data}: {arch}, target trained on {int(member.sum())} of {n_t} "
        f"(train acc {acc_in:.1%}, held-out acc {acc_out:.1%}, {t_train:.1f} s); {r} online references "
        f"in {t_online:.0f} s; measured on {n_eval} examples ({int(member[~fit].sum())} members)"
    )
    if privacy:
        print(
            f"DP-SGD (target and references): epsilon {privacy.get('epsilon'):.3g} at delta "
            f"{privacy.get('delta'):g} ({privacy.get('accountant')}), noise multiplier "
            f"{privacy.get('noise_multiplier'):.3g}"
        )
    print()
    print("| attack | AUC | balanced acc | TPR@0.1% FPR | TPR@1% FPR | target queries | seconds |")
    print("|---|---|---|---|---|---|---|")
    for label, res in rows:
        print(
            f"| {label} | {res.auc:.3f} | {res.balanced_accuracy:.1%} | {res.tpr_at_0_1pct_fpr:.2%} | "
            f"{res.tpr_at_1pct_fpr:.2%} | {res.queries:,} | {res.seconds:.1f} |"
        )
    low = 1 / max(n_eval - int(member[~fit].sum()), 1)
    print(
        f"\nlowest measurable FPR {low:.2%}: TPR@0.1% is the TPR at zero false positives when that "
        "exceeds 0.1%; target queries cover all of T"
    )


if __name__ == "__main__":
    main()
