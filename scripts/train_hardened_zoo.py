#!/usr/bin/env python
"""Train the zoo's hardened models with ``bastion.harden``, seeded, and write weights + model cards.

    python scripts/train_hardened_zoo.py --model mnist-cnn-fgsm --data-root /work/shared/data

Each model starts from scratch (its base architecture re-initialised), trains on the training split
with the recipe below, and is evaluated on the test split under the ``standard`` preset (the first
``--eval-limit`` test images of a seeded shuffle). The card holds the harden card (method, threat,
epochs, seed, per-epoch history, training time) plus what ``bastion.zoo`` needs; both files are
written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bastion import zoo
from bastion.certify import IntervalBoundPropagation, RandomizedSmoothing
from bastion.data import load_dataset
from bastion.defenses.training import TrainingConfig, harden
from bastion.defenses.training.card import measure
from bastion.threat import ThreatModel
from bastion.zoo.architectures import spec


@dataclass(frozen=True)
class Hardened:
    """A recipe. ``epsilon`` is the training budget (None: no threat, e.g. noise); ``eval_epsilon`` the
    one the card's robust (and, for ibp, verified) accuracy is measured at (default: ``epsilon``)."""

    base: str
    method: str
    epsilon: float | None
    config: TrainingConfig
    options: dict[str, Any] = field(default_factory=dict)
    norm: str = "linf"
    eval_epsilon: float | None = None


DIGITS = TrainingConfig(epochs=30, batch_size=64, lr=3e-3)
# After Wong et al. (2020), MNIST: epsilon 0.3, 10 epochs, Adam one-cycle. Their step 0.375 (1.25 eps)
# overfits catastrophically here (the guard caught it), and their peak LR 5e-3 stalls the larger
# mnist-cnn at ~70% held-out PGD accuracy; step eps and a peak of 2e-3 are used instead.
MNIST_FAST = TrainingConfig(epochs=10, batch_size=128, lr=2e-3, checks_per_epoch=2)
# On the strided net Wong et al.'s peak LR 5e-3 works; step 1.1 eps (their 1.25 eps overfits here too).
STRIDED_FAST = TrainingConfig(epochs=15, batch_size=128, lr=5e-3, checks_per_epoch=2)
# Gowal et al. (2018) train IBP at twice the certified epsilon on MNIST and ramp epsilon and kappa.
STRIDED_IBP = TrainingConfig(epochs=20, batch_size=100, lr=1e-3, epsilon_ramp=6, guard=False)

RECIPES: dict[str, Hardened] = {
    "digits-cnn-fgsm": Hardened("digits-cnn", "fgsm-rs", 0.2, DIGITS),
    "digits-cnn-pgd": Hardened("digits-cnn", "pgd", 0.2, DIGITS, {"steps": 10}),
    "digits-cnn-trades": Hardened("digits-cnn", "trades", 0.2, DIGITS, {"steps": 10}),
    "digits-cnn-atta": Hardened("digits-cnn", "atta", 0.2, DIGITS),
    "mnist-cnn-fgsm": Hardened("mnist-cnn", "fgsm-rs", 0.3, MNIST_FAST, {"step_size": 0.3}),
    "mnist-strided-fgsm": Hardened("mnist-strided", "fgsm-rs", 0.3, STRIDED_FAST, {"step_size": 0.33}),
    # Not zoo-worthy yet (both runs below FGSM-RS's 84.4%). De Jorge et al.'s k = 2, step 0.3, no ramp:
    # held-out PGD-10 peaked at 41% (epoch 4) then fell to 23%; 91.7% clean, 33.2% `standard`, 838 s
    # (loaded machine). This recipe, k = 1 with a 1-epoch eps ramp (the best of a 24k-image proxy; the
    # step is the default eps, which follows the ramp): 61.8% at epoch 2.5, then catastrophic
    # overfitting, the guard stopped at epoch 5 and restored 2.5: 96.8% clean, 55.0% `standard`, 275 s.
    "mnist-strided-nfgsm": Hardened(
        "mnist-strided",
        "n-fgsm",
        0.3,
        replace(STRIDED_FAST, epochs=10, epsilon_ramp=1),
        {"noise_magnitude": 1.0},
    ),
    # Zheng et al. (2020): one step of eps/2 (the default) per batch from the sample's previous
    # perturbation; fast FGSM's schedule with 11 epochs and one check per epoch.
    "mnist-strided-atta": Hardened(
        "mnist-strided", "atta", 0.3, replace(STRIDED_FAST, epochs=11, checks_per_epoch=1)
    ),
    "mnist-strided-pgd": Hardened(
        "mnist-strided",
        "pgd",
        0.3,
        TrainingConfig(epochs=12, batch_size=128, lr=5e-3, epsilon_ramp=2),
        {"steps": 10},
    ),
    "mnist-strided-noise-0.25": Hardened(
        "mnist-strided", "noise", None, TrainingConfig(epochs=6, batch_size=128, lr=2e-3), {"sigma": 0.25}
    ),
    "cifar10-cnn-noise-0.25": Hardened(
        "cifar10-cnn",
        "noise",
        None,
        TrainingConfig(epochs=10, batch_size=128, optimizer="sgd", lr=0.05, weight_decay=5e-4),
        {"sigma": 0.25},
    ),
    "mnist-strided-ibp": Hardened("mnist-strided", "ibp", 0.2, STRIDED_IBP, {"kappa": 0.5}, eval_epsilon=0.1),
}


