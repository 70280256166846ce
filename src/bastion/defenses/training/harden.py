"""``bastion.harden``: train a model with a defense and measure what it bought.

The caller's model is never modified: training runs on a copy (re-initialised with ``from_scratch``).
The result carries the trained classifier, the per-epoch history and a model card with the robust
accuracy under an evaluation preset, and saves as safetensors weights plus a JSON card.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion._files import atomic_write
from bastion.data.dataset import Dataset
from bastion.defenses.training.card import measure, model_card
from bastion.defenses.training.config import TrainingConfig
from bastion.defenses.training.distillation import Distillation
from bastion.defenses.training.dp_sgd import DPSGD, check_module, fix_module
from bastion.defenses.training.inner_check import check_inner_gradients
from bastion.defenses.training.loop import train
from bastion.defenses.training.methods import make_objective
from bastion.defenses.training.run import EpochStats, Progress
from bastion.errors import DefenseError, ModelContractError
from bastion.model import TorchClassifier
from bastion.threat import ThreatModel

__all__ = ["HardenResult", "harden"]


@dataclass(frozen=True)
class HardenResult:
    """A hardened model: ``classifier`` (ready to attack), its ``module``, ``history`` and ``card``."""

    classifier: TorchClassifier
    history: list[EpochStats]
    card: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def module(self) -> nn.Module:
        return self.classifier.module

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``path`` (safetensors weights) and the card beside it (same name, ``.json``), atomically.

        Returns both paths. Load the weights with ``bastion.loading.load_model`` and the module's factory.
        """
        return save_weights(self.module.state_dict(), self.card, path)


def save_weights(state: dict[str, torch.Tensor], card: dict[str, Any], path: str | Path) -> tuple[Path, Path]:
    """Write ``state`` as safetensors at ``path`` and ``card`` as JSON beside it, atomically (what
    :meth:`HardenResult.save` writes; also for weights trained elsewhere, e.g. on a Ray worker)."""
    from safetensors.torch import save

    weights = Path(path).expanduser()
    if weights.suffix != ".safetensors":
        raise DefenseError(
            f"weights are written as safetensors: name the file *.safetensors, not {weights.name}"
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    # One metadata key: safetensors writes several in hash order, which would make bytes differ by run.
    payload = save(tensors, metadata={"format": "pt"})
    atomic_write(weights, lambda fh: fh.write(payload), "wb")
    card_path = weights.with_suffix(".json")
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(card_path, lambda fh: fh.write(text))
    return weights, card_path


def _split(data: Dataset, share: float, seed: int) -> tuple[Dataset, Dataset | None]:
    if share == 0:
        return data, None
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 7))
    n_val = max(1, round(share * len(data)))
    return data.subset(order[n_val:]), data.subset(order[:n_val])


def _in_training(eval_data: Dataset, train_data: Dataset) -> int:
    """How many evaluation samples (same input bytes and label) also appear in the training data: data
    with no separate test split (an .npz) evaluated "on its test split" is evaluated on itself."""
    from bastion.provenance.hashing import input_hashes, leaf_hashes

    def leaves(d: Dataset) -> list[bytes]:
        return leaf_hashes(input_hashes(d.x), d.y)

    trained = set(leaves(train_data))
    return sum(leaf in trained for leaf in leaves(eval_data))


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


