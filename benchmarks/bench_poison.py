"""Training-time threats: does the backdoor work, and do the scanners find it?

Part ``attack``: BadNets (a 3x3 checkerboard patch bottom-right on MNIST, 2x2 on digits, target class 0)
at 5% and 10% of the training set; the model is trained from scratch on the poisoned set with the zoo's
recipe (``digits-cnn``: 40 epochs; ``mnist-strided``: 3 epochs) and compared with the same recipe on clean
data.
Target (issue 6): attack success >= 95% with clean accuracy within 1 point of the clean model.

Part ``scan``: on those poisoned sets and models, activation clustering and spectral signatures
(penultimate layer, per class) against the ground truth of which samples were poisoned: recall of poisoned
samples and false-positive rate among clean ones (target: recall >= 90% at <= 5% FPR for AC or spectral);
the same scans at 0% poison (the clean model on clean data: every flag is a false positive); STRIP fitted
on clean test images at 5% FRR, measured on triggered test images of other classes (target: >= 90%) and
held-out clean ones; and ART's activation clustering and spectral signatures on the same models and data.

Part ``nc``: Neural Cleanse on five backdoored models per dataset (poison and training seeds 0-4, 10%
BadNets) and five clean ones: is the target class flagged (anomaly index > 2) and no other? Target: on at
least 4 of 5.

Part ``flip``: random label flipping at 10/20/30% of the training labels; the label-noise scan's precision
and recall, and test accuracy after retraining on the cleaned set vs. on the noisy one and a clean one.

Part ``manifest``: the manifest of the full MNIST training set (time) and verify after one changed pixel.

    OMP_NUM_THREADS=1 benchmarks/.bench-venv/bin/python benchmarks/bench_poison.py \
        --parts attack scan nc flip manifest
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from _common import DATA_ROOT, environment, markdown, median_time
from bastion.attacks.poisoning import (
    Backdoor,
    BackdoorEvaluation,
    PatchTrigger,
    PoisonResult,
    attack_success_rate,
    clean_accuracy,
    evaluate_backdoor,
)
from bastion.data import Dataset, load_dataset
from bastion.defenses.training import TrainingConfig, harden
from bastion.model import TorchClassifier
from bastion.zoo.architectures import spec as zoo_spec

PARTS = ("attack", "scan", "nc", "flip", "manifest")
TARGET = 0
RATES = (0.05, 0.10)


@dataclass(frozen=True)
class Setting:
    name: str
    arch: str
    data: str
    config: TrainingConfig
    scan_layers: tuple[str, ...] = ("penultimate",)


SETTINGS = {
    # Layer "5" of digits-cnn: the flattened convolutional features (the penultimate is the 128-unit head).
    "digits": Setting(
        "digits",
        "digits-cnn",
        "digits",
        TrainingConfig(epochs=40, batch_size=64, lr=2e-3),
        ("penultimate", "5"),
    ),
    "mnist": Setting(
        "mnist",
        "mnist-strided",
        f"mnist:{DATA_ROOT}/mnist",
        TrainingConfig(epochs=3, batch_size=128, lr=2e-3),
    ),
}


def architecture(setting: Setting, data: Dataset) -> TorchClassifier:
    """The setting's zoo architecture, untrained, with its normalisation."""
    s = zoo_spec(setting.arch)
    return TorchClassifier(s.builder(), bounds=data.bounds, mean=s.mean, std=s.std, name=setting.arch)


def train(setting: Setting, data: Dataset, seed: int) -> tuple[TorchClassifier, float]:
    """The zoo recipe from scratch on ``data`` (no validation split, no guard); returns model and seconds."""
    cfg = TrainingConfig(**{**setting.config.to_dict(), "seed": seed, "validation": 0.0})
    start = time.perf_counter()
    result = harden(architecture(setting, data), data, method="standard", config=cfg, from_scratch=True)
    return result.classifier, time.perf_counter() - start


def accuracy(model: TorchClassifier, data: Dataset) -> float:
    return clean_accuracy(model, data.x, data.y)


def datasets(setting: Setting) -> tuple[Dataset, Dataset]:
    return load_dataset(setting.data, split="train"), load_dataset(setting.data, split="test")


@dataclass
class Poisoned:
    """One backdoored training run: the poison, the model trained on it, and its numbers."""

    setting: Setting
    rate: float
    seed: int
    poison: PoisonResult
    model: TorchClassifier
    seconds: float
    evaluation: BackdoorEvaluation