def data_spec(kind: str, root: Path) -> str:
    return "digits" if kind == "digits" else f"{kind}:{root / kind}"


SMOOTHING_CARD = {"n_estimate": 10_000, "limit": 200}
SMOOTHING_LIMIT = {"cifar10": 50}  # test images certified for the card, where 200 take too long on a CPU


def certify(recipe: Hardened, clf: Any, test_set: Any, threat: ThreatModel | None) -> dict[str, Any] | None:
    """What the card records about certificates: IBP's verified accuracy on the whole test split, or
    randomized smoothing's certified accuracy on a seeded subset (benchmarks/bench_certify.py runs
    the full N = 100,000 version)."""
    if recipe.method == "ibp" and threat is not None:
        res = IntervalBoundPropagation().certify(clf, test_set.x, threat)
        return {
            "method": "ibp",
            "epsilon": threat.epsilon,
            "n": len(test_set),
            "clean_accuracy": res.certified_accuracy(test_set.y, 0.0),
            "verified_accuracy": res.certified_accuracy(test_set.y, threat.epsilon),
        }
    if recipe.method == "noise":
        limit = SMOOTHING_LIMIT.get(spec(recipe.base).dataset, SMOOTHING_CARD["limit"])
        subset = test_set.take(limit, seed=0)
        smoothing = RandomizedSmoothing(recipe.options["sigma"], n_estimate=SMOOTHING_CARD["n_estimate"])
        res = smoothing.certify(clf, subset.x, seed=0)
        return {
            "method": "smoothing",
            **smoothing.params(),
            "n": len(subset),
            "certified_accuracy": [{"radius": r, "accuracy": a} for r, a in res.curve(subset.y)],
        }
    return None


def run(name: str, root: Path, out: Path, eval_limit: int, epochs: int | None) -> dict[str, Any]:
    recipe = RECIPES[name]
    base_spec = spec(recipe.base)
    data = data_spec(base_spec.dataset, root)
    train_set, test_set = load_dataset(data, split="train"), load_dataset(data, split="test")
    cfg = recipe.config if epochs is None else TrainingConfig(**{**recipe.config.to_dict(), "epochs": epochs})
    threat = (
        None if recipe.epsilon is None else ThreatModel(recipe.norm, recipe.epsilon, bounds=train_set.bounds)
    )
    eval_threat = threat
    if recipe.eval_epsilon is not None:
        eval_threat = ThreatModel(recipe.norm, recipe.eval_epsilon, bounds=train_set.bounds)
    test_subset = test_set.take(eval_limit, seed=0)
    print(
        f"{name}: {recipe.method} on {len(train_set)} {base_spec.dataset} images, {threat}, {cfg}", flush=True
    )

    def show(kind: str, info: dict[str, Any]) -> None:
        if kind == "epoch":
            print(f"  {name} {info}", flush=True)

    start = time.perf_counter()
    result = harden(
        zoo.load(recipe.base),
        train_set,
        recipe.method,
        threat,
        cfg.epochs,
        config=cfg,
        from_scratch=True,
        eval_data=test_subset if eval_threat is threat else None,
        eval_limit=eval_limit,
        progress=show,
        **recipe.options,
    )
    if eval_threat is not threat:
        result.card["evaluation"] = measure(
            result.classifier, test_subset, eval_threat, "standard", eval_limit, cfg.seed, None
        )
    certification = certify(recipe, result.classifier, test_set, eval_threat)
    if certification:
        result.card["certification"] = certification
    weights, card_path = result.save(out / f"{name}.safetensors")
    card = {
        **result.card,
        "name": name,
        "architecture": recipe.base,
        "description": f"{recipe.base} trained with {recipe.method} ({threat or recipe.options})",
        "dataset": {"name": base_spec.dataset, "n_train": len(train_set), "n_test": len(test_set)},
        "input_shape": list(base_spec.input_shape),
        "class_names": list(base_spec.class_names),
        "seed": cfg.seed,
        "threads": torch.get_num_threads(),
        "clean_accuracy": result.card["evaluation"]["clean_accuracy"],
        "robust_accuracy": result.card["evaluation"].get("robust_accuracy"),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    ev = card["evaluation"]
    robust = f"robust {ev['robust_accuracy']:.2%} ({ev['preset']}, " if "robust_accuracy" in ev else "("
    print(
        f"{name}: clean {ev['clean_accuracy']:.2%}, {robust}{ev['n']} test images), "
        f"trained in {card['train_seconds']:.0f} s; certification {certification}",
        flush=True,
    )
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, choices=[*RECIPES, "digits", "all"])
    parser.add_argument("--data-root", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--out", type=Path, default=Path("src/bastion/zoo/weights"))
    parser.add_argument("--eval-limit", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (smoke runs)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = {
        "all": list(RECIPES),
        "digits": [n for n in RECIPES if n.startswith("digits")],
    }.get(args.model, [args.model])
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        run(name, args.data_root, args.out, args.eval_limit, args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
