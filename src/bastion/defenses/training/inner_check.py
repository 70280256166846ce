"""Before adversarial training: does the inner attack have a gradient to climb on this model?

Fine-tuning a model whose softmax saturates (very large logits) with an inner attack on cross-entropy
(or TRADES' KL) trains on unperturbed inputs where the gradient is exactly zero: the result looks
adversarially trained and is not. The audit reports the same condition as ``BA210``.
"""

from __future__ import annotations

from bastion.attacks.saturation import vanishing_cross_entropy
from bastion.data.dataset import Dataset
from bastion.defenses.training.objective import Objective
from bastion.errors import DefenseError
from bastion.model import TorchClassifier

__all__ = ["CHECK_SAMPLES", "MAX_VANISHING", "check_inner_gradients"]

CHECK_SAMPLES = 256
MAX_VANISHING = 0.1  # above this share of correctly classified inputs with no gradient, refuse


def check_inner_gradients(objective: Objective, model: TorchClassifier, data: Dataset, method: str) -> float:
    """The share of a batch (the first :data:`CHECK_SAMPLES` training inputs) on which the starting
    model's cross-entropy gradient vanishes; DefenseError when it exceeds :data:`MAX_VANISHING` for a
    method whose inner attack climbs it. 0.0 for methods without such an attack (not measured)."""
    if not objective.gradient_inner_attack:
        return 0.0
    x, y = data.x[:CHECK_SAMPLES].to(model.device), data.y[:CHECK_SAMPLES].to(model.device)
    share = vanishing_cross_entropy(model, x, y)
    if share > MAX_VANISHING:
        raise DefenseError(
            f"{method} training's inner attack would have no gradient: the cross-entropy gradient is "
            f"exactly zero on {share:.0%} of {int(x.shape[0])} correctly classified training inputs "
            "(the softmax saturates: very large logits or a folded-in temperature); rescale the "
            "model's logits (divide its last layer by the temperature) or train from scratch "
            "(--from-scratch)"
        )
    return share
