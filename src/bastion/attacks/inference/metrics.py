"""Membership-inference metrics: ROC curve, AUC, TPR at a low FPR, balanced accuracy; the result type.

Conventions (everywhere in ``bastion.attacks.inference``): a higher score means "more likely a member";
an example is called a member when ``score >= threshold``; members are the positives. Scores are
(N,) tensors, ``is_member`` an (N,) bool tensor with both classes present.

``tpr_at_fpr`` follows the LiRA paper's convention (Carlini et al. 2022, "Membership inference attacks
from first principles"): no interpolation, the largest TPR among the ROC points whose FPR is at most the
target. With fewer than 1/target non-members that is the TPR at zero false positives. Report it next to
AUC and balanced accuracy, never accuracy alone: an attack can have a fine average and still identify
nobody with confidence, or identify a few members with certainty at a chance-level average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from bastion.errors import DataError

__all__ = [
    "MembershipResult",
    "RocCurve",
    "balanced_accuracy",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
]


class RocCurve(NamedTuple):
    """ROC points, float64 (P,): calling ``score >= thresholds[i]`` a member gives ``fpr[i]``, ``tpr[i]``.
    ``thresholds`` fall from +inf (point (0, 0)) to the lowest score (point (1, 1))."""

    fpr: torch.Tensor
    tpr: torch.Tensor
    thresholds: torch.Tensor


def _split(scores: torch.Tensor, is_member: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(member scores, non-member scores), float64 on CPU, after checking shapes and values."""
    s = torch.as_tensor(scores).detach().cpu().double().flatten()
    m = torch.as_tensor(is_member).detach().cpu()
    if m.dtype != torch.bool or m.shape != s.shape:
        raise DataError(
            f"is_member must be a bool tensor shaped like scores {tuple(s.shape)}, "
            f"got {m.dtype} {tuple(m.shape)}"
        )
    if torch.isnan(s).any():
        raise DataError("membership scores contain NaN; the attack produced an undefined score")
    pos, neg = s[m], s[~m]
    if pos.numel() == 0 or neg.numel() == 0:
        raise DataError(
            f"membership metrics need members and non-members, got {pos.numel()} and {neg.numel()}"
        )
    return pos, neg


def _at_or_above(sorted_scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Fraction of ``sorted_scores`` (ascending) >= each threshold."""
    n = sorted_scores.numel()
    return (n - torch.searchsorted(sorted_scores, thresholds, right=False)).double() / n


def roc_curve(scores: torch.Tensor, is_member: torch.Tensor) -> RocCurve:
    """The empirical ROC curve, one point per distinct score plus (0, 0)."""
    pos, neg = _split(scores, is_member)
    distinct = torch.unique(torch.cat([pos, neg])).flip(0)
    thresholds = torch.cat([distinct.new_tensor([math.inf]), distinct])
    return RocCurve(
        _at_or_above(neg.sort().values, thresholds), _at_or_above(pos.sort().values, thresholds), thresholds
    )


def roc_auc(scores: torch.Tensor, is_member: torch.Tensor) -> float:
    """Area under the ROC curve = P(member score > non-member score) + P(tie) / 2, i.e. the
    Mann-Whitney U statistic of the members divided by n_members * n_non_members. 0.5 is chance."""
    pos, neg = _split(scores, is_member)
    neg = neg.sort().values
    below = torch.searchsorted(neg, pos, right=False)
    at_or_below = torch.searchsorted(neg, pos, right=True)
    return float((below + at_or_below).double().sum() / (2 * pos.numel() * neg.numel()))


def tpr_at_fpr(scores: torch.Tensor, is_member: torch.Tensor, fpr: float) -> float:
    """The largest TPR among ROC points with FPR <= ``fpr`` (no interpolation; LiRA's convention)."""
    if not 0.0 <= fpr <= 1.0:
        raise DataError(f"fpr must lie in [0, 1], got {fpr}")
    curve = roc_curve(scores, is_member)
    ok = curve.fpr <= fpr + 1e-12
    return float(curve.tpr[ok].max())


def balanced_accuracy(scores: torch.Tensor, is_member: torch.Tensor) -> float:
    """The best balanced accuracy (TPR + TNR) / 2 over all thresholds (an upper bound for an attacker
    who must pick the threshold without the labels; 0.5 is chance)."""
    curve = roc_curve(scores, is_member)
    return float(((curve.tpr + 1.0 - curve.fpr) / 2).max())


@dataclass(frozen=True)
class MembershipResult:
    """What a membership-inference attack returns.

    - ``scores`` (N,) float64 (higher = member) and ``is_member`` (N,) bool, the ground truth.
    - ``auc``, ``balanced_accuracy``, ``tpr_at_0_1pct_fpr``, ``tpr_at_1pct_fpr``: see this module.
    - ``queries``: rows sent to the target model (reference models' queries are not the victim's and
      are in ``params['reference_queries']`` where used); ``seconds``: wall time of the attack.
    Build with :meth:`from_scores`, which computes the metrics.
    """

    scores: torch.Tensor
    is_member: torch.Tensor
    auc: float
    balanced_accuracy: float
    tpr_at_0_1pct_fpr: float
    tpr_at_1pct_fpr: float
    queries: int
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.scores.shape != self.is_member.shape or self.scores.dim() != 1:
            raise DataError("scores and is_member must be (N,) tensors of one length")

    @classmethod
    def from_scores(
        cls,
        scores: torch.Tensor,
        is_member: torch.Tensor,
        *,
        attack: str,
        queries: int,
        params: dict[str, Any] | None = None,
        seconds: float = 0.0,
    ) -> MembershipResult:
        s = torch.as_tensor(scores).detach().cpu().double().flatten()
        m = torch.as_tensor(is_member).detach().cpu().flatten()
        return cls(
            scores=s,
            is_member=m,
            auc=roc_auc(s, m),
            balanced_accuracy=balanced_accuracy(s, m),
            tpr_at_0_1pct_fpr=tpr_at_fpr(s, m, 0.001),
            tpr_at_1pct_fpr=tpr_at_fpr(s, m, 0.01),
            queries=int(queries),
            attack=attack,
            params=dict(params or {}),
            seconds=float(seconds),
        )

    @property
    def n_members(self) -> int:
        return int(self.is_member.sum())

    @property
    def n_non_members(self) -> int:
        return int((~self.is_member).sum())

    def roc(self) -> RocCurve:
        return roc_curve(self.scores, self.is_member)

    def to_dict(self, *, with_scores: bool = True) -> dict[str, Any]:
        """JSON-ready: metrics, counts, parameters and (``with_scores``) the per-example scores."""
        out: dict[str, Any] = {
            "attack": self.attack,
            "params": self.params,
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
            "auc": self.auc,
            "balanced_accuracy": self.balanced_accuracy,
            "tpr_at_0.1%_fpr": self.tpr_at_0_1pct_fpr,
            "tpr_at_1%_fpr": self.tpr_at_1pct_fpr,
            "queries": self.queries,
            "seconds": self.seconds,
        }
        if with_scores:
            finite = torch.nan_to_num(self.scores, posinf=1e300, neginf=-1e300)
            out["scores"] = finite.tolist()
            out["is_member"] = self.is_member.tolist()
        return out
