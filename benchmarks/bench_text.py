"""Text attacks on the text zoo, the sanitiser against character tricks, TextAttack side by side (issue 16).

1. Attacks: on the SST-2 word CNN (validation split) and the SMS-spam word CNN and TF-IDF + LR baseline
   (test split), the first ``--n`` texts, each attack (DeepWordBug, invisible characters, homoglyphs,
   TextFooler, PWWS) x preset (paper, strict): clean accuracy, accuracy under attack, success rate (of
   the texts the model got right), mean queries per attacked text (the clean query included), mean share
   of words and mean characters (Levenshtein) changed per success, adversarials that break the threat
   (the verifier's count; must be 0), seconds.
2. Sanitiser: each character-trick attack (paper preset) against ``SanitisedTextClassifier(model,
   Sanitiser())``, *adaptive* (the attacker queries the sanitised model) and *transfer* (table 1's
   adversarials, crafted on the bare model, sent through the sanitiser); NFKC alone beside it; clean
   accuracy on the whole evaluation split with and without each. DeepWordBug's visible typos are the
   contrast: a sanitiser cannot undo them.
3. ``--textattack`` (run from benchmarks/.textattack-venv, made by benchmarks/setup_textattack.sh):
   TextAttack 0.3.11's DeepWordBugGao2018 and PWWSRen2019 recipes on the same model (a ModelWrapper
   around the bastion TextClassifier) and the same texts, next to bastion's paper rows; each TextAttack
   success is also checked by bastion's verifier under the matching paper preset.
4. ``--advtrain K``: the SST-2 word CNN adversarially trained (PWWS paper adversarials of K training
   sentences added, retrained from scratch with the zoo recipe): clean accuracy and accuracy under PWWS
   paper / strict next to the zoo model. Costs ~12 min of training on one thread, so it is off by default.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_text.py
    OMP_NUM_THREADS=1 benchmarks/.textattack-venv/bin/python benchmarks/bench_text.py \
        --textattack --advtrain 1000
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from _common import DATA_ROOT, environment, markdown
from bastion.text.attacks import PWWS, DeepWordBug, Homoglyphs, InvisibleCharacters, TextAttack, TextFooler
from bastion.text.attacks.result import TextAttackResult
from bastion.text.constraints import violations
from bastion.text.data import TextData, load_text_dataset
from bastion.text.model import TextClassifier
from bastion.text.resources import offline_resources
from bastion.text.sanitise import SanitisedTextClassifier, Sanitiser, nfkc_only
from bastion.text.threat import TextThreatModel
from bastion.text.zoo import TEXT_ZOO, load_text_model, tfidf_baseline

ATTACKS: dict[str, Callable[..., TextAttack]] = {
    "deepwordbug": DeepWordBug,
    "invisible": InvisibleCharacters,
    "homoglyph": Homoglyphs,
    "textfooler": TextFooler,
    "pwws": PWWS,
}
CHAR_TRICKS = ("invisible", "homoglyph", "deepwordbug")
MODELS = ("sst2-wordcnn", "sms-spam-wordcnn", "sms-spam-tfidf")


def make_attack(name: str, threat: TextThreatModel) -> TextAttack:
    resources = offline_resources(threat, embeddings=name == "textfooler")
    return ATTACKS[name](resources=resources)


def load_model(name: str, root: Path, seed: int) -> tuple[TextClassifier, TextData, TextData]:
    """(model, the evaluation split, the training split) for a model name of :data:`MODELS`."""
    zoo_name = name.replace("-tfidf", "-wordcnn")
    spec = TEXT_ZOO[zoo_name]
    train = load_text_dataset(spec.dataset, spec.train_split, root)
    evaluation = load_text_dataset(spec.dataset, spec.eval_split, root)
    model = tfidf_baseline(train, seed=seed) if name.endswith("-tfidf") else load_text_model(zoo_name)
    return model, evaluation, train


def accuracy(model: TextClassifier, data: TextData) -> float:
    return float((model(list(data.texts)).argmax(1) == data.labels).float().mean())


def attack_row(model: str, r: TextAttackResult) -> list[Any]:
    return [
        model,
        r.attack,
        r.threat.preset.split("/")[1],
        f"{r.clean_accuracy:.3f}",
        f"{r.robust_accuracy:.3f}",
        f"{r.success_rate:.1%}",
        f"{r.mean_queries:.0f}",
        f"{r.mean_words_changed:.1%}",
        f"{r.mean_chars_changed:.1f}",
        int((~r.valid).sum()),
        f"{r.seconds:.1f}",
    ]


def transfer_success(defended: TextClassifier, bare: TextAttackResult) -> float:
    """Of the texts ``defended`` classifies correctly, the share whose valid bare-model adversarial it
    misclassifies."""
    y = bare.labels
    clean_ok = defended(list(bare.originals)).argmax(1) == y
    adv_wrong = defended(list(bare.adversarials)).argmax(1) != y
    changed = torch.tensor([a != b for a, b in zip(bare.originals, bare.adversarials, strict=True)])
    hit = clean_ok & adv_wrong & bare.valid & changed
    return float(hit.sum()) / max(int(clean_ok.sum()), 1)


def textattack_rows(
    model: TextClassifier, name: str, data: TextData, ours: dict[str, TextAttackResult], seed: int
) -> tuple[list[list[Any]], list[str]]:
    """TextAttack's DeepWordBug and PWWS recipes on ``model`` and ``data``, next to bastion's paper rows."""
    data_dir = Path(sys.prefix) / "nltk_data"
    os.environ.setdefault("NLTK_DATA", str(data_dir))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    import textattack

    logging.getLogger("textattack").setLevel(logging.ERROR)  # "Unknown if model ... compatible": it is
    from textattack.attack_recipes import DeepWordBugGao2018, PWWSRen2019
    from textattack.attack_results import FailedAttackResult, SkippedAttackResult

    class Wrapper(textattack.models.wrappers.ModelWrapper):
        def __init__(self, clf: TextClassifier) -> None:
            self.model = clf

        def __call__(self, texts: list[str]) -> Any:
            return self.model(list(texts)).softmax(dim=1).numpy()

    rows, notes = [], []
    pairs = (("deepwordbug", DeepWordBugGao2018), ("pwws", PWWSRen2019))
    dataset = textattack.datasets.Dataset([(t, int(y)) for t, y in zip(data.texts, data.labels, strict=True)])
    for family, recipe in pairs:
        r = ours[family]
        rows.append(
            [
                name,
                family,
                "bastion (paper preset)",
                f"{r.success_rate:.1%}",
                f"{r.mean_queries:.0f}",
                f"{r.mean_words_changed:.1%}",
                "100% (verified)",
                f"{r.seconds:.1f}",
            ]
        )
        t0 = time.perf_counter()
        attack = recipe.build(Wrapper(model))
        args = textattack.AttackArgs(
            num_examples=len(data), random_seed=seed, disable_stdout=True, silent=True
        )
        with contextlib.redirect_stderr(io.StringIO()):  # TextAttack's progress bars
            results = textattack.Attacker(attack, dataset, args).attack_dataset()
        seconds = time.perf_counter() - t0
        attacked = [x for x in results if not isinstance(x, SkippedAttackResult)]
        wins = [x for x in attacked if not isinstance(x, FailedAttackResult)]
        share = [
            len(x.original_result.attacked_text.all_words_diff(x.perturbed_result.attacked_text))
            / max(len(x.original_result.attacked_text.words), 1)
            for x in wins
        ]
        threat = TextThreatModel.for_attack(family)
        ok = [
            not violations(
                x.original_result.attacked_text.text, x.perturbed_result.attacked_text.text, threat
            )
            for x in wins
        ]
        rows.append(
            [
                name,
                family,
                f"TextAttack {recipe.__name__}",
                f"{len(wins) / max(len(attacked), 1):.1%}",
                f"{sum(x.num_queries for x in attacked) / max(len(attacked), 1):.0f}",
                f"{sum(share) / max(len(share), 1):.1%}",
                f"{sum(ok) / max(len(ok), 1):.0%} of {len(ok)}",
                f"{seconds:.1f}",
            ]
        )
        bad = [x for x, good in zip(wins, ok, strict=True) if not good]
        reasons = collections.Counter(
            why
            for x in bad
            for why in violations(
                x.original_result.attacked_text.text, x.perturbed_result.attacked_text.text, threat
            )
        )
        if bad:
            x = bad[0]
            notes.append(
                f"{name} / TextAttack {recipe.__name__}: {len(bad)} successes break bastion's "
                f"{threat.preset} ({', '.join(f'{k}: {v}' for k, v in reasons.most_common())}); e.g. "
                f"{x.original_result.attacked_text.text!r} -> {x.perturbed_result.attacked_text.text!r}"
            )
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    return rows, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS), help="table 1")
    ap.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS))
    ap.add_argument("--data", type=Path, default=Path(DATA_ROOT))
    ap.add_argument("--n", type=int, default=200, help="texts attacked: the first N of the evaluation split")
    ap.add_argument(
        "--sanitiser-models",
        nargs="*",
        default=["sst2-wordcnn", "sms-spam-wordcnn"],
        choices=list(MODELS),
        help="models of table 2 (none: skip it)",
    )
    ap.add_argument("--textattack", action="store_true", help="table 3 (needs the TextAttack venv)")
    ap.add_argument("--advtrain", type=int, default=0, help="table 4: attacked training sentences (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(
        f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {os.path.relpath(sys.executable)} "
        + " ".join(sys.argv),
        flush=True,
    )
    start = time.perf_counter()
    timing: list[str] = []
    notes: list[str] = []
    results: dict[tuple[str, str, str], TextAttackResult] = {}
    models: dict[str, tuple[TextClassifier, TextData, TextData]] = {}
    subsets: dict[str, TextData] = {}

    # --- 1. attacks ------------------------------------------------------------------------------
    t_part = time.perf_counter()
    rows: list[list[Any]] = []
    for name in dict.fromkeys([*args.models, *args.sanitiser_models]):
        t = time.perf_counter()
        models[name] = load_model(name, args.data, args.seed)
        subsets[name] = models[name][1].subset(range(min(args.n, len(models[name][1]))))
        timing.append(f"{name}: loaded (and fitted, for TF-IDF) in {time.perf_counter() - t:.1f} s")
    for name in args.models:
        model, _, _ = models[name]
        data = subsets[name]
        for attack_name in args.attacks:
            for preset in ("paper", "strict"):
                threat = TextThreatModel.for_attack(attack_name, strict=preset == "strict")
                r = make_attack(attack_name, threat)(
                    model, list(data.texts), data.labels, threat, seed=args.seed
                )
                results[name, attack_name, preset] = r
                rows.append(attack_row(name, r))
                print(" | ".join(str(v) for v in rows[-1]), flush=True)
    timing.append(f"part 1 (attacks): {time.perf_counter() - t_part:.0f} s")
    print("\n## Attacks\n")
    print(
        markdown(
            [
                "model",
                "attack",
                "preset",
                "clean acc",
                "acc under attack",
                "success",
                "queries",
                "words changed",
                "chars changed",
                "invalid",
                "seconds",
            ],
            rows,
        )
    )
    for attack_name in args.attacks:
        for preset in ("paper", "strict"):
            notes.append(TextThreatModel.for_attack(attack_name, preset == "strict").describe())

    # --- 2. sanitiser ----------------------------------------------------------------------------
    t_part = time.perf_counter()
    rows = []
    for name in args.sanitiser_models:
        model, evaluation, _ = models[name]
        data = subsets[name]
        defences: dict[str, TextClassifier] = {
            "none": model,
            "sanitiser": SanitisedTextClassifier(model, Sanitiser()),
        }
        vocab = getattr(getattr(model, "tokenizer", None), "vocab", None)
        if vocab is not None:  # the model's known words settle ambiguous look-alikes (l / I / 1)
            defences["sanitiser + vocabulary"] = SanitisedTextClassifier(
                model, Sanitiser(vocabulary=frozenset(vocab[2:]))
            )
        defences["NFKC only"] = SanitisedTextClassifier(model, nfkc_only())
        clean = {k: accuracy(d, evaluation) for k, d in defences.items()}
        for attack_name in CHAR_TRICKS:
            threat = TextThreatModel.for_attack(attack_name)
            bare = results.get((name, attack_name, "paper"))
            if bare is None:
                bare = make_attack(attack_name, threat)(
                    model, list(data.texts), data.labels, threat, seed=args.seed
                )
            for label, defended in defences.items():
                row: list[Any] = [name, attack_name, label, f"{clean[label]:.4f}"]
                if label == "none":
                    rows.append([*row, "-", f"{bare.success_rate:.1%}", f"{bare.seconds:.1f}"])
                    print(" | ".join(str(v) for v in rows[-1]), flush=True)
                    continue
                adaptive = make_attack(attack_name, threat)(
                    defended, list(data.texts), data.labels, threat, seed=args.seed
                )
                rows.append(
                    [*row, f"{transfer_success(defended, bare):.1%}", f"{adaptive.success_rate:.1%}",
                     f"{adaptive.seconds:.1f}"]
                )  # fmt: skip
                print(" | ".join(str(v) for v in rows[-1]), flush=True)
                if adaptive.success.any() and label.startswith("sanitiser") and attack_name != "deepwordbug":
                    for i in torch.nonzero(adaptive.success).flatten().tolist():
                        notes.append(f"{name} / {attack_name} adaptive vs {label}: {adaptive.show(i)}")
    timing.append(f"part 2 (sanitiser): {time.perf_counter() - t_part:.0f} s")
    if rows:
        print("\n## Sanitiser (paper presets; adaptive = attacked through the defence)\n")
        print(
            markdown(
                ["model", "attack", "defence", "clean acc (whole split)", "transfer success",
                 "success (adaptive)", "seconds"],
                rows,
            )
        )  # fmt: skip

    # --- 3. TextAttack side by side --------------------------------------------------------------
    if args.textattack:
        t_part = time.perf_counter()
        rows = []
        for name in args.models:
            ours = {
                f: results[name, f, "paper"] for f in ("deepwordbug", "pwws") if (name, f, "paper") in results
            }
            if len(ours) < 2:
                continue
            part_rows, part_notes = textattack_rows(models[name][0], name, subsets[name], ours, args.seed)
            rows += part_rows
            notes += part_notes
        timing.append(f"part 3 (TextAttack): {time.perf_counter() - t_part:.0f} s")
        print("\n## TextAttack side by side (same model, same texts)\n")
        print(
            markdown(
                [
                    "model",
                    "attack",
                    "implementation",
                    "success",
                    "queries",
                    "words perturbed",
                    "valid under bastion's paper preset",
                    "seconds",
                ],
                rows,
            )
        )
        notes.append(
            "TextFoolerJin2019 does not run offline in TextAttack: it downloads counter-fitted "
            "embeddings (textattack.s3.amazonaws.com) and USE v4 (TF Hub) when built"
        )

    # --- 4. adversarial training -----------------------------------------------------------------
    if args.advtrain:
        from bastion.text.adversarial_training import adversarial_train

        t_part = time.perf_counter()
        name = "sst2-wordcnn"
        model, evaluation, train = models.get(name) or load_model(name, args.data, args.seed)
        data = evaluation.subset(range(min(args.n, len(evaluation))))
        threat = TextThreatModel.for_attack("pwws")
        out = adversarial_train(
            model,
            train,
            TEXT_ZOO[name],
            make_attack("pwws", threat),
            threat,
            sample=args.advtrain,
            seed=args.seed,
        )
        notes.append(
            f"adversarial training: {out.attack_result.success_rate:.1%} of {args.advtrain} "
            f"training sentences' PWWS attacks succeeded, {out.added} adversarials added to "
            f"{len(train)}; attack {out.attack_seconds:.0f} s, retraining {out.train_seconds:.0f} s"
        )
        rows = []
        for label, m in (("zoo (standard)", model), (f"+ {out.added} PWWS adversarials", out.model)):
            row = [name, label, f"{accuracy(m, evaluation):.3f}"]
            for preset in ("paper", "strict"):
                th = TextThreatModel.for_attack("pwws", strict=preset == "strict")
                known = results.get((name, "pwws", preset)) if m is model else None
                r = (
                    known
                    if known is not None
                    else make_attack("pwws", th)(m, list(data.texts), data.labels, th, seed=args.seed)
                )
                row += [f"{r.robust_accuracy:.3f}", f"{r.success_rate:.1%}"]
            rows.append(row)
            print(" | ".join(str(v) for v in row), flush=True)
        timing.append(f"part 4 (adversarial training): {time.perf_counter() - t_part:.0f} s")
        print("\n## Adversarial training (attack-then-augment, SST-2)\n")
        print(
            markdown(
                [
                    "model",
                    "training",
                    f"clean acc ({evaluation.name})",
                    "acc under PWWS paper",
                    "PWWS paper success",
                    "acc under PWWS strict",
                    "PWWS strict success",
                ],
                rows,
            )
        )

    print()
    for n in notes:
        print(f"- {n}")
    for line in timing:
        print(f"- time: {line}")
    print(f"- {environment()}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
