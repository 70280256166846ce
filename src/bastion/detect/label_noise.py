"""Label-noise detection by confident learning (Northcutt, Jiang & Chuang, JAIR 2021, "Confident
Learning: Estimating Uncertainty in Dataset Labels").

Models trained from scratch on all folds but one predict the held-out fold, so every sample gets
class probabilities from a model that never saw its label (out-of-fold). Per class ``j``, the threshold
``t_j`` is the mean out-of-fold probability of class ``j`` over the samples labelled ``j`` (its
self-confidence). A sample is a label issue when the probability of its given label is below that
label's threshold while another class ``j`` reaches its own ``t_j`` (an off-diagonal entry of the
confident joint). Per-class thresholds make this fair to classes the model is less sure of.

Honesty: a clean set still has samples the models confidently get wrong (about the models'
cross-validated error, a few percent on digits). A class counts as noisy only when the share of its
samples so flagged reaches ``tolerance``; samples are flagged only in noisy classes. Set ``tolerance``
above the error you expect from the architecture on clean data. Weak fold models (too few epochs or
samples) disagree with clean labels confidently and often: ``params["out_of_fold_agreement"]``, the
share of samples whose out-of-fold prediction is their given label, shows it (on clean digits, 4 folds
of digits-mlp for 10 epochs: 92% agreement, nothing flagged; for 2 epochs on 300 samples: half of the
clean set flagged).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from bastion.data.dataset import Dataset
from bastion.defenses.training.config import TrainingConfig
from bastion.defenses.training.harden import harden
from bastion.detect.data_scan import (
    ClassScan,
    DataScanner,
    DataScanResult,
    ScanProgress,
    check_count,
    skipped,
)
from bastion.errors import DetectorError, ModelContractError
from bastion.model import Classifier, TorchClassifier, predict

__all__ = ["LabelNoise", "confident_issues", "stratified_folds"]


def stratified_folds(y: torch.Tensor, folds: int, seed: int) -> torch.Tensor:
    """Fold index (N,) in [0, folds) for labels ``y`` (N,): a seeded shuffle, then each class dealt
    round-robin, so every fold holds each class's share (within one sample)."""
    order = torch.randperm(y.numel(), generator=torch.Generator().manual_seed(seed))
    by_class = order[torch.sort(y[order], stable=True).indices]
    labels = y[by_class]
    starts = torch.searchsorted(labels, labels, right=False)  # first position of each sample's class
    rank = torch.arange(y.numel()) - starts
    fold = torch.empty_like(y)
    fold[by_class] = rank % folds
    return fold


def confident_issues(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Label issues (N,) bool from out-of-fold probabilities ``probs`` (N, K) and given labels ``y`` (N,).

    ``t_j`` = mean of ``probs[y == j, j]`` (classes without samples never count as confident).
    Issue: ``probs[i, y_i] < t_{y_i}`` and some other ``j`` has ``probs[i, j] >= t_j``.
    """
    counts = torch.bincount(y, minlength=probs.shape[1]).to(probs.dtype)
    own = probs.gather(1, y[:, None]).squeeze(1)
    sums = torch.zeros(probs.shape[1], dtype=probs.dtype).index_add_(0, y, own)
    thresholds = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, torch.inf))
    confident = probs >= thresholds
    confident[torch.arange(y.numel()), y] = False
    return (own < thresholds[y]) & confident.any(1)


class LabelNoise(DataScanner):
    """Flipped-label detection with ``folds`` cross-validated models (confident learning).

    ``LabelNoise(folds=4, epochs=10, tolerance=0.05).scan(model, train_set)``: the model passed to
    ``scan`` is the architecture (re-initialised for every fold; its weights are not used), trained
    with :func:`bastion.defenses.training.harden` (``method="standard"``; ``config`` sets optimiser,
    batch size, learning rate; its ``epochs``, ``seed`` and ``validation`` are overridden). Per-class
    ``statistic``: the share of the class flagged as label issues. ``scores`` = 1 - out-of-fold
    probability of the given label; ``result.probabilities`` (N, K) holds those probabilities (their
    argmax is the suggested label). Costs ``folds`` trainings on ``(folds - 1) / folds`` of the data.
    """

    method = "label-noise"
    finding = "label noise"

    def __init__(
        self,
        *,
        folds: int = 4,
        epochs: int = 10,
        tolerance: float = 0.05,
        config: TrainingConfig | None = None,
        seed: int = 0,
        min_class_size: int = 20,
        batch_size: int = 512,
    ) -> None:
        super().__init__(min_class_size=min_class_size, batch_size=batch_size)
        self.folds = check_count("folds", folds, 2)
        self.epochs = check_count("epochs", epochs, 1)
        self.seed = check_count("seed", seed, 0)
        ok = isinstance(tolerance, int | float) and not isinstance(tolerance, bool)
        if not ok or not 0.0 < float(tolerance) < 1.0:
            raise DetectorError(
                f"tolerance is the share of a class allowed to look mislabeled, in (0, 1); got {tolerance!r}"
            )
        self.tolerance = float(tolerance)
        if config is not None and not isinstance(config, TrainingConfig):
            raise DetectorError(f"config must be a TrainingConfig, got {type(config).__name__}")
        self._config = config or TrainingConfig(batch_size=64)

    def _scan(self, model: Classifier, data: Dataset, progress: ScanProgress | None) -> DataScanResult:
        if not isinstance(model, TorchClassifier):
            raise ModelContractError(
                "label-noise detection retrains the model's architecture: pass a PyTorch model "
                f"(a TorchClassifier or nn.Module), not {type(model).__name__}"
            )
        n, k = len(data), data.num_classes
        if n < 2 * self.folds:
            raise DetectorError(f"{n} samples are too few for {self.folds} folds; use fewer folds")
        y = data.y.cpu()
        fold = stratified_folds(y, self.folds, self.seed)
        probs = torch.zeros(n, k, dtype=torch.float64)
        for f in range(self.folds):
            cfg = replace(self._config, epochs=self.epochs, validation=0.0, seed=self.seed + f)
            held = (fold == f).nonzero().flatten()
            trained = harden(
                model, data.subset((fold != f).nonzero().flatten()), "standard", config=cfg, from_scratch=True
            )
            logits = predict(trained.classifier, data.x[held.to(data.x.device)], batch_size=self.batch_size)
            probs[held] = logits.to("cpu", torch.float64).softmax(1)
            if progress is not None:
                progress(f + 1, self.folds)
        issues = confident_issues(probs, y)
        flagged = torch.zeros(n, dtype=torch.bool)
        classes = []
        for c in range(k):
            index = (y == c).nonzero().flatten()
            if index.numel() < self.min_class_size:
                classes.append(skipped(c, index.numel(), self.min_class_size))
                continue
            share = float(issues[index].double().mean())
            suspicious = share >= self.tolerance
            if suspicious:
                flagged[index] = issues[index]
            classes.append(ClassScan(c, index.numel(), int(flagged[index].sum()), share, suspicious))
        return DataScanResult(
            method=self.method,
            scores=1.0 - probs.gather(1, y[:, None]).squeeze(1),
            flagged=flagged,
            classes=tuple(classes),
            threshold=self.tolerance,
            params={
                **self.params(),
                "training": self._config.to_dict() | {"epochs": self.epochs},
                "out_of_fold_agreement": float((probs.argmax(1) == y).double().mean()),
            },
            finding=self.finding,
            probabilities=probs,
        )
