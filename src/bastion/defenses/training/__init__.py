"""Training defenses: adversarial training (PGD, fast FGSM, TRADES), label smoothing, defensive
distillation, noise augmentation and differentially private SGD (Opacus, imported only when used),
through one loop and one entry point, :func:`harden`."""

from bastion.defenses.training.atta import ATTA
from bastion.defenses.training.config import TrainingConfig
from bastion.defenses.training.distillation import Distillation
from bastion.defenses.training.dp_sgd import DPSGD
from bastion.defenses.training.fgsm_rs import FastFGSM
from bastion.defenses.training.harden import HardenResult, harden
from bastion.defenses.training.label_smoothing import LabelSmoothing
from bastion.defenses.training.loop import train
from bastion.defenses.training.methods import METHODS, make_objective
from bastion.defenses.training.n_fgsm import NFGSM
from bastion.defenses.training.noise import GaussianNoise
from bastion.defenses.training.objective import Batch, Objective, StandardTraining
from bastion.defenses.training.pgd import PGDTraining
from bastion.defenses.training.run import EpochStats, TrainingRun
from bastion.defenses.training.trades import TRADES

__all__ = [
    "ATTA",
    "DPSGD",
    "METHODS",
    "NFGSM",
    "TRADES",
    "Batch",
    "Distillation",
    "EpochStats",
    "FastFGSM",
    "GaussianNoise",
    "HardenResult",
    "LabelSmoothing",
    "Objective",
    "PGDTraining",
    "StandardTraining",
    "TrainingConfig",
    "TrainingRun",
    "harden",
    "make_objective",
    "train",
]