_CACHE: dict[tuple[str, float, int], Any] = {}


def trained(setting: Setting, rate: float, seed: int = 0) -> Poisoned | tuple[TorchClassifier, float]:
    """BadNets at ``rate`` (0: the clean model) with poison and training seed ``seed``; cached per run."""
    key = (setting.name, rate, seed)
    if key not in _CACHE:
        train_set, test_set = datasets(setting)
        if rate == 0:
            _CACHE[key] = train(setting, train_set, seed)
        else:
            poison = Backdoor(PatchTrigger(), TARGET, rate)(train_set, seed=seed)
            model, seconds = train(setting, poison.dataset, seed)
            assert poison.trigger is not None
            evaluation = evaluate_backdoor(model, test_set, poison.trigger, TARGET)
            _CACHE[key] = Poisoned(setting, rate, seed, poison, model, seconds, evaluation)
    return _CACHE[key]  # type: ignore[no-any-return]


def part_attack(names: list[str]) -> str:
    rows = []
    for name in names:
        setting = SETTINGS[name]
        clean_model, clean_seconds = trained(setting, 0.0)  # type: ignore[misc]
        test_set = datasets(setting)[1]
        clean_acc = accuracy(clean_model, test_set)
        trigger = PatchTrigger()
        base_asr = attack_success_rate(clean_model, test_set.x, test_set.y, trigger, TARGET)
        rows.append([name, "0%", f"{clean_acc:.2%}", "", f"{base_asr:.1%}", f"{clean_seconds:.0f}"])
        for rate in RATES:
            run = trained(setting, rate)
            assert isinstance(run, Poisoned)
            ev = run.evaluation
            rows.append(
                [
                    name,
                    f"{rate:.0%} ({run.poison.n_poisoned:,})",
                    f"{ev.clean_accuracy:.2%}",
                    f"{(ev.clean_accuracy - clean_acc) * 100:+.2f}",
                    f"**{ev.attack_success_rate:.1%}**",
                    f"{run.seconds:.0f}",
                ]
            )
    head = ("data", "BadNets poison", "clean accuracy", "Δ vs clean (points)", "attack success", "train s")
    return "### BadNets: attack success and clean accuracy\n\n" + markdown(head, rows)


def _art_scan(kind: str, model: TorchClassifier, data: Dataset) -> tuple[torch.Tensor, float]:
    """ART's activation clustering or spectral signatures on the same model and data: flagged, seconds."""
    import numpy as np
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import PyTorchClassifier

    from _common import Normalised

    net = Normalised(model)
    clf = PyTorchClassifier(
        net,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(data.x.shape[1:]),
        nb_classes=data.num_classes,
        clip_values=data.bounds,
    )
    x = data.x.numpy()
    y = np.eye(data.num_classes, dtype=np.float32)[data.y.numpy()]
    start = time.perf_counter()
    if kind == "ac":
        _, is_clean = ActivationDefence(clf, x, y).detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA")
    else:
        # ART's defaults: expected poison 0.33, eps_multiplier 1.5 (it removes that share of every class).
        _, is_clean = SpectralSignatureDefense(clf, x, y, batch_size=128).detect_poison()
    return torch.as_tensor(np.asarray(is_clean) == 0), time.perf_counter() - start


def _rates(flagged: torch.Tensor, truth: torch.Tensor) -> tuple[str, str]:
    recall = float(flagged[truth].double().mean()) if bool(truth.any()) else float("nan")
    fpr = float(flagged[~truth].double().mean())
    return ("" if recall != recall else f"{recall:.1%}"), f"{fpr:.2%}"


