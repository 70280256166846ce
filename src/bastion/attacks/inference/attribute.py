"""Attribute inference on tabular models: recover a sensitive column from the model's answers.

Fredrikson, Lantz, Jha, Lin, Page and Ristenpart, "Privacy in Pharmacogenetics: An End-to-End Case
Study of Personalized Warfarin Dosing" (USENIX Security 2014); the formal game of Yeom, Giacomelli,
Fredrikson and Jha, "Privacy Risk in Machine Learning" (CSF 2018). The attacker knows a row's other
features and its true label ``y``; for each candidate value ``v`` of the sensitive attribute it
completes the row with ``v``, queries the model, and weighs ``v`` by how well the released output
explains the known label: ``score_v ∝ prior_v * q_v`` with ``q_v = p_y(x with v)`` (``use="scores"``)
or ``q_v = [argmax = y]`` (``use="labels"``; also what a label-only API amounts to). When no
candidate explains the label (all ``q_v = 0``) the prior alone decides.

The leak is what the model adds to what the attacker knew without it. The **baseline** is the same
inference without the model: the marginal of the attribute (``"prior"``: always the majority value)
or a classifier on the other features and the label (``"classifier"``: logistic regression), fitted
on auxiliary data the attacker holds. :func:`attribute_leak` runs the attack with the baseline's
scores as its prior, so a model that ignores the attribute gives exactly the baseline's numbers and
any gain is the model's. Sensitive values may span several columns (a one-hot group): ``columns``
(S,) and ``candidates`` (V, S). Every row sent is counted in ``queries`` (N * V per run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.attacks.inference.metrics import roc_auc
from bastion.errors import AttackError, DataError
from bastion.model import Classifier

__all__ = [
    "AttributeInference",
    "AttributeLeak",
    "AttributeResult",
    "AttributeScore",
    "attribute_leak",
    "attribute_score",
    "baseline_scores",
    "candidate_index",
]

BASELINES = ("prior", "classifier")


@dataclass(frozen=True)
class AttributeResult:
    """``predicted`` (N,) candidate indices, ``scores`` (N, V) normalised weights, rows sent."""

    predicted: torch.Tensor
    scores: torch.Tensor
    queries: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttributeScore:
    """Accuracy of the argmax and AUC (one-vs-rest, averaged over values for more than two)."""

    accuracy: float
    auc: float


@dataclass(frozen=True)
class AttributeLeak:
    """The attack against the no-model baseline on the same rows, and the queries it spent."""

    attack: AttributeScore
    baseline: AttributeScore
    baseline_kind: str
    queries: int

    @property
    def accuracy_gain(self) -> float:
        return self.attack.accuracy - self.baseline.accuracy

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack": vars(self.attack),
            "baseline": vars(self.baseline),
            "baseline_kind": self.baseline_kind,
            "accuracy_gain": self.accuracy_gain,
            "queries": self.queries,
        }


def _check(x: torch.Tensor, columns: torch.Tensor, candidates: torch.Tensor) -> None:
    if x.dim() != 2:
        raise DataError(f"attribute inference needs tabular rows (N, D), got {tuple(x.shape)}")
    if candidates.dim() != 2 or candidates.shape[1] != columns.numel() or candidates.shape[0] < 2:
        raise AttackError(
            f"candidates must be (V >= 2, {columns.numel()}) values of the columns {columns.tolist()}, "
            f"got {tuple(candidates.shape)}"
        )
    if int(columns.min()) < 0 or int(columns.max()) >= x.shape[1]:
        raise AttackError(f"columns {columns.tolist()} outside the {x.shape[1]} features")


def candidate_index(x: torch.Tensor, columns: Sequence[int], candidates: torch.Tensor) -> torch.Tensor:
    """The true candidate index (N,) of each full row: the nearest candidate on ``columns``."""
    cols = torch.as_tensor(list(columns), dtype=torch.long)
    _check(x, cols, candidates)
    return torch.cdist(x[:, cols].double(), candidates.double()).argmin(1)


class AttributeInference:
    """Query the model once per candidate value per row; see the module docstring."""

    def __init__(
        self, columns: Sequence[int], candidates: torch.Tensor, *, use: str = "scores", batch_size: int = 4096
    ) -> None:
        if use not in ("scores", "labels"):
            raise AttackError(f"use must be 'scores' or 'labels', got {use!r}")
        self.columns = torch.as_tensor(list(columns), dtype=torch.long)
        self.candidates = torch.as_tensor(candidates, dtype=torch.float32)
        if self.candidates.dim() == 1:
            self.candidates = self.candidates[:, None]
        self.use, self.batch_size = use, int(batch_size)

    def run(
        self, model: Classifier, x: torch.Tensor, y: torch.Tensor, *, prior: torch.Tensor | None = None
    ) -> AttributeResult:
        """Infer the attribute of rows x (N, D) (their sensitive columns are ignored) with labels y (N,).

        ``prior``: (V,) or (N, V) weights of the candidates (default uniform)."""
        _check(x, self.columns, self.candidates)
        n, v = x.shape[0], self.candidates.shape[0]
        filled = x.detach().clone()[:, None].repeat(1, v, 1)  # (N, V, D)
        filled[:, :, self.columns.to(x.device)] = self.candidates.to(x.device, x.dtype)[None]
        rows, labels = filled.flatten(0, 1), y.to(x.device).repeat_interleave(v)
        q = []
        with torch.no_grad():
            for s in range(0, rows.shape[0], self.batch_size):
                p = torch.softmax(model(rows[s : s + self.batch_size]), 1)
                lab = labels[s : s + self.batch_size]
                if self.use == "labels":
                    q.append((p.argmax(1) == lab).double())
                else:
                    q.append(p.gather(1, lab[:, None])[:, 0].double())
        fit = torch.cat(q).view(n, v).cpu()
        w = torch.full((n, v), 1.0 / v, dtype=torch.float64) if prior is None else prior.double().cpu()
        w = w.expand(n, v)
        if not torch.allclose(w.sum(1), torch.ones(n, dtype=w.dtype), atol=1e-9, rtol=0):
            w = w / w.sum(1, keepdim=True)
        joint = w * fit
        total = joint.sum(1, keepdim=True)
        # Rows where the output does not depend on the candidate (or none explains y): the prior, exactly.
        flat = (fit == fit[:, :1]).all(1, keepdim=True) | (total == 0)
        scores = torch.where(flat, w, joint / total.clamp_min(1e-300))
        return AttributeResult(
            scores.argmax(1),
            scores,
            queries=n * v,
            params={
                "columns": self.columns.tolist(),
                "candidates": self.candidates.tolist(),
                "use": self.use,
            },
        )


def attribute_score(scores: torch.Tensor, truth: torch.Tensor) -> AttributeScore:
    """Accuracy of ``scores.argmax(1)`` (N, V) against ``truth`` (N,) and one-vs-rest AUC (averaged
    over the values present alongside others; 0.5 is chance)."""
    truth = truth.cpu()
    accuracy = float((scores.argmax(1).cpu() == truth).double().mean())
    values = [c for c in range(scores.shape[1]) if 0 < int((truth == c).sum()) < truth.numel()]
    if scores.shape[1] == 2:
        values = values[1:] or values  # binary: the AUC of value 1 (value 0's is the same)
    aucs = [roc_auc(scores[:, c].cpu(), truth == c) for c in values]
    return AttributeScore(accuracy, float(sum(aucs) / len(aucs)) if aucs else float("nan"))


def _features(x: torch.Tensor, y: torch.Tensor, columns: torch.Tensor, num_labels: int) -> torch.Tensor:
    keep = torch.ones(x.shape[1], dtype=torch.bool)
    keep[columns] = False
    return torch.cat(
        [x[:, keep].cpu().double(), torch.nn.functional.one_hot(y.cpu(), num_labels).double()], 1
    )


def baseline_scores(
    kind: str,
    aux: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    columns: Sequence[int],
    num_values: int,
    *,
    seed: int = 0,
) -> torch.Tensor:
    """Scores (N, V) of the no-model baseline fitted on ``aux`` = (rows, labels, true candidate
    indices) the attacker holds: the marginal (``"prior"``) or a logistic regression on the other
    features and the one-hot label (``"classifier"``)."""
    if kind not in BASELINES:
        raise AttackError(f"unknown baseline {kind!r}; use one of: {', '.join(BASELINES)}")
    x_aux, y_aux, s_aux = aux
    counts = torch.bincount(s_aux.cpu(), minlength=num_values).double() + 1.0  # add-one smoothing
    if kind == "prior":
        return (counts / counts.sum()).expand(x.shape[0], num_values).clone()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cols = torch.as_tensor(list(columns), dtype=torch.long)
    labels = int(max(int(y_aux.max()), int(y.max()))) + 1
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    clf.fit(_features(x_aux, y_aux, cols, labels).numpy(), s_aux.cpu().numpy())
    proba = torch.from_numpy(clf.predict_proba(_features(x, y, cols, labels).numpy()))
    out = torch.zeros(x.shape[0], num_values, dtype=torch.float64)
    out[:, torch.as_tensor(clf.classes_, dtype=torch.long)] = proba
    return out


def attribute_leak(
    attack: AttributeInference,
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    aux: tuple[torch.Tensor, torch.Tensor],
    *,
    baseline: str = "classifier",
    seed: int = 0,
) -> AttributeLeak:
    """Attack rows x (N, D) with labels y against the baseline fitted on ``aux`` (rows, labels) whose
    sensitive values the attacker knows; the truth comes from x's own sensitive columns."""
    cols = attack.columns.tolist()
    truth = candidate_index(x, cols, attack.candidates)
    s_aux = candidate_index(aux[0], cols, attack.candidates)
    base = baseline_scores(
        baseline, (aux[0], aux[1], s_aux), x, y, cols, attack.candidates.shape[0], seed=seed
    )
    result = attack.run(model, x, y, prior=base)
    return AttributeLeak(
        attribute_score(result.scores, truth), attribute_score(base, truth), baseline, result.queries
    )
