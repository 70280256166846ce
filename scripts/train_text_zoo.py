#!/usr/bin/env python
"""Train bastion's text zoo, seeded and deterministic, and write weights + vocabulary + model cards.

    OMP_NUM_THREADS=1 python scripts/train_text_zoo.py --model all --data-root ../shared/data

For each model in ``bastion.text.zoo.TEXT_ZOO`` it writes ``text-<name>.safetensors`` (float16),
``text-<name>.vocab.json`` and ``text-<name>.json`` (the card) into ``--out``. The clean accuracy in the
card is measured on the *written* (float16-rounded) weights through ``load``'s code path. The recipe is
fixed in ``TEXT_ZOO`` (no early stopping on the evaluation split). The same seed, thread count and torch
version reproduce the same bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from bastion.text.adversarial_training import train_text_classifier
from bastion.text.data import load_text_dataset, text_data_root
from bastion.text.model import TorchTextClassifier
from bastion.text.tokenizer import WordTokenizer
from bastion.text.zoo import TEXT_ZOO, TextZooSpec


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes files private; package data is world-readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def accuracy(model: TorchTextClassifier, texts: tuple[str, ...], labels: torch.Tensor) -> float:
    return float((model(list(texts)).argmax(1) == labels).float().mean())


def train(name: str, spec: TextZooSpec, root: Path, out: Path, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    train_set = load_text_dataset(spec.dataset, spec.train_split, root)
    evals = {s: load_text_dataset(spec.dataset, s, root) for s in (spec.eval_split, *spec.extra_splits)}

    def report(epoch: int, epochs: int, loss: float) -> None:
        print(
            f"{name} epoch {epoch}/{epochs} loss {loss:.4f} ({time.perf_counter() - start:.0f}s)", flush=True
        )

    # The library's loop (also adversarial training's); float16-rounded, as the files store the weights,
    # so the card's accuracy is measured on exactly what is written.
    model = train_text_classifier(train_set, spec, seed=seed, float16=True, progress=report)
    train_seconds = time.perf_counter() - start
    module, tokenizer, net = model.module, model.tokenizer, dict(spec.net)
    if not isinstance(tokenizer, WordTokenizer):  # train_text_classifier fits one; narrows the type
        raise TypeError(f"expected a WordTokenizer, got {type(tokenizer).__name__}")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}
    steps = spec.epochs * math.ceil(len(train_set) / spec.batch_size)
    accs = {s: accuracy(model, d.texts, d.labels) for s, d in evals.items()}
    weights, vocab, card_path = (out / f"text-{name}{s}" for s in (".safetensors", ".vocab.json", ".json"))
    write_atomic(weights, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    write_atomic(vocab, tokenizer.save)
    data_file = Path(train_set.source or "")
    card = {
        "name": name,
        "arch": spec.arch,
        "description": "word-level CNN (Kim 2014, CNN-rand): embedding, widths 3/4/5, max-over-time pooling",
        "net": {**net, "widths": list(net.get("widths", ()))} if "widths" in net else net,
        "vocab_size": len(tokenizer),
        "max_len": spec.max_len,
        "num_classes": train_set.num_classes,
        "class_names": list(train_set.class_names),
        "dataset": {
            "name": spec.dataset,
            "file": data_file.name,
            "file_sha256": sha256_of(data_file),
            "train_split": spec.train_split,
            "n_train": len(train_set),
            "eval_split": spec.eval_split,
            "split_meta": {k: v for k, v in evals[spec.eval_split].meta.items() if k != "path"},
        },
        "recipe": {
            "optimizer": "adam",
            "lr": spec.lr,
            "epochs": spec.epochs,
            "batch_size": spec.batch_size,
            "min_count": spec.min_count,
            "max_vocab": spec.max_vocab,
            "steps": steps,
        },
        "seed": seed,
        "threads": torch.get_num_threads(),
        "dtype": "float16 (stored), float32 (computed)",
        "clean_accuracy": round(accs[spec.eval_split], 6),
        "n_eval": len(evals[spec.eval_split]),
        "accuracy": {s: round(a, 6) for s, a in accs.items()},
        "train_seconds": round(train_seconds, 1),
        "parameters": sum(v.numel() for v in state.values()),
        "torch_version": torch.__version__,
        "date": dt.date.today().isoformat(),
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "sha256": sha256_of(weights),
        "vocab_sha256": sha256_of(vocab),
    }
    write_atomic(card_path, lambda p: p.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8"))
    print(f"{name}: {spec.eval_split} accuracy {accs} in {train_seconds:.0f}s -> {weights}", flush=True)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="all", choices=["all", *TEXT_ZOO])
    parser.add_argument("--data-root", default=None, help="../shared/data (default: $BASTION_DATA)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "src/bastion/zoo/weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = text_data_root(args.data_root)
    for name in TEXT_ZOO if args.model == "all" else [args.model]:
        train(name, TEXT_ZOO[name], root, args.out, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
