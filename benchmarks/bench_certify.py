"""Certification: randomized smoothing's overhead over the bare model, its certified accuracy on MNIST at
N = 100,000, and IBP's verified accuracy — side by side with ART's smoothing where it is installed.

1. Throughput. Randomized smoothing's work is the model's forward passes on noisy copies; everything
   else (drawing noise, counting, statistics) should cost almost nothing. For each model: the bare
   forward pass on full noisy batches of ``--batch-size`` (noise made beforehand, so only the model
   runs), against ``RandomizedSmoothing.certify`` on ``--n-inputs`` inputs with ``--n-throughput``
   draws each (all included: noise, counting, Clopper-Pearson). Ratio = smoothing's noisy samples per
   second / the bare forward's (target >= 0.9). ART's ``PyTorchRandomizedSmoothing.certify`` on the
   same inputs and draws for comparison.
2. MNIST, sigma 0.25, N = 100,000, N0 = 100, alpha = 0.001 on ``--limit`` test images (seeded subset):
   certified accuracy at the standard radii for the noise-trained zoo model (target: > 90% at r = 0.5).
3. IBP at linf 0.1 on the whole MNIST test split for the IBP-trained zoo model (target: >= 90% verified),
   next to its robust accuracy under the ``standard`` attack preset on 1000 images (a certificate
   can never exceed it).

    benchmarks/.bench-venv/bin/python benchmarks/bench_certify.py [--limit 100] [--parts ibp smoothing]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from _common import data_spec, environment, markdown
from bastion import ThreatModel, evaluate, zoo
from bastion.certify import IntervalBoundPropagation, RandomizedSmoothing
from bastion.data import load_dataset

THROUGHPUT_MODELS = ("digits-cnn", "mnist-strided-noise-0.25", "mnist-cnn")
PARTS = ("throughput", "ibp", "smoothing")
NOISE_MODEL = "mnist-strided-noise-0.25"
IBP_MODEL = "mnist-strided-ibp"


def throughput(name: str, n_inputs: int, draws: int, batch_size: int, repeats: int) -> list[object]:
    model = zoo.load(name)
    x = load_dataset(data_spec(name), split="test").take(n_inputs, seed=0).x
    total = n_inputs * draws
    noisy = x[torch.arange(batch_size) % n_inputs] + 0.25 * torch.randn(batch_size, *x.shape[1:])

    @torch.no_grad()
    def bare() -> None:
        for start in range(0, total, batch_size):
            model(noisy[: min(batch_size, total - start)]).argmax(1)

    smoothing = RandomizedSmoothing(0.25, n_select=1, n_estimate=draws - 1, batch_size=batch_size)
    runs: dict[str, Callable[[], object]] = {
        "bare": bare,
        "ours": lambda: smoothing.certify(model, x, seed=0),
    }
    try:
        from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

        art = PyTorchRandomizedSmoothing(
            model=model.module,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=10,
            clip_values=model.bounds,
            preprocessing=(0.0, 1.0)
            if model.mean is None
            else (model.mean.flatten().numpy(), model.std.flatten().numpy()),
            sample_size=1,  # ART's class-selection draws; ours is 1 too
            scale=0.25,
            alpha=0.001,
            device_type="cpu",
        )
        runs["art"] = lambda: art.certify(x.numpy(), n=draws - 1, batch_size=batch_size)
    except ImportError:
        pass
    # Interleaved repeats: on a shared machine the load drifts, and every contender sees the same drift.
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    bare_s, ours_s = statistics.median(times["bare"]), statistics.median(times["ours"])
    row: list[object] = [name, f"{total:,}", f"{total / bare_s:,.0f}", f"{total / ours_s:,.0f}"]
    row.append(f"{bare_s / ours_s:.2f}")
    if "art" not in times:
        return [*row, "not installed", ""]
    art_s = statistics.median(times["art"])
    return [*row, f"{total / art_s:,.0f}", f"{art_s / ours_s:.1f}x"]


def smoothing_mnist(limit: int) -> tuple[str, dict[str, object]]:
    model = zoo.load(NOISE_MODEL)
    data = load_dataset(data_spec(NOISE_MODEL), split="test").take(limit, seed=0)
    smoothing = RandomizedSmoothing(0.25, n_select=100, n_estimate=100_000, alpha=0.001, batch_size=1000)
    res = smoothing.certify(model, data.x, seed=0)
    curve = res.curve(data.y)
    table = markdown(
        ["model", "n", *[f"r = {r:g}" for r, _ in curve], "abstained", "seconds"],
        [
            [
                NOISE_MODEL,
                limit,
                *[f"{a:.1%}" for _, a in curve],
                int(res.abstained.sum()),
                f"{res.seconds:.0f}",
            ]
        ],
    )
    return table, {"r=0.5": curve[2][1]}


def ibp_mnist() -> str:
    model = zoo.load(IBP_MODEL)
    data = load_dataset(data_spec(IBP_MODEL), split="test")
    threat = ThreatModel("linf", 0.1)
    start = time.perf_counter()
    res = IntervalBoundPropagation().certify(model, data.x, threat)
    seconds = time.perf_counter() - start
    sub = data.take(1000, seed=0)
    attacked = evaluate(model, sub.x, sub.y, threat, "standard", seed=0)
    sub_cert = IntervalBoundPropagation().certify(model, sub.x, threat)
    broken = int((sub_cert.certified(sub.y, 0.1) & ~attacked.robust).sum())
    headers = ["model", "clean (10k)", "verified at linf 0.1 (10k)", "IBP seconds"]
    headers += ["standard preset (1000)", "verified (same 1000)", "certified yet broken"]
    row = [
        IBP_MODEL,
        f"{res.certified_accuracy(data.y, 0):.2%}",
        f"{res.certified_accuracy(data.y, 0.1):.2%}",
    ]
    row += [
        f"{seconds:.1f}",
        f"{attacked.robust_accuracy:.1%}",
        f"{sub_cert.certified_accuracy(sub.y, 0.1):.1%}",
    ]
    return markdown(headers, [[*row, broken]])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=100, help="MNIST images certified at N = 100,000")
    parser.add_argument("--n-inputs", type=int, default=10)
    parser.add_argument("--n-throughput", type=int, default=5_000, help="draws per input in part 1")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(THROUGHPUT_MODELS), help="part 1's models")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    args = parser.parse_args()
    print(f"## Certification ({environment()})\n", flush=True)
    if "throughput" in args.parts:
        print("### Smoothing throughput (noisy samples per second)\n")
        headers = [
            "model",
            "samples",
            "bare forward",
            "bastion certify",
            "ratio",
            "ART certify",
            "bastion vs ART",
        ]
        rows = [
            throughput(m, args.n_inputs, args.n_throughput, args.batch_size, args.repeats)
            for m in args.models
        ]
        print(markdown(headers, rows), flush=True)
    if "ibp" in args.parts:
        print("\n### IBP, MNIST linf 0.1\n")
        print(ibp_mnist(), flush=True)
    if "smoothing" in args.parts:
        print("\n### Randomized smoothing, MNIST sigma 0.25, N = 100,000, N0 = 100, alpha = 0.001\n")
        print(smoothing_mnist(args.limit)[0], flush=True)


if __name__ == "__main__":
    main()
