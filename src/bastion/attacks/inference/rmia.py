"""RMIA, the robust membership inference attack (Zarifzadeh, Liu, Mahloujifar & Shokri, "Low-cost
high-power membership inference attacks", ICML 2024).

The likelihood ratio of x under the target model against its probability under models in general,
LR(x) = Pr(x | theta) / Pr(x), is compared pairwise with the same ratio for population samples z
(non-members drawn from the same distribution):

    score(x) = Pr_z[ LR(x) / LR(z) >= gamma ],

the fraction of population samples x dominates by a factor ``gamma``. Pr(x | theta) is the released
probability of the true label; Pr(x) averages it over reference models:

- online (x has IN and OUT references): the plain mean over all references;
- offline (``offline=True``, OUT references only): Pr(x) ~ ((1 + a) * mean_OUT + (1 - a)) / 2, the
  paper's linear correction of the OUT mean towards what IN models would give (``a`` is tuned in the paper
  on a reference model playing the target; 0.3 is a typical value).

Pr(z) uses the same estimator with z's own IN/OUT references. One reference suffices. The score is a
step function of LR(x) (M + 1 values for M samples z): members that dominate every z tie at the top,
which zeroes the TPR at low FPR; ``tie_break`` (default) orders examples within a step by LR(x) itself,
which never reorders examples across steps (``tie_break=False``: the paper's score as written).
Target queries: N + M rows (targets and population samples); references score both ((N + M) x R rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bastion.attacks.inference._query import Victim, true_log_prob
from bastion.attacks.inference.base import MembershipAttack, Scored
from bastion.attacks.inference.references import ReferenceModels
from bastion.errors import AttackError, DataError
from bastion.model import Classifier

__all__ = ["RMIA"]


class RMIA(MembershipAttack):
    """RMIA with ``gamma``, offline parameter ``a`` and ``population_size`` samples z."""

    name = "rmia"
    generator_device = "cpu"  # z is drawn over the (CPU) population's indices: the same z on any device

    def __init__(
        self,
        gamma: float = 2.0,
        a: float = 0.3,
        offline: bool = True,
        population_size: int = 2500,
        tie_break: bool = True,
        batch_size: int = 512,
    ) -> None:
        if not gamma > 0:
            raise AttackError(f"gamma must be > 0, got {gamma}")
        if not 0.0 <= a <= 1.0:
            raise AttackError(f"a must lie in [0, 1], got {a}")
        if population_size < 1:
            raise AttackError(f"population_size must be >= 1, got {population_size}")
        self.gamma = float(gamma)
        self.a = float(a)
        self.offline = bool(offline)
        self.population_size = int(population_size)
        self.tie_break = bool(tie_break)
        self.batch_size = int(batch_size)

    def params(self) -> dict[str, object]:
        return {
            "gamma": self.gamma,
            "a": self.a,
            "offline": self.offline,
            "population_size": self.population_size,
            "tie_break": self.tie_break,
            "batch_size": self.batch_size,
        }

    def _marginal(self, ref_p: torch.Tensor, ref_in: torch.Tensor) -> torch.Tensor:
        """Pr(.) (N,) from reference probabilities (R, N) and their IN mask (R, N); NaN where undefined."""
        if not self.offline:
            return ref_p.mean(0)
        out = (~ref_in).double()
        count = out.sum(0)
        mean_out = (ref_p * out).sum(0) / count.clamp_min(1)
        p = 0.5 * ((1 + self.a) * mean_out + (1 - self.a))
        return torch.where(count > 0, p, torch.full_like(p, float("nan")))

    def _probs(
        self, models: Sequence[Classifier], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        rows, queries = [], 0
        for m in models:
            v = Victim(m, self.batch_size)
            rows.append(true_log_prob(v.log_probs(x), y).exp())
            queries += v.queries
        return torch.stack(rows), queries

    def _score(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator,
        references: ReferenceModels,
        ref_in: torch.Tensor | None = None,
        population: torch.Tensor | None = None,
    ) -> Scored:
        """Score x (N, ...), labels y (N,) with the ``references``.

        ``ref_in`` (R, N) bool: which references trained on each target (None: none did).
        ``population`` (P,) bool over ``references.population``: rows that may serve as z (default all;
        exclude the targets when they belong to the population). ``population_size`` of them (offline:
        of those with an OUT reference) are drawn with ``generator`` (``run``'s ``seed``, default 0).
        """
        r, n = len(references), x.shape[0]
        ref_in = torch.zeros(r, n, dtype=torch.bool) if ref_in is None else ref_in.cpu()
        if ref_in.shape != (r, n) or ref_in.dtype != torch.bool:
            raise DataError(f"ref_in must be a ({r}, {n}) bool tensor, got {tuple(ref_in.shape)}")
        pop = references.population
        allowed = torch.ones(len(pop), dtype=torch.bool) if population is None else population.cpu()
        if allowed.shape != (len(pop),) or allowed.dtype != torch.bool:
            raise DataError(f"population must be a ({len(pop)},) bool mask over the references' population")
        if self.offline:  # Pr(z) offline needs an OUT reference of z: draw only such z
            allowed = allowed & (~references.assignment.keep).any(0)
        candidates = allowed.nonzero().flatten()
        if candidates.numel() == 0:
            raise AttackError("no population sample is available as z (offline: none has an OUT reference)")
        pick = torch.randperm(candidates.numel(), generator=generator, device=generator.device).cpu()
        z_index = candidates[pick[: self.population_size]]
        z_in = references.assignment.keep[:, z_index]
        victim = Victim(model, self.batch_size)
        p_x = true_log_prob(victim.log_probs(x), y).exp()
        zx, zy = pop.x[z_index].to(x.device), pop.y[z_index]
        p_z = true_log_prob(victim.log_probs(zx), zy).exp()
        models = references.models
        ref_x, q1 = self._probs(models, x, y)
        ref_z, q2 = self._probs(models, zx, zy)
        marginal_x = self._marginal(ref_x, ref_in)
        if bool(torch.isnan(marginal_x).any()):
            raise AttackError("offline RMIA needs an OUT reference for every target example")
        marginal_z = self._marginal(ref_z, z_in)
        ratio_x = p_x / marginal_x.clamp_min(1e-300)
        ratio_z = (p_z / marginal_z.clamp_min(1e-300)).sort().values
        # ratio_x / ratio_z >= gamma  <=>  ratio_z <= ratio_x / gamma
        dominated = torch.searchsorted(ratio_z, ratio_x / self.gamma, right=True).double()
        if self.tie_break:  # within one step, order by LR(x) itself: never reorders across steps
            score = (dominated + torch.sigmoid(ratio_x.log())) / (ratio_z.numel() + 1)
        else:
            score = dominated / ratio_z.numel()
        extra = {"references": r, "z_samples": int(ratio_z.numel()), "reference_queries": q1 + q2}
        return Scored(score, victim.queries, extra)