def harden(
    model: TorchClassifier | nn.Module,
    train_data: Dataset,
    method: str = "pgd",
    threat: ThreatModel | None = None,
    epochs: int | None = None,
    *,
    config: TrainingConfig | None = None,
    from_scratch: bool | None = None,
    eval_data: Dataset | None = None,
    eval_preset: str = "standard",
    eval_limit: int = 1000,
    progress: Progress | None = None,
    eval_progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> HardenResult:
    """Train a copy of ``model`` on ``train_data`` with ``method`` and evaluate it.

    - ``method``: one of :data:`METHODS`; ``options`` go to it (``steps``, ``beta``, ``step_size``,
      ``smoothing``, ``temperature``, ``sigma``...). Adversarial methods need ``threat``.
      ``dp-sgd`` (Opacus) takes ``target_epsilon``, ``delta`` (< 1/N), ``max_grad_norm``,
      ``accountant`` and ``fix_model``; its card's ``privacy`` block records the epsilon spent.
    - ``config`` sets optimiser, schedule, epsilon ramp, validation share, guard and seed; ``epochs``
      (when given) overrides its epoch count (default 10). Same seed, same weights (on the same
      device and torch build).
    - ``from_scratch`` re-initialises the copy first (default: only for distillation, whose student
      must not start as the teacher).
    - With ``eval_data`` (e.g. the test split) the card records clean accuracy on it and, with a
      threat, robust accuracy under ``eval_preset`` on its first ``eval_limit`` samples, and how many
      of those samples are also in ``train_data`` (``evaluation.n_in_training_data``; when any are, a
      ``warning`` in the card and in ``notes``: the numbers are not held out).
    """
    cfg = config or TrainingConfig()
    if epochs is not None and epochs != cfg.epochs:
        cfg = replace(cfg, epochs=int(epochs))
    if isinstance(model, TorchClassifier):
        base = model
    elif isinstance(model, nn.Module):
        base = TorchClassifier(model, bounds=train_data.bounds)
    else:
        raise ModelContractError(
            "harden trains PyTorch modules: pass an nn.Module or a TorchClassifier, "
            f"got {type(model).__name__}"
        )
    if threat is not None and tuple(threat.bounds) != tuple(base.bounds):
        raise DefenseError(f"threat bounds {threat.bounds} differ from the model's {base.bounds}")
    objective = make_objective(method, options)
    scratch = method == "distillation" if from_scratch is None else from_scratch
    fit, val = _split(train_data, cfg.validation, cfg.seed)
    if isinstance(objective, DPSGD):  # refuse before training: a model Opacus can't train, a loose delta
        objective.check_size(len(fit))
        if not objective.fix_model:
            check_module(base.module)
    if not scratch:  # a fresh initialisation has small logits; a trained model may saturate
        check_inner_gradients(objective, base, train_data, method)
    devices = [base.device.index or 0] if base.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # never touch the caller's global RNG
        torch.manual_seed(cfg.seed)
        module = copy.deepcopy(base.module)
        for p in module.parameters():
            p.requires_grad_(True)
        notes: list[str] = []
        replaced: list[str] = []
        if isinstance(objective, DPSGD) and objective.fix_model:
            module, replaced = fix_module(module)
            if replaced:
                notes.append(
                    f"--fix-model replaced {'; '.join(replaced)} (opacus ModuleValidator.fix, fresh "
                    "parameters): load these weights into ModuleValidator.fix(model)"
                )
        if scratch:
            _reset(module)
        if isinstance(objective, Distillation):
            # Stage 1 (Papernot et al.): a teacher trained at temperature T from the same start.
            teacher_run = train(
                copy.deepcopy(module),
                base.normalise,
                fit,
                objective,
                cfg,
                threat=threat,
                validation_set=val,
                progress=progress,
            )
            teacher_module = teacher_run.module

            def teacher(x: torch.Tensor) -> torch.Tensor:
                return teacher_module(base.normalise(x))

            notes.append(
                f"teacher trained at temperature {objective.temperature:g} for {cfg.epochs} epochs first"
            )
            objective = make_objective(method, options, teacher)
        run = train(
            module, base.normalise, fit, objective, cfg, threat=threat, validation_set=val, progress=progress
        )
    hardened = TorchClassifier(
        run.module,
        bounds=base.bounds,
        num_classes=base.num_classes or train_data.num_classes,
        mean=base.mean,
        std=base.std,
        name=f"{base.name}+{method}",
    )
    card = model_card(
        hardened,
        base,
        train_data,
        method,
        objective,
        threat,
        cfg,
        run.seconds,
        run.stopped_early,
        run.best_epoch,
        run.notes,
        run.history_dicts(),
        privacy=None if run.privacy is None else {**run.privacy, "fixed_model": replaced},
    )
    if eval_data is not None:
        card["evaluation"] = measure(
            hardened, eval_data, threat, eval_preset, eval_limit, cfg.seed, eval_progress
        )
        seen = _in_training(eval_data.subset(slice(0, eval_limit)), train_data)
        card["evaluation"]["n_in_training_data"] = seen
        if seen:
            warning = (
                f"{seen} of {card['evaluation']['n']} evaluation samples are also in the training data: "
                "the card's accuracies are not held-out numbers; evaluate on separate test data (--test-data)"
            )
            card["evaluation"]["warning"] = warning
            notes.append(warning)
    return HardenResult(classifier=hardened, history=run.history, card=card, notes=notes + run.notes)
