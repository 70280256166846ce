"""Adversarial training against word substitutions, by augmentation: attack, then augment, then retrain.

The recipe of Jin et al. 2020 ("Is BERT Really Robust?", AAAI, Sec. "Adversarial Training") that
TextAttack's augmentation commands follow: attack a sample of the *training* texts with a word-level
attack (PWWS, TextFooler) against the trained model, add every successful adversarial with its true
label to the training set, and train the model again from scratch with the same recipe. One round, as in
the paper (the adversarials are the original model's; the retrained model is not attacked again during
training). Text is discrete, so there is no PGD-style inner loop: augmentation is the standard defence
for word-level threats. Character tricks (invisible characters, homoglyphs) are the sanitiser's job
(:mod:`bastion.text.sanitise`), not this one's.

The training recipe is the text zoo's (``scripts/train_text_zoo.py``: a :class:`TextZooSpec`, a
:class:`WordTokenizer` fitted on the training texts, Adam, cross-entropy, seeded shuffles, weights rounded
to float16 as the zoo stores them). The script's loop is not importable (it lives in a script and writes
files), so :func:`train_text_classifier` restates it; with the same spec, data, seed and thread count it
reproduces the zoo model's weights (a slow test checks this on SMS spam).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from bastion.errors import AttackError, DataError
from bastion.text.attacks.base import TextAttack
from bastion.text.attacks.result import TextAttackResult
from bastion.text.data import TextData
from bastion.text.model import TextClassifier, TorchTextClassifier
from bastion.text.nets import build_text_net
from bastion.text.threat import TextThreatModel
from bastion.text.tokenizer import WordTokenizer
from bastion.text.zoo import TextZooSpec

__all__ = ["AugmentedTraining", "adversarial_augmentation", "adversarial_train", "train_text_classifier"]


def train_text_classifier(
    train: TextData,
    spec: TextZooSpec,
    *,
    seed: int = 0,
    float16: bool = True,
    progress: Callable[[int, int, float], None] | None = None,
) -> TorchTextClassifier:
    """A fresh network trained on ``train`` with ``spec``'s recipe: the text zoo's training loop.

    Tokenizer fitted on ``train.texts`` (``spec.min_count``, ``spec.max_vocab``, ``spec.max_len``); network
    ``build_text_net(spec.arch, ...)``; Adam(``spec.lr``), cross-entropy, ``spec.epochs`` epochs of
    seeded shuffled batches of ``spec.batch_size`` right-padded id rows. Initialisation and dropout draw
    from a forked global RNG seeded with ``seed``, so the caller's RNG state is untouched and the result
    is deterministic for a seed and thread count. ``float16``: round the weights to float16 (as the zoo
    stores them). ``progress(epoch, epochs, mean loss)`` is called after each epoch. Returns the model in
    eval mode.
    """
    if len(train) < 1:
        raise DataError("train_text_classifier: the training set is empty")
    if spec.epochs < 1 or spec.batch_size < 1 or not spec.lr > 0:
        raise DataError(f"the recipe needs epochs >= 1, batch_size >= 1 and lr > 0; got {spec}")
    tokenizer = WordTokenizer.fit(
        train.texts, min_count=spec.min_count, max_size=spec.max_vocab, max_len=spec.max_len
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the zoo script's init and dropout draw from the (here forked) global RNG
        g = torch.Generator().manual_seed(seed)
        module = build_text_net(spec.arch, len(tokenizer), train.num_classes, **dict(spec.net))
        opt = torch.optim.Adam(module.parameters(), lr=spec.lr)
        ids = [torch.tensor(tokenizer.encode(t) or [0], dtype=torch.long) for t in train.texts]
        y = train.labels
        for epoch in range(spec.epochs):
            module.train()
            order = torch.randperm(len(ids), generator=g).tolist()
            total = 0.0
            for i in range(0, len(order), spec.batch_size):
                batch = order[i : i + spec.batch_size]
                x = torch.nn.utils.rnn.pad_sequence([ids[j] for j in batch], batch_first=True)
                loss = torch.nn.functional.cross_entropy(module(x), y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
            if progress is not None:
                progress(epoch + 1, spec.epochs, total / len(ids))
    if float16:
        module.load_state_dict({k: v.detach().half().float() for k, v in module.state_dict().items()})
    module.eval()
    return TorchTextClassifier(module, tokenizer, num_classes=train.num_classes)


def adversarial_augmentation(
    model: TextClassifier,
    train: TextData,
    attack: TextAttack,
    threat: TextThreatModel | None = None,
    *,
    sample: int | None = 1000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[TextData, TextAttackResult]:
    """Attack ``sample`` training texts (a seeded random subset; None: all) and return the successful
    adversarials with their *true* labels, as a :class:`TextData`, with the attack's result.

    Only successes count (valid under ``threat``, verified by the attack base class, and misclassified);
    texts the model already gets wrong are not attacked, as in the paper.
    """
    if sample is not None and sample < 1:
        raise AttackError(f"sample must be >= 1 or None, got {sample}")
    n = len(train) if sample is None else min(sample, len(train))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    chosen = train.subset(pick)
    result = attack(model, list(chosen.texts), chosen.labels, threat, seed=seed, progress=progress)
    hit = torch.nonzero(result.success).flatten().tolist()
    adversarials = replace(
        chosen.subset(hit),
        texts=tuple(result.adversarials[i] for i in hit),
        name=f"{train.name}-adversarial",
        meta={
            **train.meta,
            "attack": result.attack,
            "threat": result.threat.to_dict(),
            "sample": n,
            "sample_seed": seed,
        },
    )
    return adversarials, result


@dataclass(frozen=True)
class AugmentedTraining:
    """What :func:`adversarial_train` returns: the retrained ``model``, the ``adversarials`` added (true
    labels), the augmentation attack's ``attack_result`` and the seconds spent attacking / training."""

    model: TorchTextClassifier
    adversarials: TextData
    attack_result: TextAttackResult
    attack_seconds: float
    train_seconds: float

    @property
    def added(self) -> int:
        return len(self.adversarials)


def adversarial_train(
    model: TextClassifier,
    train: TextData,
    spec: TextZooSpec,
    attack: TextAttack,
    threat: TextThreatModel | None = None,
    *,
    sample: int | None = 1000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> AugmentedTraining:
    """Attack-then-augment adversarial training (Jin et al. 2020): ``model`` (trained on ``train`` with
    ``spec``) is attacked on ``sample`` training texts; a new model is trained from scratch with ``spec``
    on ``train`` plus the successful adversarials (true labels). ``threat``: the attack's preset when
    None. ``progress`` follows the attack (texts attacked, of the sample's correctly classified ones)."""
    t0 = time.perf_counter()
    adversarials, result = adversarial_augmentation(
        model, train, attack, threat, sample=sample, seed=seed, progress=progress
    )
    t1 = time.perf_counter()
    augmented = replace(
        train,
        texts=train.texts + adversarials.texts,
        labels=torch.cat([train.labels, adversarials.labels]),
        name=f"{train.name}+adversarial",
    )
    retrained = train_text_classifier(augmented, spec, seed=seed)
    return AugmentedTraining(retrained, adversarials, result, t1 - t0, time.perf_counter() - t1)
