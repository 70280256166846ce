"""The shard runner (issue 17): the Ray engine's overhead and speed-up on this machine, and identity.

1. One evaluation (``--model`` on ``--n`` test inputs, ``--preset``, shards of ``--shard-size``) on the
   local engine with one torch thread, on Ray with 1 worker (one thread: the overhead of the engine) and
   with ``--workers`` workers (the speed-up); every run's per-example results are compared bit for bit
   with the local one's.
2. LiRA's reference models (``--references`` MLPs on MNIST, ``--ref-epochs`` epochs): trained in this
   process (one thread) and as Ray tasks; the membership masks and the weights are compared.
3. With ``--text N`` / ``--tabular N``: the text cascade (SST-2 word CNN) and the tabular cascade (a
   boosted model of Taiwan's credit defaults) in one pass here and in shards on Ray, compared one by one.

Wall-clock seconds include Ray's start (``ray.init``) for the Ray rows, as a user pays it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_engine.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _common import DATA_ROOT, environment, load, markdown
from bastion.engine import LocalEngine, ModelRef, RayEngine, evaluate_sharded
from bastion.threat import ThreatModel


def evaluation_rows(args: argparse.Namespace) -> list[list[Any]]:
    clf, x, y = load(args.model, args.n)
    ref = ModelRef.create(f"zoo:{args.model}")
    threat = ThreatModel("linf", args.epsilon, bounds=clf.bounds)
    engines = {"local, 1 thread": LocalEngine(threads=1), "ray, 1 worker": RayEngine(workers=1)}
    engines[f"ray, {args.workers} workers"] = RayEngine(workers=args.workers)
    rows, base, base_s = [], None, None
    for name, engine in engines.items():
        t0 = time.perf_counter()
        res = evaluate_sharded(
            ref, x, y, threat, args.preset, seed=0, shard_size=args.shard_size, engine=engine
        )
        seconds = time.perf_counter() - t0
        if base is None:
            base, base_s = res, seconds
        same = torch.equal(res.x_adv, base.x_adv) and torch.equal(res.robust, base.robust)
        assert base_s is not None
        rows.append([name, f"{res.clean_accuracy:.2%}", f"{res.robust_accuracy:.2%}", f"{seconds:.1f}",
                     f"{seconds / base_s:.2f}", "yes" if same else "NO"])  # fmt: skip
    return rows


def reference_rows(args: argparse.Namespace) -> list[list[Any]]:
    from bastion.attacks.inference.references import train_references
    from bastion.data import load_dataset
    from bastion.defenses.training.config import TrainingConfig

    pool = load_dataset(f"mnist:{DATA_ROOT}/mnist", split="train").take(args.pool, seed=0)
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        net = Path(tmp) / "mlp.py"
        net.write_text("import torch\n\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                       "torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))\n")  # fmt: skip
        ref = ModelRef.create(f"{net}:build")
        cfg = TrainingConfig(epochs=args.ref_epochs, batch_size=128, lr=1e-3, seed=0)
        for name, engine in (("local, 1 thread", LocalEngine(threads=1)),
                             (f"ray, {args.workers} workers", RayEngine(workers=args.workers))):  # fmt: skip
            t0 = time.perf_counter()
            refs = train_references(ref, pool, args.references, Path(tmp) / name.replace(" ", ""), seed=0,
                                    config=cfg, engine=engine)  # fmt: skip
            seconds = time.perf_counter() - t0
            weights = [torch.cat([p.detach().flatten() for p in m.module.parameters()]) for m in refs.models]
            if first is None:
                first = (refs.assignment.keep, weights, seconds)
            same_masks = torch.equal(refs.assignment.keep, first[0])
            same_weights = all(torch.equal(a, b) for a, b in zip(weights, first[1], strict=True))
            rows.append([name, args.references, f"{seconds:.1f}", f"{seconds / first[2]:.2f}",
                         "yes" if same_masks else "NO", "yes" if same_weights else "NO"])  # fmt: skip
    return rows


def _three_ways(args: argparse.Namespace) -> dict[str, Any]:
    """One pass in this process (None), the same in local shards, and in shards on Ray."""
    return {"local, one pass": None, "local, in shards": LocalEngine(threads=1),
            f"ray, {args.workers} workers": RayEngine(workers=args.workers)}  # fmt: skip


def text_rows(args: argparse.Namespace) -> list[list[Any]]:
    """The text cascade (zoo sst2-wordcnn, a seeded ``--text`` validation sentences, strict preset): one
    pass in this process against shards on Ray; the adversarial texts compared one by one."""
    from bastion.engine import TextModelRef, evaluate_text_sharded
    from bastion.text import evaluate_text
    from bastion.text.data import load_text_dataset

    data = load_text_dataset("sst2", "validation", Path(DATA_ROOT) / "text")
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: args.text].tolist()
    texts, labels = [data.texts[i] for i in pick], data.labels[pick]
    ref = TextModelRef.create("zoo:sst2-wordcnn")
    # warm-up: the model and every attack's offline resources (word vectors, sentence encoder, WordNet)
    # load once per process and stay cached; the timed local runs must not pay them, Ray's workers do
    evaluate_text(ref.load(), texts[:2], labels[:2], "strict", seed=0)
    rows, base = [], None
    for name, engine in _three_ways(args).items():
        t0 = time.perf_counter()
        if engine is None:
            res = evaluate_text(ref.load(), texts, labels, "strict", seed=0)
        else:
            res = evaluate_text_sharded(ref, texts, labels, "strict", seed=0, shard_size=args.text_shard_size,
                                        engine=engine)  # fmt: skip
        seconds = time.perf_counter() - t0
        base = base or (res, seconds)
        same = res.adversarials == base[0].adversarials and torch.equal(res.fooled, base[0].fooled)
        rows.append([name, f"{res.clean_accuracy:.2%}", f"{res.robust_accuracy:.2%}", f"{seconds:.1f}",
                     f"{seconds / base[1]:.2f}", "yes" if same else "NO"])  # fmt: skip
    return rows


TAIWAN_FACTORY = """
from pathlib import Path
from sklearn.ensemble import HistGradientBoostingClassifier
from bastion.tabular import TabularSchema, load_tabular, with_payment_total

