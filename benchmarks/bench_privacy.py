"""The privacy trade-off table (issue 14): clean accuracy against each attack's leakage, per defense.

One victim family: an MNIST MLP (784-H-10) trained on ``--members`` seeded MNIST training images, a
half of a target pool T of 2 x members images (the other half are the non-members). Every row uses the
same seed, data split and attack settings.

Defenses, two kinds:

- training recipes (``none``, ``ls+0.1``, ``ls-0.2``, ``weight-decay``, ``early-stopping``,
  ``dp-sgd``): the target is trained with the recipe, and so are LiRA's references (the attacker knows
  the recipe). Label smoothing is bastion's ``label-smoothing`` objective (a negative factor is
  allowed); weight decay is the L2 term of Adam; early stopping holds out ``--validation`` MNIST
  training images outside T (the same set for target and references) and stops after ``--patience``
  epochs without a better held-out accuracy, keeping the best epoch; DP-SGD is bastion's ``dp-sgd``
  objective (Opacus, ``--epsilon`` at delta 1e-5, clipping norm 1, the prv accountant), the ε it
  really spent in the note.
- output policies (``labels``, ``top3``, ``round2``, ``reverse-sigmoid``): the undefended target
  (recipe ``none``) behind :class:`bastion.defenses.output_policy.PolicyClassifier`. Every attack sees
  only the released output: softmax of the wrapper's log-released matrix.

Columns:

- clean acc: top-1 accuracy of what is released (the deployed API) on the MNIST test set.
- fidelity @b: Knockoff Nets (``uncertainty`` selection, Fashion-MNIST train as the pool) with a
  ``--budget`` query run; a clone is trained from scratch on the first b queries for each checkpoint
  (``--budgets``), fidelity = agreement of its top-1 with the released top-1 on the MNIST test set.
  The clone trains on the released probabilities, or on their top-1 when the policy releases labels
  only. The clone is an MLP of the victim's shape (``--clone cnn``: the library's small_cnn, about
  15x slower on a CPU).
- MI-Face acc: black-box MI-Face (NES gradient estimates from the released outputs, the paper's zero
  start, normalised steps, total-variation weight ``--mi-tv``) reconstructs an image for each of the 10
  classes, once per NES seed (``--mi-seeds``); the share of reconstructions that the independent
  evaluator ``zoo:mnist-cnn`` (a CNN trained separately on all of MNIST) assigns to the right class.
  The start image alone scores 10% (one class). A confident MLP saturates p_k within a few steps, so
  the runs go on to cost 1 - p_k <= ``--mi-threshold`` (1e-6, not the paper's 0.01: stopping at 0.99
  leaves noise the evaluator does not recognise). Queries: the total over classes and seeds.
- LiRA: online LiRA (Carlini et al. 2022) with ``--references`` models, each trained with the row's
  recipe on a seeded half of T (so the target is one more model of the references' distribution and
  every example is IN for half of them); under a policy the references' outputs pass through the same
  policy (the attacker knows it). TPR at 0.1% FPR and AUC over all of T (members = the target's).
- train s / attack s: seconds to train the target and references (policy rows reuse ``none``'s: -),
  and for the three attacks.

Reproduce (each row is independent: split ``--defenses`` across processes to run in parallel):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_privacy.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_privacy.py --defenses none,labels,dp-sgd
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_privacy.py --quick      # smoke run, minutes
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from _common import DATA_ROOT, environment, markdown
from bastion import zoo
from bastion.attacks.extraction import CloneTraining, KnockoffNets
from bastion.attacks.inference.inversion_metrics import evaluator_accuracy
from bastion.attacks.inference.lira import LiRA
from bastion.attacks.inference.mi_face import MIFace
from bastion.attacks.inference.references import Assignment, ReferenceModels
from bastion.data import Dataset, load_dataset
from bastion.defenses.output_policy import PolicyClassifier
from bastion.defenses.training.config import TrainingConfig
from bastion.defenses.training.dp_sgd import DPSGD
from bastion.defenses.training.loop import train
from bastion.defenses.training.methods import make_objective
from bastion.defenses.training.run import TrainingRun
from bastion.model import TorchClassifier


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: a bastion training method, its options, and TrainingConfig overrides."""

    method: str = "standard"
    options: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def recipes(args: argparse.Namespace) -> dict[str, Recipe]:
    dp = {"target_epsilon": args.epsilon, "delta": 1e-5, "max_grad_norm": 1.0, "accountant": "prv"}
    return {
        "none": Recipe(),
        "ls+0.1": Recipe("label-smoothing", {"smoothing": 0.1}),
        "ls-0.2": Recipe("label-smoothing", {"smoothing": -0.2}),
        "weight-decay": Recipe(config={"weight_decay": args.weight_decay}),
        # validation > 0 only satisfies TrainingConfig's check; the held-out set is passed explicitly
        "early-stopping": Recipe(config={"patience": args.patience, "validation": 0.1}),
        "dp-sgd": Recipe("dp-sgd", dp, {"lr": args.dp_lr, "batch_size": args.dp_batch}),
    }


