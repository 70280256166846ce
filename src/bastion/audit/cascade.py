"""One threat's evaluation in the audit: the white-box cascade, the black-box probes that attack its
survivors, the defense's adaptive (BPDA + EOT) run and the attack-quality checks (``BA201``-``BA208``).

The white-box stages of the preset run as a cascade (the *naive* robust accuracy); then every
black-box probe (Square, a transfer attack, random noise) attacks, independently, the inputs the
white-box stages left standing. The headline (*adaptive*) robust accuracy counts an input robust only if
no attack of any kind fooled it; a probe that fools what white-box attacks could not is a finding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from bastion.attacks import get
from bastion.attacks.base import Attack
from bastion.audit import checks
from bastion.audit.config import AuditConfig
from bastion.audit.findings import Finding
from bastion.audit.prechecks import ModelFacts
from bastion.audit.probes import Clock, ProbeResult, run_attack, stronger
from bastion.audit.sections.base import CheckRun, Progress, check
from bastion.evaluation import Focused, boundary_margin, preset_attacks, with_eot
from bastion.model import Classifier, predict
from bastion.threat import Norm, ThreatModel, format_epsilon

__all__ = ["ThreatOutcome", "audit_threat", "threat_label"]


def threat_label(threat: ThreatModel) -> str:
    """``linf ε=8/255``: the budget as the user wrote it when it is a simple fraction (format_epsilon)."""
    return f"{threat.norm.value} ε={format_epsilon(threat.epsilon)}"


@dataclass(frozen=True)
class ThreatOutcome:
    """One threat's report row (JSON-ready), its findings and checks, and for later sections the
    adversarial found for each input (``x_adv`` (N, ...)) and which inputs any attack fooled (``fooled``)."""

    row: dict[str, Any]
    x_adv: torch.Tensor
    fooled: torch.Tensor
    findings: list[Finding] = field(default_factory=list)
    checks: list[CheckRun] = field(default_factory=list)


def audit_threat(
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    threat: ThreatModel,
    cfg: AuditConfig,
    facts: ModelFacts,
    clock: Clock,
    tick: Progress,
    index: int,
    bpda: tuple[Classifier, int] | None = None,
) -> ThreatOutcome:
    """Attack ``x`` (N, ...) at ``threat``: stage k runs with seed ``cfg.seed + 100 * index + k``."""
    label = threat_label(threat)
    seed = cfg.seed + 100 * index
    stages = preset_attacks(cfg.preset)
    white = [(s, a) for s, a in stages if a.access == "gradient"] if facts.differentiable else []
    black = [(s, a) for s, a in stages if a.access != "gradient" and _fits(a, x)]
    if cfg.eot_samples > 1:
        white = [(s, with_eot(a, cfg.eot_samples)) for s, a in white]
    n = int(x.shape[0])
    robust = correct.clone()
    x_adv = x.clone()
    fooled_by: list[str | None] = [None] * n
    stage_rows: list[dict[str, Any]] = []
    findings: list[Finding] = []
    ran: list[CheckRun] = []

    def attack(
        name: str, atk: Attack, idx: torch.Tensor, s: int, what: str, target: Classifier | None = None
    ) -> ProbeResult:
        tick(f"{label}: {name}", 0, int(idx.numel()))
        res = run_attack(
            name,
            atk,
            target or clf,
            x,
            y,
            idx,
            threat,
            seed=s,
            batch_size=cfg.batch_size,
            clock=clock,
            what=what,
        )
        tick(f"{label}: {name}", int(idx.numel()), int(idx.numel()))
        return res

    def record(res: ProbeResult, kind: str) -> None:
        """Inputs this attack fooled first leave the robust set; the first adversarial is kept."""
        new = res.success & robust[res.index]
        for j in res.index[new].tolist():
            fooled_by[j] = res.name
        x_adv[res.index[new]] = res.x_adv[new]
        robust[res.index[new]] = False
        stage_rows.append({**res.to_dict(), "kind": kind, "robust_accuracy": float(robust.float().mean())})

    # Focused stages (the preset's extra effort) attack only the survivors that came closest to the
    # boundary: each input's largest normalised margin after any stage ranks them, as in evaluate().
    focused_ahead = any(isinstance(a, Focused) for _, a in (*white, *black))
    margin = torch.full((n,), -math.inf, device=x.device)

    def nearest(idx: torch.Tensor, atk: Attack) -> tuple[torch.Tensor, Attack]:
        if not isinstance(atk, Focused):
            return idx, atk
        return atk.nearest(idx, margin), atk.attack

    def reached(res: ProbeResult) -> None:
        if focused_ahead and res.index.numel():
            with torch.no_grad():
                m = predict(clf, res.x_adv, batch_size=cfg.batch_size)
            margin[res.index] = torch.maximum(margin[res.index], boundary_margin(m, y[res.index]))

    for k, (name, atk) in enumerate(white):
        idx, runner = nearest(robust.nonzero().flatten(), atk)
        res = attack(name, runner, idx, seed + k, "white-box cascade")
        record(res, "white-box")
        reached(res)
    naive = float(robust.float().mean())
    survivors = robust.nonzero().flatten()
    probes: list[tuple[str, Attack]] = list(black)
    if cfg.checks or not white:
        whole = [a for _, a in probes if not isinstance(a, Focused)]
        if x.dim() == 4 and not any(a.name == "square" for a in whole):
            probes.insert(0, ("square", get("square", n_queries=1000)))  # BA205 needs one on every survivor
            whole.append(probes[0][1])
        # a focused probe with the same settings as a whole one only repeats it on fewer inputs
        probes = [(s, a) for s, a in probes if not _subsumed(a, whole)]
        if cfg.transfer:
            probes.append(("transfer", get("transfer")))
        probes.append(("noise", get("noise", draws=cfg.noise_draws)))
    probe_hits: dict[str, torch.Tensor] = {}  # per kind of probe, the survivors any probe of it fooled
    for k, (name, atk) in enumerate(probes):
        idx, runner = nearest(survivors, atk)
        res = attack(name, runner, idx, seed + 50 + k, "black-box probe")
        record(res, "black-box")
        if atk.name in checks._BEATS:
            hit = probe_hits.setdefault(atk.name, torch.zeros(n, dtype=torch.bool, device=x.device))
            hit[res.index[res.success]] = True
    if white and cfg.checks:
        for kind, hit in probe_hits.items():
            f = checks.beats_white_box(kind, int(hit.sum()), int(survivors.numel()), n, threat=label)
            ran.append(check(checks._BEATS[kind], label, f is None, fooled=int(hit.sum())))
            findings += [f] if f else []
    if bpda is not None:
        # The defense's adaptive evaluation: the same white-box attacks, back-propagating through the
        # transforms' surrogates (BPDA) and averaging over their randomness (EOT); success is checked
        # on the exact transforms, so every input it breaks is broken.
        target, eot = bpda
        newly = torch.zeros(n, dtype=torch.bool, device=x.device)
        for k, (name, atk) in enumerate(preset_attacks(cfg.preset)):
            if atk.access != "gradient":
                continue
            idx = survivors[~newly[survivors]]  # like the probes: the naive survivors, independently
            res = attack(
                f"{name} BPDA",
                with_eot(_whole(atk), eot),
                idx,
                seed + 70 + k,
                "adaptive (BPDA + EOT)",
                target,
            )
            newly[res.index[res.success]] = True
            record(res, "adaptive")
        if white:
            f = checks.beats_white_box("bpda", int(newly.sum()), int(survivors.numel()), n, threat=label)
            ran.append(check("BA208", label, f is None, fooled=int(newly.sum())))
            findings += [f] if f else []
    if white and cfg.checks:
        attacked = correct.nonzero().flatten()
        fgsm = attack("fgsm", get("fgsm", eot_samples=cfg.eot_samples), attacked, seed + 80, "check BA203")
        beaten = fgsm.success & ~_white_fooled(fooled_by, fgsm.index, {s for s, _ in white})
        record(fgsm, "check")
        f = checks.beats_white_box("fgsm", int(beaten.sum()), int(survivors.numel()), n, threat=label)
        ran.append(check("BA203", label, f is None, fooled=int(beaten.sum())))
        findings += [f] if f else []
        subset = survivors[: cfg.check_samples]
        newly = torch.zeros(subset.numel(), dtype=torch.bool, device=x.device)
        for k, (name, atk) in enumerate(white):
            if isinstance(atk, Focused):  # already the extra effort on the nearest survivors: not doubled
                continue
            res = attack(f"{name} ×2", stronger(atk), subset[~newly], seed + 90 + k, "check BA204")
            newly[~newly] = res.success
            record(res, "check")
        f = checks.beats_white_box("stronger", int(newly.sum()), int(subset.numel()), n, threat=label)
        ran.append(check("BA204", label, f is None, fooled=int(newly.sum()), attacked=int(subset.numel())))
        findings += [f] if f else []
        if index == 0 or threat.norm not in {nm for nm, _ in cfg.threats[:index]}:
            found, unbounded = _unbounded(clf, x, y, correct, threat.norm, cfg, clock, tick)
            ran.append(unbounded)
            findings += [found] if found else []
    adaptive = float(robust.float().mean())
    row = {
        "norm": threat.norm.value,
        "epsilon": threat.epsilon,
        "label": label,
        "naive_robust_accuracy": naive if white else None,
        "robust_accuracy": adaptive,
        "stages": stage_rows,
        "per_class": _per_class(y, correct, robust, clf),
        "fooled_by": {name: fooled_by.count(name) for name in dict.fromkeys(f for f in fooled_by if f)},
    }
    return ThreatOutcome(row, x_adv, correct & ~robust, findings, ran)


def _white_fooled(fooled_by: list[str | None], index: torch.Tensor, names: set[str]) -> torch.Tensor:
    return torch.tensor(
        [fooled_by[i] in names for i in index.tolist()], dtype=torch.bool, device=index.device
    )


def _unbounded(
    clf: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    correct: torch.Tensor,
    norm: Norm,
    cfg: AuditConfig,
    clock: Clock,
    tick: Progress,
) -> tuple[Finding | None, CheckRun]:
    """PGD from the clean input (no random start: a random point of the whole box is no attack) with
    the margin loss, which never saturates, and no limit on the perturbation."""
    idx = correct.nonzero().flatten()[: cfg.check_samples]
    threat = ThreatModel(norm, float("inf"), bounds=clf.bounds)
    pgd = get("pgd", steps=100, random_start=False, loss="margin", eot_samples=cfg.eot_samples)
    tick(f"{norm.value} unbounded", 0, int(idx.numel()))
    res = run_attack(
        "pgd",
        pgd,
        clf,
        x,
        y,
        idx,
        threat,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        clock=clock,
        what="check BA201",
    )
    tick(f"{norm.value} unbounded", int(idx.numel()), int(idx.numel()))
    success = int(res.success.sum())
    f = checks.unbounded_reaches_all(success, int(idx.numel()), norm.value)
    return f, check("BA201", f"{norm.value} unbounded", f is None, success=success, attacked=int(idx.numel()))


def _whole(attack: Attack) -> Attack:
    """A focused stage's attack on every input it is given (the checks and BPDA attack them all)."""
    return attack.attack if isinstance(attack, Focused) else attack


def _subsumed(attack: Attack, whole: list[Attack]) -> bool:
    return isinstance(attack, Focused) and any(
        type(attack.attack) is type(w) and attack.attack.params() == w.params() for w in whole
    )


def _fits(attack: Attack, x: torch.Tensor) -> bool:
    return attack.name != "square" or x.dim() == 4  # Square's windows need (C, H, W) images


def _per_class(
    y: torch.Tensor, correct: torch.Tensor, robust: torch.Tensor, clf: Classifier
) -> list[dict[str, Any]]:
    out = []
    for c in torch.unique(y).tolist():
        m = y == c
        out.append(
            {
                "class": int(c),
                "n": int(m.sum()),
                "clean_accuracy": float(correct[m].float().mean()),
                "robust_accuracy": float(robust[m].float().mean()),
            }
        )
    return out
