"""The parts of ``bastion membership`` around the attack: the targets put together, the population's
overlap check, and the attack picked by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from bastion.errors import DataError

if TYPE_CHECKING:
    from bastion.attacks.inference.metrics import MembershipResult
    from bastion.data import Dataset
    from bastion.model import Classifier

__all__ = ["concat", "run_attack", "warn_overlap"]


def concat(name: str, *parts: Dataset) -> Dataset:
    """The datasets one after another, named ``name``; they must share input shape and classes."""
    from bastion.data import Dataset

    first = parts[0]
    for p in parts[1:]:
        if p.input_shape != first.input_shape or p.num_classes != first.num_classes:
            raise DataError(
                f"{p.name} ({p.input_shape}, {p.num_classes} classes) does not match {first.name} "
                f"({first.input_shape}, {first.num_classes} classes)"
            )
    x = torch.cat([p.x.to(first.x.device) for p in parts])
    y = torch.cat([p.y.to(first.x.device) for p in parts])
    return Dataset(x, y, first.num_classes, first.bounds, first.class_names, name)


def warn_overlap(targets: Dataset, pop: Dataset) -> None:
    """The population must be disjoint from the targets: shared examples are IN references that the
    offline attacks assume are OUT (and counted twice in lira's pool)."""
    import warnings

    from bastion.provenance.hashing import input_hashes

    shared = set(input_hashes(targets.x)) & set(input_hashes(pop.x))
    if shared:
        warnings.warn(
            f"{len(shared)} example(s) of --population are also targets (--members/--non-members): the "
            "references should not train on the targets; pass disjoint population data",
            stacklevel=2,
        )


def run_attack(
    attack: str,
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    is_member: torch.Tensor,
    extra: dict[str, Any],
    seed: int,
    population_size: int,
    gamma: float,
    offline_a: float,
    max_queries: int,
) -> MembershipResult:
    """Run the membership attack named ``attack`` (one of ``membership_cmd.ATTACKS``) with the CLI's
    settings; ``extra`` holds its references (and, for LiRA, ``ref_in``)."""
    from bastion.attacks.inference.label_only import BoundaryDistance
    from bastion.attacks.inference.lira import LiRA
    from bastion.attacks.inference.rmia import RMIA
    from bastion.attacks.inference.shadow import ShadowModels
    from bastion.attacks.inference.threshold import LossThreshold

    if attack == "threshold":
        return LossThreshold().run(clf, x, y, is_member, seed=seed)
    if attack == "label-only":
        return BoundaryDistance(max_queries=max_queries).run(clf, x, y, is_member, seed=seed)
    if attack == "shadow":
        return ShadowModels().run(clf, x, y, is_member, references=extra["references"], seed=seed)
    if attack == "rmia":
        rmia = RMIA(gamma=gamma, a=offline_a, population_size=population_size)
        return rmia.run(clf, x, y, is_member, references=extra["references"], seed=seed)
    return LiRA(online=attack == "lira").run(clf, x, y, is_member, seed=seed, **extra)