POLICIES = {"labels": "labels", "top3": "top3", "round2": "round2", "reverse-sigmoid": "reverse-sigmoid:0.5"}


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 10))


@dataclass
class Setup:
    """Everything every row shares: data split, sizes, the evaluator and the extraction pool."""

    args: argparse.Namespace
    t_set: Dataset  # the target pool T
    member: torch.Tensor  # (|T|,) bool: the target's training rows
    validation: Dataset  # early stopping's held-out set, outside T
    test: Dataset
    pool: Dataset
    evaluator: TorchClassifier
    base: TrainingConfig


def build_setup(args: argparse.Namespace) -> Setup:
    mnist = f"mnist:{os.path.join(DATA_ROOT, 'mnist')}"
    ds = load_dataset(mnist, split="train")
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(ds), generator=g)
    n_t = 2 * args.members
    if n_t + args.validation > len(ds):
        raise SystemExit(f"MNIST train has {len(ds)} images, fewer than {n_t} + {args.validation}")
    t_set = ds.subset(order[:n_t])
    validation = ds.subset(order[n_t : n_t + args.validation])
    member = torch.zeros(n_t, dtype=torch.bool)
    member[torch.randperm(n_t, generator=g)[: args.members]] = True
    test = load_dataset(mnist, split="test").take(args.test, seed=args.seed)
    pool = load_dataset(f"fashion-mnist:{os.path.join(DATA_ROOT, 'fashion-mnist')}", split="train")
    base = TrainingConfig(
        epochs=args.epochs, batch_size=64, lr=args.lr, seed=args.seed, validation=0.0, guard=False
    )
    return Setup(args, t_set, member, validation, test, pool, zoo.load("mnist-cnn"), base)


def fit(setup: Setup, recipe: Recipe, data: Dataset, seed: int) -> tuple[TorchClassifier, TrainingRun]:
    """One model trained by the project's training loop under ``recipe``, initialised from ``seed``."""
    cfg = replace(setup.base, **{**recipe.config, "seed": seed})
    objective = make_objective(recipe.method, dict(recipe.options))
    if isinstance(objective, DPSGD):
        objective.check_size(len(data))
    held_out = setup.validation if cfg.patience else None
    with torch.random.fork_rng(devices=[]):  # same seed, same weights, whatever ran before
        torch.manual_seed(seed)
        run = train(mlp(setup.args.hidden), lambda x: x, data, objective, cfg, validation_set=held_out)
    clf = TorchClassifier(run.module, bounds=data.bounds, num_classes=10, name=f"mlp-{recipe.method}")
    return clf, run


@dataclass
class Trained:
    target: TorchClassifier
    references: ReferenceModels
    seconds: float
    note: str


def train_recipe(setup: Setup, name: str, recipe: Recipe) -> Trained:
    """The target (on the members) and the references (on seeded halves of T), all under ``recipe``."""
    args, t_set = setup.args, setup.t_set
    t0 = time.perf_counter()
    target, run = fit(setup, recipe, t_set.subset(setup.member.nonzero().flatten()), 10_000 + args.seed)
    assignment = Assignment.random(args.references, len(t_set), args.seed + 1)
    models = []
    for i in range(args.references):
        keep = assignment.keep[i].nonzero().flatten()
        models.append(fit(setup, recipe, t_set.subset(keep), args.seed + 100 + i)[0])
        print(f"  {name}: reference {i + 1}/{args.references}", file=sys.stderr, flush=True)
    refs = ReferenceModels(tuple(models), assignment, t_set)
    notes = []
    if run.privacy is not None:
        p = run.privacy
        notes.append(f"target ε {p['epsilon']:.2f} ({p['accountant']}), σ {p['noise_multiplier']:.2f}")
    if recipe.config.get("patience"):
        how = "stopped early" if run.stopped_early else "ran all epochs"
        notes.append(f"target {how}, kept epoch {run.best_epoch or args.epochs:g} of {args.epochs}")
    return Trained(target, refs, time.perf_counter() - t0, "; ".join(notes))