def part_scan(names: list[str]) -> str:
    from bastion.detect import STRIP, ActivationClustering, SpectralSignatures

    rows, strip_rows = [], []
    for name in names:
        setting = SETTINGS[name]
        train_set, test_set = datasets(setting)
        for rate in (0.0, *RATES):
            if rate == 0:
                model, _ = trained(setting, 0.0)  # type: ignore[misc]
                data, truth = train_set, torch.zeros(len(train_set), dtype=torch.bool)
            else:
                run = trained(setting, rate)
                assert isinstance(run, Poisoned)
                model, data, truth = run.model, run.poison.dataset, run.poison.poisoned
            for layer in setting.scan_layers:
                scanners = (
                    ("AC", ActivationClustering(layer=layer)),
                    ("spectral", SpectralSignatures(layer=layer)),
                )
                for label, scanner in scanners:
                    start = time.perf_counter()
                    result = scanner.scan(model, data)
                    seconds = time.perf_counter() - start
                    recall, fpr = _rates(result.flagged, truth)
                    suspicious = ",".join(str(c) for c in result.suspicious_classes) or "none"
                    where = f"bastion {label}" + ("" if layer == "penultimate" else f", layer {layer!r}")
                    rows.append([name, f"{rate:.0%}", where, recall, fpr, suspicious, f"{seconds:.1f}"])
                    print(" | ".join(str(v) for v in rows[-1]), file=sys.stderr, flush=True)
            for label in ("ac", "spectral"):
                try:
                    flagged, seconds = _art_scan(label, model, data)
                except Exception as exc:  # a peer failing is a result, not a crash
                    rows.append([name, f"{rate:.0%}", f"ART {label}", "error", type(exc).__name__, "", ""])
                    continue
                recall, fpr = _rates(flagged, truth)
                rows.append([name, f"{rate:.0%}", f"ART {label}", recall, fpr, "", f"{seconds:.1f}"])
            if rate == 0:
                continue
            # STRIP: fitted on 1,000 clean test images; the triggered and held-out clean ones are disjoint.
            perm = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(1))
            fit_x = test_set.x[perm[: len(perm) // 2]][:1000]
            rest = test_set.subset(perm[len(perm) // 2 :])
            other = rest.x[rest.y != TARGET]
            assert run.poison.trigger is not None
            triggered = run.poison.trigger.apply(other, bounds=test_set.bounds)
            start = time.perf_counter()
            strip = STRIP(fpr=0.05).fit(model, fit_x)
            tpr = float(strip.detect(triggered).double().mean())
            frr = float(strip.detect(rest.x).double().mean())
            strip_rows.append(
                [
                    name,
                    f"{rate:.0%}",
                    f"**{tpr:.1%}**",
                    f"{frr:.2%}",
                    len(other),
                    f"{time.perf_counter() - start:.1f}",
                ]
            )
    head = ("data", "poison", "scanner", "recall of poisoned", "FPR among clean", "suspicious classes", "s")
    strip_head = ("data", "poison", "STRIP TPR (triggered)", "FRR (held-out clean)", "triggered inputs", "s")
    return (
        "### Training-data scans (penultimate layer)\n\n"
        + markdown(head, rows)
        + "\n\n### STRIP at 5% FRR\n\n"
        + markdown(strip_head, strip_rows)
    )


def part_nc(names: list[str], seeds: int) -> str:
    from bastion.detect import NeuralCleanse

    rows = []
    for name in names:
        setting = SETTINGS[name]
        test_set = datasets(setting)[1]
        x_clean = test_set.take(500, seed=2).x
        for kind in ("backdoored", "clean"):
            hits, details, seconds = 0, [], []
            for seed in range(seeds):
                if kind == "backdoored":
                    run = trained(setting, 0.10, seed)
                    assert isinstance(run, Poisoned)
                    model = run.model
                else:
                    model, _ = trained(setting, 0.0, seed)  # type: ignore[misc]
                result = NeuralCleanse(seed=seed).scan(model, x_clean)
                seconds.append(result.seconds)
                ok = result.flagged == (TARGET,) if kind == "backdoored" else not result.flagged
                hits += ok
                top = int(result.anomaly_index.argmax())
                index = result.anomaly_index
                details.append(
                    f"{seed}: flagged {list(result.flagged)}, index of {TARGET} "
                    f"{float(index[TARGET]):.1f} (max {float(index[top]):.1f} @ {top})"
                )
            want = f"target {TARGET} flagged, no other" if kind == "backdoored" else "nothing flagged"
            rows.append(
                [
                    name,
                    kind,
                    want,
                    f"**{hits} of {seeds}**",
                    "; ".join(details),
                    f"{statistics.median(seconds):.0f}",
                ]
            )
    head = ("data", "models (10% BadNets)", "success means", "successes", "per seed", "median scan s")
    return "### Neural Cleanse\n\n" + markdown(head, rows)


FLIP_RATES = (0.1, 0.2, 0.3)


def part_flip(names: list[str], rates: tuple[float, ...] = FLIP_RATES) -> str:
    from bastion.attacks.poisoning import LabelFlip
    from bastion.detect import LabelNoise

    rows = []
    for name in names:
        setting = SETTINGS[name]
        train_set, test_set = datasets(setting)
        clean_model, _ = trained(setting, 0.0)  # type: ignore[misc]
        clean_acc = accuracy(clean_model, test_set)
        for rate in rates:
            flip = LabelFlip(rate)(train_set, seed=0)
            noisy_model, _ = train(setting, flip.dataset, 0)
            start = time.perf_counter()
            noise = LabelNoise(epochs=setting.config.epochs, config=setting.config)
            scan = noise.scan(architecture(setting, train_set), flip.dataset)
            scan_s = time.perf_counter() - start
            precision, recall = scan.precision_recall(flip.poisoned)
            cleaned_model, _ = train(setting, scan.clean_subset(flip.dataset), 0)
            # Relabel instead of dropping: flagged samples take the out-of-fold prediction.
            assert scan.probabilities is not None
            y = torch.where(scan.flagged, scan.probabilities.argmax(1), flip.dataset.y)
            relabelled = Dataset(flip.dataset.x, y, flip.dataset.num_classes, flip.dataset.bounds)
            relabelled_model, _ = train(setting, relabelled, 0)
            print(f"{name} flip {rate:.0%}: precision {precision:.1%} recall {recall:.1%}", file=sys.stderr)
            rows.append(
                [
                    name,
                    f"{rate:.0%}",
                    f"{precision:.1%}",
                    f"{recall:.1%}",
                    int(scan.flagged.sum()),
                    f"{clean_acc:.2%}",
                    f"{accuracy(noisy_model, test_set):.2%}",
                    f"**{accuracy(cleaned_model, test_set):.2%}**",
                    f"{accuracy(relabelled_model, test_set):.2%}",
                    f"{scan_s:.0f}",
                ]
            )
    head = (
        "data",
        "random flips",
        "precision",
        "recall",
        "flagged",
        "test acc: clean labels",
        "noisy labels",
        "retrained on cleaned",
        "on relabelled",
        "scan s",
    )
    return "### Label flipping: noisy-label detection and retraining\n\n" + markdown(head, rows)


def part_manifest(names: list[str]) -> str:
    """Manifest of the full MNIST training set (load excluded, then included), and verify after one pixel."""
    from bastion.provenance import build_manifest, source_files, verify

    spec = SETTINGS["mnist"].data
    start = time.perf_counter()
    train_set = load_dataset(spec, split="train")
    load_s = time.perf_counter() - start
    files = source_files(train_set)
    build_s, manifest = median_time(lambda: build_manifest(train_set, files=files, spec=spec), 3)
    x = train_set.x.clone()
    x[31_337, 0, 14, 14] = 1.0 - x[31_337, 0, 14, 14]
    tampered = Dataset(x, train_set.y, train_set.num_classes, train_set.bounds, name=train_set.name)
    verify_s, report = median_time(lambda: verify(tampered, manifest), 3)
    found = [c.index for c in report.changed]
    rows = [
        [
            "build manifest (data in memory)",
            f"{build_s:.2f}",
            f"{len(train_set):,} samples, {len(files)} files",
        ],
        ["load + build", f"{load_s + build_s:.2f}", "target < 10 s"],
        [
            "verify, one pixel of sample 31,337 changed",
            f"{verify_s:.2f}",
            f"changed samples reported: {found}",
        ],
    ]
    return "### Provenance: MNIST training set (60,000 images)\n\n" + markdown(
        ("step", "seconds", "note"), rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--datasets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, default=5, help="Neural Cleanse: backdoored models per dataset")
    parser.add_argument("--flip-rates", nargs="+", type=float, default=list(FLIP_RATES))
    args = parser.parse_args()
    print(f"_{environment()}_\n")
    parts = {
        "attack": part_attack,
        "scan": part_scan,
        "nc": lambda names: part_nc(names, args.seeds),
        "flip": lambda names: part_flip(names, tuple(args.flip_rates)),
        "manifest": part_manifest,
    }
    for part in args.parts:
        if part in parts:
            start = time.perf_counter()
            print(parts[part](args.datasets), flush=True)
            print(f"\n_part {part}: {time.perf_counter() - start:.0f} s_\n", flush=True)


if __name__ == "__main__":
    main()
