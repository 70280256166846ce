"""What an extraction attack returns, and how a clone is measured against its victim.

- :class:`ExtractionResult`: the clone, the queries it cost, and its accuracy and **fidelity** (agreement
  with the victim's top-1) on held-out data as a curve against the query budget; saved as safetensors
  weights plus a JSON card.
- :func:`fidelity`, :func:`transfer_rate`: extraction as the first step of an evasion attack (Papernot
  et al. 2017): adversarials crafted white-box on the clone, replayed against the victim.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from bastion._files import atomic_write
from bastion.errors import AttackError, DataError
from bastion.model import Classifier, TorchClassifier, predict
from bastion.threat import ThreatModel

__all__ = [
    "CurvePoint",
    "ExtractionResult",
    "TransferResult",
    "fidelity",
    "load_clone",
    "small_cnn",
    "transfer_rate",
]

CARD_KIND = "bastion-extraction-clone"


def small_cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The default clone: for images (C, H, W) two 3x3 convolutions (32, 64) each followed by 2x2
    max-pooling (the second adaptive, so 8x8 digits and 28x28 MNIST both fit) and a 128-unit head; for
    vectors (D,) a D-128-K MLP. Maps (N, *input_shape) to logits (N, num_classes)."""
    if len(input_shape) == 1:
        return nn.Sequential(nn.Linear(input_shape[0], 128), nn.ReLU(), nn.Linear(128, num_classes))
    if len(input_shape) != 3:
        raise DataError(f"the default clone takes (C, H, W) images or (D,) vectors, not {input_shape}")
    c, h, w = input_shape
    side = (min(h, w) // 2) // 2 or 1
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(side),
        nn.Flatten(),
        nn.Linear(64 * side * side, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


class CurvePoint(NamedTuple):
    """The clone trained on the first ``budget`` queries: its ``accuracy`` on the held-out labels and
    its ``fidelity`` to the victim there (None without held-out data)."""

    budget: int
    accuracy: float | None
    fidelity: float | None


@dataclass(frozen=True, eq=False)
class ExtractionResult:
    """A clone (``classifier``, trained on all ``queries``), its ``curve`` against the budget, the
    ``output`` it was trained on (``probs`` or ``labels``), the attack's ``params`` and ``seed``.

    ``evaluation_queries`` counts the victim answers on held-out data used to measure fidelity; they
    are not the attacker's (``queries`` is). ``info`` holds what the card records about the setting
    (attack, victim, pool, architecture).
    """

    classifier: TorchClassifier
    queries: int
    curve: list[CurvePoint]
    output: str
    params: dict[str, Any]
    seed: int
    evaluation_queries: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> nn.Module:
        return self.classifier.module

    @property
    def accuracy(self) -> float | None:
        return self.curve[-1].accuracy if self.curve else None

    @property
    def fidelity(self) -> float | None:
        return self.curve[-1].fidelity if self.curve else None

    def card(self) -> dict[str, Any]:
        """What the clone is: a JSON-ready dict (kind, attack, victim, pool, budget, output policy,
        accuracy, fidelity, curve, seed, architecture, input shape, classes, bounds, params)."""
        return {
            "kind": CARD_KIND,
            **self.info,
            "budget": self.curve[-1].budget if self.curve else self.queries,
            "queries": self.queries,
            "output": self.output,
            "accuracy": self.accuracy,
            "fidelity": self.fidelity,
            "curve": [p._asdict() for p in self.curve],
            "evaluation_queries": self.evaluation_queries,
            "num_classes": self.classifier.num_classes,
            "bounds": list(self.classifier.bounds),
            "params": self.params,
            "seed": self.seed,
        }

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write the weights to ``path`` (``*.safetensors``) and the card beside it (``.json``),
        atomically; returns both paths. Read them back with :func:`load_clone`."""
        from safetensors.torch import save

        weights = Path(path).expanduser()
        if weights.suffix != ".safetensors":
            raise AttackError(
                f"the clone is written as safetensors: name it *.safetensors, not {weights.name}"
            )
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        payload = save(state, metadata={"format": "pt"})
        atomic_write(weights, lambda fh: fh.write(payload), "wb")
        card_path = weights.with_suffix(".json")
        text = json.dumps(self.card(), indent=2) + "\n"
        atomic_write(card_path, lambda fh: fh.write(text))
        return weights, card_path


def load_clone(path: str | Path, factory: Callable[[], nn.Module] | None = None) -> TorchClassifier:
    """A saved clone as a classifier: the weights at ``path`` in ``factory()`` (default: the
    :func:`small_cnn` the card's input shape and classes describe)."""
    from safetensors.torch import load_file

    weights = Path(path).expanduser()
    card = json.loads(weights.with_suffix(".json").read_text())
    if card.get("kind") != CARD_KIND:
        raise DataError(f"{weights.with_suffix('.json')} is not an extraction clone's card")
    module = factory() if factory is not None else small_cnn(tuple(card["input_shape"]), card["num_classes"])
    module.load_state_dict(load_file(str(weights)))
    return TorchClassifier(
        module, bounds=tuple(card["bounds"]), num_classes=card["num_classes"], name="clone"
    )


def fidelity(clone: Classifier, victim: Classifier, x: torch.Tensor, *, batch_size: int = 512) -> float:
    """Share of inputs ``x`` (N, ...) on which the clone's top-1 equals the victim's (Jagielski et al.
    2020's fidelity); 1.0 for a clone equal to its victim."""
    return agreement(predict(clone, x, batch_size=batch_size).argmax(1), victim, x, batch_size)


def agreement(
    clone_labels: torch.Tensor, victim: Classifier, x: torch.Tensor, batch_size: int = 512
) -> float:
    victim_labels = predict(victim, x, batch_size=batch_size).argmax(1)
    return float((clone_labels == victim_labels.to(clone_labels.device)).float().mean())


@dataclass(frozen=True)
class TransferResult:
    """Adversarials crafted white-box on the clone and replayed against the victim: ``rate`` =
    ``transferred / n`` over the ``n`` inputs both classify correctly; ``clone_fooled`` of them fool
    the clone itself; ``queries`` victim rows used (clean inputs and adversarials)."""

    rate: float | None
    n: int
    transferred: int
    clone_fooled: int
    queries: int
    attack: str


def transfer_rate(
    clone: Classifier,
    victim: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    attack: Any = None,
    seed: int = 0,
    batch_size: int = 512,
) -> TransferResult:
    """Craft adversarials for ``x`` (N, ...) with labels ``y`` (N,) on the clone (default: PGD-40 under
    ``threat``; the victim is queried for labels only) and return the share that also fool the victim,
    among the inputs that both the clone and the victim classify correctly."""
    from bastion.attacks.evasion.pgd import PGD

    atk = attack if attack is not None else PGD(steps=40)
    y = y.to(x.device)
    victim_clean = predict(victim, x, batch_size=batch_size).argmax(1).to(x.device)
    both = (predict(clone, x, batch_size=batch_size).argmax(1).to(x.device) == y) & (victim_clean == y)
    n = int(both.sum())
    if n == 0:
        return TransferResult(None, 0, 0, 0, int(x.shape[0]), atk.name)
    result = atk(clone, x[both], y[both], threat, seed=seed)
    fooled = predict(victim, result.x_adv, batch_size=batch_size).argmax(1).to(x.device) != y[both]
    transferred = int(fooled.sum())
    return TransferResult(
        transferred / n, n, transferred, int(result.success.sum()), int(x.shape[0]) + n, atk.name
    )