def released_top1(victim: PolicyClassifier, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([victim.released(x[i : i + 2048]).argmax(1) for i in range(0, len(x), 2048)])


def extraction(setup: Setup, victim: PolicyClassifier, output: str) -> list[float]:
    args = setup.args
    clone = None
    if args.clone == "mlp":
        hidden = args.hidden

        def clone() -> nn.Module:
            return mlp(hidden)

    attack = KnockoffNets(
        "uncertainty",
        output,
        budgets=tuple(args.budgets),
        clone=clone,
        training=CloneTraining(steps=args.clone_steps),
    )
    # reference = the released API itself: fidelity is against what the deployed model answers
    result = attack.run(victim, setup.pool, args.budget, test=setup.test, reference=victim, seed=args.seed)
    by_budget = {p.budget: p.fidelity for p in result.curve}
    return [float(by_budget.get(b) or float("nan")) for b in args.budgets]


def inversion(setup: Setup, victim: PolicyClassifier, name: str) -> tuple[float, int, str]:
    """Evaluator accuracy over 10 classes x ``--mi-seeds`` NES seeds, total queries, stop reasons."""
    args = setup.args
    attack = MIFace(
        steps=args.mi_steps,
        patience=args.mi_patience,
        threshold=args.mi_threshold,
        step_size=0.02,
        samples=args.mi_samples,
        sigma=args.mi_sigma,
        tv_weight=args.mi_tv,
        normalize=True,
    )
    classes = torch.arange(10)
    hits, queries, reasons, images = [], 0, [], []
    for s in range(args.mi_seeds):
        res = attack.run(victim, classes, shape=(1, 28, 28), seed=args.seed + s)  # the paper's zero start
        hits.append(evaluator_accuracy(setup.evaluator, res.reconstructions, classes)[1])
        queries += res.queries
        reasons += res.stop_reason
        images.append(res.reconstructions)
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(torch.stack(images), args.out_dir / f"mi-face-{name}.pt")
    stops = {r: reasons.count(r) for r in sorted(set(reasons))}
    return float(torch.cat(hits).float().mean()), queries, ",".join(f"{k} {v}" for k, v in stops.items())


def policy_refs(refs: ReferenceModels, spec: str) -> ReferenceModels:
    models = tuple(PolicyClassifier(m, spec) for m in refs.models)
    return ReferenceModels(models, refs.assignment, refs.population)  # type: ignore[arg-type]


def row(setup: Setup, name: str, trained: Trained, spec: str, shared: bool) -> list[Any]:
    victim = PolicyClassifier(trained.target, spec)
    test = setup.test
    acc = float((released_top1(victim, test.x) == test.y).float().mean())
    t0 = time.perf_counter()
    fidelities = extraction(setup, victim, "labels" if spec == "labels" else "probs")
    mi_acc, mi_queries, mi_stops = inversion(setup, victim, name)
    refs = trained.references if spec == "probs" else policy_refs(trained.references, spec)
    ref_in = refs.assignment.keep
    lira = LiRA().run(victim, setup.t_set.x, setup.t_set.y, setup.member, references=refs, ref_in=ref_in)
    attack_s = time.perf_counter() - t0
    notes = [n for n in (trained.note, f"MI-Face stops: {mi_stops}") if n]
    return [
        name,
        f"{acc:.2%}",
        *(f"{f:.2%}" for f in fidelities),
        f"{mi_acc:.0%}",
        f"{mi_queries:,}",
        f"{lira.tpr_at_0_1pct_fpr:.2%}",
        f"{lira.auc:.3f}",
        "-" if shared else f"{trained.seconds:.0f}",
        f"{attack_s:.0f}",
        "; ".join(notes),
    ]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    everything = "none,ls+0.1,ls-0.2,weight-decay,early-stopping,dp-sgd," + ",".join(POLICIES)
    ap.add_argument("--defenses", default=everything, help=f"comma list of rows (default: {everything})")
    ap.add_argument("--members", type=int, default=2000, help="the target's training images (T: twice)")
    ap.add_argument("--references", type=int, default=8, help="online LiRA's reference models")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-2, help="Adam, one-cycle, batch 64")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--patience", type=int, default=3, help="early stopping: epochs without a better one")
    ap.add_argument("--validation", type=int, default=1000, help="early stopping's held-out images")
    ap.add_argument("--epsilon", type=float, default=3.0, help="DP-SGD's target ε at δ 1e-5")
    ap.add_argument("--dp-lr", type=float, default=1e-2)
    ap.add_argument("--dp-batch", type=int, default=128, help="DP-SGD's expected (Poisson) batch")
    ap.add_argument("--budget", type=int, default=5000, help="extraction queries")
    ap.add_argument("--budgets", default="1000", help="smaller extraction checkpoints (comma list)")
    ap.add_argument("--clone-steps", type=int, default=1500, help="optimiser steps per clone")
    ap.add_argument("--clone", choices=("mlp", "cnn"), default="mlp")
    ap.add_argument("--mi-steps", type=int, default=500, help="MI-Face updates per class")
    ap.add_argument("--mi-patience", type=int, default=100)
    ap.add_argument("--mi-samples", type=int, default=50, help="NES probes per update")
    ap.add_argument("--mi-sigma", type=float, default=0.01, help="NES probe radius")
    ap.add_argument("--mi-tv", type=float, default=0.02, help="MI-Face's total-variation weight")
    ap.add_argument(
        "--mi-threshold", type=float, default=1e-6, help="stop at cost 1 - p_k <= this (paper: 0.01)"
    )
    ap.add_argument("--mi-seeds", type=int, default=3, help="MI-Face runs (NES seeds) per class")
    ap.add_argument("--test", type=int, default=None, help="MNIST test images (default: all 10,000)")
    ap.add_argument("--out-dir", type=Path, default=None, help="save the MI-Face reconstructions here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of every row")
    args = ap.parse_args()
    if args.quick:
        args.members, args.references, args.epochs, args.validation = 500, 4, 10, 300
        args.budget, args.budgets, args.clone_steps = 1000, "250", 300
        args.mi_steps, args.mi_patience, args.mi_seeds, args.test = 200, 50, 1, 2000
    args.budgets = sorted({int(b) for b in args.budgets.split(",") if b} | {args.budget})
    args.defenses = [d.strip() for d in args.defenses.split(",") if d.strip()]
    known = set(recipes(args)) | set(POLICIES)
    unknown = [d for d in args.defenses if d not in known]
    if unknown:
        raise SystemExit(f"unknown defense(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    setup = build_setup(args)
    table = recipes(args)
    trained: dict[str, Trained] = {}
    rows = []
    for name in args.defenses:
        recipe_name, spec = (name, "probs") if name in table else ("none", POLICIES[name])
        shared = recipe_name in trained or recipe_name != name
        if recipe_name not in trained:
            trained[recipe_name] = train_recipe(setup, recipe_name, table[recipe_name])
        rows.append(row(setup, name, trained[recipe_name], spec, shared))
        print("| " + " | ".join(str(v) for v in rows[-1]) + " |", file=sys.stderr, flush=True)
    headers = [
        "defense",
        "clean acc",
        *(f"fidelity @{b:,}" for b in args.budgets),
        "MI-Face acc",
        "MI-Face queries",
        "LiRA TPR@0.1% FPR",
        "LiRA AUC",
        "train s",
        "attack s",
        "note",
    ]
    print(
        f"\n### Privacy trade-off: MNIST MLP 784-{args.hidden}-10, {args.members:,} members of "
        f"{2 * args.members:,}, {args.epochs} epochs; {args.references} LiRA references per recipe; "
        f"Knockoff uncertainty {args.budget:,} queries, {args.clone} clone, {args.clone_steps} steps; "
        f"MI-Face {args.mi_steps} steps x {args.mi_samples} NES samples; {len(setup.test):,} MNIST test "
        f"images; seed {args.seed} ({environment()})\n"
    )
    print(markdown(headers, rows))


if __name__ == "__main__":
    main()
