#!/usr/bin/env python
"""Train bastion's model zoo, seeded and deterministic, and write safetensors weights + model cards.

    python scripts/train_zoo.py --model all --data-root /work/shared/data --out src/bastion/zoo/weights

Each model gets ``<out>/<name>.safetensors`` and ``<out>/<name>.json`` (its card: dataset, recipe, seed,
clean accuracy on the full test split measured on the *written* weights, sha256 of the weights file).
Both files are written atomically (temporary file + ``os.replace``), so a killed run never leaves a
half-written model behind. The same seed, thread count and torch version reproduce the same weights.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from bastion.data import load_dataset
from bastion.data.dataset import Dataset
from bastion.model import TorchClassifier, predict
from bastion.zoo.architectures import build, spec, spec_names


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is trained. The LR follows a one-cycle schedule (warm-up, then cosine decay)."""

    optimizer: str  # "adam" or "sgd" (Nesterov momentum 0.9)
    lr: float  # peak learning rate
    epochs: int
    batch_size: int
    weight_decay: float = 0.0
    augmentation: str = "none"  # "none" or "crop4+flip": random 32x32 crop of the 4-padded image, h-flip
    schedule: str = "onecycle"


RECIPES: dict[str, Recipe] = {
    "digits-mlp": Recipe("adam", 3e-3, epochs=60, batch_size=64),
    "digits-cnn": Recipe("adam", 2e-3, epochs=40, batch_size=64),
    "mnist-cnn": Recipe("adam", 2e-3, epochs=3, batch_size=128),
    "mnist-strided": Recipe("adam", 2e-3, epochs=3, batch_size=128),
    "cifar10-cnn": Recipe("sgd", 0.1, epochs=5, batch_size=128, weight_decay=5e-4, augmentation="crop4+flip"),
}


def dataset_spec(kind: str, data_root: Path) -> str:
    return "digits" if kind == "digits" else f"{kind}:{data_root / kind}"


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (4-pixel zero padding) and horizontal flip, per sample, vectorised over the batch."""
    n, c, h, w = x.shape
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def make_optimizer(module: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(module.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        module.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
    )


def train(name: str, train_set: Dataset, recipe: Recipe, seed: int) -> nn.Module:
    s = spec(name)
    torch.manual_seed(seed)  # the initial weights
    module = build(name)
    generator = torch.Generator().manual_seed(seed)  # shuffling and augmentation
    mean = torch.tensor(s.mean).view(1, -1, 1, 1) if s.mean is not None else None
    std = torch.tensor(s.std).view(1, -1, 1, 1) if s.std is not None else None
    optimizer = make_optimizer(module, recipe)
    steps_per_epoch = -(-len(train_set) // recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch
    )
    module.train()
    for epoch in range(recipe.epochs):
        start, total_loss, correct = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(train_set), generator=generator)
        for i in range(0, len(train_set), recipe.batch_size):
            index = order[i : i + recipe.batch_size]
            x, y = train_set.x[index], train_set.y[index]
            if recipe.augmentation == "crop4+flip":
                x = augment(x, generator)
            if mean is not None and std is not None:
                x = (x - mean) / std  # the same normalisation TorchClassifier applies at inference
            logits = module(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == y).sum())
        print(
            f"  [{name}] epoch {epoch + 1}/{recipe.epochs}: loss {total_loss / len(train_set):.4f}, "
            f"train acc {correct / len(train_set):.4f}, {time.perf_counter() - start:.1f}s",
            flush=True,
        )
    return module.eval()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_atomic(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` on a temporary file in the same folder, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; package data must be world-readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def accuracy(name: str, weights: Path, test_set: Dataset) -> float:
    """Clean accuracy of the weights *as written*, wrapped exactly as ``bastion.zoo.load`` wraps them."""
    from bastion.loading import read_state_dict

    s = spec(name)
    module = build(name)
    module.load_state_dict(read_state_dict(weights), strict=True)
    model = TorchClassifier(module, bounds=test_set.bounds, num_classes=s.num_classes, mean=s.mean, std=s.std)
    predictions = predict(model, test_set.x, batch_size=500).argmax(1)
    return float((predictions == test_set.y).float().mean())


def run(name: str, data_root: Path, out: Path, seed: int, threads: int, epochs: int | None) -> dict[str, Any]:
    s = spec(name)
    recipe = RECIPES[name] if epochs is None else replace(RECIPES[name], epochs=epochs)
    data = dataset_spec(s.dataset, data_root)
    train_set, test_set = load_dataset(data, split="train"), load_dataset(data, split="test")
    print(f"{name}: {len(train_set)} train / {len(test_set)} test from {data}; {recipe}", flush=True)
    start = time.perf_counter()
    module = train(name, train_set, recipe, seed)
    seconds = time.perf_counter() - start
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    weights = out / f"{name}.safetensors"
    # One metadata key only: safetensors writes a multi-key header in hash order, which would make the
    # bytes (and the card's sha256) differ between two otherwise identical runs.
    write_atomic(weights, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    acc = accuracy(name, weights, test_set)
    card = {
        "name": name,
        "architecture": repr(module),
        "description": s.description,
        "dataset": {"name": s.dataset, "n_train": len(train_set), "n_test": len(test_set)},
        "input_shape": list(s.input_shape),
        "bounds": list(test_set.bounds),
        "mean": list(s.mean) if s.mean is not None else None,
        "std": list(s.std) if s.std is not None else None,
        "num_classes": s.num_classes,
        "class_names": list(s.class_names),
        "recipe": asdict(recipe),
        "seed": seed,
        "threads": threads,
        "clean_accuracy": round(acc, 6),
        "n_test": len(test_set),
        "train_seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in module.parameters()),
        "torch_version": torch.__version__,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "sha256": sha256_of(weights),
    }
    text = json.dumps(card, indent=2) + "\n"
    write_atomic(out / f"{name}.json", lambda p: p.write_text(text, encoding="utf-8"))
    print(f"{name}: clean accuracy {acc:.4f} on {len(test_set)} test images, {seconds:.0f}s", flush=True)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="all", choices=[*spec_names(), "all"], help="which model to train")
    parser.add_argument(
        "--data-root", type=Path, default=Path("/work/shared/data"), help="holds mnist/, cifar10/"
    )
    parser.add_argument("--out", type=Path, default=Path("src/bastion/zoo/weights"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (smoke runs)")
    args = parser.parse_args(argv)
    if args.threads < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--threads and --epochs must be >= 1")
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in spec_names() if n in RECIPES] if args.model == "all" else [args.model]
    for name in names:
        run(name, args.data_root, args.out, args.seed, args.threads, args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
