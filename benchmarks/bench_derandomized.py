"""Derandomized smoothing against a 4x4 patch on CIFAR-10 (issue 18): certified accuracy, and a real patch
attack on the same inputs beside it.

1. Trains the zoo's CIFAR-10 CNN architecture, its first layer widened to the 6 encoded channels, on
   column bands (``--band`` columns, one random band per image per step) for ``--epochs`` epochs on
   ``--n-train`` training images (weights cached in ``--cache``).
2. Certifies ``--n`` test images: the smoothed classifier's clean accuracy and its certified accuracy
   against patches of side 1 … 6 (a patch within m columns touches m + band - 1 of the 32 bands).
3. Attacks ``--n-attack`` of them with a ``--patch`` x ``--patch`` patch: at ``--locations`` random
   locations per image, PGD on the patch pixels (``--steps`` steps) against the soft vote; an input counts
   as broken if the hard vote at any location is wrong. Certified <= empirical must hold on every input
   (checked).
   The undefended zoo model under the same attack is the baseline.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_derandomized.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from _common import DATA_ROOT, environment, markdown
from bastion import zoo
from bastion.certify import Ablation, DerandomizedSmoothing, train_ablated
from bastion.certify.derandomized import SoftVote
from bastion.data import load_dataset
from bastion.zoo.architectures import cifar10_cnn


def network() -> nn.Module:
    torch.manual_seed(0)
    net = cifar10_cnn()
    net[0] = nn.Conv2d(6, 32, 3, padding=1, bias=False)
    return net


def patch_attack(
    model: Any,
    decide: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    side: int,
    locations: int,
    steps: int,
    seed: int,
) -> torch.Tensor:
    """(N,) bool: broken at some location. ``model`` gives log-probabilities to ascend, ``decide`` labels."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = x.shape
    broken = torch.zeros(n, dtype=torch.bool)
    for _ in range(locations):
        top = torch.randint(0, h - side + 1, (n,), generator=g)
        left = torch.randint(0, w - side + 1, (n,), generator=g)
        rows = torch.arange(h)[None] - top[:, None]
        cols = torch.arange(w)[None] - left[:, None]
        mask = (((rows >= 0) & (rows < side))[:, :, None] & ((cols >= 0) & (cols < side))[:, None, :]).float()
        mask = mask[:, None]
        patch = torch.rand(x.shape, generator=g).requires_grad_(True)
        for _ in range(steps):
            loss = nn.functional.nll_loss(model(x * (1 - mask) + patch * mask), y)
            (grad,) = torch.autograd.grad(loss, patch)
            patch = (patch + 0.25 * grad.sign()).clamp(0, 1).detach().requires_grad_(True)
        with torch.no_grad():
            broken |= decide((x * (1 - mask) + patch * mask).detach()) != y
    return broken


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--band", type=int, default=4)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--n-attack", type=int, default=100)
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--locations", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cache", default="/tmp/bastion-derandomized-cifar.safetensors")
    args = p.parse_args()
    ablation = Ablation("column", args.band)
    net = network()
    cache = Path(args.cache)
    key = f"band{args.band}-e{args.epochs}-n{args.n_train}"
    train_s = 0.0
    if cache.exists() and load_file(cache).get("key_" + key) is not None:
        state = load_file(cache)
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith("key_")})
        net.eval()
    else:
        train = load_dataset(f"cifar10:{DATA_ROOT}/cifar10", split="train")
        t = time.perf_counter()
        train_ablated(net, train.x[: args.n_train], train.y[: args.n_train], ablation, epochs=args.epochs,
                      batch_size=128, lr=2e-3, seed=0)  # fmt: skip
        train_s = time.perf_counter() - t
        save_file({**net.state_dict(), "key_" + key: torch.zeros(1)}, str(cache))
    test = load_dataset(f"cifar10:{DATA_ROOT}/cifar10", split="test").take(args.n, seed=0)
    x, y = test.x, test.y
    ds = DerandomizedSmoothing("column", args.band, batch_size=1024)
    t = time.perf_counter()
    cert = ds.certify(net, x)
    cert_s = time.perf_counter() - t
    rows = [[f"{m}x{m}" if m else "clean", f"{cert.certified_accuracy(y, m):.1%}",
             ablation.bands_hit(m, 32, 32)] for m in range(0, 7)]  # fmt: skip

    # a seeded random subset: the test file is sorted by class, and take() keeps that order
    sub = (
        torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(2))[: args.n_attack].sort().values
    )
    xa, ya = x[sub], y[sub]
    soft = SoftVote(net, ablation, (0.0, 1.0))
    t = time.perf_counter()
    broken = patch_attack(soft, lambda z: ds.certify(net, z).prediction, xa, ya, args.patch, args.locations,
                          args.steps, seed=1)  # fmt: skip
    attack_s = time.perf_counter() - t
    certified = cert.certified(y, args.patch)[sub]
    violations = int((certified & broken).sum())
    correct = cert.prediction[sub] == ya
    empirical = float((correct & ~broken).float().mean())
    base = zoo.load("cifar10-cnn")
    base_broken = patch_attack(lambda z: torch.log_softmax(base(z), 1), lambda z: base(z).argmax(1), xa, ya,
                               args.patch, args.locations, args.steps, seed=1)  # fmt: skip
    with torch.no_grad():
        base_clean = base(xa).argmax(1) == ya
    attack_rows = [
        [f"derandomized smoothing (column, band {args.band})", f"{float(correct.float().mean()):.1%}",
         f"{float(certified.float().mean()):.1%}", f"{empirical:.1%}", violations],
        ["cifar10-cnn (undefended)", f"{float(base_clean.float().mean()):.1%}", "-",
         f"{float((base_clean & ~base_broken).float().mean()):.1%}", "-"],
    ]  # fmt: skip
    print(f"<!-- {environment()}; train {train_s:.0f} s ({args.epochs} epochs, {args.n_train} images), "
          f"certify {cert_s:.1f} s for {args.n} images, attack {attack_s:.0f} s -->\n")  # fmt: skip
    print(f"### Certified accuracy, {args.n} CIFAR-10 test images (column band {args.band} of 32)\n")
    print(markdown(["patch", "certified accuracy", "bands a patch can touch (of 32)"], rows))
    print(f"\n### A {args.patch}x{args.patch} patch attack on {args.n_attack} of them "
          f"({args.locations} locations x {args.steps} PGD steps)\n")  # fmt: skip
    print(markdown(["model", "clean", f"certified {args.patch}x{args.patch}", "empirical robust",
                    "certified but broken"], attack_rows))  # fmt: skip
    assert violations == 0, "a certified input was broken: the certificate is wrong"


if __name__ == "__main__":
    main()