ROOT = Path({root!r})


def data():
    schema = TabularSchema.from_json(ROOT / "tabular_schema.json", dataset="default_credit_taiwan.csv.gz")
    return with_payment_total(load_tabular(ROOT / "default_credit_taiwan.csv.gz", schema.without("ID"),
                                           ignore=["ID"]))


def build():
    train, _ = data().split(0.2, seed=0)
    return HistGradientBoostingClassifier(random_state=0).fit(train.x.numpy(), train.y.numpy())
"""


def tabular_rows(args: argparse.Namespace) -> list[list[Any]]:
    """The tabular cascade (MoEvA on a boosted model of Taiwan's credit defaults, ``--tabular`` seeded
    test records, the realistic threat preset): one pass here against shards on Ray, compared record by
    record. Workers rebuild the model from a factory file (it trains in ~0.3 s)."""
    from bastion.engine import TabularModelRef, evaluate_tabular_sharded
    from bastion.tabular import TabularCascade, threat_preset

    with tempfile.TemporaryDirectory() as tmp:
        factory = Path(tmp) / "taiwan.py"
        factory.write_text(TAIWAN_FACTORY.format(root=str(Path(DATA_ROOT) / "tabular")))
        namespace: dict[str, Any] = {}
        exec(factory.read_text(), namespace)
        _, test = namespace["data"]().split(0.2, seed=0)
        test = test.subset(
            torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.tabular]
        )
        threat = threat_preset("default_credit_taiwan.csv.gz", test.schema)
        ref = TabularModelRef.create(f"{factory}:build", test.schema)
        ref.load()  # warm-up: the factory trains the model once per process (Ray's workers pay it)
        cascade = TabularCascade()
        rows, base = [], None
        for name, engine in _three_ways(args).items():
            t0 = time.perf_counter()
            if engine is None:
                out = cascade(ref.load(), test.x, test.y, threat, seed=0)
            else:
                out = evaluate_tabular_sharded(cascade, ref, test.x, test.y, threat, seed=0,
                                               shard_size=args.tabular_shard_size, engine=engine)  # fmt: skip
            seconds = time.perf_counter() - t0
            base = base or (out, seconds)
            same = torch.equal(out.result.x_adv, base[0].result.x_adv)
            rows.append([name, f"{out.robust_accuracy:.2%}", f"{out.constraint_satisfaction:.1%}",
                         f"{seconds:.1f}", f"{seconds / base[1]:.2f}", "yes" if same else "NO"])  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mnist-strided-pgd")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--epsilon", type=float, default=0.3)
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--shard-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--references", type=int, default=4)
    ap.add_argument("--pool", type=int, default=10000)
    ap.add_argument("--ref-epochs", type=int, default=3)
    ap.add_argument("--skip-references", action="store_true")
    ap.add_argument("--skip-evaluation", action="store_true")
    ap.add_argument("--text", type=int, default=0, help="also the text cascade on this many SST-2 sentences")
    ap.add_argument("--text-shard-size", type=int, default=25)
    ap.add_argument("--tabular", type=int, default=0, help="also the tabular cascade on this many records")
    ap.add_argument("--tabular-shard-size", type=int, default=250)
    args = ap.parse_args()
    print(environment())
    if not args.skip_evaluation:
        print(f"\n### Evaluation: {args.model}, {args.n} inputs, linf {args.epsilon}, preset {args.preset}, "
              f"shards of {args.shard_size}\n")  # fmt: skip
        print(markdown(["engine", "clean", "robust", "seconds", "vs local", "identical to local"],
                       evaluation_rows(args)))  # fmt: skip
    if not args.skip_references:
        print(
            f"\n### LiRA reference models: MNIST MLP, {args.pool} pool examples, {args.ref_epochs} epochs\n"
        )
        print(markdown(["engine", "models", "seconds", "vs local", "same masks", "same weights"],
                       reference_rows(args)))  # fmt: skip
    if args.text:
        print(f"\n### Text cascade: sst2-wordcnn, {args.text} validation sentences, strict preset, shards of "
              f"{args.text_shard_size}\n")  # fmt: skip
        print(markdown(["engine", "clean", "under attack", "seconds", "vs one pass", "same texts"],
                       text_rows(args)))  # fmt: skip
    if args.tabular:
        print(f"\n### Tabular cascade: Taiwan credit defaults, HistGradientBoosting, {args.tabular} test "
              f"records, shards of {args.tabular_shard_size}\n")  # fmt: skip
        print(markdown(["engine", "robust", "constraints met", "seconds", "vs one pass", "same records"],
                       tabular_rows(args)))  # fmt: skip


if __name__ == "__main__":
    main()
