"""The audited model behind ``--defense``: as a naive evaluator sees it, and its BPDA + EOT view."""

from __future__ import annotations

from bastion.audit.config import AuditConfig
from bastion.model import Classifier

__all__ = ["bpda_view", "naive_view"]


def naive_view(clf: Classifier, cfg: AuditConfig) -> Classifier:
    """``clf`` behind the transforms of ``cfg.defense``, run exactly as written."""
    from bastion.defenses import DefendedClassifier, parse_defense

    return DefendedClassifier(clf, parse_defense(cfg.defense or ""), mode="naive", seed=cfg.seed)


def bpda_view(clf: Classifier, cfg: AuditConfig) -> tuple[Classifier, int]:
    """The BPDA view of ``clf`` behind ``cfg.defense`` and the EOT samples to average over
    (``cfg.eot_samples``, or 20 when a transform is randomised and none were asked for)."""
    from bastion.defenses import DefendedClassifier, parse_defense

    chain = parse_defense(cfg.defense or "")
    eot = cfg.eot_samples if cfg.eot_samples > 1 else (20 if any(t.randomized for t in chain) else 1)
    return DefendedClassifier(clf, chain, mode="bpda", seed=cfg.seed), eot
