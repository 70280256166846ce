"""DP-SGD: differentially private training through Opacus (Abadi et al. 2016, "Deep Learning with
Differential Privacy"; Yousefpour et al. 2021, Opacus).

Each step draws a Poisson sample of the training set (every record independently with probability
``q = 1 / steps_per_epoch``, so the expected batch is the batch size), clips every per-sample gradient
to L2 norm ``max_grad_norm`` and adds Gaussian noise of std ``noise_multiplier * max_grad_norm`` to
their sum. Opacus picks the noise multiplier that spends ``target_epsilon`` at ``delta`` over the
planned steps, and its accountant (``prv``: Gopi et al. 2021, or ``rdp``: Mironov 2017) tracks what
was really spent; the card records that number. The guarantee is record-level (ε, δ)-DP for the
trained records and covers every iterate, so picking a checkpoint on held-out data is free.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.defenses.training.objective import Batch, Forward, Objective
from bastion.errors import DefenseError

__all__ = ["ACCOUNTANTS", "DPSGD", "PrivateSession", "check_module", "fix_module"]

ACCOUNTANTS = ("prv", "rdp")
INSTALL = "DP-SGD needs Opacus: pip install 'bastion[privacy]'"


def _opacus() -> Any:
    try:
        import opacus
    except ImportError:
        raise DefenseError(INSTALL) from None
    return opacus


def check_module(module: nn.Module) -> None:
    """Refuse a module Opacus cannot compute per-sample gradients for (BatchNorm mixes the samples of a
    batch, so one record's gradient depends on the others), naming the fix."""
    _opacus()
    from opacus.validators import ModuleValidator

    # An eval-mode module is fine here: the loop trains it in training mode.
    errors = [e for e in ModuleValidator.validate(module, strict=False) if "training mode" not in str(e)]
    if not errors:
        return
    norms = [
        n or "(model)" for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    if norms:
        raise DefenseError(
            f"dp-sgd cannot train BatchNorm (layer {', '.join(norms)}: it mixes the samples of a batch, so "
            "per-sample gradients are undefined): replace BatchNorm with GroupNorm: "
            "opacus.validators.ModuleValidator.fix(model), or pass --fix-model (fix_model=True)"
        )
    first = " ".join(str(errors[0]).split()).split(". ")[0]
    raise DefenseError(
        f"dp-sgd cannot train this model ({first}): opacus.validators.ModuleValidator.fix(model) "
        "replaces what it can, or pass --fix-model (fix_model=True)"
    )


def fix_module(module: nn.Module) -> tuple[nn.Module, list[str]]:
    """``ModuleValidator.fix`` on a copy (BatchNorm → GroupNorm, LSTM → DPLSTM...): the fixed module and
    what was replaced (``"name: BatchNorm2d -> GroupNorm"``); the architecture, and so the weights'
    layout, changes, and replaced layers start from fresh parameters."""
    _opacus()
    from opacus.validators import ModuleValidator

    fixed: nn.Module = ModuleValidator.fix(module)
    check_module(fixed)
    after = dict(fixed.named_modules())
    replaced = [
        f"{name or '(model)'}: {type(m).__name__} -> {type(after[name]).__name__}"
        for name, m in module.named_modules()
        if name in after and type(after[name]) is not type(m)
    ]
    return fixed, replaced


@dataclass
class PrivateSession:
    """Opacus' pieces for one run: the DP optimizer (clip + noise), the Poisson loader of sample
    indices, and the engine whose accountant records every step. ``close`` removes the per-sample
    gradient hooks from the module and returns what the card records."""

    optimizer: torch.optim.Optimizer
    loader: Any
    steps_per_epoch: int
    record: dict[str, Any]
    _engine: Any
    _wrapped: Any
    _quiet: Any = None

    def __post_init__(self) -> None:
        # Opacus' hooks make torch warn on every first-layer backward whose input needs no gradient
        # (harmless); silenced from here until close().
        self._quiet = warnings.catch_warnings()
        self._quiet.__enter__()
        warnings.filterwarnings("ignore", message="Full backward hook is firing")

    def epoch(self) -> Iterator[torch.Tensor]:
        """One epoch of Poisson batches: index tensors (B,), B ~ Binomial(N, q), possibly empty."""
        for (index,) in self.loader:
            yield index.long()

    def close(self) -> dict[str, Any]:
        try:
            history = list(self._engine.accountant.history)
            steps = sum(int(n) for _, _, n in history)
            delta = self.record["delta"]
            epsilon = float(self._engine.accountant.get_epsilon(delta=delta)) if steps else 0.0
        finally:
            self._wrapped._close()  # removes hooks and grad_sample attributes; the module stays ours
            self._quiet.__exit__(None, None, None)
        return {**self.record, "epsilon": epsilon, "steps": steps}


class DPSGD(Objective):
    """Cross-entropy under DP-SGD; the training loop asks it for Opacus' optimizer and sampler.

    ``target_epsilon`` and ``delta`` set the budget (``delta`` must be below 1/N for N training
    records), ``max_grad_norm`` the per-sample clipping norm C, ``accountant`` ``prv`` (Opacus'
    default, tighter) or ``rdp``; ``fix_model`` lets harden replace BatchNorm with GroupNorm.
    """

    name = "dp-sgd"

    def __init__(
        self,
        target_epsilon: float | None = None,
        delta: float = 1e-5,
        max_grad_norm: float = 1.0,
        accountant: str = "prv",
        fix_model: bool = False,
    ) -> None:
        if target_epsilon is None:
            raise DefenseError("dp-sgd needs a privacy budget: pass --target-epsilon (e.g. 3) and --delta")
        if not (math.isfinite(target_epsilon) and target_epsilon > 0):
            raise DefenseError(f"target epsilon must be a positive number, got {target_epsilon}")
        if not 0.0 < delta < 1.0:
            raise DefenseError(f"delta must lie in (0, 1) and be below 1/N, got {delta} (e.g. 1e-5)")
        if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
            raise DefenseError(f"max grad norm must be positive, got {max_grad_norm} (e.g. 1.0)")
        if accountant not in ACCOUNTANTS:
            raise DefenseError(f"unknown accountant {accountant!r}; use one of: {', '.join(ACCOUNTANTS)}")
        self.target_epsilon = float(target_epsilon)
        self.delta = float(delta)
        self.max_grad_norm = float(max_grad_norm)
        self.accountant = accountant
        self.fix_model = bool(fix_model)

    def check_size(self, n: int) -> None:
        """Refuse ``delta >= 1/n``: at that delta, publishing one random record outright is (0, δ)-DP."""
        if self.delta >= 1.0 / n:
            raise DefenseError(
                f"delta {self.delta:g} is not below 1/N = {1.0 / n:.3g} for N = {n} training records "
                f"(such a delta allows leaking a whole record): pass --delta {_below(n)} or smaller"
            )

    def loss(
        self, forward: Forward, attack_forward: Forward, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = forward(batch.x)
        if len(batch.y) == 0:  # a Poisson batch may be empty: the step still adds noise and counts
            return logits.sum() * 0.0, logits
        return F.cross_entropy(logits, batch.y), logits

    def privatise(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        n: int,
        batch_size: int,
        epochs: int,
        seed: int,
    ) -> PrivateSession:
        """Wrap ``module`` (hooks only: it is trained in place) and ``optimizer`` with Opacus'
        ``make_private_with_epsilon`` and Poisson sampling over ``n`` records."""
        opacus = _opacus()
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler
        from torch.utils.data import DataLoader, TensorDataset

        self.check_size(n)
        check_module(module)
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        module.train()
        loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=batch_size)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG turned off.*")  # recorded below
            warnings.filterwarnings("ignore", message=".*[Oo]ptimal order is the largest alpha.*")
            engine = opacus.PrivacyEngine(accountant=self.accountant)
            wrapped, dp_optimizer, dp_loader = engine.make_private_with_epsilon(
                module=module,
                optimizer=optimizer,
                data_loader=loader,
                target_epsilon=self.target_epsilon,
                target_delta=self.delta,
                epochs=epochs,
                max_grad_norm=self.max_grad_norm,
                poisson_sampling=True,
                noise_generator=torch.Generator(device=device).manual_seed(seed + 2),
            )
        sampler = dp_loader.batch_sampler
        if type(sampler) is not UniformWithReplacementSampler:  # anything else breaks the accountant
            wrapped._close()
            raise DefenseError(
                f"opacus returned a {type(sampler).__name__} batch sampler, not Poisson sampling: "
                "the privacy accounting would not hold; install opacus>=1.5"
            )
        sampler.generator = torch.Generator().manual_seed(seed + 3)  # seeded Poisson draws
        steps = len(sampler) * epochs
        if steps != int(epochs / sampler.sample_rate):
            # Opacus plans int(epochs / q) steps but its sampler takes int(1 / q) per epoch; float rounding
            # makes them differ (q = 1/75, 3 epochs: 224 planned, 225 taken): plan the steps really taken.
            from opacus.accountants.utils import get_noise_multiplier

            dp_optimizer.noise_multiplier = get_noise_multiplier(
                target_epsilon=self.target_epsilon,
                target_delta=self.delta,
                sample_rate=sampler.sample_rate,
                steps=steps,
                accountant=self.accountant,
            )
        record = {
            "mechanism": "DP-SGD (Abadi et al. 2016) with Opacus",
            "opacus_version": opacus.__version__,
            "accountant": self.accountant,
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "noise_multiplier": float(dp_optimizer.noise_multiplier),
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": float(sampler.sample_rate),
            "expected_batch_size": float(sampler.sample_rate * n),
            "poisson_sampling": True,
            "clipping": "flat",
            "secure_rng": False,
            "n_records": n,
            "planned_steps": steps,
        }
        return PrivateSession(dp_optimizer, dp_loader, len(sampler), record, engine, wrapped)


def _below(n: int) -> str:
    """A round delta at most 1/(10 n): 1e-5 for n <= 10,000."""
    return f"{min(1e-5, 10.0 ** math.floor(math.log10(0.1 / n))):g}"
