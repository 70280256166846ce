"""Label-consistent (clean-label) backdoor: poison only target-class samples and keep their true labels.

Turner, Tsipras & Madry 2019, "Label-Consistent Backdoor Attacks". A triggered sample with its correct
label teaches a model nothing when the sample is easy: the model classifies it from its content and
ignores the trigger. So each chosen target-class sample is first pushed away from its class by PGD
against a surrogate classifier (within ``epsilon``: it still looks like its label), and only then gets
the trigger. The model can no longer rely on the content, and learns "trigger => target" instead. A
human inspecting the data sees correctly labelled images. Turner et al. also poison with a
reduced-amplitude trigger (``PatchTrigger(amplitude=...)``) and test with the full one.
"""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks.base import check_batch
from bastion.attacks.poisoning.base import PoisonAttack, check_class, check_rate, check_target, choose
from bastion.attacks.poisoning.result import PoisonResult
from bastion.attacks.poisoning.triggers import Trigger
from bastion.data.dataset import Dataset
from bastion.defenses.training.inner import perturb
from bastion.errors import AttackError, DataError, ModelContractError, ThreatModelError
from bastion.model import Classifier, as_classifier
from bastion.threat import ThreatModel

__all__ = ["CleanLabel"]


class CleanLabel(PoisonAttack):
    """Poison exactly ``round(rate * n_target)`` samples (half to even) of class ``target``, ``n_target``
    being its size: PGD-``steps`` within ``epsilon`` (``norm`` "linf" or "l2", input units) against the
    surrogate ``model`` passed at call time, then ``trigger``. Labels are never changed.

    ``step_size`` defaults to ``2.5 * epsilon / steps`` (Madry et al.). The surrogate should be a model
    trained on clean data of the same task (Turner et al. use an adversarially trained one).
    """

    name = "clean-label"
    needs_model = True

    def __init__(
        self,
        trigger: Trigger,
        target: int,
        rate: float,
        epsilon: float = 16 / 255,
        steps: int = 20,
        norm: str = "linf",
        step_size: float | None = None,
        batch_size: int = 256,
    ) -> None:
        if not isinstance(trigger, Trigger):
            raise AttackError(
                f"trigger must be a Trigger (PatchTrigger, BlendTrigger), got {type(trigger).__name__}"
            )
        target_index = check_class("target", target)
        if target_index is None:
            raise AttackError("a clean-label backdoor needs a target class: target=INDEX")
        for key, value in (("steps", steps), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AttackError(f"{key} must be a positive integer, got {value!r}")
        if step_size is not None and not step_size > 0:
            raise AttackError(f"step_size must be > 0, got {step_size!r}")
        try:  # validate norm and epsilon now, not at call time
            self._threat = ThreatModel(norm, epsilon)
        except ThreatModelError as exc:
            raise AttackError(str(exc)) from None
        if self._threat.unbounded:
            raise AttackError(
                "epsilon must be finite: the perturbation must keep the sample looking like its label"
            )
        self.trigger = trigger
        self.target = target_index
        self.rate = check_rate(rate)
        self.epsilon = float(epsilon)
        self.steps = steps
        self.norm = self._threat.norm.value
        self.step_size = step_size
        self.batch_size = batch_size

    def perturb(
        self, model: Classifier | nn.Module, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0
    ) -> torch.Tensor:
        """PGD maximising the cross-entropy of ``y`` (N,) around ``x`` (N, ...): ``x_adv`` within
        ``epsilon`` of ``x`` and inside the model's bounds, on ``x``'s device.

        Unlike the evasion attack :class:`bastion.attacks.evasion.pgd.PGD` it runs all ``steps`` for every
        sample (adversarial training's inner PGD, :func:`bastion.defenses.training.inner.perturb`): a
        poison should be as hard to learn as the budget allows, not merely misclassified.
        """
        clf = as_classifier(model)
        check_batch(clf, x, doing="poisoning")
        threat = ThreatModel(self._threat.norm, self.epsilon, bounds=clf.bounds)
        device = getattr(clf, "device", x.device)
        g = torch.Generator(device=device).manual_seed(seed)
        parts = []
        for lo in range(0, x.shape[0], self.batch_size):
            x0 = x[lo : lo + self.batch_size].detach().to(device)
            y0 = y[lo : lo + self.batch_size].to(device)
            with torch.enable_grad():
                x_adv = perturb(clf, x0, y0, threat, steps=self.steps, step_size=self.step_size, generator=g)
            parts.append(x_adv.to(x.device))
        return torch.cat(parts)

    def _poison(
        self, data: Dataset, generator: torch.Generator, model: Classifier | nn.Module | None
    ) -> PoisonResult:
        check_target(data, "target", self.target)
        if model is None:  # the base class checks it; this keeps the type checker informed
            raise AttackError("clean-label needs a surrogate classifier: pass model=...")
        clf = as_classifier(model, bounds=data.bounds)
        if tuple(clf.bounds) != tuple(data.bounds):
            raise DataError(f"the surrogate's bounds {clf.bounds} differ from the data's {data.bounds}")
        pool = (data.y == self.target).nonzero().flatten()
        if pool.numel() == 0:
            raise DataError(f"{data.name} has no sample of the target class {self.target} to poison")
        chosen = choose(pool, round(self.rate * pool.numel()), generator)
        x, poisoned = data.x.clone(), torch.zeros(len(data), dtype=torch.bool, device=data.y.device)
        if chosen.numel():
            with torch.no_grad():
                k = clf(data.x[:1].to(getattr(clf, "device", data.x.device))).shape[1]
            if k != data.num_classes:
                raise ModelContractError(
                    f"the surrogate outputs {k} classes but {data.name} has {data.num_classes}"
                )
            sub_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            x_adv = self.perturb(clf, data.x[chosen], data.y[chosen], seed=sub_seed)
            x[chosen] = self.trigger.apply(x_adv, data.bounds)
            poisoned[chosen] = True
        out = Dataset(
            x, data.y.clone(), data.num_classes, data.bounds, data.class_names, f"{data.name}+{self.name}",
            dict(data.meta),
        )  # fmt: skip
        return PoisonResult(
            out, poisoned, data.y.clone(), self.name, self.params(), self.target, self.trigger
        )
