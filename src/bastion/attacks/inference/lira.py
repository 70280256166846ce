"""LiRA, the likelihood-ratio attack (Carlini, Chien, Nasr, Song, Terzis & Tramer, "Membership inference
attacks from first principles", IEEE S&P 2022).

For each target example (x, y) the attack looks at the logit-scaled confidence
phi = log p_y - log(1 - p_y) of reference models trained with x (IN) and without it (OUT), fits a
Gaussian to each set, and asks how much likelier the target's own phi is under IN than under OUT:

- online: score = log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2) (needs IN and OUT references
  for every example, e.g. references trained on a population that contains the targets);
- offline: OUT references only, the one-sided test of the paper: score = -log Pr[Z > phi],
  Z ~ N(mu_out, s_out^2) (a monotone function of (phi - mu_out) / s_out);
- ``fixed_variance``: one variance per side shared by all examples (the pooled within-example variance),
  which the paper recommends with few references; the default (None) fixes it below 64 references.

The target is queried once per example and view (N x A rows); each reference scores every view (R x N x A
rows, the attacker's own models, counted as ``reference_queries`` in ``params``). ``augmentations`` add
views (the paper's multi-query variant: e.g. flips and shifts the models were trained with; each must keep
inputs inside the bounds): phi is fitted per view, and the online log-ratios are summed over views (a
diagonal Gaussian), the offline standardised distances averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from bastion.attacks.inference._query import Victim, logit_confidence
from bastion.attacks.inference.base import MembershipAttack, Scored
from bastion.attacks.inference.references import ReferenceModels
from bastion.errors import AttackError, DataError
from bastion.model import Classifier

__all__ = ["LiRA", "reference_confidences"]

FIXED_VARIANCE_BELOW = 64
"""With fewer references than this, per-example variances are too noisy (LiRA paper, Section VI-A)."""
_MIN_STD = 1e-4  # phi from saturated outputs can repeat exactly; keep the Gaussians proper


def reference_confidences(
    references: ReferenceModels, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
) -> tuple[torch.Tensor, int]:
    """phi of every reference on every example: (R, N) float64, and the rows sent to the references."""
    rows, queries = [], 0
    for model in references.models:
        ref = Victim(model, batch_size)
        rows.append(logit_confidence(ref.log_probs(x), y))
        queries += ref.queries
    return torch.stack(rows), queries


def _masked_stats(values: torch.Tensor, mask: torch.Tensor, fixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-column mean (N,) and std (N,) of ``values`` (R, N) over rows where ``mask``; ``fixed`` pools the
    within-column variance over all columns (columns with a single value contribute nothing; with one
    value per column, the spread of all values is used)."""
    w = mask.double()
    count = w.sum(0)
    mean = (values * w).sum(0) / count.clamp_min(1)
    sq = ((values - mean) ** 2 * w).sum(0)
    if fixed:
        dof = (count - 1).clamp_min(0).sum()
        # one reference per side: the spread across examples instead (what LiRA's code uses throughout)
        pooled = (sq.sum() / dof).sqrt() if dof >= 1 else values[mask].std()
        std = pooled.expand_as(mean)
    else:
        std = (sq / (count - 1).clamp_min(1)).sqrt()
    return mean, std.clamp_min(_MIN_STD)


def _log_normal(v: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((v - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)


class LiRA(MembershipAttack):
    """LiRA with ``online`` (IN and OUT Gaussians) or offline (OUT only) statistics."""

    def __init__(
        self,
        online: bool = True,
        fixed_variance: bool | None = None,
        augmentations: Sequence[Callable[[torch.Tensor], torch.Tensor]] = (),
        batch_size: int = 512,
    ) -> None:
        self.online = bool(online)
        self.fixed_variance = fixed_variance
        self.augmentations = tuple(augmentations)
        self.batch_size = int(batch_size)

    @property
    def name(self) -> str:
        return "lira" if self.online else "lira-offline"

    def params(self) -> dict[str, object]:
        return {
            "online": self.online,
            "fixed_variance": self.fixed_variance,
            "views": 1 + len(self.augmentations),
            "batch_size": self.batch_size,
        }

    def scores(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        references: ReferenceModels,
        ref_in: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int, int]:
        """(scores (N,), target queries, reference queries). ``ref_in`` (R, N) bool says which references
        trained on each example (None: none did, as for references trained on disjoint data)."""
        r, n = len(references), x.shape[0]
        ref_in = torch.zeros(r, n, dtype=torch.bool) if ref_in is None else ref_in.cpu()
        if ref_in.shape != (r, n) or ref_in.dtype != torch.bool:
            raise DataError(f"ref_in must be a ({r}, {n}) bool tensor, got {tuple(ref_in.shape)}")
        out_count, in_count = (~ref_in).sum(0), ref_in.sum(0)
        if bool((out_count == 0).any()):
            raise AttackError(
                f"{int((out_count == 0).sum())} example(s) have no OUT reference model; train more references"
            )
        if self.online and bool((in_count == 0).any()):
            raise AttackError(
                f"online LiRA needs IN references for every example ({int((in_count == 0).sum())} have "
                "none): "
                "train the references on a population containing the targets, or use the offline attack"
            )
        victim = Victim(model, self.batch_size)
        fixed = self.fixed_variance if self.fixed_variance is not None else r < FIXED_VARIANCE_BELOW
        ratio = torch.zeros(n, dtype=torch.float64)
        z = torch.zeros(n, dtype=torch.float64)
        ref_queries = 0
        views = [x, *(aug(x) for aug in self.augmentations)]
        for view in views:
            phi = logit_confidence(victim.log_probs(view), y)
            ref_phi, q = reference_confidences(references, view, y, self.batch_size)
            ref_queries += q
            mu_out, sd_out = _masked_stats(ref_phi, ~ref_in, fixed)
            z += (phi - mu_out) / sd_out / len(views)
            if self.online:
                mu_in, sd_in = _masked_stats(ref_phi, ref_in, fixed)
                ratio += _log_normal(phi, mu_in, sd_in) - _log_normal(phi, mu_out, sd_out)
        score = ratio if self.online else -torch.special.log_ndtr(-z)
        return score, victim.queries, ref_queries

    def _score(
        self,
        model: Classifier,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: torch.Generator,
        references: ReferenceModels,
        ref_in: torch.Tensor | None = None,
    ) -> Scored:
        """Scores through :meth:`scores`. Deterministic given the ``references``: ``generator`` is unused."""
        s, queries, ref_queries = self.scores(model, x, y, references, ref_in)
        fixed = (
            self.fixed_variance if self.fixed_variance is not None else len(references) < FIXED_VARIANCE_BELOW
        )
        return Scored(
            s,
            queries,
            {"fixed_variance": fixed, "references": len(references), "reference_queries": ref_queries},
        )
